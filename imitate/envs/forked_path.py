"""ForkedPath: a point agent must pass a barrier through one of several passages to reach a goal.

The arena is the square [-1, 1]^2. A horizontal barrier of height 2·``barrier_half_height`` is
centred on y = 0 and spans the whole width except ``n_routes`` passages, evenly spread, passage 0
leftmost. The agent starts near the bottom, the goal lies near the top, both close to x = 0:

    n_routes = 2                      y
    +-----------------------------+   1
    |              G              |
    |####      #########      ####|   0     # barrier, gaps at x = -0.5 and x = +0.5
    |              A              |
    +-----------------------------+  -1

With two passages the block between them sits on the straight line from start to goal, so the mean
of "go left" and "go right" drives straight into it: an imitation policy has to pick one route.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import gymnasium as gym
import numpy as np

from imitate.envs.draw import IMAGE_KEY, Canvas, check_view, image_space, observe, stored_state

#: Route names for each supported number of passages, left to right.
ROUTE_NAMES = {
    2: ("left", "right"),
    3: ("left", "center", "right"),
    4: ("far_left", "left", "right", "far_right"),
}


@dataclass(frozen=True)
class ForkedPathGeometry:
    """Layout and dynamics shared by :class:`ForkedPathEnv` and its scripted expert."""

    n_routes: int = 2
    """Number of passages through the barrier (2 to 4); passage 0 is the leftmost."""
    arena_half: float = 1.0
    """The arena is the square [-arena_half, arena_half]^2; touching its wall ends the episode."""
    barrier_half_height: float = 0.1
    """The barrier occupies |y| <= barrier_half_height outside the passages."""
    gap_width: float = 0.4
    """Width of each passage, in x."""
    agent_radius: float = 0.03
    """The agent is a disc of this radius; it collides when the disc touches the barrier or wall."""
    start_center: tuple[float, float] = (0.0, -0.8)
    """Mean start position (x, y)."""
    start_jitter: tuple[float, float] = (0.1, 0.05)
    """The start position is drawn uniformly within +- these offsets (x, y) of start_center."""
    goal_center: tuple[float, float] = (0.0, 0.8)
    """Mean goal position (x, y)."""
    goal_jitter: tuple[float, float] = (0.0, 0.0)
    """The goal position is drawn uniformly within +- these offsets (x, y) of goal_center."""
    goal_radius: float = 0.08
    """The episode succeeds when the agent's centre comes this close to the goal."""
    max_speed: float = 0.4
    """Speed (arena units per second) of an action of 1 along one axis."""
    dt: float = 0.1
    """Seconds per step: an action a moves the agent by a * max_speed * dt."""

    def __post_init__(self):
        if not isinstance(self.n_routes, int) or self.n_routes not in ROUTE_NAMES:
            raise ValueError(
                f"ForkedPath: n_routes={self.n_routes!r} is not supported; "
                f"choose one of {sorted(ROUTE_NAMES)}"
            )

    @property
    def route_names(self) -> tuple[str, ...]:
        """Names of the passages, left to right: ``("left", "right")`` for two."""
        return ROUTE_NAMES[self.n_routes]

    @cached_property
    def gap_centers(self) -> np.ndarray:
        """x of each passage's centre, left to right, shape (n_routes,); read-only."""
        cell = 2.0 * self.arena_half / self.n_routes
        centers = -self.arena_half + cell * (np.arange(self.n_routes) + 0.5)
        centers.flags.writeable = False
        return centers

    @cached_property
    def blocks(self) -> np.ndarray:
        """The barrier's solid pieces as rectangles [x0, y0, x1, y1], shape (n_routes + 1, 4);
        read-only."""
        half_gap = 0.5 * self.gap_width
        edges = [-self.arena_half]
        for x in self.gap_centers:
            edges += [x - half_gap, x + half_gap]
        edges.append(self.arena_half)
        h = self.barrier_half_height
        blocks = np.array([[edges[i], -h, edges[i + 1], h] for i in range(0, len(edges), 2)])
        blocks.flags.writeable = False
        return blocks

    def route_of(self, x: float) -> int:
        """Index of the passage whose centre is nearest to ``x``."""
        return int(np.argmin(np.abs(self.gap_centers - x)))

    def barrier_distance(self, pos: np.ndarray) -> float:
        """Distance from the point ``pos`` (2,) to the nearest barrier block (0 inside one)."""
        blocks = self.blocks
        dx = np.maximum(np.maximum(blocks[:, 0] - pos[0], pos[0] - blocks[:, 2]), 0.0)
        dy = np.maximum(np.maximum(blocks[:, 1] - pos[1], pos[1] - blocks[:, 3]), 0.0)
        return float(np.min(np.hypot(dx, dy)))


class ForkedPathEnv(gym.Env):
    """Reach the goal beyond the barrier through any passage.

    Observation (``Dict``), by ``obs_mode``: "state" (default) ``agent_pos`` (2,) and ``goal_pos``
    (2,), float32, in [-1, 1]; "image" only ``image`` (image_size, image_size, 3) uint8, a top-down
    view (`observation_image`); "state+image" all three. `state_obs` returns the state keys in
    every mode (the scripted expert reads them).
    Action: (2,) float32 in [-1, 1], a velocity command; the agent moves by
    ``action * max_speed * dt`` per step (0.04 arena units at full speed on one axis).

    Reward per step, with d the distance from the agent to the goal:

        r = 10 * (d_before - d_after)     dense progress towards the goal
            + 10                          on success (d_after <= goal_radius)
            - 10                          on touching the barrier or the arena wall

    With ``reward="sparse"`` the reward is 1 on success and 0 at every other step (collisions still
    end the episode, with 0): a task where RL from scratch must find the goal by chance.

    Success and collision terminate the episode; the time limit (``max_episode_steps`` at
    registration, 120) truncates it. With ``action_noise`` > 0, Gaussian noise of that standard
    deviation per axis (drawn from the environment's seeded generator) is added to every action
    before clipping, so that small errors compound as they do on a real system.

    Info at every step: ``is_success`` (bool), ``collided`` (bool), and ``mode``: the route taken
    so far, ``None`` until the agent reaches the barrier's level (its disc enters the band
    |y| <= barrier_half_height), then the name of the passage nearest to it, fixed from then on.

    Stored states: `sim_state` is the state as a float vector [agent x, y, goal x, y, route index or
    -1] (`imitate collect` writes it as each demo's ``states``); ``reset(options={"state": s})``
    puts the episode into it (the seed's start is drawn and then replaced).

    Args:
        n_routes: number of passages (2 to 4); route names are ``ROUTE_NAMES[n_routes]``.
        gap_width: width of each passage (default 0.4); narrower passages punish drift.
        action_noise: standard deviation of the noise added to each executed action (default 0).
        render_mode: ``None`` or ``"rgb_array"``.
        obs_mode: "state", "image" or "state+image" (see Observation).
        image_size: height and width of the ``image`` key in pixels (default 84).
        reward: "dense" (default, above) or "sparse" (1 on success only).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    MODES = ("left", "right")
    PROGRESS_SCALE = 10.0
    SUCCESS_BONUS = 10.0
    COLLISION_PENALTY = 10.0
    RENDER_SIZE = 256
    RENDER_MARGIN = 8
    #: Colours of the observation image (RGB): background, wall, barrier, goal, agent.
    IMAGE_COLOURS = {"background": (245, 245, 245), "wall": (40, 40, 40), "barrier": (120, 120, 120),
                     "goal": (60, 170, 75), "agent": (40, 90, 210)}

    def __init__(self, n_routes: int = 2, gap_width: float = 0.4, action_noise: float = 0.0,
                 render_mode: str | None = None, obs_mode: str = "state", image_size: int = 84,
                 reward: str = "dense"):
        if reward not in ("dense", "sparse"):
            raise ValueError(f"ForkedPath: reward={reward!r}; use 'dense' or 'sparse'")
        self.reward_kind = reward
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"ForkedPath: render_mode={render_mode!r} is not supported; "
                f"use None or one of {self.metadata['render_modes']}"
            )
        if action_noise < 0:
            raise ValueError(f"ForkedPath: action_noise={action_noise} must be >= 0")
        self.obs_mode, self.image_size = check_view("ForkedPath", obs_mode, image_size)
        self.geometry = ForkedPathGeometry(n_routes=n_routes, gap_width=float(gap_width))
        self.action_noise = float(action_noise)
        self.modes = self.geometry.route_names
        self.render_mode = render_mode
        half = self.geometry.arena_half
        box = gym.spaces.Box(-half, half, shape=(2,), dtype=np.float32)
        spaces = {} if self.obs_mode == "image" else {"agent_pos": box, "goal_pos": box}
        if self.obs_mode != "state":
            spaces[IMAGE_KEY] = image_space(self.image_size)
        self._canvas = Canvas(self.image_size, half)
        self._background = self._draw_background()
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._agent = np.zeros(2)
        self._goal = np.zeros(2)
        self._mode: str | None = None
        self._collided = False
        self._success = False

    def state_obs(self) -> dict[str, np.ndarray]:
        """The state observation (``agent_pos``, ``goal_pos``) now, whatever ``obs_mode`` shows."""
        return {
            "agent_pos": self._agent.astype(np.float32),
            "goal_pos": self._goal.astype(np.float32),
        }

    def _obs(self) -> dict[str, np.ndarray]:
        return observe(self.obs_mode, self.state_obs, self.observation_image)

    def _draw_background(self) -> np.ndarray:
        canvas, colours = self._canvas, self.IMAGE_COLOURS
        img = canvas.blank(colours["background"])
        canvas.frame(img, colours["wall"])
        for x0, y0, x1, y1 in self.geometry.blocks:
            canvas.rect(img, x0, y0, x1, y1, colours["barrier"])
        return img

    def observation_image(self) -> np.ndarray:
        """The ``image`` observation now: (image_size, image_size, 3) uint8, top-down, y up: the
        arena's wall, the barrier with its passages, the goal (green) and the agent (blue disc, at
        least 2 pixels in radius). Available in every ``obs_mode``."""
        img = self._background.copy()
        geo, canvas = self.geometry, self._canvas
        canvas.disc(img, self._goal, geo.goal_radius, self.IMAGE_COLOURS["goal"])
        canvas.disc(img, self._agent, geo.agent_radius, self.IMAGE_COLOURS["agent"], min_pixels=2.0)
        return img

    def _info(self) -> dict:
        return {"is_success": self._success, "collided": self._collided, "mode": self._mode}

    STATE_SIZE = 5

    def sim_state(self) -> np.ndarray:
        """The state now as float64 (5,): agent x, y, goal x, y, index of the route taken (-1: none yet)."""
        route = -1 if self._mode is None else self.modes.index(self._mode)
        return np.array([*self._agent, *self._goal, route], dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        geo = self.geometry
        offsets = self.np_random.uniform(-1.0, 1.0, size=(2, 2))
        self._agent = np.asarray(geo.start_center) + offsets[0] * geo.start_jitter
        self._goal = np.asarray(geo.goal_center) + offsets[1] * geo.goal_jitter
        self._mode = None
        self._collided = False
        self._success = False
        if options and options.get("state") is not None:
            state = stored_state("ForkedPath", options["state"], self.STATE_SIZE)
            route = int(round(state[4]))
            if not -1 <= route < len(self.modes):
                raise ValueError(f"ForkedPath: options['state'] names route {route}; this task has {len(self.modes)}")
            self._agent, self._goal = state[:2].copy(), state[2:4].copy()
            self._mode = None if route < 0 else self.modes[route]
        return self._obs(), self._info()

    def step(self, action):
        geo = self.geometry
        action = np.asarray(action, dtype=np.float64).reshape(2)
        if self.action_noise > 0:
            action = action + self.np_random.normal(0.0, self.action_noise, 2)
        action = np.clip(action, -1.0, 1.0)
        before = float(np.linalg.norm(self._goal - self._agent))
        self._agent = self._agent + action * geo.max_speed * geo.dt

        limit = geo.arena_half - geo.agent_radius
        hit_wall = bool(np.any(np.abs(self._agent) > limit))
        self._agent = np.clip(self._agent, -limit, limit)
        if self._mode is None and abs(self._agent[1]) <= geo.barrier_half_height + geo.agent_radius:
            self._mode = self.modes[geo.route_of(self._agent[0])]
        self._collided = hit_wall or geo.barrier_distance(self._agent) < geo.agent_radius

        after = float(np.linalg.norm(self._goal - self._agent))
        self._success = not self._collided and after <= geo.goal_radius
        if self.reward_kind == "sparse":
            reward = float(self._success)
        else:
            reward = self.PROGRESS_SCALE * (before - after)
            if self._success:
                reward += self.SUCCESS_BONUS
            if self._collided:
                reward -= self.COLLISION_PENALTY
        terminated = self._success or self._collided
        return self._obs(), float(reward), terminated, False, self._info()

    def plot_scene(self, ax) -> None:
        """Draw the static scene on a matplotlib Axes in world coordinates: the arena's wall, the
        barrier's blocks and the goal region (at its mean position, grown by its jitter)."""
        from matplotlib.patches import Circle, Rectangle

        geo = self.geometry
        half = geo.arena_half
        ax.add_patch(Rectangle((-half, -half), 2 * half, 2 * half, fill=False, edgecolor="0.2", lw=1.5))
        for x0, y0, x1, y1 in geo.blocks:
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.55", lw=0))
        reach = geo.goal_radius + float(np.hypot(*geo.goal_jitter))
        ax.add_patch(Circle(geo.goal_center, reach, color=(0.24, 0.67, 0.29), alpha=0.5, lw=0))
        ax.set(xlim=(-half * 1.03, half * 1.03), ylim=(-half * 1.03, half * 1.03), aspect="equal")

    @staticmethod
    def agent_xy(obs: dict[str, np.ndarray]) -> np.ndarray:
        """Agent positions (T, 2) from an observation dict of (T, *shape) arrays."""
        return np.asarray(obs["agent_pos"], dtype=np.float64).reshape(-1, 2)

    def render_scale(self) -> float:
        """Pixels per arena unit in `render`'s frames (the arena is centred in the frame)."""
        return (self.RENDER_SIZE - 2 * self.RENDER_MARGIN) / (2 * self.geometry.arena_half)

    def pixel_to_world(self, u: float, v: float) -> np.ndarray:
        """The arena point (2,) under pixel column ``u``, row ``v`` of a `render` frame."""
        half, scale = 0.5 * self.RENDER_SIZE, self.render_scale()
        return np.array([(u - half) / scale, (half - v) / scale])

    def render(self) -> np.ndarray | None:
        """An (H, W, 3) uint8 frame of the arena, y pointing up; ``None`` without ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        geo, size = self.geometry, self.RENDER_SIZE
        scale = self.render_scale()
        centers = np.arange(size) + 0.5
        wx = (centers - size / 2) / scale
        wy = (size / 2 - centers) / scale
        x, y = np.meshgrid(wx, wy)

        frame = np.full((size, size, 3), 245, dtype=np.uint8)
        half = geo.arena_half
        border = 2.0 / scale
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
        frame[inside & ((np.abs(x) > half - border) | (np.abs(y) > half - border))] = (40, 40, 40)
        for x0, y0, x1, y1 in geo.blocks:
            frame[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = (120, 120, 120)
        goal = np.hypot(x - self._goal[0], y - self._goal[1]) <= geo.goal_radius
        frame[goal] = (60, 170, 75)
        agent_r = max(geo.agent_radius, 2.5 / scale)
        agent = np.hypot(x - self._agent[0], y - self._agent[1]) <= agent_r
        frame[agent] = (200, 50, 50) if self._collided else (40, 90, 210)
        return frame
