"""Run an exported policy with numpy and onnxruntime only (importing this module never imports torch).

    model = load("exported/")                      # export.json + model.onnx
    chunk = model.predict_chunk(obs)               # {key: (B, To, *shape)} -> actions (B, Ta, A)
    model.reset(); action = model.act(step_obs)    # one environment step, as Policy.act

The noise the sampler needs (export.json "inputs" of kind "noise") is drawn with numpy unless given:
``predict_chunk(obs, noise={"normal": array})`` reproduces PyTorch's output for the same noise. A
folder exported with ``--format torch`` (model.pt2) is run by torch.export instead, and that
imports torch.

Acting keeps the last To observations and a queue of actions, exactly as `imitate.policy.Policy.act`:

    t:        -1   0   1   2   3   4   5   6   7   8
    obs:       o   o                                      history of To = 2 (the first obs repeated at reset)
    chunk:         a   a   a   a   a   a   a   a          Ta = 8 predicted at t = 0
    executed:      a   a   a   a                          n_act = 4, then re-plan at t = 4

With ``temporal_ensemble`` set (in export.json, from the run), a chunk is predicted at every step and
the executed action is ACT's weighted mean of every earlier chunk's prediction for that step.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imitate.acting import ChunkActing, as_float32 as _as_float32, check_window
from imitate.errors import ImitateError
from imitate.formats import read_tagged_json

EXPORT_FORMAT = "imitate-export/1"
METADATA = "export.json"


def load(folder: str | os.PathLike, backend: str | None = None, threads: int | None = None,
         seed: int | None = None) -> "ExportedPolicy":
    """The exported policy in ``folder`` (written by ``imitate export``).

    Args:
        backend: "onnx" (onnxruntime) or "torch" (torch.export; imports torch); None: onnx when the
            folder has it.
        threads: intra-op threads of the runtime (None: its default, all cores).
        seed: seed of the numpy generator that draws the noise (None: fresh entropy).
    """
    folder = Path(folder)
    meta_path = folder / METADATA
    if not meta_path.is_file():
        raise ImitateError(f"{folder}: not an exported policy (no {METADATA}; write one with `imitate export`)")
    meta = read_tagged_json(meta_path, (EXPORT_FORMAT,), "an imitate export description")
    models = meta["models"]
    backend = backend or ("onnx" if "onnx" in models else next(iter(models)))
    if backend not in models:
        raise ImitateError(f"{folder}: has no {backend!r} model (it holds {sorted(models)}; export with --format {backend})")
    model_path = folder / models[backend]
    if not model_path.is_file():
        raise ImitateError(f"{folder}: {models[backend]} is missing ({METADATA} names it)")
    run = _onnx_session(model_path, threads) if backend == "onnx" else _torch_program(model_path, threads)
    return ExportedPolicy(meta, run, np.random.default_rng(seed), backend)


def _onnx_session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ImitateError(f"{path}: onnxruntime cannot load it ({e})") from None
    return lambda feeds: session.run(None, feeds)[0]


def _torch_program(path: Path, threads: int | None):
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        module = torch.export.load(str(path)).module()
    except Exception as e:  # torch raises several exception types for a foreign file
        raise ImitateError(f"{path}: torch.export cannot load it ({e})") from None

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(a) for a in feeds.values())).numpy()
    return run


class ExportedPolicy(ChunkActing):
    """An exported policy: `predict_chunk`, `act` and `reset`, validated against export.json."""

    def __init__(self, meta: dict[str, Any], run, rng: np.random.Generator, backend: str):
        self.meta, self._run, self.rng, self.backend = meta, run, rng, backend
        self.obs_keys: list[str] = list(meta["obs_keys"])
        self.obs_shapes = {k: tuple(s) for k, s in meta["obs_shapes"].items()}
        self.obs_horizon, self.action_horizon = meta["obs_horizon"], meta["action_horizon"]
        self.action_dim, self.n_act = meta["action_dim"], meta["n_act"]
        self.temporal_ensemble = meta.get("temporal_ensemble")
        self.noise_spec = {i["key"]: (tuple(i["shape"][1:]), i["distribution"]) for i in meta["inputs"] if i["kind"] == "noise"}
        self.reset()

    # -- one chunk --------------------------------------------------------------------------------
    def predict_chunk(self, obs: Mapping[str, Any], noise: Mapping[str, Any] | None = None) -> np.ndarray:
        """obs {key: (B, To, *shape)} -> raw actions (B, Ta, A) float32, a fresh sample.

        ``noise`` {name: (B, *shape)} replaces the draws named in export.json (missing ones are drawn).
        """
        feeds = check_window(obs, self.obs_keys, self.obs_shapes, self.obs_horizon)
        batch = len(next(iter(feeds.values())))
        noise = dict(noise or {})
        unknown = sorted(set(noise) - set(self.noise_spec))
        if unknown:
            raise ImitateError(f"noise {unknown} is not an input of this {self.meta['head']!r} policy; "
                               f"its noise inputs: {list(self.noise_spec) or 'none'}")
        for name, (shape, distribution) in self.noise_spec.items():
            if name in noise:
                x = _as_float32(noise[name], f"noise {name!r}")
                if x.shape != (batch, *shape):
                    raise ImitateError(f"noise {name!r} has shape {x.shape}; expected {(batch, *shape)} (batch, *shape)")
            else:
                x = self._draw((batch, *shape), distribution)
            feeds["noise_" + name] = x
        return self._run(feeds)

    def _draw(self, shape: tuple[int, ...], distribution: str) -> np.ndarray:
        if distribution == "normal":
            return self.rng.standard_normal(shape, dtype=np.float32)
        if distribution == "uniform":
            return self.rng.random(shape, dtype=np.float32)
        if distribution == "exponential":
            return self.rng.standard_exponential(shape, dtype=np.float32)
        raise ImitateError(f"export.json names an unknown noise distribution {distribution!r}")

    def act(self, obs: Any) -> np.ndarray:
        """One step: the current observation of one environment (dict of (*shape) arrays, or an array
        for the key ``state``) -> action (A,); of N environments ((N, *shape) per key) -> (N, A)."""
        return self._act(obs, self.predict_chunk)
