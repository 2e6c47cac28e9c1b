"""Push-T (``pip install imitate[pusht]``, gym-pusht) as ``pusht/PushT``, with its scripted expert.

Diffusion Policy's Push-T task: a disc agent (radius 15 px) pushes a T-shaped block on a 512 x 512
table until the T covers its fixed goal pose (256, 256, 45 degrees). The simulation is gym-pusht's
own (pymunk, gym-pusht's ``PushTEnv``); this wrapper adds what imitate reads:

    observations  ``obs_mode`` picks one of gym-pusht's observation types:
                    "state"             Box (5,): agent x, y, block x, y, block angle (gym-pusht's "state")
                    "keypoints"         Dict: ``environment_state`` (16,) the T's 8 corners,
                                        ``agent_pos`` (2,) (gym-pusht's "environment_state_agent_pos")
                    "pixels"            Dict: ``pixels`` (image_size, image_size, 3) uint8 (gym-pusht's
                                        "pixels", in a Dict so that the key names the camera)
                    "pixels_agent_pos"  Dict: ``pixels`` and ``agent_pos`` (gym-pusht's "pixels_agent_pos")
                  ``state_obs()`` is the 5-D state in every mode (what the expert reads)
    actions       Box [0, 512]^2: the agent's target position (gym-pusht's PD controller follows it)
    reset         ``reset(seed=s)`` draws the same start for the same s (gym-pusht's generator)
    success       ``info["is_success"]``: coverage of the goal above 0.95 (gym-pusht's success); the
                  episode terminates there; the time limit is 300 steps (gym-pusht's registration)
    metrics       ``info["coverage"]`` (this step) and ``info["max_coverage"]`` (so far this episode),
                  both listed in ``metadata["episode_metrics"]`` for evaluation
    route         ``info["mode"]``: the side of the T the agent went around before it first touched
                  the T, ``"left"`` or ``"right"`` as seen from the agent facing the T in the rendered
                  image (the sign of the angle the agent swept about the T's centre of gravity);
                  None until that first contact; ``info["route_sweep"]`` is that angle in radians

gym-pusht imports OpenCV (``cv2``) at import time but uses it only to resize and mark rendered
frames. Where ``cv2`` cannot be imported (opencv-python without the system's libGL, on a bare
headless machine), `import_gym_pusht` lends gym-pusht a small NumPy stand-in for those two calls
while gym-pusht imports, and leaves ``sys.modules`` as it was.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import sys
import types
from typing import Any

import gymnasium
import numpy as np

from imitate.errors import ConfigError

PUSHT_ID = "pusht/PushT"
#: gym-pusht's time limit (its registration's max_episode_steps).
MAX_EPISODE_STEPS = 300
#: obs_mode -> gym-pusht's obs_type.
OBS_TYPES = {"state": "state", "keypoints": "environment_state_agent_pos", "pixels": "pixels",
             "pixels_agent_pos": "pixels_agent_pos"}
ROUTES = ("left", "right")
_ABSENT = object()


def _version() -> str:
    try:
        return importlib.metadata.version("gym-pusht")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _resize(img: np.ndarray, size, *args, **kwargs) -> np.ndarray:
    """Bilinear resize of an (H, W, C) uint8 image to ``size`` = (width, height), pixel centres aligned."""
    width, height = int(size[0]), int(size[1])
    h, w = img.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    src = img.astype(np.float32)
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def _draw_marker(img: np.ndarray, position, color=(255, 0, 0), markerType=0, markerSize=20, thickness=1,
                 *args, **kwargs) -> np.ndarray:
    """A cross of ``markerSize`` px at ``position`` (x, y), drawn in place."""
    x, y = int(position[0]), int(position[1])
    half, t = max(1, int(markerSize) // 2), max(1, int(thickness))
    h, w = img.shape[:2]
    img[max(0, y - t // 2):min(h, y + t // 2 + 1), max(0, x - half):min(w, x + half + 1)] = color
    img[max(0, y - half):min(h, y + half + 1), max(0, x - t // 2):min(w, x + t // 2 + 1)] = color
    return img


def _cv2_stand_in() -> types.ModuleType:
    module = types.ModuleType("cv2")
    module.__doc__ = "imitate's NumPy stand-in for the two OpenCV calls gym-pusht makes (resize, drawMarker)."
    module.resize = _resize
    module.drawMarker = _draw_marker
    module.MARKER_CROSS = 0
    return module


def import_gym_pusht():
    """gym-pusht's environment module (``gym_pusht.envs.pusht``), imported even where ``cv2`` cannot
    be (see the module docstring); a ConfigError says how to install it when it is missing."""
    if "gym_pusht.envs.pusht" in sys.modules:
        return sys.modules["gym_pusht.envs.pusht"]
    if importlib.util.find_spec("gym_pusht") is None:
        raise ConfigError(f"{PUSHT_ID} needs the gym-pusht package (pip install 'imitate[pusht]')")
    lent, before = False, sys.modules.get("cv2", _ABSENT)
    try:
        import cv2  # noqa: F401
    except ImportError:  # e.g. "libGL.so.1: cannot open shared object file"
        sys.modules["cv2"] = _cv2_stand_in()
        lent = True
    try:
        from gym_pusht.envs import pusht
    except (ImportError, OSError) as err:
        raise ConfigError(f"{PUSHT_ID}: gym-pusht {_version()} does not import: {err} "
                          "(pip install 'imitate[pusht]')") from err
    finally:
        if lent:  # sys.modules as it was: no cv2, or whatever stood there
            if before is _ABSENT:
                sys.modules.pop("cv2", None)
            else:
                sys.modules["cv2"] = before
    return pusht


class PushTEnv(gymnasium.Env):
    """gym-pusht's Push-T with imitate's observation modes, metrics and route (see the module docstring).

    Args:
        obs_mode: "state", "keypoints", "pixels" or "pixels_agent_pos".
        render_mode: None or "rgb_array" (``render()`` draws a ``render_size`` square frame).
        image_size: side of the ``pixels`` observation in pixels (gym-pusht's 96 by default).
        render_size: side of ``render()``'s frame (gym-pusht's 680 by default).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "episode_metrics": ["coverage", "max_coverage"]}
    modes = ROUTES

    def __init__(self, obs_mode: str = "state", render_mode: str | None = None, image_size: int = 96,
                 render_size: int = 680):
        if obs_mode not in OBS_TYPES:
            raise ConfigError(f"{PUSHT_ID}: obs_mode={obs_mode!r}; supported: {list(OBS_TYPES)}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"{PUSHT_ID}: render_mode={render_mode!r}; supported: None, 'rgb_array'")
        try:
            image_size, render_size = int(image_size), int(render_size)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{PUSHT_ID}: image_size={image_size!r} and render_size={render_size!r} "
                              "must be integers") from err
        if image_size < 8 or render_size < 8:
            raise ConfigError(f"{PUSHT_ID}: image_size={image_size} and render_size={render_size} must be >= 8")
        module = import_gym_pusht()
        self._env = module.PushTEnv(obs_type=OBS_TYPES[obs_mode], render_mode="rgb_array",
                                    observation_width=image_size, observation_height=image_size,
                                    visualization_width=render_size, visualization_height=render_size)
        self.obs_mode, self.render_mode, self.image_size = obs_mode, render_mode, image_size
        self.action_space = self._env.action_space
        inner = self._env.observation_space
        if obs_mode == "pixels":
            self.observation_space = gymnasium.spaces.Dict({"pixels": inner})
        else:
            self.observation_space = inner
        self._mode: str | None = None
        self._sweep = 0.0
        self._phi: float | None = None
        self._max_coverage = 0.0

    # -- state -----------------------------------------------------------------------------------
    def state_obs(self) -> np.ndarray:
        """The 5-D state (agent x, y, block x, y, block angle in [0, 2 pi)) whatever ``obs_mode``."""
        env = self._env
        return np.array([*env.agent.position, *env.block.position, env.block.angle % (2 * np.pi)],
                        dtype=np.float64)

    def _observe(self, obs):
        return {"pixels": obs} if self.obs_mode == "pixels" else obs

    def _agent_angle(self) -> float:
        env = self._env
        cog = env.block.local_to_world(env.block.center_of_gravity)
        ax, ay = env.agent.position
        return math.atan2(ay - cog[1], ax - cog[0])

    def _info(self, info: dict) -> dict:
        info = dict(info)
        info["max_coverage"] = self._max_coverage
        info["mode"] = self._mode
        info["route_sweep"] = self._sweep
        return info

    # -- gymnasium -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed, options=options)
        self._mode, self._sweep, self._phi = None, 0.0, self._agent_angle()
        self._max_coverage = float(self._env._get_coverage())
        info["coverage"] = self._max_coverage
        return self._observe(obs), self._info(info)

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ConfigError(f"{PUSHT_ID}: an action is the agent's target (x, y), 2 finite numbers; got {action}")
        obs, reward, terminated, truncated, info = self._env.step(np.clip(action, 0.0, 512.0))
        if self._mode is None:
            phi = self._agent_angle()
            self._sweep += (phi - self._phi + math.pi) % (2 * math.pi) - math.pi
            self._phi = phi
            if self._env.n_contact_points > 0:  # the first step that touched the T
                self._mode = "left" if self._sweep > 0 else "right"
        self._max_coverage = max(self._max_coverage, float(info["coverage"]))
        return self._observe(obs), float(reward), bool(terminated), bool(truncated), self._info(info)

    def render(self):
        if self.render_mode is None:
            return None
        return self._env.render()

    def close(self):
        self._env.close()


def register() -> None:
    """Register ``pusht/PushT`` with gymnasium (gym-pusht is imported only when the env is made)."""
    if PUSHT_ID not in gymnasium.registry:
        gymnasium.register(id=PUSHT_ID, entry_point="imitate.envs.pusht:PushTEnv",
                           max_episode_steps=MAX_EPISODE_STEPS)
