"""Gymnasium tasks shipped with imitate and their scripted experts.

Importing this package registers these tasks with gymnasium (each has a scripted expert in EXPERTS):

    imitate/ForkedPath-v0     pass a barrier through the left or the right passage (2 modes)
    imitate/ForkedPath3-v0    the same with three passages (3 modes)
    imitate/ReacherModes-v0   MuJoCo two-link Reacher, elbow-up or elbow-down (2 modes)
    imitate/BlockPush-v0      push two blocks into two zones, any order and assignment (4 modes)
    imitate/GridWorld-v0      a tabular grid world with known dynamics and reward (MaxEnt IRL)
    imitate/StitchMaze-v0     a U-shaped maze whose demonstrations cover only pieces of the way (offline RL)

and, when the optional package is installed (each with its expert):

    metaworld/<task>          Meta-World's 50 tasks, e.g. metaworld/push-v3 (imitate[metaworld])
    robosuite/<env>           robosuite's environments, e.g. robosuite/Lift (imitate[robosuite]);
                              env_from_args() maps a robomimic file's env_args (type 1) to them
    pusht/PushT               gym-pusht's Push-T, its expert a push planner (imitate[pusht])

ForkedPath, ForkedPath3, BlockPush and ReacherModes take ``obs_mode`` ("state" default, "image",
"state+image") and ``image_size`` (84): the ``image`` key is a top-down uint8 view drawn with NumPy
(`imitate.envs.draw`; ReacherModes' too, from MuJoCo's body positions, not its renderer); their experts
still label from the state (`expert_view`).

Importing it imports neither MuJoCo nor torch (nor metaworld, robosuite or gym-pusht): ReacherModes builds its
MuJoCo model when it is made.
"""
from __future__ import annotations

import importlib.util

import gymnasium

from imitate.errors import ConfigError

from imitate.envs.block_push import BLOCK_PUSH_MODES, BlockPushEnv, BlockPushGeometry
from imitate.envs.block_push_expert import BlockPushExpert
from imitate.envs.draw import IMAGE_KEY, OBS_MODES
from imitate.envs.experts import (
    EXPERTS,
    Expert,
    ForkedPath3Expert,
    ForkedPathExpert,
    PendulumExpert,
    UnknownEnvError,
    expert_view,
    make_expert,
)
from imitate.envs.forked_path import ROUTE_NAMES, ForkedPathEnv, ForkedPathGeometry
from imitate.envs.reacher_modes import REACHER_MODES, ReacherModesEnv, ReacherModesExpert, ReacherModesGeometry
from imitate.envs.robosuite_env import env_from_args
from imitate.envs.stitch_maze import STITCH_PIECES, StitchMazeEnv, StitchMazeExpert

FORKED_PATH_ID = "imitate/ForkedPath-v0"
FORKED_PATH3_ID = "imitate/ForkedPath3-v0"
REACHER_MODES_ID = "imitate/ReacherModes-v0"
BLOCK_PUSH_ID = "imitate/BlockPush-v0"

GRIDWORLD_ID = "imitate/GridWorld-v0"
STITCH_MAZE_ID = "imitate/StitchMaze-v0"
EXPERTS[STITCH_MAZE_ID] = StitchMazeExpert
_TASKS = {
    FORKED_PATH_ID: dict(entry_point="imitate.envs.forked_path:ForkedPathEnv", max_episode_steps=120),
    FORKED_PATH3_ID: dict(entry_point="imitate.envs.forked_path:ForkedPathEnv", max_episode_steps=120,
                          kwargs={"n_routes": 3}),
    REACHER_MODES_ID: dict(entry_point="imitate.envs.reacher_modes:ReacherModesEnv", max_episode_steps=50),
    BLOCK_PUSH_ID: dict(entry_point="imitate.envs.block_push:BlockPushEnv", max_episode_steps=200),
    GRIDWORLD_ID: dict(entry_point="imitate.envs.gridworld:GridWorldEnv", max_episode_steps=50),
    STITCH_MAZE_ID: dict(entry_point="imitate.envs.stitch_maze:StitchMazeEnv", max_episode_steps=150),
}
for _id, _spec in _TASKS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, **_spec)

if importlib.util.find_spec("metaworld") is not None:
    from imitate.envs import metaworld as _metaworld

    _metaworld.register()
    EXPERTS.update(_metaworld.expert_classes())
if importlib.util.find_spec("robosuite") is not None:
    from imitate.envs import robosuite_env as _robosuite_env

    _robosuite_env.register()
    from imitate.envs.robosuite_lift import LiftExpert

    EXPERTS["robosuite/Lift"] = LiftExpert
if importlib.util.find_spec("gym_pusht") is not None:
    from imitate.envs import pusht as _pusht
    from imitate.envs.pusht_expert import PushTExpert

    _pusht.register()
    EXPERTS[_pusht.PUSHT_ID] = PushTExpert


def make_env(
    env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None
) -> gymnasium.Env:
    """``gymnasium.make(env_id, render_mode=render_mode, **env_kwargs)``; errors name the id.

    Raises:
        UnknownEnvError: gymnasium does not know ``env_id``.
        ConfigError: the environment rejects ``env_kwargs`` or ``render_mode``.
    """
    env_kwargs = dict(env_kwargs or {})
    if env_id not in gymnasium.registry and importlib.util.find_spec("robosuite") is not None:
        from imitate.envs import robosuite_env

        if env_id in robosuite_env.ROBOSUITE_ENVS:  # a robomimic file's env_name: robosuite/<env_name>
            env_id = robosuite_env.env_id(env_id)
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


def task_of(env_args: dict | None, env: str | None = None) -> tuple[str | None, dict | None]:
    """The environment a demo file's ``env_args`` names, as ``(gymnasium id, env_kwargs)``, or ``env``
    instead when given (with the file's kwargs only if it is the same environment); ``(None, None)``
    when there is none. Type 1 (robosuite) files need robosuite: `env_from_args` raises otherwise."""
    resolved = env_from_args(env_args)
    if env:
        return env, (resolved[1] if resolved and resolved[0] in (env, (env_args or {}).get("env_name")) else None)
    return resolved if resolved else (None, None)


__all__ = [
    "BLOCK_PUSH_ID",
    "BLOCK_PUSH_MODES",
    "EXPERTS",
    "FORKED_PATH3_ID",
    "FORKED_PATH_ID",
    "IMAGE_KEY",
    "OBS_MODES",
    "REACHER_MODES",
    "REACHER_MODES_ID",
    "ROUTE_NAMES",
    "STITCH_MAZE_ID",
    "STITCH_PIECES",
    "BlockPushEnv",
    "BlockPushExpert",
    "BlockPushGeometry",
    "Expert",
    "ForkedPath3Expert",
    "ForkedPathEnv",
    "ForkedPathExpert",
    "ForkedPathGeometry",
    "PendulumExpert",
    "ReacherModesEnv",
    "ReacherModesExpert",
    "ReacherModesGeometry",
    "StitchMazeEnv",
    "StitchMazeExpert",
    "UnknownEnvError",
    "env_from_args",
    "expert_view",
    "make_env",
    "make_expert",
    "task_of",
    "to_env_action",
]
