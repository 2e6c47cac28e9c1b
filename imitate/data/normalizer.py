"""Normalizer: per-key affine maps fitted on the data, kept as buffers inside the model.

    normalized = raw * scale + offset          raw = (normalized - offset) / scale

Modes per key:
- ``minmax``: each dimension's [min, max] onto [-1, 1] (the heads expect actions there);
- ``meanstd``: zero mean, unit variance;
- ``identity``: unchanged (e.g. discrete action indices).

Camera images are not normalized here: `imitate.spec.PolicySpec.normalizer_specs` leaves them out and
the image encoder scales their uint8 values to [0, 1].

A dimension that never varies maps to 0 (minmax, meanstd). The statistics (min, max, mean, std) and
the map are buffers, so they are saved and loaded with the weights. An unknown key is an error, never
a silent pass-through. A key may hold any character, a dot too (``obs/goal.pos``): in the weights'
names a dot is written ``%2E`` (torch separates module names with dots), every other key as it is.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from imitate.spec import NORM_MODES as MODES
_EPS = 1e-6
_DOT = "%2E"


def _module_name(key: str) -> str:
    """A key's name among the normalizer's modules (and in its state dict): dots spelled ``%2E``."""
    return key.replace(".", _DOT)


class _KeyStats(nn.Module):
    def __init__(self, shape: Sequence[int], mode: str):
        super().__init__()
        self.mode = mode
        for name, fill in (("scale", 1.0), ("offset", 0.0), ("min", 0.0), ("max", 0.0), ("mean", 0.0), ("std", 1.0)):
            self.register_buffer(name, torch.full(tuple(shape), fill, dtype=torch.float32))


class Normalizer(nn.Module):
    """Per-key normalization of observations and actions.

    Args:
        specs: key -> (per-step shape, mode). Keys are e.g. ``"obs/agent_pos"`` and ``"action"``.
    """

    def __init__(self, specs: Mapping[str, tuple[Sequence[int], str]]):
        super().__init__()
        for key, (_, mode) in specs.items():
            if mode not in MODES:
                raise ValueError(f"normalizer mode {mode!r} for {key!r}: choose one of {MODES}")
            if not key:
                raise ValueError("a normalizer key must be non-empty")
        names = [_module_name(k) for k in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"normalizer keys {list(specs)} collide once dots are spelled {_DOT!r}")
        self.specs = {k: (tuple(int(d) for d in s), m) for k, (s, m) in specs.items()}
        self.stats = nn.ModuleDict({_module_name(k): _KeyStats(s, m) for k, (s, m) in self.specs.items()})

    @property
    def keys(self) -> list[str]:
        return list(self.specs)

    def _get(self, key: str) -> _KeyStats:
        if key not in self.specs:
            raise KeyError(f"the normalizer has no key {key!r}; it knows {self.keys}")
        return self.stats[_module_name(key)]

    def fit(self, key: str, chunks: Iterable[np.ndarray]) -> None:
        """Fit one key's statistics from chunks of rows (N, *shape), streaming (float64 sums)."""
        st = self._get(key)
        shape = tuple(st.scale.shape)
        n, s1, s2 = 0, np.zeros(shape), np.zeros(shape)
        lo, hi = np.full(shape, np.inf), np.full(shape, -np.inf)
        for chunk in chunks:
            x = np.asarray(chunk, dtype=np.float64).reshape(-1, *shape)
            if not len(x):
                continue
            n += len(x)
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            lo, hi = np.minimum(lo, x.min(0)), np.maximum(hi, x.max(0))
        if n == 0:
            raise ValueError(f"no data to fit the normalizer for {key!r}")
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        if st.mode == "minmax":
            width = hi - lo
            flat = width < _EPS
            scale = np.where(flat, 1.0, 2.0 / np.where(flat, 1.0, width))
            offset = np.where(flat, -(hi + lo) / 2, -1.0 - lo * scale)
        elif st.mode == "meanstd":
            safe = np.where(std < _EPS, 1.0, std)
            scale, offset = 1.0 / safe, -mean / safe
        else:
            scale, offset = np.ones(shape), np.zeros(shape)
        for name, value in (("scale", scale), ("offset", offset), ("min", lo), ("max", hi), ("mean", mean), ("std", std)):
            getattr(st, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    @classmethod
    def from_store(cls, store, obs_keys: Sequence[str] | None = None, obs_mode: str = "meanstd",
                   action_mode: str = "minmax", episodes: np.ndarray | None = None) -> "Normalizer":
        """Fit on a store's observations (``obs/<key>``) and actions (``action``) over some episodes.
        Camera keys (uint8 (H, W, C), `imitate.data.checks.is_image`) are left out: the image encoder
        scales them itself."""
        from imitate.data.checks import is_image

        first = np.zeros(1, dtype=np.int64)
        obs_keys = list(obs_keys) if obs_keys is not None else list(store.obs_keys)
        obs_keys = [k for k in obs_keys if not is_image(store.shape(f"obs/{k}"), store.get(f"obs/{k}", first).dtype)]
        specs = {f"obs/{k}": (store.shape(f"obs/{k}"), obs_mode) for k in obs_keys}
        specs["action"] = (store.shape("actions"), action_mode)
        norm = cls(specs)
        norm.fit_store(store, episodes)
        return norm

    def fit_store(self, store, episodes: np.ndarray | None = None, skip: Sequence[str] = ()) -> None:
        """Fit every key but ``skip`` on a store's rows of ``episodes`` (None: all): ``obs/<key>`` from
        the store's ``obs/<key>``, ``action`` from its ``actions``."""
        for key in self.keys:
            if key not in skip:
                self.fit(key, store.iter_chunks("actions" if key == "action" else key, episodes))

    def affine(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the key's map: normalized = raw * scale + offset."""
        st = self._get(key)
        return st.scale.detach().clone(), st.offset.detach().clone()

    def range(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The smallest and largest raw values (per entry) the key was fitted on."""
        st = self._get(key)
        return st.min.detach().cpu().numpy(), st.max.detach().cpu().numpy()

    def set_meanstd(self, key: str, mean: np.ndarray, var: np.ndarray) -> None:
        """Set a meanstd key's statistics directly (running statistics, as PPO keeps them)."""
        st = self._get(key)
        if st.mode != "meanstd":
            raise ValueError(f"set_meanstd: {key!r} is normalized by {st.mode}, not meanstd")
        std = np.sqrt(np.maximum(np.asarray(var, np.float64), 1e-8))
        mean = np.asarray(mean, np.float64)
        for name, value in (("scale", 1.0 / std), ("offset", -mean / std), ("mean", mean), ("std", std)):
            getattr(st, name).copy_(torch.as_tensor(value, dtype=torch.float32))

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """x (..., *shape) raw (any float or int dtype) -> normalized, in the model's dtype."""
        st = self._get(key)
        return x.to(st.scale.dtype) * st.scale + st.offset

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """x (..., *shape) normalized -> raw."""
        st = self._get(key)
        return (x - st.offset) / st.scale

    def config(self) -> dict:
        """JSON description (shapes and modes) from which `from_config` rebuilds the module."""
        return {k: {"shape": list(s), "mode": m} for k, (s, m) in self.specs.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping]) -> "Normalizer":
        return cls({k: (tuple(v["shape"]), v["mode"]) for k, v in config.items()})
