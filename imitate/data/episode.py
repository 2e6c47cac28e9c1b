"""One demonstration, validated when it is made.

An episode of T transitions holds, for every step t, the observation o_t, the action a_t taken there,
the reward r_t, the done flag d_t and the observation o_{t+1} that followed (robomimic's ``next_obs``):

    t:         0     1     2   ...  T-1
    obs:       o0    o1    o2  ...  o_{T-1}
    actions:   a0    a1    a2  ...  a_{T-1}
    next_obs:  o1    o2    o3  ...  o_T

The same field checks (`imitate.data.checks`) serve in-memory episodes and the file reader, which
checks shapes and dtypes from file metadata before reading any data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from imitate.data.checks import Problems, check_fields, check_finite
from imitate.errors import DemoFileError

#: Per-step fields that every episode holds besides ``obs/<key>`` and ``next_obs/<key>``.
STEP_FIELDS = ("actions", "rewards", "dones")


@dataclass(frozen=True)
class Episode:
    """One demonstration of T transitions. Arrays are checked on construction.

    Attributes:
        obs: observation key -> (T, *shape).
        next_obs: observation key -> (T, *shape), the observation after each step.
        actions: (T, A).
        rewards: (T,).
        dones: (T,), 1 where the environment terminated.
        states: (T, S) simulator states, optional.
        attrs: JSON-compatible scalars stored with the demo (e.g. ``is_success``, ``route``).
        extras: further per-step arrays (T, ...) stored beside ``actions`` in the demo's group (e.g.
            DAgger's ``expert_in_control``); readers and the sampler ignore them, so they never
            become policy inputs.
        name: the demo's name in its file, e.g. ``"demo_3"``.
        source: the file it came from, for error messages.
    """

    obs: Mapping[str, np.ndarray]
    next_obs: Mapping[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    states: np.ndarray | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    name: str = "demo"
    source: str = "<memory>"
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"{self.name} in {self.source}"
        set_ = object.__setattr__
        set_(self, "obs", {k: np.asarray(v) for k, v in self.obs.items()})
        set_(self, "next_obs", {k: np.asarray(v) for k, v in self.next_obs.items()})
        set_(self, "actions", np.asarray(self.actions))
        set_(self, "rewards", np.asarray(self.rewards).reshape(-1))
        set_(self, "dones", np.asarray(self.dones).reshape(-1))
        if self.states is not None:
            set_(self, "states", np.asarray(self.states))
        if not self.obs:
            raise DemoFileError(f"{where}: no observation keys")
        if set(self.obs) != set(self.next_obs):
            raise DemoFileError(
                f"{where}: obs keys {sorted(self.obs)} differ from next_obs keys {sorted(self.next_obs)}")
        set_(self, "extras", {k: np.asarray(v) for k, v in self.extras.items()})
        reserved = [k for k in self.extras if k in (*STEP_FIELDS, "obs", "next_obs", "states") or "/" in k]
        if reserved:
            raise DemoFileError(f"{where}: extras {reserved} collide with the demo's own keys")
        arrays = {**self.arrays(), **self.extras}
        problems = Problems(self.source)
        check_fields(problems, self.name, {k: (v.shape, v.dtype) for k, v in arrays.items()})
        for k, v in arrays.items():
            check_finite(problems, self.name, k, v)
        problems.raise_if_any()

    def __len__(self) -> int:
        return len(self.actions)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-step field under its file key: ``obs/<k>``, ``next_obs/<k>``, ``actions``, ..."""
        out = {f"obs/{k}": v for k, v in self.obs.items()}
        out.update({f"next_obs/{k}": v for k, v in self.next_obs.items()})
        out.update(actions=self.actions, rewards=self.rewards, dones=self.dones)
        if self.states is not None:
            out["states"] = self.states
        return out
