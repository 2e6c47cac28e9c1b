"""Export a trained policy as one graph: raw observations and noise in, raw actions out.

    obs {key: (B, To, *shape)} --normalize--> --encoder--> features (B, F)
    camera keys: uint8 (B, To, H, W, C) --cast, /255, centre crop--> image trunk --> features (B, F)
    features, noise {name: (B, *shape)} --head.sample_with_noise--> chunk (B, Ta, A) --unnormalize--> actions

The whole sampler travels in the graph: the DDIM loop of the diffusion head (its steps unrolled, the
scheduler's coefficients baked in as constants), the component choice and Gaussian draw of the gmm
head, the token-by-token loop of the autoregressive head (unrolled over the Ta * A tokens, with its
key/value cache). Randomness enters as inputs named ``noise_<name>`` (see the head's
`noise_spec()`); a runtime draws them, so that the same noise gives the same actions as PyTorch.

    OUT_DIR/
      model.onnx               the graph for onnxruntime (--format onnx)
      model.pt2                the same graph for torch alone, torch.export.load (--format torch)
      export.json              inputs (names, shapes, dtypes, distributions), output, horizons,
                               n_act, action bounds, head, the versions it was exported with

One torch.export trace (batch dimension dynamic) gives the .pt2 program; the ONNX model is that
same program translated by torch.onnx's exporter (needs the onnxscript package). While tracing,
the U-Net keeps its built-in convolutions (see policy_heads/denoisers.py). Every export is checked
before it is written: its output for random observations and noise must match the eager policy's
within ``tolerance``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from imitate.checkpoint import atomic_write, load_policy, read_run_config, versions, write_json
from imitate.errors import ConfigError, ImitateError
from imitate.policy import Policy

EXPORT_FORMAT = "imitate-export/1"
FORMATS = {"onnx": "model.onnx", "torch": "model.pt2"}
METADATA = "export.json"
NOISE_PREFIX = "noise_"


class SamplerGraph(nn.Module):
    """A policy's sampling path as one module over flat tensors (what the exporters trace).

    forward(*obs, *noise): obs (B, To, *shape) per key in ``obs_keys`` order, then noise (B, *shape)
    per name in ``noise_names`` order -> raw actions (B, Ta, A).
    """

    def __init__(self, policy: Policy):
        super().__init__()
        self.policy = policy
        self.obs_keys = list(policy.obs_keys)
        self.noise_names = list(policy.head.noise_spec())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs = dict(zip(self.obs_keys, inputs[: len(self.obs_keys)]))
        noise = dict(zip(self.noise_names, inputs[len(self.obs_keys):]))
        chunk = self.policy.head.sample_with_noise(self.policy.encode(obs), noise)
        return self.policy.normalizer.unnormalize("action", chunk)


def input_names(policy: Policy) -> list[str]:
    """Graph input names: the observation keys, then ``noise_<name>`` for every noise input."""
    names = list(policy.obs_keys) + [NOISE_PREFIX + n for n in policy.head.noise_spec()]
    if len(set(names)) != len(names):
        raise ImitateError(f"observation keys {policy.obs_keys} collide with the noise inputs {names[len(policy.obs_keys):]}")
    return names


def example_inputs(policy: Policy, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random observations (B, To, *shape) per key (camera keys: uint8 frames) and noise (B, *shape) per
    name, in input order."""
    generator = torch.Generator().manual_seed(seed)
    obs = [torch.randint(0, 256, (batch, policy.obs_horizon, *policy.obs_shapes[k]), generator=generator,
                         dtype=torch.uint8) if k in policy.image_keys else
           torch.randn((batch, policy.obs_horizon, *policy.obs_shapes[k]), generator=generator) for k in policy.obs_keys]
    noise = policy.head.draw_noise(batch, generator)
    return (*obs, *noise.values())


def metadata(policy: Policy, models: dict[str, str], run_dir: str | os.PathLike | None = None,
             extra_versions: dict | None = None) -> dict[str, Any]:
    """The export.json description of an exported policy (everything a runtime needs besides the graph)."""
    from policy_heads import config_to_dict

    inputs = [{"name": k, "kind": "obs", "key": k, "shape": ["batch", policy.obs_horizon, *policy.obs_shapes[k]],
               "dtype": "uint8" if k in policy.image_keys else "float32"} for k in policy.obs_keys]
    inputs += [{"name": NOISE_PREFIX + n, "kind": "noise", "key": n, "shape": ["batch", *shape], "dtype": "float32",
                "distribution": dist} for n, (shape, dist) in policy.head.noise_spec().items()]
    low, high = policy.normalizer.range("action")
    return {
        "format": EXPORT_FORMAT, "models": models, "head": policy.head.name,
        "head_config": config_to_dict(policy.head.config), "inputs": inputs,
        "output": {"name": "actions", "shape": ["batch", policy.action_horizon, policy.action_dim], "dtype": "float32"},
        "obs_keys": list(policy.obs_keys), "obs_shapes": {k: list(s) for k, s in policy.obs_shapes.items()},
        "obs_horizon": policy.obs_horizon, "action_horizon": policy.action_horizon, "action_dim": policy.action_dim,
        "n_act": policy.n_act, "temporal_ensemble": policy.temporal_ensemble,
        "action_bounds": {"low": low.tolist(), "high": high.tolist(),
                          "note": "range of the training actions; samples are not clipped to it"},
        "source": str(run_dir) if run_dir is not None else None,
        "versions": {**versions(), **(extra_versions or {})},
    }


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' chatter (missing torchvision ops, deprecations inside torch) for one export."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch.fx.experimental.symbolic_shapes",
                                              "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def trace(policy: Policy, batch: int = 2, banded: bool = True) -> torch.export.ExportedProgram:
    """torch.export of the policy's `SamplerGraph` with a dynamic batch dimension. ``banded``: short
    U-Net convolutions as banded matrix products (for onnxruntime, which folds them into constants)."""
    graph = SamplerGraph(policy.cpu().eval()).eval()
    for module in graph.modules():
        if hasattr(module, "banded_export"):
            module.banded_export = banded
    args = example_inputs(policy, batch)
    dim = torch.export.Dim("batch", min=1, max=1 << 20)
    with torch.no_grad(), _quiet():
        return torch.export.export(graph, args, dynamic_shapes=(tuple({0: dim} for _ in args),), strict=False)


def _to_onnx(program: torch.export.ExportedProgram, names: list[str], path: Path) -> dict[str, str]:
    """Write ``program`` as an ONNX model; returns the versions involved."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ImitateError("--format onnx needs the onnxscript package: pip install -e '.[export]' in the checkout") from None
    with _quiet():
        onnx_program = torch.onnx.export(program, (), dynamo=True, input_names=names, output_names=["actions"],
                                         optimize=True, verbose=False)
        onnx_program.save(str(path))
    import onnx

    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"onnx": onnx.__version__, "onnxscript": onnxscript.__version__, "onnx_opset": str(opset)}


def export_policy(policy: Policy, out: str | os.PathLike, formats: Sequence[str] = ("onnx",),
                  run_dir: str | os.PathLike | None = None, tolerance: float = 1e-4, overwrite: bool = False,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``policy`` into the folder ``out`` (a model file per format + export.json); returns the metadata.

    Every format comes from a torch.export trace of the same graph. Each exported model is run on random
    observations and noise at batch 1 and 3 and compared with the eager policy; a difference above
    ``tolerance`` is an error and nothing is written. ``log`` receives a line as each stage starts
    (an export can take minutes: the ONNX translation of an unrolled sampler is slow).
    """
    log = log or (lambda message: None)
    formats = list(dict.fromkeys([formats] if isinstance(formats, str) else formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--format {', '.join(bad) or '(none)'}: choose from {sorted(FORMATS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ImitateError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ImitateError(f"{out}: folder is not empty (pass --overwrite to replace its export)")
    names = input_names(policy)
    with tempfile.TemporaryDirectory() as tmp:
        extra: dict[str, str] = {}
        for fmt in formats:
            log(f"tracing the {policy.head.name} policy for {fmt} ...")
            program = trace(policy, banded=fmt == "onnx")
            if fmt == "torch":
                with _quiet():
                    torch.export.save(program, str(Path(tmp) / FORMATS[fmt]))
            else:
                log("translating to ONNX and optimizing the graph ...")
                extra.update(_to_onnx(program, names, Path(tmp) / FORMATS[fmt]))
        meta = metadata(policy, {f: FORMATS[f] for f in formats}, run_dir, extra)
        write_json(Path(tmp) / METADATA, meta)
        for fmt in formats:
            log(f"checking {FORMATS[fmt]} against the eager policy at batch 1 and 3 ...")
            _check_against_eager(policy, Path(tmp), fmt, tolerance)
        out.mkdir(parents=True, exist_ok=True)
        for name in (*FORMATS.values(), METADATA):
            if (out / name).exists():
                (out / name).unlink()
        for name in (*meta["models"].values(), METADATA):
            atomic_write(out / name, lambda dst, src=Path(tmp) / name: shutil.copyfile(src, dst))
    return meta


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, formats: Sequence[str] = ("onnx",),
               overwrite: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export the trained policy of a run directory (see `export_policy`)."""
    read_run_config(run_dir)
    return export_policy(load_policy(run_dir), out, formats, run_dir=run_dir, overwrite=overwrite, log=log)


def _check_against_eager(policy: Policy, folder: Path, fmt: str, tolerance: float) -> None:
    from imitate.export.runtime import load

    model = load(folder, backend=fmt, threads=torch.get_num_threads())
    for batch in (1, 3):
        args = example_inputs(policy, batch, seed=batch)
        with torch.no_grad():
            expected = SamplerGraph(policy)(*args).numpy()
        obs = {k: a.numpy() for k, a in zip(policy.obs_keys, args)}
        noise = {n: a.numpy() for n, a in zip(policy.head.noise_spec(), args[len(policy.obs_keys):])}
        error = float(np.abs(model.predict_chunk(obs, noise=noise) - expected).max())
        if not error <= tolerance:
            raise ImitateError(f"the {fmt} export of the {policy.head.name!r} policy differs from PyTorch by {error:.2e} "
                               f"(> {tolerance:g}) at batch {batch}; nothing was written")
