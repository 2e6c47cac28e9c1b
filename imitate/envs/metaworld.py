"""Meta-World (``pip install imitate[metaworld]``) tasks as gymnasium environments, with their experts.

``imitate.envs`` registers ``metaworld/<task>`` (``metaworld/push-v3``, ...) for every task in
``METAWORLD_TASKS`` when the metaworld package is installed; this module imports metaworld (and
MuJoCo) only when an environment or an expert is made.

What differs from Meta-World's own classes:

    layout      a fresh object/goal configuration at every reset, drawn from the environment's
                generator: ``reset(seed=s)`` gives the same layout for the same s (Meta-World's
                own reset ignores its seed and its goal-observable classes freeze the layout)
    goal        observable: the 39-D state ends with the goal position (Meta-World's MT benchmarks
                zero it); the shipped experts read it from there
    success     ``info["is_success"]`` = Meta-World's ``info["success"]``; the episode terminates
                at success unless ``terminate_on_success=False`` (then it runs the full horizon)
    actions     clipped to the action space [-1, 1]^4 before they reach the simulator
    images      ``render_mode="rgb_array"`` renders ``camera`` at ``width`` x ``height``;
                ``obs_mode="state+image"`` adds that image as ``<camera>_image`` (H, W, 3) uint8
                next to ``state`` (39,) in a Dict observation

The expert is Meta-World's scripted policy for the task (``metaworld.policies.ENV_POLICY_MAP``),
its actions clipped to [-1, 1].
"""
from __future__ import annotations

import importlib.metadata
import warnings
from typing import Any

import gymnasium
import numpy as np

from imitate.errors import ConfigError

#: Meta-World 3.x's 50 task names (``metaworld.env_dict.ENV_CLS_MAP``).
METAWORLD_TASKS = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3",
    "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3",
    "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "peg-insert-side-v3", "pick-place-wall-v3",
    "pick-out-of-hole-v3", "reach-v3", "push-back-v3", "push-v3", "pick-place-v3", "plate-slide-v3",
    "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3", "peg-unplug-side-v3",
    "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-wall-v3", "reach-wall-v3", "shelf-place-v3",
    "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
)

#: The ten tasks of Meta-World's MT10 benchmark.
MT10_TASKS = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
)

#: Meta-World's horizon (``SawyerXYZEnv.max_path_length``): the registered max_episode_steps.
MAX_EPISODE_STEPS = 500
OBS_MODES = ("state", "state+image")
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
#: Cameras whose frames MuJoCo renders upside down (their up axis points down): turned by 180 degrees.
_UPSIDE_DOWN = ("corner", "corner2", "corner3", "corner4")


def env_id(task: str) -> str:
    """The gymnasium id of a Meta-World task: ``push-v3`` -> ``metaworld/push-v3``."""
    return f"metaworld/{task}"


def _version() -> str:
    try:
        return importlib.metadata.version("metaworld")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _sawyer_class(task: str):
    """Meta-World's environment class for ``task``; a ConfigError names the task and the version."""
    try:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    except (ImportError, OSError) as err:  # OSError: files of two MuJoCo versions mixed in one environment
        raise ConfigError(f"Meta-World task {task!r} needs the metaworld package {_version()} with a working "
                          f"mujoco (pip install 'imitate[metaworld]'; it pins mujoco==3.3.0): {err}") from err
    if task not in ALL_V3_ENVIRONMENTS:
        raise ConfigError(f"metaworld {_version()} has no task {task!r}; it has {sorted(ALL_V3_ENVIRONMENTS)}")
    return ALL_V3_ENVIRONMENTS[task]


class MetaWorldEnv(gymnasium.Env):
    """One Meta-World task with a fresh, seeded layout per reset (see the module docstring).

    Args:
        task: a Meta-World task name, e.g. ``push-v3``.
        render_mode: None or ``"rgb_array"``.
        obs_mode: ``"state"`` (Box (39,)) or ``"state+image"`` (Dict: ``state``, ``<camera>_image``).
        camera: the camera that renders (and gives the image observation).
        width, height: the size of rendered images in pixels.
        terminate_on_success: end the episode at the first step that succeeds.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, task: str, render_mode: str | None = None, obs_mode: str = "state",
                 camera: str = "corner", width: int = 128, height: int = 128, terminate_on_success: bool = True):
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"metaworld/{task}: render_mode={render_mode!r}; supported: None, 'rgb_array'")
        if obs_mode not in OBS_MODES:
            raise ConfigError(f"metaworld/{task}: obs_mode={obs_mode!r}; supported: {list(OBS_MODES)}")
        if camera not in CAMERAS:
            raise ConfigError(f"metaworld/{task}: camera={camera!r}; Meta-World's cameras: {list(CAMERAS)}")
        if int(width) < 1 or int(height) < 1:
            raise ConfigError(f"metaworld/{task}: width={width}, height={height} must be positive")
        cls = _sawyer_class(task)
        renders = render_mode is not None or obs_mode != "state"
        self._sim = cls(render_mode="rgb_array" if renders else None, camera_name=camera,
                        width=int(width), height=int(height))
        # goal observable, a layout drawn from the generator at every reset (never frozen)
        self._sim._partially_observable = False
        self._sim._set_task_called = True
        self._sim._freeze_rand_vec = False
        self._sim.seeded_rand_vec = True
        if "sawyer_observation_space" in self._sim.__dict__:
            del self._sim.sawyer_observation_space  # cached with the goal hidden
        self.task, self.render_mode, self.obs_mode, self.camera = task, render_mode, obs_mode, camera
        self.terminate_on_success = bool(terminate_on_success)
        self.image_key = f"{camera}_image"
        sim_space = self._sim.sawyer_observation_space
        state_space = gymnasium.spaces.Box(sim_space.low, sim_space.high, dtype=np.float64)
        if obs_mode == "state":
            self.observation_space = state_space
        else:
            image_space = gymnasium.spaces.Box(0, 255, (int(height), int(width), 3), dtype=np.uint8)
            self.observation_space = gymnasium.spaces.Dict({"state": state_space, self.image_key: image_space})
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)

    def _observe(self, state: np.ndarray):
        state = np.asarray(state, dtype=np.float64)
        if self.obs_mode == "state":
            return state
        return {"state": state, self.image_key: self._render_sim()}

    def _render_sim(self) -> np.ndarray:
        frame = self._sim.render()
        if self.camera in _UPSIDE_DOWN:
            frame = frame[::-1, ::-1]
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._sim.np_random = self.np_random  # the layout is drawn from this generator
        state, _ = self._sim.reset()
        return self._observe(state), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        state, reward, _, truncated, info = self._sim.step(action)
        info = dict(info)
        info["is_success"] = bool(info.get("success", False))
        terminated = self.terminate_on_success and info["is_success"]
        return self._observe(state), float(reward), terminated, bool(truncated), info

    def render(self):
        if self.render_mode is None:
            return None
        return self._render_sim()

    def close(self):
        self._sim.close()


class MetaWorldExpert:
    """Meta-World's scripted policy for one task, as an imitate ``Expert``.

    The policies are deterministic functions of the 39-D state (they read the goal from its last
    three entries, which ``MetaWorldEnv`` keeps observable); their actions are clipped to [-1, 1].

    Args:
        task: the Meta-World task name.
        env_kwargs: the kwargs given to ``gym.make`` (``obs_mode`` tells where the state is).
        seed: unused: the policies draw nothing.
    """

    task: str = ""

    def __init__(self, task: str | None = None, env_kwargs: dict | None = None, seed: int | None = None):
        task = task or self.task
        try:
            from metaworld.policies import ENV_POLICY_MAP
        except (ImportError, OSError) as err:
            raise ConfigError(f"the Meta-World expert for {task!r} needs the metaworld package "
                              f"(pip install 'imitate[metaworld]'): {err}") from err
        if task not in ENV_POLICY_MAP:
            raise ConfigError(f"metaworld {_version()} ships no scripted policy for {task!r}")
        self.task = task
        self.policy = ENV_POLICY_MAP[task]()

    def reset(self, seed: int | None = None) -> None:
        """The policies have no per-episode choices."""

    def act(self, obs) -> np.ndarray:
        """Action (4,) float32 in [-1, 1] for a ``MetaWorldEnv`` observation (array or Dict with ``state``)."""
        state = np.asarray(obs["state"] if isinstance(obs, dict) else obs, dtype=np.float64).reshape(-1)
        with warnings.catch_warnings():  # "Constant(s) may be too high": the clip below handles it
            warnings.simplefilter("ignore", UserWarning)
            action = self.policy.get_action(state)
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)


def expert_classes() -> dict[str, type]:
    """``metaworld/<task>`` -> a ``MetaWorldExpert`` subclass bound to the task, for every task."""
    return {env_id(task): type(f"MetaWorldExpert_{task.replace('-', '_')}", (MetaWorldExpert,), {"task": task})
            for task in METAWORLD_TASKS}


def register() -> None:
    """Register ``metaworld/<task>`` with gymnasium for every Meta-World task (no import of metaworld)."""
    for task in METAWORLD_TASKS:
        if env_id(task) not in gymnasium.registry:
            gymnasium.register(id=env_id(task), entry_point="imitate.envs.metaworld:MetaWorldEnv",
                               max_episode_steps=MAX_EPISODE_STEPS, kwargs={"task": task})
