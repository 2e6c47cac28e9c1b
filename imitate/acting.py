"""Acting with a chunk predictor, one environment step at a time (NumPy only, no torch).

`imitate.policy.Policy` and the exported runtime (`imitate.export.runtime`) act the same way: they
keep the last To observations and a queue of actions, predict a chunk of Ta actions, execute the
first ``n_act`` of them, then predict again.

    t:        -1   0   1   2   3   4   5   6   7   8
    obs:       o   o                                      history of To = 2 (the first obs repeated at reset)
    chunk:         a   a   a   a   a   a   a   a          Ta = 8 predicted at t = 0
    executed:      a   a   a   a                          n_act = 4, then re-plan at t = 4

With ``temporal_ensemble`` set, a chunk is predicted at every step and the action executed at t is
the weighted mean of every earlier chunk's prediction for t (weights exp(-k * i), i = 0 for the
oldest), as in ACT. Averaging smooths actions but also averages modes: off by default.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Mapping

import numpy as np

from imitate.errors import ImitateError


class ChunkActing:
    """The ``reset`` / ``act`` half of a policy. The class that mixes it in provides ``obs_keys``,
    ``obs_shapes`` ({key: shape}), ``obs_horizon``, ``action_horizon``, ``n_act``,
    ``temporal_ensemble`` (None or the k of ACT's weights) and ``image_keys`` (camera keys, taken
    as uint8 frames; none by default), and calls `_act` with its predictor."""

    image_keys: list[str] = []

    def reset(self) -> None:
        """Forget the observation history and the queued actions (call at every episode start)."""
        self._history: deque | None = None
        self._queue: deque = deque()
        self._ensemble: list[tuple[int, np.ndarray]] = []
        self._t = 0

    def _act(self, obs: Any, predict_chunk: Callable[[dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
        """One step: the current observation of one environment (dict of (*shape) arrays, or an array
        for the key ``state``) -> action (A,); of N environments ((N, *shape) per key) -> (N, A).
        ``predict_chunk`` maps a window {key: (N, To, *shape)} to actions (N, Ta, A)."""
        if not isinstance(obs, Mapping):
            obs = {"state": obs}
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise ImitateError(f"observation lacks key(s) {missing}; the policy reads {self.obs_keys}")
        first = self.obs_keys[0]
        single = np.ndim(obs[first]) == len(self.obs_shapes[first])
        images = set(self.image_keys)
        step = {k: as_uint8_image(obs[k], f"observation {k!r}") if k in images else as_float32(obs[k], f"observation {k!r}")
                for k in self.obs_keys}
        for k, v in step.items():   # at every step: a step that only pops the queue would hide it
            if k not in images and not np.isfinite(v).all():
                raise ImitateError(f"observation {k!r} holds NaN or inf; the policy takes finite values")
        if single:
            step = {k: v[None] for k, v in step.items()}
        if self._history is None:
            self._history = deque([step] * self.obs_horizon, maxlen=self.obs_horizon)
        else:
            self._history.append(step)
        window = {k: np.stack([h[k] for h in self._history], axis=1) for k in step}
        if self.temporal_ensemble is not None:
            action = self._ensembled(predict_chunk(window))
        else:
            if not self._queue:
                chunk = predict_chunk(window)
                self._queue.extend(chunk[:, i] for i in range(self.n_act))
            action = self._queue.popleft()
        self._t += 1
        return action[0] if single else action

    def _ensembled(self, chunk: np.ndarray) -> np.ndarray:
        t = self._t
        self._ensemble = [(s, c) for s, c in self._ensemble if t - s < self.action_horizon] + [(t, chunk)]
        preds = np.stack([c[:, t - s] for s, c in self._ensemble])              # (n, N, A), oldest first
        w = np.exp(-self.temporal_ensemble * np.arange(len(preds)))[:, None, None]
        return (w * preds).sum(0) / w.sum()


def as_float32(value: Any, what: str) -> np.ndarray:
    """A real-valued array as float32 (ints and other floats are converted); else an error naming ``what``."""
    x = np.asarray(value)
    if x.dtype.kind not in "fiu":
        raise ImitateError(f"{what} has dtype {x.dtype}; the policy takes real numbers (float32)")
    return np.ascontiguousarray(x, dtype=np.float32)


def as_uint8_image(value: Any, what: str) -> np.ndarray:
    """Camera frames as a uint8 array; anything else (float images above all) is an error naming ``what``."""
    if hasattr(value, "detach"):            # a torch tensor: as NumPy, without importing torch here
        value = value.detach().cpu().numpy()
    x = np.asarray(value)
    if x.dtype != np.uint8:
        raise ImitateError(f"{what} is a camera image and must be uint8 (H, W, C) frames with values 0..255 as the "
                           f"camera gives them, got dtype {x.dtype}; the policy scales and crops them itself")
    return np.ascontiguousarray(x)


def check_window(obs: Any, obs_keys: list[str], obs_shapes: Mapping[str, tuple[int, ...]],
                 obs_horizon: int, image_keys: Any = ()) -> dict[str, np.ndarray]:
    """A window of observations {key: (B, To, *shape)} checked: a dict holding every key, of the
    expected shape, one batch size >= 1 for all keys; returned as float32 arrays, real-valued and
    finite, except the camera keys among ``image_keys``, which must be uint8 (B, To, H, W, C) and stay so.

    `imitate.policy.Policy` and the exported runtime answer bad input with the same messages.
    """
    if not isinstance(obs, Mapping):
        raise ImitateError(f"observations must be a dict of arrays keyed by {obs_keys}, got {type(obs).__name__}")
    missing = [k for k in obs_keys if k not in obs]
    if missing:
        raise ImitateError(f"observation lacks key(s) {missing}; the policy reads {obs_keys}")
    out, batch = {}, None
    for k in obs_keys:
        value = obs[k]
        if value is None:
            raise ImitateError(f"observation {k!r} is None")
        if hasattr(value, "detach"):            # a torch tensor: as NumPy, without importing torch here
            value = value.detach().cpu().numpy()
        image = k in image_keys
        x = as_uint8_image(value, f"observation {k!r}") if image else as_float32(value, f"observation {k!r}")
        want = (obs_horizon, *obs_shapes[k])
        if x.ndim != len(want) + 1 or x.shape[1:] != want:
            raise ImitateError(f"observation {k!r} has shape {x.shape}; expected (B, {', '.join(map(str, want))}) "
                               f"= (batch, obs_horizon, {'H, W, C: channel-last frames' if image else '*shape'})")
        if batch is not None and x.shape[0] != batch:
            raise ImitateError(f"observation {k!r} has batch size {x.shape[0]}, other keys {batch}")
        if x.shape[0] == 0:
            raise ImitateError(f"observation {k!r} has batch size 0")
        finite = np.ones(len(x), bool) if image else np.isfinite(x).reshape(len(x), -1).all(1)
        if not finite.all():
            raise ImitateError(f"observation {k!r} holds NaN or inf (batch index {int(np.argmin(finite))}); "
                               f"the policy takes finite values")
        batch = x.shape[0]
        out[k] = x
    return out
