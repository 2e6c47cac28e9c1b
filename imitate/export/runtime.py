"""Run an exported policy with numpy and onnxruntime only (importing this module never imports torch).

    model = load("exported/")                      # export.json + model.onnx
    chunk = model.predict_chunk(obs)               # {key: (B, To, *shape)} -> actions (B, Ta, A)
                                                   # camera keys: uint8 (B, To, H, W, C) frames
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
    check_metadata(meta, meta_path)
    models = meta["models"]
    backend = backend or ("onnx" if "onnx" in models else next(iter(models)))
    if backend not in models:
        raise ImitateError(f"{folder}: has no {backend!r} model (it holds {sorted(models)}; export with --format {backend})")
    model_path = folder / models[backend]
    if not model_path.is_file():
        raise ImitateError(f"{folder}: {models[backend]} is missing ({METADATA} names it)")
    run = _onnx_session(model_path, threads) if backend == "onnx" else _torch_program(model_path, threads)
    return ExportedPolicy(meta, run, np.random.default_rng(seed), backend)


NOISE_DISTRIBUTIONS = ("normal", "uniform", "exponential")


def check_metadata(meta: dict[str, Any], where: str | os.PathLike) -> None:
    """Check the fields of an export.json that a runtime reads; an ImitateError names ``where`` and the field."""
    def bad(field: str, expected: str) -> ImitateError:
        got = "missing" if field not in meta else f"{meta[field]!r}"
        return ImitateError(f"{where}: field {field!r} is {got}; expected {expected} (re-export with `imitate export`)")

    def integer(field: str, low: int, high: int | None = None) -> int:
        value = meta.get(field)
        if not _is_int(value) or value < low or (high is not None and value > high):
            raise bad(field, f"an integer >= {low}" if high is None else
                      f"an integer in {low}..{high} (at most the chunk length, action_horizon)")
        return value

    models = meta.get("models")
    if not isinstance(models, dict) or not models or not all(isinstance(v, str) and v and Path(v).name == v
                                                             for v in models.values()):
        raise bad("models", 'an object naming the model file of each backend, e.g. {"onnx": "model.onnx"}')
    if not isinstance(meta.get("head"), str):
        raise bad("head", "the policy head's name")
    keys = meta.get("obs_keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise bad("obs_keys", "a list of distinct observation key names")
    shapes = meta.get("obs_shapes")
    if not isinstance(shapes, dict) or any(not isinstance(shapes.get(k), list) or not all(_is_int(d) and d >= 1
                                                                                        for d in shapes[k]) for k in keys):
        raise bad("obs_shapes", f"the per-step shape (a list of positive integers) of every key in {keys}")
    integer("obs_horizon", 1)
    integer("action_dim", 1)
    integer("n_act", 1, integer("action_horizon", 1))
    k = meta.get("temporal_ensemble")
    if k is not None and not (isinstance(k, (int, float)) and not isinstance(k, bool) and np.isfinite(k)):
        raise bad("temporal_ensemble", "null or the finite k of ACT's weights exp(-k * i)")
    inputs = meta.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise bad("inputs", "a list of input descriptions")
    for i in inputs:
        if i.get("kind") == "obs" and i.get("dtype", "float32") not in ("float32", "uint8"):
            raise bad("inputs", f"observation inputs of dtype float32 or uint8 (camera frames); one is {i!r}")
        if i.get("kind") == "noise" and not (
                isinstance(i.get("key"), str) and isinstance(i.get("shape"), list) and len(i["shape"]) >= 1
                and all(_is_int(d) and d >= 1 for d in i["shape"][1:]) and i.get("distribution") in NOISE_DISTRIBUTIONS):
            raise bad("inputs", f"noise inputs with a key, a shape [batch, ...] and a distribution in "
                                f"{NOISE_DISTRIBUTIONS}; one is {i!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return session.run(None, feeds)[0]
        except Exception as e:  # onnxruntime's own types: export.json does not describe this model
            raise ImitateError(f"{path}: onnxruntime refused the inputs export.json describes ({e})") from None
    return run


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
        self.image_keys = [i["key"] for i in meta["inputs"] if i.get("kind") == "obs" and i.get("dtype") == "uint8"]
        self.noise_spec = {i["key"]: (tuple(i["shape"][1:]), i["distribution"]) for i in meta["inputs"] if i["kind"] == "noise"}
        self.reset()

    # -- one chunk --------------------------------------------------------------------------------
    def predict_chunk(self, obs: Mapping[str, Any], noise: Mapping[str, Any] | None = None) -> np.ndarray:
        """obs {key: (B, To, *shape)} -> raw actions (B, Ta, A) float32, a fresh sample.

        ``noise`` {name: (B, *shape)} replaces the draws named in export.json (missing ones are drawn).
        Camera keys take uint8 frames (B, To, H, W, C), as the policy was trained on.
        """
        feeds = check_window(obs, self.obs_keys, self.obs_shapes, self.obs_horizon, self.image_keys)
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
                _check_finite(x, f"noise {name!r}")
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
        for the key ``state``) -> action (A,); of N environments ((N, *shape) per key) -> (N, A).
        NaN or inf is refused at once (`imitate.acting`), not only when a chunk is predicted."""
        return self._act(obs, self.predict_chunk)


def _check_finite(x: np.ndarray, what: str) -> None:
    """Refuse NaN and inf: a policy would turn them into NaN actions without a word."""
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        raise ImitateError(f"{what} holds NaN or inf (batch index {int(np.argmin(finite))}); "
                           f"the policy takes finite values only")
