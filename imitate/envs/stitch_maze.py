"""StitchMaze: a point agent walks round a U-shaped maze; the demonstrations only cover pieces of the way.

D4RL's antmaze idea at CPU size. The arena is the square [-1, 1]^2 with one wall across its left and
centre part (|y| <= 0.1, x <= 0.3): from the start (bottom left) to the goal (top left) the way goes
right, through the opening and the middle region, then back left:

    +-----------------------------+   y = 1
    |   G                         |       G goal (top left)
    |                 w2          |
    |#####################   M    |   0   # wall, opening on the right, M the middle region
    |                 w1          |
    |   S                         |       S start (bottom left)
    +-----------------------------+   y = -1

The scripted expert (:class:`StitchMazeExpert`) never walks the whole way. Per episode it draws one
*piece*:

    start_to_middle   from S through w1 to M, then lingers in M for a while (the piece ends there)
    middle_to_goal    starts in M (``reset(options={"start": "middle"})``), goes through w2 to G
    wander            starts in S or in M, visits random points that stay away from G, then ends

so no demonstration goes from S to G, but the pieces chain: every start_to_middle piece ends where the
middle_to_goal pieces start. Behaviour cloning sees mostly lingering and wandering in M (the way to
the goal is a small share of what the data does there) and stops or wanders; an offline RL agent that
reads the rewards can stitch start_to_middle and middle_to_goal together.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

#: The expert's pieces, in the order of ``piece_probs``.
STITCH_PIECES = ("start_to_middle", "middle_to_goal", "wander")


@dataclass(frozen=True)
class StitchMazeGeometry:
    """Layout and dynamics shared by :class:`StitchMazeEnv` and :class:`StitchMazeExpert`."""

    arena_half: float = 1.0
    """The arena is the square [-arena_half, arena_half]^2; the agent slides along its wall."""
    wall: tuple[float, float, float, float] = (-1.0, -0.1, 0.3, 0.1)
    """The wall as a rectangle (x0, y0, x1, y1); the agent slides along it."""
    agent_radius: float = 0.03
    """The agent is a disc of this radius; it never overlaps the wall."""
    start_center: tuple[float, float] = (-0.7, -0.6)
    """Mean start position (x, y)."""
    middle_center: tuple[float, float] = (0.65, 0.0)
    """Centre of the middle region, in the opening, where the pieces meet."""
    middle_radius: float = 0.15
    """Radius of the middle region (``info["region"] == "middle"`` inside it)."""
    goal_center: tuple[float, float] = (-0.7, 0.6)
    """The goal position (x, y)."""
    goal_radius: float = 0.1
    """The episode succeeds when the agent's centre comes this close to the goal."""
    start_jitter: float = 0.05
    """A start position (in S, or in M with ``options={"start": "middle"}``) is drawn uniformly
    within +- this offset per axis of its centre."""
    max_speed: float = 0.4
    """Speed (arena units per second) of an action of 1 along one axis."""
    dt: float = 0.1
    """Seconds per step: an action a moves the agent by a * max_speed * dt."""

    def blocked(self, pos: np.ndarray) -> bool:
        """Whether the agent's disc at ``pos`` overlaps the wall."""
        x0, y0, x1, y1 = self.wall
        dx = max(x0 - pos[0], pos[0] - x1, 0.0)
        dy = max(y0 - pos[1], pos[1] - y1, 0.0)
        return bool(np.hypot(dx, dy) < self.agent_radius)

    def move(self, pos: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """``pos + delta`` kept inside the arena, sliding along the wall: the x part of the move is
        dropped when it alone would touch the wall, then the same for the y part."""
        limit = self.arena_half - self.agent_radius
        new = pos.copy()
        for axis in (0, 1):
            trial = new.copy()
            trial[axis] = np.clip(trial[axis] + delta[axis], -limit, limit)
            if not self.blocked(trial):
                new = trial
        return new

    def region(self, pos: np.ndarray) -> str | None:
        """``"goal"``, ``"middle"``, ``"start"`` (within 0.15 of the start's centre) or None."""
        if np.linalg.norm(pos - np.asarray(self.goal_center)) <= self.goal_radius:
            return "goal"
        if np.linalg.norm(pos - np.asarray(self.middle_center)) <= self.middle_radius:
            return "middle"
        if np.linalg.norm(pos - np.asarray(self.start_center)) <= 0.15:
            return "start"
        return None


class StitchMazeEnv(gym.Env):
    """Reach the goal of the U-shaped maze (module docstring) from the start.

    Observation (``Dict``): ``agent_pos`` (2,) float32 in [-1, 1]. Action: (2,) float32 in [-1, 1],
    a velocity command; the agent moves by ``action * max_speed * dt`` per step (0.04 arena units at
    full speed on one axis), sliding along the arena's edge and the wall (touching them ends nothing).

    Reward: sparse, 1.0 on the step that reaches the goal (centre within ``goal_radius``), 0 otherwise.
    Reaching the goal terminates the episode (``dones`` 1 there in a demo file); the time limit
    (``max_episode_steps`` at registration, 150; the shortest way takes about 95 steps at the expert's
    speed) truncates it.

    ``max_speed`` (default 0.4) scales every move: 0.8 halves the number of steps of every way (a
    shorter horizon for value propagation; the expert follows it through ``env_kwargs``).

    ``reset(options={"start": "middle"})`` starts the agent in the middle region instead of the start
    (the expert's middle_to_goal and some wander pieces do; evaluation never does);
    ``reset(options={"state": s})`` puts the agent at a stored `sim_state` (x, y), which `imitate
    collect` writes as each demo's ``states``.

    Info at every step: ``is_success`` (bool) and ``region`` (``"start"``, ``"middle"``, ``"goal"`` or
    None; see `StitchMazeGeometry.region`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    RENDER_SIZE = 128

    def __init__(self, max_speed: float = 0.4, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"StitchMaze: render_mode={render_mode!r} is not supported; "
                             f"use None or one of {self.metadata['render_modes']}")
        if not 0 < float(max_speed) <= 2.0:
            raise ValueError(f"StitchMaze: max_speed={max_speed} must lie in (0, 2]")
        self.geometry = StitchMazeGeometry(max_speed=float(max_speed))
        self.render_mode = render_mode
        half = self.geometry.arena_half
        self.observation_space = gym.spaces.Dict(
            {"agent_pos": gym.spaces.Box(-half, half, shape=(2,), dtype=np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._agent = np.zeros(2)
        self._success = False

    def _obs(self) -> dict[str, np.ndarray]:
        return {"agent_pos": self._agent.astype(np.float32)}

    def _info(self) -> dict:
        return {"is_success": self._success, "region": self.geometry.region(self._agent)}

    def sim_state(self) -> np.ndarray:
        """The state now as float64 (2,): the agent's x, y (``reset(options={"state": s})`` restores it)."""
        return self._agent.astype(np.float64).copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and options.get("state") is not None:
            from imitate.envs.draw import stored_state

            self._agent = stored_state("StitchMaze", options["state"], 2).copy()
            self._success = False
            return self._obs(), self._info()
        start = (options or {}).get("start", "start")
        if start not in ("start", "middle"):
            raise ValueError(f"StitchMaze: options['start']={start!r}; use 'start' or 'middle'")
        geo = self.geometry
        centre = geo.start_center if start == "start" else geo.middle_center
        self._agent = np.asarray(centre, dtype=np.float64) + self.np_random.uniform(-1.0, 1.0, 2) * geo.start_jitter
        self._success = False
        return self._obs(), self._info()

    def step(self, action):
        geo = self.geometry
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._agent = geo.move(self._agent, action * geo.max_speed * geo.dt)
        self._success = bool(np.linalg.norm(self._agent - np.asarray(geo.goal_center)) <= geo.goal_radius)
        return self._obs(), float(self._success), self._success, False, self._info()

    def render(self) -> np.ndarray | None:
        """An (H, W, 3) uint8 frame: wall grey, middle region light blue, goal green, agent blue."""
        if self.render_mode != "rgb_array":
            return None
        geo, size = self.geometry, self.RENDER_SIZE
        c = (np.arange(size) + 0.5) / size * 2 * geo.arena_half - geo.arena_half
        x, y = np.meshgrid(c, c[::-1])
        frame = np.full((size, size, 3), 245, dtype=np.uint8)
        x0, y0, x1, y1 = geo.wall
        frame[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = (120, 120, 120)
        frame[np.hypot(x - geo.middle_center[0], y - geo.middle_center[1]) <= geo.middle_radius] = (200, 220, 245)
        frame[np.hypot(x - geo.goal_center[0], y - geo.goal_center[1]) <= geo.goal_radius] = (60, 170, 75)
        r = max(geo.agent_radius, 1.5 * 2 * geo.arena_half / size)
        frame[np.hypot(x - self._agent[0], y - self._agent[1]) <= r] = (40, 90, 210)
        return frame


class StitchMazeExpert:
    """Walks one piece of the way in ``imitate/StitchMaze-v0`` per episode (module docstring).

    Per episode (``reset``): the piece (``piece_probs`` over ``STITCH_PIECES``), a cruise speed, and
    for ``start_to_middle`` how many steps it lingers in the middle region (``linger_steps``, drawn
    uniformly from that inclusive range), for ``wander`` where it starts (S or M, 50/50) and its 2 to 4
    random points (each at least ``GOAL_CLEARANCE`` from the goal, as is every straight leg between
    them, so a wander piece never reaches the goal). Lingering heads at slow speed to points drawn
    within ``LINGER_RADIUS`` of the middle's centre. Ways that would cross the wall go through the
    waypoint in the opening on the agent's side (w1 below, w2 above). Actions carry
    Ornstein-Uhlenbeck noise of standard deviation ``noise`` per axis.

    The collector reads three things besides ``act``: ``reset_options()`` (the env's reset options
    for the episode: where it starts), ``finished`` (True once the piece is over: the collector ends
    the episode there, truncated, not done) and ``episode_attrs()`` (``{"piece": name}``, written into
    the demo's attrs).

    Args:
        piece_probs: probability of each piece in ``STITCH_PIECES`` order (default 0.4, 0.2, 0.4).
        noise: standard deviation of the action noise per axis (default 0.1).
        linger_steps: [low, high] steps spent lingering in the middle after start_to_middle arrives.
        env_kwargs: the kwargs given to ``gym.make`` (StitchMaze-v0's ``max_speed``), so that expert and
            environment share one geometry.
        seed: seeds the expert's generator; ``reset(seed)`` re-seeds it.
    """

    NOISE_CORRELATION = 0.85
    LINGER_RADIUS = 0.08
    LINGER_SPEED = 0.3
    GOAL_CLEARANCE = 0.45
    ARRIVE = 0.05
    W1 = (0.55, -0.35)
    W2 = (0.55, 0.35)

    def __init__(self, piece_probs: list[float] | None = None, noise: float = 0.1,
                 linger_steps: list[int] | None = None, env_kwargs: dict | None = None, seed: int | None = None):
        env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"}
        unknown = sorted(set(env_kwargs) - {"max_speed"})
        if unknown:
            raise ValueError(f"StitchMazeExpert: env_kwargs {unknown} are not StitchMaze-v0 arguments "
                             "(known: ['max_speed'])")
        probs = np.asarray([0.4, 0.2, 0.4] if piece_probs is None else piece_probs, dtype=np.float64)
        if probs.shape != (len(STITCH_PIECES),) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"StitchMazeExpert: piece_probs={piece_probs} must hold {len(STITCH_PIECES)} "
                             f"non-negative numbers summing to 1 (order: {list(STITCH_PIECES)})")
        if noise < 0:
            raise ValueError(f"StitchMazeExpert: noise={noise} must be >= 0")
        linger = list(linger_steps) if linger_steps is not None else [20, 40]
        if len(linger) != 2 or not 0 <= linger[0] <= linger[1]:
            raise ValueError(f"StitchMazeExpert: linger_steps={linger_steps} must be [low, high], 0 <= low <= high")
        self.geometry = StitchMazeGeometry(max_speed=float(env_kwargs.get("max_speed", 0.4)))
        self.piece_probs = probs
        self.noise = float(noise)
        self.linger_steps = (int(linger[0]), int(linger[1]))
        self._rng = np.random.default_rng(seed)
        self.reset()

    # -- per episode ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        self.piece = STITCH_PIECES[int(rng.choice(len(STITCH_PIECES), p=self.piece_probs))]
        self.speed = float(rng.uniform(0.75, 0.95))
        self.finished = False
        self._noise_state = np.zeros(2)
        self._linger_left = int(rng.integers(self.linger_steps[0], self.linger_steps[1] + 1))
        self._linger_point: np.ndarray | None = None
        self._start = "start"
        middle, goal = np.asarray(self.geometry.middle_center), np.asarray(self.geometry.goal_center)
        if self.piece == "middle_to_goal":
            self._start = "middle"
            self._points = self._route(middle, goal)
        elif self.piece == "start_to_middle":
            self._points = self._route(np.asarray(self.geometry.start_center), middle)
        else:
            self._start = "start" if rng.random() < 0.5 else "middle"
            self._points = self._wander_points(rng)

    def _wander_points(self, rng: np.random.Generator) -> list[np.ndarray]:
        geo = self.geometry
        goal = np.asarray(geo.goal_center)
        prev = np.asarray(geo.start_center if self._start == "start" else geo.middle_center, dtype=np.float64)
        points: list[np.ndarray] = []
        for _ in range(int(rng.integers(2, 5))):
            while True:
                p = rng.uniform(-0.85, 0.85, 2)
                if geo.blocked(p) or abs(p[1]) < 0.2:
                    continue
                legs = [prev] + self._route(prev, p)
                if all(_segment_distance(goal, a, b) >= self.GOAL_CLEARANCE for a, b in zip(legs[:-1], legs[1:])):
                    break
            points += legs[1:]
            prev = p
        return points

    def _route(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """Waypoints from ``a`` to ``b`` (``b`` last) that keep clear of the wall: a point in the middle
        region (|y| <= 0.15) goes to ``b``'s side through its opening waypoint (w1 below, w2 above); a
        move across the wall goes through both; a move on one side goes straight."""
        def side(p):
            return 0 if abs(p[1]) <= 0.15 else int(np.sign(p[1]))

        def way(s):
            return np.asarray(self.W1 if s < 0 else self.W2, dtype=np.float64)

        b = np.asarray(b, dtype=np.float64)
        sa, sb = side(a), side(b)
        if sb == 0:
            return ([way(sa)] if sa != 0 else []) + [b]
        if sa == 0:
            return [way(sb), b]
        if sa != sb:
            return [way(sa), way(sb), b]
        return [b]

    def reset_options(self) -> dict:
        """The env's reset options for this episode: ``{"start": "start" | "middle"}``."""
        return {"start": self._start}

    def episode_attrs(self) -> dict:
        """Attributes the collector writes into the demo: ``{"piece": name}``."""
        return {"piece": self.piece}

    # -- acting -----------------------------------------------------------------------------------
    def _target(self, pos: np.ndarray) -> tuple[np.ndarray | None, float]:
        """(point to head for or None when the piece is over, speed)."""
        geo = self.geometry
        while self._points:
            if np.linalg.norm(pos - self._points[0]) > self.ARRIVE:
                return self._points[0], self.speed
            self._points.pop(0)
        if self.piece == "start_to_middle" and self._linger_left > 0:
            self._linger_left -= 1
            if self._linger_point is None or np.linalg.norm(pos - self._linger_point) < 0.02:
                angle, radius = self._rng.uniform(0, 2 * np.pi), self.LINGER_RADIUS * np.sqrt(self._rng.random())
                self._linger_point = np.asarray(geo.middle_center) + radius * np.array([np.cos(angle), np.sin(angle)])
            return self._linger_point, self.LINGER_SPEED
        return None, 0.0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action (2,) float32 for ``obs`` with key ``agent_pos`` (2,); sets ``finished`` when the piece
        is over (the action is then zero)."""
        pos = np.asarray(obs["agent_pos"], dtype=np.float64).reshape(2)
        target, speed = self._target(pos)
        if target is None:
            self.finished = True
            return np.zeros(2, dtype=np.float32)
        delta = target - pos
        dist = float(np.linalg.norm(delta))
        command = delta / dist * min(speed, dist / (self.geometry.max_speed * self.geometry.dt)) if dist > 1e-9 else np.zeros(2)
        if self.noise > 0:
            rho = self.NOISE_CORRELATION
            self._noise_state = rho * self._noise_state + np.sqrt(1 - rho**2) * self._rng.normal(0.0, self.noise, 2)
            command = command + self._noise_state
        return np.clip(command, -1.0, 1.0).astype(np.float32)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))
