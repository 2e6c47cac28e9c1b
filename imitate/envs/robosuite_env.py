"""robosuite (``pip install imitate[robosuite]``) environments for robomimic-format files.

A robomimic file names its environment in ``data.attrs["env_args"]``: ``type`` 1 is robosuite, with
``env_name`` (``Lift``, ``PickPlaceCan``, ...) and the ``env_kwargs`` given to ``robosuite.make``.
``env_from_args`` turns such env_args (and gymnasium's type 2) into a gymnasium id and kwargs for
``imitate.envs.make_env``; ``imitate.envs`` registers ``robosuite/<env_name>`` for robosuite's
environments when the robosuite package is installed, and this module imports robosuite only when
an environment is made.

``RobosuiteEnv`` builds the environment as robomimic's ``EnvRobosuite`` does (no on-screen renderer,
``ignore_done``, object observations on; controller configs written by robosuite <= 1.4 are
converted to 1.5's composite format) and returns robomimic's observation keys:

    robot0_eef_pos (3,), robot0_eef_quat (4,), robot0_gripper_qpos (2,), ... every robot0_* key
    object (D,)                  robosuite's object-state
    <camera>_image (H, W, 3)     uint8, when env_kwargs has use_camera_obs (rows flipped as robomimic does)

``info["is_success"]`` is the environment's own ``_check_success()``; the episode terminates at
success (as robomimic's rollouts stop) unless ``terminate_on_success=False``. Each
``reset(seed=s)`` re-seeds ``env.rng``, the generator robosuite places objects with, so the same
seed gives the same layout.
"""
from __future__ import annotations

import copy
import importlib.metadata
from typing import Any

import gymnasium
import numpy as np

from imitate.errors import ConfigError, ImitateError

GYM_TYPE, ROBOSUITE_TYPE = 2, 1
#: robosuite 1.5's environments (``robosuite.ALL_ENVIRONMENTS``), registered as robosuite/<name>.
ROBOSUITE_ENVS = (
    "Door", "Lift", "NutAssembly", "NutAssemblyRound", "NutAssemblySingle", "NutAssemblySquare", "PickPlace",
    "PickPlaceBread", "PickPlaceCan", "PickPlaceCereal", "PickPlaceMilk", "PickPlaceSingle", "Stack", "ToolHang",
    "TwoArmHandover", "TwoArmLift", "TwoArmPegInHole", "TwoArmTransport", "Wipe",
)
#: robomimic's rollout horizons for its tasks; other environments get DEFAULT_HORIZON.
HORIZONS = {"Lift": 400, "PickPlaceCan": 400, "NutAssemblySquare": 400, "ToolHang": 700, "TwoArmTransport": 700}
DEFAULT_HORIZON = 500
#: What robomimic's EnvRobosuite sets over a file's env_kwargs for rollouts.
ROLLOUT_OVERRIDES = {"has_renderer": False, "ignore_done": True, "use_object_obs": True, "camera_depths": False}
#: Observation keys that robomimic's low-dimensional datasets use.
ROBOMIMIC_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")


def robosuite_version() -> str:
    try:
        return importlib.metadata.version("robosuite")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def env_id(env_name: str) -> str:
    """The gymnasium id of a robosuite environment: ``Lift`` -> ``robosuite/Lift``."""
    return f"robosuite/{env_name}"


def register(names=ROBOSUITE_ENVS) -> None:
    """Register ``robosuite/<name>`` with gymnasium for ``names`` (no import of robosuite)."""
    for name in names:
        if env_id(name) not in gymnasium.registry:
            gymnasium.register(id=env_id(name), entry_point="imitate.envs.robosuite_env:RobosuiteEnv",
                               max_episode_steps=HORIZONS.get(name, DEFAULT_HORIZON), kwargs={"env_name": name})


def env_from_args(env_args: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """A demo file's robomimic ``env_args`` -> ``(gymnasium id, env_kwargs)`` for ``make_env``.

    type 2 (gymnasium): ``(env_name, env_kwargs)``. type 1 (robosuite): ``("robosuite/<env_name>",
    env_kwargs)``, registering the id if needed. None when ``env_args`` is empty or of another type.

    Raises:
        ImitateError: a type-1 file while robosuite is not installed (names the extra to install).
    """
    if not env_args or "env_name" not in env_args:
        return None
    kwargs = dict(env_args.get("env_kwargs") or {})
    if env_args.get("type") == GYM_TYPE:
        return str(env_args["env_name"]), kwargs
    if env_args.get("type") != ROBOSUITE_TYPE:
        return None
    import importlib.util

    if importlib.util.find_spec("robosuite") is None:
        raise ImitateError(f"the file's environment {env_args['env_name']!r} is a robosuite one (env_args type 1) "
                           "and robosuite is not installed: pip install 'imitate[robosuite]'")
    register([str(env_args["env_name"])])
    return env_id(str(env_args["env_name"])), kwargs


def convert_controller_configs(config: dict[str, Any] | None, robots) -> dict[str, Any] | None:
    """A file's ``controller_configs`` as the installed robosuite takes them: robosuite <= 1.4 wrote one
    arm controller (``{"type": "OSC_POSE", ...}``), 1.5 takes a composite one (``{"type": "BASIC",
    "body_parts": {...}}``). A ConfigError names the key and the robosuite version otherwise."""
    if config is None:
        return None
    try:
        from robosuite.controllers.composite.composite_controller_factory import (
            refactor_composite_controller_config,
        )
    except ImportError as err:
        raise ConfigError(f"env_kwargs['controller_configs'] cannot be converted with robosuite "
                          f"{robosuite_version()} (no composite controller factory: {err})") from err
    robot = robots[0] if isinstance(robots, (list, tuple)) else robots
    try:
        return refactor_composite_controller_config(copy.deepcopy(config), str(robot), ["right"])
    except (KeyError, TypeError, ValueError, FileNotFoundError) as err:
        raise ConfigError(f"env_kwargs['controller_configs'] (type {config.get('type')!r}) is not a controller "
                          f"config robosuite {robosuite_version()} knows: {err!r}") from err


def robomimic_obs(raw: dict[str, Any], robot_prefixes: list[str], camera_keys: list[str]) -> dict[str, np.ndarray]:
    """robosuite's observation dict -> robomimic's keys (see the module docstring)."""
    if "object-state" not in raw:
        raise ConfigError(f"robosuite {robosuite_version()} returned no 'object-state' observation (robomimic's "
                          f"'object'); it returned {sorted(raw)}")
    out = {"object": np.asarray(raw["object-state"], dtype=np.float64)}
    for key in camera_keys:
        out[key] = np.ascontiguousarray(np.asarray(raw[key])[::-1], dtype=np.uint8)
    for prefix in robot_prefixes:
        for key, value in raw.items():
            if key.startswith(prefix) and key not in out and not key.endswith("proprio-state"):
                out[key] = np.asarray(value, dtype=np.float64)
    return out


class RobosuiteEnv(gymnasium.Env):
    """One robosuite environment with robomimic's observation keys (see the module docstring).

    Args:
        env_name: robosuite's environment name, e.g. ``Lift``.
        render_mode: None or ``"rgb_array"`` (``camera`` at ``width`` x ``height``).
        camera, width, height: what ``render`` shows.
        terminate_on_success: end the episode at the first step that succeeds.
        **env_kwargs: ``robosuite.make``'s keyword arguments, as a robomimic file's env_args holds them
            (``robots``, ``controller_configs``, ``control_freq``, ``reward_shaping``, camera settings).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, env_name: str, render_mode: str | None = None, camera: str = "agentview", width: int = 256,
                 height: int = 256, terminate_on_success: bool = True, **env_kwargs):
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"robosuite/{env_name}: render_mode={render_mode!r}; supported: None, 'rgb_array'")
        try:
            import robosuite
        except (ImportError, OSError) as err:  # OSError: files of two MuJoCo versions mixed in one environment
            raise ConfigError(f"robosuite/{env_name} needs the robosuite package {robosuite_version()} with a "
                              f"working mujoco (pip install 'imitate[robosuite]'; it pins mujoco==3.3.0): {err}") from err
        if env_name not in robosuite.ALL_ENVIRONMENTS:
            raise ConfigError(f"robosuite {robosuite_version()} has no environment {env_name!r}; "
                              f"it has {sorted(robosuite.ALL_ENVIRONMENTS)}")
        self.env_name, self.render_mode, self.camera = env_name, render_mode, camera
        self.width, self.height = int(width), int(height)
        self.terminate_on_success = bool(terminate_on_success)
        self.version_note = f"robosuite {robosuite_version()}"
        env_kwargs = {**self.default_kwargs(env_kwargs.get("robots", ["Panda"])), **env_kwargs}
        self.file_kwargs = copy.deepcopy(env_kwargs)  # what robomimic's env_args hold
        kwargs = {**env_kwargs, **ROLLOUT_OVERRIDES}
        uses_camera = bool(kwargs.get("use_camera_obs", False))
        kwargs["use_camera_obs"] = uses_camera
        kwargs["has_offscreen_renderer"] = uses_camera or render_mode is not None
        if kwargs.get("controller_configs") is not None:
            kwargs["controller_configs"] = convert_controller_configs(kwargs["controller_configs"], kwargs["robots"])
        kwargs.pop("render_gpu_device_id", None)
        try:
            self.sim_env = robosuite.make(env_name, **kwargs)
        except TypeError as err:
            raise ConfigError(f"robosuite {robosuite_version()} rejected env_kwargs of {env_name!r} "
                              f"({sorted(env_kwargs)}): {err}") from err
        except (AssertionError, KeyError, ValueError) as err:
            controller = (env_kwargs.get("controller_configs") or {}).get("type")
            raise ConfigError(f"robosuite {robosuite_version()} cannot build {env_name!r} from env_kwargs "
                              f"(robots={kwargs['robots']}, controller_configs type {controller!r}): {err!r}") from err
        for name in self.sim_env.observation_names:  # as robomimic: joint positions and eef velocities on
            if "joint_pos" in name or "eef_vel" in name:
                self.sim_env.modify_observable(observable_name=name, attribute="active", modifier=True)
        cameras = kwargs.get("camera_names", "agentview") if uses_camera else []
        self.camera_keys = [f"{c}_image" for c in ([cameras] if isinstance(cameras, str) else cameras)]
        self.robot_prefixes = [robot.robot_model.naming_prefix for robot in self.sim_env.robots]
        first = self._observe(self.sim_env._get_observations(force_update=True))
        self.observation_space = gymnasium.spaces.Dict({
            k: (gymnasium.spaces.Box(0, 255, v.shape, np.uint8) if v.dtype == np.uint8
                else gymnasium.spaces.Box(-np.inf, np.inf, v.shape, np.float64)) for k, v in first.items()})
        low, high = self.sim_env.action_spec
        self.action_space = gymnasium.spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32))

    @staticmethod
    def default_kwargs(robots) -> dict[str, Any]:
        """The settings a file records when it names none: the robot's default controller, 20 Hz, sparse reward."""
        from robosuite.controllers import load_composite_controller_config

        robot = robots[0] if isinstance(robots, (list, tuple)) else robots
        return {"robots": robots if isinstance(robots, (list, tuple)) else [robots], "control_freq": 20,
                "reward_shaping": False, "controller_configs": load_composite_controller_config(robot=str(robot))}

    def _observe(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        return robomimic_obs(raw, self.robot_prefixes, self.camera_keys)

    def check_success(self) -> bool:
        success = self.sim_env._check_success()
        return bool(success["task"] if isinstance(success, dict) else success)

    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state (robomimic's ``states`` row)."""
        return np.asarray(self.sim_env.sim.get_state().flatten(), dtype=np.float64)

    def model_xml(self) -> str:
        """The MuJoCo model of the current episode (robomimic's ``model_file`` demo attribute)."""
        return self.sim_env.sim.model.get_xml()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # robosuite's placement samplers keep a reference to env.rng: re-seed that generator in place
        child = int(self.np_random.integers(2**63 - 1))
        self.sim_env.rng.bit_generator.state = np.random.default_rng(child).bit_generator.state
        raw = self.sim_env.reset()
        return self._observe(raw), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_space.shape),
                         self.action_space.low, self.action_space.high)
        raw, reward, _, info = self.sim_env.step(action)
        info = dict(info)
        info["is_success"] = self.check_success()
        terminated = self.terminate_on_success and info["is_success"]
        return self._observe(raw), float(reward), terminated, False, info

    def render(self):
        if self.render_mode is None:
            return None
        frame = self.sim_env.sim.render(height=self.height, width=self.width, camera_name=self.camera)
        return np.ascontiguousarray(frame[::-1], dtype=np.uint8)

    def robomimic_env_args(self) -> dict[str, Any]:
        """This environment as robomimic's type-1 ``env_args``: env_name, env_version, type, env_kwargs."""
        kwargs = {**self.file_kwargs, **ROLLOUT_OVERRIDES,
                  "has_offscreen_renderer": bool(self.file_kwargs.get("use_camera_obs", False)),
                  "use_camera_obs": bool(self.file_kwargs.get("use_camera_obs", False))}
        return {"env_name": self.env_name, "env_version": robosuite_version(), "type": ROBOSUITE_TYPE,
                "env_kwargs": kwargs}

    def close(self):
        self.sim_env.close()
