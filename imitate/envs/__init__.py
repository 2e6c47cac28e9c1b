"""Gymnasium tasks shipped with imitate and their scripted experts.

Importing this package registers ``imitate/ForkedPath-v0`` and ``imitate/GridWorld-v0`` with gymnasium.
"""
from __future__ import annotations

import gymnasium

from imitate.errors import ConfigError

from imitate.envs.experts import (
    EXPERTS,
    Expert,
    ForkedPathExpert,
    PendulumExpert,
    UnknownEnvError,
    make_expert,
)
from imitate.envs.forked_path import ROUTE_NAMES, ForkedPathEnv, ForkedPathGeometry

FORKED_PATH_ID = "imitate/ForkedPath-v0"

if FORKED_PATH_ID not in gymnasium.registry:
    gymnasium.register(
        id=FORKED_PATH_ID,
        entry_point="imitate.envs.forked_path:ForkedPathEnv",
        max_episode_steps=120,
    )
GRIDWORLD_ID = "imitate/GridWorld-v0"
if GRIDWORLD_ID not in gymnasium.registry:
    gymnasium.register(id=GRIDWORLD_ID, entry_point="imitate.envs.gridworld:GridWorldEnv", max_episode_steps=50)


def make_env(
    env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None
) -> gymnasium.Env:
    """``gymnasium.make(env_id, render_mode=render_mode, **env_kwargs)``; errors name the id.

    Raises:
        UnknownEnvError: gymnasium does not know ``env_id``.
        ConfigError: the environment rejects ``env_kwargs`` or ``render_mode``.
    """
    env_kwargs = dict(env_kwargs or {})
    try:
        return gymnasium.make(env_id, render_mode=render_mode, **env_kwargs)
    except gymnasium.error.UnregisteredEnv as err:
        known = sorted(k for k in gymnasium.registry if k.startswith("imitate/"))
        raise UnknownEnvError(
            f"gymnasium does not know env id {env_id!r} ({err}); imitate's own tasks: {known}, "
            f"tasks with a scripted expert: {sorted(EXPERTS)}"
        ) from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"env {env_id!r} rejected env_kwargs={env_kwargs}: {err}") from err
    except gymnasium.error.Error as err:
        raise ConfigError(
            f"env {env_id!r} (env_kwargs={env_kwargs}, render_mode={render_mode!r}): {err}"
        ) from err


def to_env_action(space: gymnasium.Space, action):
    """A float action vector (A,) as ``space`` takes it: an index for Discrete, clipped to the bounds
    of a Box (in its dtype), per-dimension indices for MultiDiscrete."""
    import numpy as np

    action = np.asarray(action)
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(np.clip(np.rint(action.reshape(-1)[0]), 0, space.n - 1)) + int(space.start)
    if isinstance(space, gymnasium.spaces.MultiDiscrete):
        return np.clip(np.rint(action.reshape(space.shape)), 0, space.nvec - 1).astype(space.dtype)
    if isinstance(space, gymnasium.spaces.Box):
        return np.clip(action.reshape(space.shape), space.low, space.high).astype(space.dtype)
    return action


__all__ = [
    "EXPERTS",
    "FORKED_PATH_ID",
    "ROUTE_NAMES",
    "Expert",
    "ForkedPathEnv",
    "ForkedPathExpert",
    "ForkedPathGeometry",
    "PendulumExpert",
    "UnknownEnvError",
    "make_env",
    "make_expert",
    "to_env_action",
]
