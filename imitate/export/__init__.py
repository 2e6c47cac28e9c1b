"""Deploying a policy: export it as one graph (ONNX or torch.export) and run it without torch.

    imitate.export.export_run(RUN_DIR, OUT_DIR, ["onnx"])   # torch side (imitate.export.exporter)
    model = imitate.export.runtime.load(OUT_DIR)            # numpy + onnxruntime only
    actions = model.predict_chunk(obs)                      # {key: (B, To, *shape)} -> (B, Ta, A)

Importing this package imports neither torch nor onnxruntime.
"""


def export_run(run_dir, out, formats=("onnx",), overwrite=False):
    """Export the trained policy of a run directory (see `imitate.export.exporter.export_run`)."""
    from imitate.export.exporter import export_run as _export

    return _export(run_dir, out, formats, overwrite=overwrite)


def load(folder, backend=None, threads=None, seed=None):
    """An exported policy (see `imitate.export.runtime.load`)."""
    from imitate.export.runtime import load as _load

    return _load(folder, backend=backend, threads=threads, seed=seed)
