"""ReacherModes: gymnasium's two-link MuJoCo Reacher, reached elbow-up or elbow-down.

A planar arm of two links (upper arm L1 = 0.1, forearm to fingertip L2 = 0.11) reaches a target in
the plane. Every target this task draws lies at a radius away from full extension and from the base,
so inverse kinematics gives two clearly different joint solutions:

            elbow_up (q2 < 0)                  elbow_down (q2 > 0)
                 o elbow                      base o---------
                / \\                                  \\     /
         base o    \\  T                               \\   /  T
                                                        o elbow

The scripted expert draws one of them per episode, so joint-space demonstrations are bimodal from the
first step: the arm starts nearly straight (q2 ~ 0) and the two solutions drive the elbow joint in
opposite directions. The mean of the two (a straight elbow) overshoots every target.

This module imports no MuJoCo: the environment builds gymnasium's ``ReacherEnv`` (reacher_v5) when it
is made, and the expert works from observations alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from imitate.envs.draw import IMAGE_KEY, VIEW_KWARGS, Canvas, check_view, image_space

#: Mode names: the sign of the elbow joint q2 (elbow_up: q2 < 0, counter-clockwise from the target line).
REACHER_MODES = ("elbow_up", "elbow_down")


def wrap_angle(angle):
    """``angle`` wrapped to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class ReacherModesGeometry:
    """Arm, targets and success rule shared by :class:`ReacherModesEnv` and its expert."""

    upper_arm: float = 0.1
    """L1: base joint to elbow joint (reacher.xml, body1 pos)."""
    forearm: float = 0.11
    """L2: elbow joint to fingertip (reacher.xml, fingertip pos)."""
    target_radius: tuple[float, float] = (0.09, 0.17)
    """The target's distance from the base is drawn uniformly in this range (the arm spans 0.01-0.21);
    its direction uniformly in [0, 2 pi). The elbow angle of either solution is then 1.26-2.26 rad in size."""
    success_radius: float = 0.02
    """The fingertip is on the target when it is at most this far from it."""
    hold_steps: int = 3
    """The episode succeeds (and terminates) once the fingertip has stayed on the target this many
    consecutive steps."""
    mode_angle: float = 0.5
    """``info["mode"]`` names the elbow side once |q2| exceeds this many radians (None before)."""

    def __post_init__(self):
        lo, hi = self.target_radius
        reach_lo, reach_hi = abs(self.upper_arm - self.forearm), self.upper_arm + self.forearm
        if not reach_lo < lo <= hi < reach_hi:
            raise ValueError(
                f"ReacherModes: target_radius={self.target_radius} must lie inside the arm's reach "
                f"({reach_lo:.2f}, {reach_hi:.2f}) with low <= high"
            )
        if self.success_radius <= 0 or self.hold_steps < 1:
            raise ValueError(
                f"ReacherModes: success_radius={self.success_radius} must be > 0 and "
                f"hold_steps={self.hold_steps} >= 1"
            )

    def inverse_kinematics(self, target: np.ndarray, elbow_up: bool) -> np.ndarray:
        """Joint angles (q1, q2) that put the fingertip on ``target`` (2,), q2 < 0 for elbow up."""
        l1, l2 = self.upper_arm, self.forearm
        r2 = float(np.dot(target, target))
        c2 = np.clip((r2 - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
        q2 = -np.arccos(c2) if elbow_up else np.arccos(c2)
        q1 = np.arctan2(target[1], target[0]) - np.arctan2(l2 * np.sin(q2), l1 + l2 * np.cos(q2))
        return np.array([wrap_angle(q1), q2])

    def mode_of(self, q2: float) -> str | None:
        """The elbow side of joint angle ``q2``; None while the arm is nearly straight."""
        if abs(q2) <= self.mode_angle:
            return None
        return REACHER_MODES[0] if q2 < 0 else REACHER_MODES[1]


class ReacherModesEnv(gym.Env):
    """Reach a target with a two-link arm; either elbow solution succeeds.

    Observation: Reacher-v5's vector (10,) as float32 (stored as key ``state`` in demo files):
    ``[cos q1, cos q2, sin q1, sin q2, target_x, target_y, dq1, dq2, tip_x - target_x, tip_y - target_y]``.
    That is ``obs_mode`` "state" (default). "image" gives a ``Dict`` of only ``image``
    (image_size, image_size, 3) uint8, a top-down view drawn with NumPy from the joint angles
    (`observation_image`: no MuJoCo rendering); "state+image" a ``Dict`` of ``state`` (the vector) and
    ``image``. One frame shows the arm and the target but not the joint velocities (an observation
    horizon of 2 shows their change). `state_obs` returns the vector in every mode (the expert's input).
    Action: (2,) float32 in [-1, 1], the joint torques (MuJoCo motor gear 200).

    Reset: joint angles uniform in +-0.1 rad around a straight arm along +x (Reacher-v5's start), joint
    velocities uniform in +-0.005; the target at a radius drawn from ``target_radius`` (0.09-0.17) in a
    uniform direction.

    Reward: Reacher-v5's, ``-|tip - target| - 0.1 * |action|^2`` per step.

    Termination: success, i.e. the fingertip within ``success_radius`` (0.02) of the target for
    ``hold_steps`` (3) consecutive steps. Truncation: 50 steps (``max_episode_steps`` at registration,
    Reacher-v5's horizon).

    Info at every step: ``is_success`` (bool, True on the step that completes the hold),
    ``distance`` (fingertip to target), and ``mode``: ``"elbow_up"`` (q2 < 0) or ``"elbow_down"``
    (q2 > 0) from the current elbow angle, None while |q2| <= ``mode_angle`` (0.5 rad). On the final
    step it names the solution the arm ended in.

    Stored states: `sim_state` (MuJoCo's qpos and qvel, and the steps held on the target) is what
    `imitate collect` writes as each demo's ``states``; ``reset(options={"state": s})`` sets it
    through MuJoCo's ``set_state``.

    Rendering (``"rgb_array"``) uses MuJoCo's offscreen renderer; without a display the environment
    selects EGL (sets ``MUJOCO_GL=egl``) unless ``MUJOCO_GL`` is already set; gymnasium reads it when
    the first frame is rendered. The camera looks straight down on the arena, +x to the right.

    Args:
        target_radius: (low, high) distance of the target from the base.
        success_radius: fingertip-to-target distance that counts as on the target.
        hold_steps: consecutive steps on the target that end the episode with success.
        render_mode: ``None`` or ``"rgb_array"``.
        obs_mode: "state", "image" or "state+image" (see Observation).
        image_size: height and width of the ``image`` key in pixels (default 84).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    MODES = REACHER_MODES
    CONTROL_COST = 0.1
    RENDER_SIZE = 256
    CAMERA = {"trackbodyid": -1, "distance": 0.75, "elevation": -90.0, "azimuth": 90.0, "lookat": np.zeros(3)}
    #: Half the side of the square the observation image shows, centred on the arm's base (the arm
    #: reaches 0.21).
    IMAGE_HALF = 0.23
    #: Colours of the observation image (RGB), near the MuJoCo model's own.
    IMAGE_COLOURS = {"background": (230, 230, 230), "base": (230, 100, 150), "arm": (0, 100, 150),
                     "fingertip": (0, 200, 150), "target": (230, 50, 50)}

    def __init__(
        self,
        target_radius: tuple[float, float] = (0.09, 0.17),
        success_radius: float = 0.02,
        hold_steps: int = 3,
        render_mode: str | None = None,
        obs_mode: str = "state",
        image_size: int = 84,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"ReacherModes: render_mode={render_mode!r} is not supported; "
                f"use None or one of {self.metadata['render_modes']}"
            )
        self.obs_mode, self.image_size = check_view("ReacherModes", obs_mode, image_size)
        self.geometry = ReacherModesGeometry(
            target_radius=tuple(float(v) for v in target_radius),
            success_radius=float(success_radius),
            hold_steps=int(hold_steps),
        )
        self.modes = REACHER_MODES
        self.render_mode = render_mode
        if render_mode is not None and not os.environ.get("DISPLAY"):
            os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
        except (ImportError, gym.error.DependencyNotInstalled) as err:
            raise gym.error.DependencyNotInstalled(
                f"ReacherModes needs MuJoCo: pip install 'gymnasium[mujoco]' "
                f"(in the checkout: pip install -e '.[mujoco]') ({err})"
            ) from err

        self._reacher = ReacherEnv(
            render_mode=render_mode,
            width=self.RENDER_SIZE,
            height=self.RENDER_SIZE,
            reward_control_weight=self.CONTROL_COST,
            default_camera_config=self.CAMERA,
        )
        state = gym.spaces.Box(-np.inf, np.inf, shape=(10,), dtype=np.float32)
        if self.obs_mode == "state":
            self.observation_space = state
        else:
            spaces = {} if self.obs_mode == "image" else {"state": state}
            self.observation_space = gym.spaces.Dict({**spaces, IMAGE_KEY: image_space(self.image_size)})
        self._canvas = Canvas(self.image_size, self.IMAGE_HALF)
        self._body_ids: list[int] | None = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._on_target = 0

    def state_obs(self) -> np.ndarray:
        """The state observation (10,) now, whatever ``obs_mode`` shows."""
        return self._reacher._get_obs().astype(np.float32)

    def _obs(self):
        if self.obs_mode == "state":
            return self.state_obs()
        obs = {} if self.obs_mode == "image" else {"state": self.state_obs()}
        obs[IMAGE_KEY] = self.observation_image()
        return obs

    def observation_image(self) -> np.ndarray:
        """The ``image`` observation now: (image_size, image_size, 3) uint8, top-down (+x right, +y up)
        over the square of half-side `IMAGE_HALF` around the base: the two links (capsules), the
        fingertip and the target, where MuJoCo's bodies are now."""
        canvas, colours, data = self._canvas, self.IMAGE_COLOURS, self._reacher.data
        if self._body_ids is None:
            model = self._reacher.model
            self._body_ids = [model.body(name).id for name in ("body0", "body1", "fingertip", "target")]
        base, elbow, tip, target = data.xpos[self._body_ids, :2]
        img = canvas.blank(colours["background"])
        canvas.disc(img, base, 0.011, colours["base"])
        canvas.segment(img, base, elbow, 0.01, colours["arm"])
        canvas.segment(img, elbow, elbow + (tip - elbow) * (0.1 / 0.11), 0.01, colours["arm"])   # link1: 0.1 of 0.11
        canvas.disc(img, tip, 0.01, colours["fingertip"])
        canvas.disc(img, target, 0.009, colours["target"], min_pixels=2.0)
        return img

    def _info(self, distance: float) -> dict:
        q2 = float(self._reacher.data.qpos[1])
        return {
            "is_success": self._on_target >= self.geometry.hold_steps,
            "distance": distance,
            "mode": self.geometry.mode_of(q2),
        }

    def _distance(self) -> float:
        tip = self._reacher.get_body_com("fingertip")[:2]
        target = self._reacher.get_body_com("target")[:2]
        return float(np.linalg.norm(tip - target))

    STATE_SIZE = 9

    def sim_state(self) -> np.ndarray:
        """The state now as float64 (9,): MuJoCo's qpos (4: joints, target x, y), qvel (4), and the
        consecutive steps the fingertip has been on the target."""
        data = self._reacher.data
        return np.concatenate([data.qpos.ravel(), data.qvel.ravel(), [self._on_target]]).astype(np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and options.get("state") is not None:
            from imitate.envs.draw import stored_state

            state = stored_state("ReacherModes", options["state"], self.STATE_SIZE)
            self._reacher.reset(seed=int(self.np_random.integers(2**31)))
            self._reacher.set_state(state[:4], state[4:8])
            self._on_target = int(round(state[8]))
            return self._obs(), self._info(self._distance())
        rng, geo = self.np_random, self.geometry
        self._reacher.reset(seed=int(rng.integers(2**31)))
        radius = rng.uniform(*geo.target_radius)
        angle = rng.uniform(0.0, 2 * np.pi)
        qpos = np.zeros(4)
        qpos[:2] = rng.uniform(-0.1, 0.1, size=2)
        qpos[2:] = radius * np.cos(angle), radius * np.sin(angle)
        qvel = np.zeros(4)
        qvel[:2] = rng.uniform(-0.005, 0.005, size=2)
        self._reacher.set_state(qpos, qvel)
        self._on_target = 0
        return self._obs(), self._info(self._distance())

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        _, reward, _, _, _ = self._reacher.step(action)
        distance = self._distance()
        self._on_target = self._on_target + 1 if distance <= self.geometry.success_radius else 0
        info = self._info(distance)
        return self._obs(), float(reward), bool(info["is_success"]), False, info

    def render(self) -> np.ndarray | None:
        """An (H, W, 3) uint8 frame seen from above; ``None`` without ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        return self._reacher.render()

    def close(self):
        self._reacher.close()
        super().close()


class ReacherModesExpert:
    """Reaches the target of ``imitate/ReacherModes-v0`` with the elbow solution drawn per episode.

    Per episode (``reset``): the route, ``"elbow_up"`` with probability ``p_elbow_up``, else
    ``"elbow_down"``, and the PD gains, each scaled by a factor uniform in [0.85, 1.15]. Every action
    is a PD law in joint space towards that solution's inverse kinematics,

        u = KP * (wrap(q1* - q1), q2* - q2) - KD * (dq1, dq2) + noise,  clipped to [-1, 1],

    where the base joint's error is wrapped to [-pi, pi) (it turns freely) and the elbow's is not (it
    is limited to +-3 rad and cannot pass through pi). The noise is Ornstein-Uhlenbeck (temporally
    correlated) with standard deviation ``noise`` per joint. The joint angles, target and velocities
    come from the observation alone.

    Args:
        p_elbow_up: probability of the elbow-up solution.
        noise: standard deviation of the torque noise per joint; 0 gives clean labels.
        env_kwargs: the kwargs given to ``gym.make`` for the environment (checked, not needed: the
            arm's link lengths are fixed; obs_mode and image_size are accepted: the expert reads the
            state, `imitate.envs.experts.expert_view`).
        seed: seeds the expert's generator; ``reset(seed)`` re-seeds it.
    """

    NOISE_CORRELATION = 0.7
    KP = 0.8
    KD = 0.1
    ENV_KWARGS = ("target_radius", "success_radius", "hold_steps")

    def __init__(
        self,
        p_elbow_up: float = 0.5,
        noise: float = 0.1,
        env_kwargs: dict | None = None,
        seed: int | None = None,
    ):
        env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("render_mode", *VIEW_KWARGS)}
        unknown = sorted(set(env_kwargs) - set(self.ENV_KWARGS))
        if unknown:
            raise ValueError(
                f"ReacherModesExpert: env_kwargs {unknown} are not ReacherModes-v0 arguments "
                f"(known: {list(self.ENV_KWARGS)})"
            )
        if not 0.0 <= p_elbow_up <= 1.0:
            raise ValueError(f"ReacherModesExpert: p_elbow_up={p_elbow_up} must lie in [0, 1]")
        if noise < 0:
            raise ValueError(f"ReacherModesExpert: noise={noise} must be >= 0")
        self.geometry = ReacherModesGeometry()
        self.p_elbow_up = float(p_elbow_up)
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        self.route = REACHER_MODES[0] if rng.random() < self.p_elbow_up else REACHER_MODES[1]
        self.kp = self.KP * rng.uniform(0.85, 1.15)
        self.kd = self.KD * rng.uniform(0.85, 1.15)
        self._noise_state = np.zeros(2)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Torques (2,) float32 for a ReacherModes observation (10,)."""
        obs = np.asarray(obs, dtype=np.float64).reshape(10)
        q = np.arctan2(obs[2:4], obs[0:2])
        target, dq = obs[4:6], obs[6:8]
        goal = self.geometry.inverse_kinematics(target, elbow_up=self.route == REACHER_MODES[0])
        error = np.array([wrap_angle(goal[0] - q[0]), goal[1] - q[1]])
        command = self.kp * error - self.kd * dq
        if self.noise > 0:
            rho = self.NOISE_CORRELATION
            fresh = self._rng.normal(0.0, self.noise, 2)
            self._noise_state = rho * self._noise_state + np.sqrt(1 - rho**2) * fresh
            command = command + self._noise_state
        return np.clip(command, -1.0, 1.0).astype(np.float32)
