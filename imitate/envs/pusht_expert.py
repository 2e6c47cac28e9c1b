"""A scripted expert for ``pusht/PushT``: a push planner that tries its pushes in a copy of the simulator.

The expert reads gym-pusht's 5-D state (agent x, y, block x, y, angle) and repeats one cycle:

    plan        from the block's current pose, try every push of a fixed menu in a pymunk copy of
                the scene (same bodies, masses, PD gains and time step as gym-pusht): a contact
                point on the T's outline (19 points, one every 22 px or so along the edges where
                the agent fits), a direction (the edge's inward normal, or 0.5 rad to either side)
                and a distance (5 by default): 285 pushes of 4 steps each; keep the push with
                the least cost: the mean squared distance (px^2) from the T's eight corners after
                it to the goal's, plus ``TRAVEL_COST`` per px the agent travels to its start
    approach    drive the agent to the push's start point (just off the edge) without touching
                the T: straight where the segment clears the T by the agent's radius, otherwise
                around the T on a circle about its centre of gravity
    push        play the planned actions (the same ones that were simulated), then plan again

The route is the multimodal part: at ``reset`` the expert draws a side, ``left`` or ``right`` (with
probability ``p_left``), and its first push is chosen among contact points that lie at least
``MIN_SWEEP`` radians around the T on that side of the agent (seen from the agent facing the T, in
image coordinates), reached by going around the T on that side (any side when no start point on
it lies inside the walls). Later detours take the shorter way.
The environment (`imitate.envs.pusht`) records the side the agent actually went around before its
first contact as ``info["mode"]``; the expert's ``route`` is the side it drew.

The agent's velocity is not in the observation: the expert replays gym-pusht's PD controller on its
own previous action to know it. When the observation is not the state that action led to (a state
the expert did not produce, as in DAgger), it takes the velocity as zero and plans afresh from there.

The planner needs only pymunk (installed with gym-pusht); nothing here imports gym_pusht or torch.
"""
from __future__ import annotations

import math

import numpy as np

from imitate.errors import ConfigError

#: gym-pusht's scene: the goal pose of the T (x, y, angle), the agent's radius, PD gains, time steps.
GOAL_POSE = (256.0, 256.0, math.pi / 4)
AGENT_RADIUS = 15.0
KP, KV = 100.0, 20.0
DT, SUBSTEPS = 0.01, 10
#: The T in its body frame: the bar (120 x 30) and the stem (30 x 90), as gym-pusht builds it.
BAR = ((-60.0, 30.0), (60.0, 30.0), (60.0, 0.0), (-60.0, 0.0))
STEM = ((-15.0, 30.0), (-15.0, 120.0), (15.0, 120.0), (15.0, 30.0))
COG = (0.0, 45.0)
#: The T's outline in its body frame, counter-clockwise in (x right, y down) image terms.
OUTLINE = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0),
           (-15.0, 30.0), (-60.0, 30.0))
#: Where the agent may be: gym-pusht's walls (5 to 506, 2 px thick) less the agent's radius.
ARENA = (5.0 + 2.0 + AGENT_RADIUS + 1.0, 506.0 - 2.0 - AGENT_RADIUS - 1.0)
ROUTES = ("left", "right")


def _rot(angle: float) -> tuple[float, float]:
    return math.cos(angle), math.sin(angle)


def to_world(pose, point) -> tuple[float, float]:
    """A body-frame point of the T at ``pose`` (x, y, angle) in world coordinates."""
    c, s = _rot(pose[2])
    return pose[0] + c * point[0] - s * point[1], pose[1] + s * point[0] + c * point[1]


def to_body(pose, point) -> tuple[float, float]:
    """A world point in the body frame of the T at ``pose``."""
    c, s = _rot(pose[2])
    dx, dy = point[0] - pose[0], point[1] - pose[1]
    return c * dx + s * dy, -s * dx + c * dy


def corners(pose) -> np.ndarray:
    """The T's eight outline corners at ``pose``, (8, 2)."""
    c, s = _rot(pose[2])
    pts = np.asarray(OUTLINE)
    return np.stack([pose[0] + c * pts[:, 0] - s * pts[:, 1], pose[1] + s * pts[:, 0] + c * pts[:, 1]], axis=1)


_GOAL_CORNERS = corners(GOAL_POSE)


def pose_cost(pose) -> float:
    """Mean squared distance (px^2) from the T's corners at ``pose`` to the goal's."""
    return float(np.mean(np.sum((corners(pose) - _GOAL_CORNERS) ** 2, axis=1)))


def _point_segment(p, a, b) -> float:
    abx, aby = b[0] - a[0], b[1] - a[1]
    t = ((p[0] - a[0]) * abx + (p[1] - a[1]) * aby) / max(abx * abx + aby * aby, 1e-12)
    t = min(1.0, max(0.0, t))
    return math.hypot(p[0] - a[0] - t * abx, p[1] - a[1] - t * aby)


def _inside(p) -> bool:
    return (-60 <= p[0] <= 60 and 0 <= p[1] <= 30) or (-15 <= p[0] <= 15 and 30 <= p[1] <= 120)


def outline_distance(p) -> float:
    """Distance from a body-frame point to the T (0 inside it)."""
    if _inside(p):
        return 0.0
    n = len(OUTLINE)
    return min(_point_segment(p, OUTLINE[i], OUTLINE[(i + 1) % n]) for i in range(n))


def _segments_cross(p, q, a, b) -> bool:
    def orient(u, v, w):
        return (v[0] - u[0]) * (w[1] - u[1]) - (v[1] - u[1]) * (w[0] - u[0])
    d1, d2, d3, d4 = orient(a, b, p), orient(a, b, q), orient(p, q, a), orient(p, q, b)
    return (d1 > 0) != (d2 > 0) and (d3 > 0) != (d4 > 0)


def segment_clearance(p, q) -> float:
    """Smallest distance from the body-frame segment p-q to the T (0 when it touches or crosses it)."""
    if _inside(p) or _inside(q):
        return 0.0
    n, best = len(OUTLINE), math.inf
    for i in range(n):
        a, b = OUTLINE[i], OUTLINE[(i + 1) % n]
        if _segments_cross(p, q, a, b):
            return 0.0
        best = min(best, _point_segment(a, p, q), _point_segment(b, p, q), _point_segment(p, a, b),
                   _point_segment(q, a, b))
    return best


def _contacts(gap: float) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """(start point, inward push direction) in the body frame for points along every edge of the T,
    kept where the agent fits at the start point (``gap`` px off the edge) without touching the T."""
    out = []
    n = len(OUTLINE)
    for i in range(n):
        a, b = OUTLINE[i], OUTLINE[(i + 1) % n]
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        tx, ty = (b[0] - a[0]) / length, (b[1] - a[1]) / length
        nx, ny = ty, -tx  # outward for this winding
        count = max(2, int(round(length / 22.0)))
        for k in range(count):
            f = (k + 0.5) / count
            cx, cy = a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
            start = (cx + nx * (AGENT_RADIUS + gap), cy + ny * (AGENT_RADIUS + gap))
            if outline_distance(start) >= AGENT_RADIUS + 0.5 * gap:
                out.append((start, (-nx, -ny)))
    return out


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class PushSim:
    """A pymunk copy of gym-pusht's scene for trying pushes: walls, the kinematic agent, the T."""

    def __init__(self):
        try:
            import pymunk
        except ImportError as err:  # pragma: no cover - pymunk comes with gym-pusht
            raise ConfigError(f"the pusht/PushT expert needs pymunk (pip install 'imitate[pusht]'): {err}") from err
        space = pymunk.Space()
        space.gravity = (0.0, 0.0)
        space.damping = 0.0
        for a, b in (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506))):
            space.add(pymunk.Segment(space.static_body, a, b, 2))
        agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        space.add(agent, pymunk.Circle(agent, AGENT_RADIUS))
        moment = 2 * pymunk.moment_for_poly(1.0, BAR)  # gym-pusht adds the bar's moment twice
        block = pymunk.Body(1.0, moment)
        space.add(block, pymunk.Poly(block, BAR), pymunk.Poly(block, STEM))
        block.center_of_gravity = COG
        self.space, self.agent, self.block = space, agent, block

    def set(self, agent_pos, agent_vel, pose) -> None:
        """The agent at ``agent_pos`` moving at ``agent_vel``, the T at rest at ``pose`` (body origin, angle)."""
        self.block.angle = float(pose[2])  # the angle first: pymunk turns the body about its centre of gravity
        self.block.position = (float(pose[0]), float(pose[1]))
        self.block.velocity = (0.0, 0.0)
        self.block.angular_velocity = 0.0
        self.agent.position = (float(agent_pos[0]), float(agent_pos[1]))
        self.agent.velocity = (float(agent_vel[0]), float(agent_vel[1]))

    def step(self, target) -> None:
        """One gym-pusht step: ten PD updates of the agent towards ``target`` and physics steps."""
        agent, space = self.agent, self.space
        tx, ty = float(target[0]), float(target[1])
        vx, vy = agent.velocity
        for _ in range(SUBSTEPS):
            px, py = agent.position
            vx += (KP * (tx - px) - KV * vx) * DT
            vy += (KP * (ty - py) - KV * vy) * DT
            agent.velocity = (vx, vy)
            space.step(DT)

    def pose(self) -> tuple[float, float, float]:
        x, y = self.block.position
        return float(x), float(y), float(self.block.angle)


def agent_motion(pos, vel, target) -> tuple[np.ndarray, np.ndarray]:
    """Where gym-pusht's PD controller takes the (kinematic) agent in one step towards ``target``:
    (position, velocity) after the step. Contacts never change the agent's motion."""
    px, py = float(pos[0]), float(pos[1])
    vx, vy = float(vel[0]), float(vel[1])
    tx, ty = float(target[0]), float(target[1])
    for _ in range(SUBSTEPS):
        vx += (KP * (tx - px) - KV * vx) * DT
        vy += (KP * (ty - py) - KV * vy) * DT
        px += vx * DT
        py += vy * DT
    return np.array([px, py]), np.array([vx, vy])


class PushTExpert:
    """The push planner described in the module docstring, as an imitate ``Expert``.

    Args:
        p_left: probability that an episode's first approach goes around the T's left side.
        env_kwargs: the kwargs given to ``gym.make`` (``obs_mode`` and rendering settings are
            accepted and ignored: the expert reads the 5-D state, see `imitate.envs.expert_view`).
        seed: seeds the expert's generator (the side and small jitter of push distances).
        distances: push distances (px past the contact) the planner tries.
        push_steps: steps a push lasts (the agent's target is held at the push's end point).
    """

    GAP = 3.0
    ORBIT_MARGIN = 10.0
    MIN_SWEEP = 0.6
    ARRIVE_TOL = 2.0
    WAYPOINT_TOL = 12.0
    TRAVEL_COST = 0.02
    BOUND_RADIUS = 77.0  # the farthest outline corner from the centre of gravity

    def __init__(self, p_left: float = 0.5, env_kwargs: dict | None = None, seed: int | None = None,
                 distances: tuple[float, ...] = (2.0, 6.0, 15.0, 35.0, 70.0), push_steps: int = 4):
        if not 0.0 <= float(p_left) <= 1.0:
            raise ConfigError(f"PushTExpert: p_left={p_left} must lie in [0, 1]")
        unknown = sorted(set(env_kwargs or {}) - {"obs_mode", "render_mode", "image_size", "render_size"})
        if unknown:
            raise ConfigError(f"PushTExpert: env_kwargs {unknown} are not pusht/PushT arguments")
        if int(push_steps) < 1 or not distances or any(float(d) <= 0 for d in distances):
            raise ConfigError(f"PushTExpert: push_steps={push_steps} must be >= 1 and distances={distances} positive")
        self.p_left = float(p_left)
        self.distances = tuple(float(d) for d in distances)
        self.push_steps = int(push_steps)
        self.sim = PushSim()
        self.contacts = _contacts(self.GAP)
        self._rng = np.random.default_rng(seed)
        self.reset()

    # -- episode state -------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.route = "left" if self._rng.random() < self.p_left else "right"
        self.pushes = 0
        self.plans = 0
        self._queue: list[tuple[float, float]] = []
        self._push = None  # (start in body frame, direction in body frame, world targets)
        self._last_action = None
        self._expected = None  # (position, velocity) the last action leads to
        self._orbit_sign = None

    def episode_attrs(self) -> dict:
        """The drawn side and how many pushes the episode took (recorded with each demo)."""
        return {"expert_route": self.route, "expert_pushes": int(self.pushes)}

    # -- helpers ---------------------------------------------------------------------------------
    def _velocity(self, pos: np.ndarray) -> np.ndarray:
        """The agent's velocity: as the last action left it, or zero (and a fresh plan) for a state
        that action did not lead to."""
        if self._expected is not None and np.allclose(self._expected[0], pos, atol=1e-6):
            return self._expected[1]
        if self._expected is not None:  # someone else moved the agent: the plan no longer holds
            self._queue, self._push = [], None
        return np.zeros(2)

    def _choose(self, agent: np.ndarray, pose, side: bool = True) -> tuple | None:
        """The best push from ``pose``: (start (world), targets (world), start (body), cost); None when
        no start point lies inside the walls. The first push of an episode keeps to the drawn side
        (``side``), unless no start point there is inside the walls."""
        sim = self.sim
        cog = to_world(pose, COG)
        phi_agent = math.atan2(agent[1] - cog[1], agent[0] - cog[0])
        first = side and self.pushes == 0
        want = 1.0 if self.route == "left" else -1.0
        best, best_key = None, math.inf
        c, s = _rot(pose[2])
        for start_b, dir_b in self.contacts:
            start = to_world(pose, start_b)
            if not (ARENA[0] <= start[0] <= ARENA[1] and ARENA[0] <= start[1] <= ARENA[1]):
                continue
            sweep = _wrap(math.atan2(start[1] - cog[1], start[0] - cog[0]) - phi_agent)
            if first and want * sweep < self.MIN_SWEEP:
                continue
            travel = math.hypot(start[0] - agent[0], start[1] - agent[1])
            d0 = (c * dir_b[0] - s * dir_b[1], s * dir_b[0] + c * dir_b[1])
            for turn in (0.0, 0.5, -0.5):
                ct, st = math.cos(turn), math.sin(turn)
                d = (ct * d0[0] - st * d0[1], st * d0[0] + ct * d0[1])
                for dist in self.distances:
                    end = (start[0] + d[0] * (self.GAP + dist), start[1] + d[1] * (self.GAP + dist))
                    sim.set(start, (0.0, 0.0), pose)
                    for _ in range(self.push_steps):
                        sim.step(end)
                    cost = pose_cost(sim.pose())
                    key = cost + self.TRAVEL_COST * travel
                    if key < best_key:
                        best_key, best = key, (start, [end] * self.push_steps, start_b, cost)
        if best is None and first:
            return self._choose(agent, pose, side=False)
        return best

    def _blocked(self, pose, a, b) -> bool:
        return segment_clearance(to_body(pose, a), to_body(pose, b)) < AGENT_RADIUS + 1.0

    def _approach_target(self, agent: np.ndarray, pose, start) -> tuple[float, float]:
        """The next point on the way to ``start``: ``start`` itself when the way is clear, else a
        point on a circle about the T's centre of gravity, stepping around it."""
        if not self._blocked(pose, agent, start):
            return start
        cog = to_world(pose, COG)
        radius = self.BOUND_RADIUS + AGENT_RADIUS + self.ORBIT_MARGIN
        phi_a = math.atan2(agent[1] - cog[1], agent[0] - cog[0])
        phi_s = math.atan2(start[1] - cog[1], start[0] - cog[0])
        delta = _wrap(phi_s - phi_a)
        if self._orbit_sign is None:
            self._orbit_sign = (1.0 if self.route == "left" else -1.0) if self.pushes == 0 else (
                1.0 if delta >= 0 else -1.0)
        sign = self._orbit_sign
        dist = math.hypot(agent[0] - cog[0], agent[1] - cog[1])
        if dist < radius - self.WAYPOINT_TOL:  # first out, away from the T
            phi = phi_a + sign * 0.35
        else:
            phi = phi_a + sign * 0.9
        # the remaining way around in the chosen sense; aim straight at the start once it is near
        remaining = delta if sign * delta >= 0 else delta + sign * 2 * math.pi
        if abs(remaining) < 0.9 and dist >= radius - self.WAYPOINT_TOL:
            phi = phi_s
            # the point off the start along the T's outward normal
            out = (start[0] - cog[0], start[1] - cog[1])
            norm = math.hypot(*out) or 1.0
            return (cog[0] + out[0] / norm * radius, cog[1] + out[1] / norm * radius)
        target = (cog[0] + radius * math.cos(phi), cog[1] + radius * math.sin(phi))
        return (min(max(target[0], ARENA[0]), ARENA[1]), min(max(target[1], ARENA[0]), ARENA[1]))

    # -- acting ----------------------------------------------------------------------------------
    def act(self, obs) -> np.ndarray:
        """The agent's target position (2,) float32 for a 5-D gym-pusht state."""
        state = np.asarray(obs, dtype=np.float64).reshape(-1)
        if state.shape != (5,):
            raise ConfigError(f"PushTExpert reads gym-pusht's 5-D state (agent x, y, block x, y, angle); "
                              f"got shape {state.shape}")
        agent, pose = state[:2], (state[2], state[3], state[4])
        vel = self._velocity(agent)
        if not self._queue:
            if self._push is None:
                self.plans += 1
                choice = self._choose(agent, pose)
                if choice is None:  # nothing reachable inside the walls: hold still
                    return self._emit(agent, vel, agent)
                self._push = choice
                self._orbit_sign = None
            start_b = self._push[2]
            start = to_world(pose, start_b)  # follows the T if it moved while approaching
            near = math.hypot(start[0] - agent[0], start[1] - agent[1]) <= self.ARRIVE_TOL
            if near and float(np.hypot(*vel)) < 40.0:
                # re-plan from where the agent really is, then play the push
                targets = self._push[1]
                shift = (start[0] - self._push[0][0], start[1] - self._push[0][1])
                self._queue = [(t[0] + shift[0], t[1] + shift[1]) for t in targets]
                self._push = None
                self.pushes += 1
            else:
                target = self._approach_target(agent, pose, start)
                return self._emit(agent, vel, target)
        target = self._queue.pop(0)
        return self._emit(agent, vel, target)

    def _emit(self, agent, vel, target) -> np.ndarray:
        action = np.clip(np.asarray(target, dtype=np.float64), 0.0, 512.0)
        self._expected = agent_motion(agent, vel, action)
        self._last_action = action
        return action.astype(np.float32)
