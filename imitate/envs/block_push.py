"""BlockPush: a disc agent pushes two blocks into two target zones, in either order and assignment.

The arena is the square [-1, 1]^2. Blocks A and B (discs) start on the left and on the right, target
zone 1 lies above the middle and zone 2 below it, and the agent starts in the middle:

    +-----------------------------+   y = 1
    |             (1)             |         target zone 1 (top)
    |                             |
    |     A        o        B     |         blocks A (left) and B (right), the agent in the middle
    |                             |
    |             (2)             |         target zone 2 (bottom)
    +-----------------------------+   y = -1

Which block goes into which zone, and which block goes first, are free: four modes that differ over
the whole episode. Mode names read ``A<zone>B<zone>_<block>first``: ``A1B2_Afirst``, ``A1B2_Bfirst``,
``A2B1_Afirst``, ``A2B1_Bfirst``. To push the first block the agent must get behind it (on the far
side from its zone), round the block's bottom to push it up into zone 1, round its top to push it
down into zone 2: the four modes leave the start in four directions about 90 degrees apart, and their
mean is to stand still. The second block then goes into the other zone.

Contact is kinematic and deterministic: when the agent's move would take it into a block, the agent
moves until it touches the block, and the rest of its displacement moves the block too: all of it when
it points within 45 degrees of the line between the centres (the contact sticks, so a block pushed from
behind goes where the agent goes), else only its part along that line (the agent slides along the
block). A pushed block pushes the other block the same way. Blocks are kept inside the
arena, and the agent never overlaps a block that a wall stops.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

BLOCK_NAMES = ("A", "B")
TARGET_NAMES = ("1", "2")


def mode_name(assignment: tuple[int, int], first: int) -> str:
    """``A<zone>B<zone>_<block>first`` for block -> zone indices ``assignment`` and block ``first``."""
    return (f"A{TARGET_NAMES[assignment[0]]}B{TARGET_NAMES[assignment[1]]}_"
            f"{BLOCK_NAMES[first]}first")


#: The four modes: (A->1, B->2) or (A->2, B->1), A first or B first.
BLOCK_PUSH_MODES = tuple(mode_name(a, f) for a in ((0, 1), (1, 0)) for f in (0, 1))


@dataclass(frozen=True)
class BlockPushGeometry:
    """Layout and dynamics shared by :class:`BlockPushEnv` and its scripted expert."""

    arena_half: float = 1.0
    """The arena is the square [-arena_half, arena_half]^2; agent and blocks stay inside it."""
    agent_radius: float = 0.05
    """The agent is a disc of this radius."""
    block_radius: float = 0.07
    """Each block is a disc of this radius."""
    block_starts: tuple[tuple[float, float], tuple[float, float]] = ((-0.5, 0.0), (0.5, 0.0))
    """Mean start positions (x, y) of blocks A and B."""
    block_jitter: float = 0.08
    """Each block starts uniformly within +- this offset (x and y) of its mean."""
    agent_start: tuple[float, float] = (0.0, 0.0)
    """Mean start position (x, y) of the agent."""
    agent_jitter: tuple[float, float] = (0.05, 0.05)
    """The agent starts uniformly within +- these offsets (x, y) of agent_start."""
    targets: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.6), (0.0, -0.6))
    """Centres (x, y) of target zones 1 and 2."""
    target_radius: float = 0.2
    """A block is in a zone when its centre is at most this far from the zone's centre."""
    max_speed: float = 0.5
    """Speed (arena units per second) of an action of 1 along one axis."""
    dt: float = 0.1
    """Seconds per step: an action a moves the agent by a * max_speed * dt (0.05 at full speed)."""

    @property
    def contact_distance(self) -> float:
        """Distance between the agent's and a block's centres when they touch."""
        return self.agent_radius + self.block_radius

    def zones_of(self, blocks: np.ndarray) -> np.ndarray:
        """For blocks (2, 2): the zone index each block's centre lies in, -1 for none, shape (2,)."""
        dist = np.linalg.norm(blocks[:, None, :] - np.asarray(self.targets)[None], axis=-1)
        return np.where(dist.min(1) <= self.target_radius, dist.argmin(1), -1)


def _contact_fraction(start: np.ndarray, move: np.ndarray, centre: np.ndarray, reach: float) -> float | None:
    """The fraction t in [0, 1] of ``move`` after which a disc moving from ``start`` comes within
    ``reach`` of ``centre`` (0 when it starts there and moves further in); None when it does not."""
    rel = start - centre
    c = float(np.dot(rel, rel)) - reach * reach
    if c <= 0.0:
        return 0.0 if float(np.dot(rel + move, rel + move)) < reach * reach else None
    a = float(np.dot(move, move))
    b = 2.0 * float(np.dot(rel, move))
    disc = b * b - 4 * a * c
    if a == 0.0 or disc < 0:
        return None
    t = (-b - np.sqrt(disc)) / (2 * a)
    return float(t) if 0.0 <= t <= 1.0 else None


class BlockPushEnv(gym.Env):
    """Push both blocks into the two target zones, one block per zone.

    Observation (``Dict``, float32): ``agent_pos`` (2,), ``block_pos`` (2, 2) rows A and B,
    ``target_pos`` (2, 2) rows zone 1 and zone 2 (fixed in the default geometry).
    Action: (2,) float32 in [-1, 1], a velocity command; the agent moves by
    ``action * max_speed * dt`` per step (0.05 arena units at full speed on one axis).

    Reward per step: the change in the number of occupied zones (+1 when a block enters a free zone,
    -1 when it leaves), so an episode's return is the number of zones occupied at its end.

    Termination: success, both zones occupied (``p2``). Truncation: 200 steps (``max_episode_steps``
    at registration); the expert needs 60-100.

    Info at every step: ``p1`` (float: 1.0 when at least one zone holds a block), ``p2`` (float: 1.0
    when both zones hold a block, i.e. the blocks lie in different zones), ``is_success`` (bool, p2),
    and ``mode``: None until success, then ``A<zone>B<zone>_<block>first`` naming where each block
    ended and which of them entered its zone first (the one whose current stay in it began earlier;
    A on a tie). ``metadata["episode_metrics"]`` lists p1 and p2: report the mean over episodes of
    their values at the final step.

    Args:
        render_mode: ``None`` or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "episode_metrics": ["p1", "p2"]}
    MODES = BLOCK_PUSH_MODES
    FRICTION_CONE = np.deg2rad(45.0)
    RENDER_SIZE = 256
    COLOURS = {"agent": (40, 90, 210), "blocks": ((230, 140, 30), (150, 60, 170)),
               "targets": ((250, 215, 160), (225, 190, 235)), "border": (40, 40, 40)}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"BlockPush: render_mode={render_mode!r} is not supported; "
                f"use None or one of {self.metadata['render_modes']}"
            )
        self.geometry = BlockPushGeometry()
        self.modes = BLOCK_PUSH_MODES
        self.render_mode = render_mode
        half = self.geometry.arena_half
        point = gym.spaces.Box(-half, half, shape=(2,), dtype=np.float32)
        pair = gym.spaces.Box(-half, half, shape=(2, 2), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"agent_pos": point, "block_pos": pair, "target_pos": pair})
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._agent = np.zeros(2)
        self._blocks = np.zeros((2, 2))
        self._targets = np.asarray(self.geometry.targets, dtype=np.float64)
        self._entered = [-1, -1]
        self._steps = 0
        self._mode: str | None = None

    # ----------------------------------------------------------------- state and bookkeeping
    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "agent_pos": self._agent.astype(np.float32),
            "block_pos": self._blocks.astype(np.float32),
            "target_pos": self._targets.astype(np.float32),
        }

    def _occupied(self) -> int:
        zones = self.geometry.zones_of(self._blocks)
        return len({int(z) for z in zones if z >= 0})

    def _info(self) -> dict:
        occupied = self._occupied()
        p2 = occupied == 2
        return {"is_success": p2, "p1": float(occupied >= 1), "p2": float(p2), "mode": self._mode}

    def _update_mode(self) -> None:
        zones = self.geometry.zones_of(self._blocks)
        for i in range(2):
            if zones[i] < 0:
                self._entered[i] = -1
            elif self._entered[i] < 0:
                self._entered[i] = self._steps
        if self._mode is None and zones.min() >= 0 and zones[0] != zones[1]:
            first = 0 if self._entered[0] <= self._entered[1] else 1
            self._mode = mode_name((int(zones[0]), int(zones[1])), first)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        geo, rng = self.geometry, self.np_random
        self._agent = np.asarray(geo.agent_start) + rng.uniform(-1, 1, 2) * geo.agent_jitter
        self._blocks = np.asarray(geo.block_starts) + rng.uniform(-1, 1, (2, 2)) * geo.block_jitter
        self._targets = np.asarray(geo.targets, dtype=np.float64)
        self._entered = [-1, -1]
        self._steps = 0
        self._mode = None
        self._update_mode()
        return self._obs(), self._info()

    # ----------------------------------------------------------------- kinematics
    def _drag(self, index: int, start: np.ndarray, move: np.ndarray, reach: float) -> np.ndarray | None:
        """Push block ``index`` with a disc moving by ``move`` from ``start`` that touches the block at
        centre distance ``reach``; return the block's old position, None when it is not touched.

        The part d of ``move`` left after contact moves the block: all of d when d lies within the
        friction cone (FRICTION_CONE of the contact normal n: the contact sticks), else only its part
        along n (the pusher slides along the block)."""
        t = _contact_fraction(start, move, self._blocks[index], reach)
        if t is None:
            return None
        old = self._blocks[index].copy()
        rest = (1.0 - t) * move
        normal = old - (start + t * move)
        normal /= max(float(np.linalg.norm(normal)), 1e-12)
        along = float(np.dot(rest, normal))
        sticks = along >= np.cos(self.FRICTION_CONE) * float(np.linalg.norm(rest))
        self._blocks[index] = old + (rest if sticks else max(along, 0.0) * normal)
        return old

    def _separate(self) -> None:
        """Keep blocks inside the arena and apart, and the agent inside and out of every block."""
        geo = self.geometry
        block_lim = geo.arena_half - geo.block_radius
        self._blocks = np.clip(self._blocks, -block_lim, block_lim)
        gap = self._blocks[1] - self._blocks[0]
        dist = float(np.linalg.norm(gap))
        if dist < 2 * geo.block_radius:  # both pressed against a wall: push apart along the wall
            normal = gap / dist if dist > 1e-9 else np.array([1.0, 0.0])
            shift = 0.5 * (2 * geo.block_radius - dist) * normal
            self._blocks = np.clip(self._blocks + np.stack([-shift, shift]), -block_lim, block_lim)
        agent_lim = geo.arena_half - geo.agent_radius
        for block in self._blocks:
            rel = self._agent - block
            dist = float(np.linalg.norm(rel))
            if dist < geo.contact_distance - 1e-9:
                normal = rel / dist if dist > 1e-9 else np.array([0.0, -1.0])
                self._agent = block + normal * geo.contact_distance
        self._agent = np.clip(self._agent, -agent_lim, agent_lim)

    def step(self, action):
        geo = self.geometry
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        before = self._occupied()
        move = action * geo.max_speed * geo.dt
        start = self._agent.copy()
        for i in range(2):
            old = self._drag(i, start, move, geo.contact_distance)
            if old is not None:  # the dragged block drags the other one along the same way
                self._drag(1 - i, old, self._blocks[i] - old, 2 * geo.block_radius)
        self._agent = start + move
        self._separate()
        self._steps += 1
        self._update_mode()
        info = self._info()
        reward = float(self._occupied() - before)
        return self._obs(), reward, bool(info["is_success"]), False, info

    # ----------------------------------------------------------------- drawing
    def plot_scene(self, ax) -> None:
        """Draw the arena and the target zones (and the blocks' start areas, dotted) on the matplotlib
        Axes ``ax`` in world coordinates."""
        from matplotlib.patches import Circle, Rectangle

        geo = self.geometry
        half = geo.arena_half
        ax.add_patch(Rectangle((-half, -half), 2 * half, 2 * half, fill=False, lw=1.5, ec="0.2"))
        for k, centre in enumerate(self._targets):
            ax.add_patch(Circle(tuple(centre), geo.target_radius, color=np.array(self.COLOURS["targets"][k]) / 255,
                                zorder=0))
            ax.annotate(TARGET_NAMES[k], tuple(centre), ha="center", va="center", fontsize=9, color="0.3")
        j = geo.block_jitter
        for k, (x, y) in enumerate(geo.block_starts):
            colour = np.array(self.COLOURS["blocks"][k]) / 255
            ax.add_patch(Rectangle((x - j, y - j), 2 * j, 2 * j, fill=False, ls=":", ec=colour, lw=1.2))
            ax.annotate(BLOCK_NAMES[k], (x, y), ha="center", va="center", fontsize=9, color=colour)
        ax.set_xlim(-half - 0.05, half + 0.05)
        ax.set_ylim(-half - 0.05, half + 0.05)
        ax.set_aspect("equal")

    @staticmethod
    def agent_xy(obs: dict[str, np.ndarray]) -> np.ndarray:
        """The agent's positions (T, 2) from observations {key: (T, *shape)} as stored in demo files."""
        return np.asarray(obs["agent_pos"], dtype=np.float64).reshape(-1, 2)

    def render(self) -> np.ndarray | None:
        """An (H, W, 3) uint8 frame of the arena, y pointing up; ``None`` without ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        geo, size = self.geometry, self.RENDER_SIZE
        margin = 8
        scale = (size - 2 * margin) / (2 * geo.arena_half)
        centers = np.arange(size) + 0.5
        x, y = np.meshgrid((centers - size / 2) / scale, (size / 2 - centers) / scale)

        frame = np.full((size, size, 3), 245, dtype=np.uint8)
        half, border = geo.arena_half, 2.0 / scale
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
        frame[inside & ((np.abs(x) > half - border) | (np.abs(y) > half - border))] = self.COLOURS["border"]
        for k, (tx, ty) in enumerate(self._targets):
            frame[np.hypot(x - tx, y - ty) <= geo.target_radius] = self.COLOURS["targets"][k]
        for k, (bx, by) in enumerate(self._blocks):
            frame[np.hypot(x - bx, y - by) <= geo.block_radius] = self.COLOURS["blocks"][k]
        ax_, ay_ = self._agent
        frame[np.hypot(x - ax_, y - ay_) <= max(geo.agent_radius, 2.5 / scale)] = self.COLOURS["agent"]
        return frame


class BlockPushExpert:
    """Pushes both blocks of ``imitate/BlockPush-v0`` into the zones, in an order and assignment drawn
    per episode.

    Per episode (``reset``): the assignment (A->1, B->2 or A->2, B->1) and the order (A first or B
    first), each 50/50 by default (``mode_probs`` over ``BLOCK_PUSH_MODES`` otherwise), a cruise speed,
    and Ornstein-Uhlenbeck action noise of standard deviation ``noise`` per axis. ``route`` names the
    mode as the environment does.

    From the observation alone: the block to push is the first one unless it already lies within
    ``DONE_RADIUS`` of its zone's centre, then the second. With u the unit vector from that block to its
    zone's centre:

        touching the block from behind (within PUSH_CONE of -u)  -> move along u (the block follows)
        otherwise                                                -> go to the staging point behind the
            block (block - u * (contact + STAGE_GAP)), orbiting around the block while the straight
            line would touch it, and around the other block while the line would touch that one

    Args:
        noise: standard deviation of the action noise per axis; 0 gives clean labels.
        env_kwargs: the kwargs given to ``gym.make`` for the environment (BlockPush-v0 takes none
            besides render_mode).
        mode_probs: probability of each mode in ``BLOCK_PUSH_MODES`` order; uniform by default.
        seed: seeds the expert's generator; ``reset(seed)`` re-seeds it.
    """

    NOISE_CORRELATION = 0.85
    DONE_RADIUS = 0.05
    STAGE_GAP = 0.08
    PUSH_CONE = np.deg2rad(35.0)
    CLEARANCE = 0.06
    ORBIT_STEP = np.deg2rad(60.0)
    ORBIT_GAP = 0.22
    SLOW_DISTANCE = 0.15

    def __init__(
        self,
        noise: float = 0.1,
        env_kwargs: dict | None = None,
        mode_probs: list[float] | None = None,
        seed: int | None = None,
    ):
        env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"}
        if env_kwargs:
            raise ValueError(
                f"BlockPushExpert: env_kwargs {sorted(env_kwargs)} are not BlockPush-v0 arguments (it takes none)"
            )
        n = len(BLOCK_PUSH_MODES)
        probs = np.full(n, 1.0 / n) if mode_probs is None else np.asarray(mode_probs, dtype=np.float64)
        if probs.shape != (n,) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
            raise ValueError(
                f"BlockPushExpert: mode_probs={mode_probs} must hold {n} non-negative numbers summing to 1 "
                f"(order: {list(BLOCK_PUSH_MODES)})"
            )
        if noise < 0:
            raise ValueError(f"BlockPushExpert: noise={noise} must be >= 0")
        self.geometry = BlockPushGeometry()
        self.mode_probs = probs
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        index = int(rng.choice(len(BLOCK_PUSH_MODES), p=self.mode_probs))
        self.route = BLOCK_PUSH_MODES[index]
        self.assignment = (0, 1) if index < 2 else (1, 0)
        self.order = (0, 1) if index % 2 == 0 else (1, 0)
        self.speed = float(rng.uniform(0.75, 0.95))
        self._noise_state = np.zeros(2)

    def _blocked(self, pos: np.ndarray, goal: np.ndarray, centre: np.ndarray, reach: float) -> bool:
        """Whether the segment pos -> goal passes within ``reach`` of ``centre`` ahead of ``pos`` (a
        segment that leads away from ``centre`` is free even when it starts close to it)."""
        seg = goal - pos
        t = np.dot(centre - pos, seg) / max(np.dot(seg, seg), 1e-12)
        if t <= 0.0:
            return False
        return bool(np.linalg.norm(pos + min(t, 1.0) * seg - centre) < reach)

    def _waypoint(self, pos: np.ndarray, blocks: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, bool]:
        """(point to head for, whether the agent is pushing)."""
        geo = self.geometry
        contact = geo.contact_distance
        first, second = self.order
        index = first
        if np.linalg.norm(blocks[first] - targets[self.assignment[first]]) <= self.DONE_RADIUS:
            index = second
        block, goal = blocks[index], targets[self.assignment[index]]
        to_goal = goal - block
        u = to_goal / max(np.linalg.norm(to_goal), 1e-9)
        rel = pos - block
        dist = float(np.linalg.norm(rel))
        behind = np.arccos(np.clip(np.dot(rel, -u) / max(dist, 1e-9), -1.0, 1.0))
        if dist <= contact + self.STAGE_GAP + 0.01 and behind <= self.PUSH_CONE:
            return goal + rel, True  # where the agent is when the block sits on the goal
        stage = block - u * (contact + self.STAGE_GAP)
        if self._blocked(pos, stage, block, contact + self.CLEARANCE):
            angle = np.arctan2(rel[1], rel[0])
            gap = (np.arctan2(-u[1], -u[0]) - angle + np.pi) % (2 * np.pi) - np.pi
            angle += np.sign(gap) * min(abs(gap), self.ORBIT_STEP)
            stage = block + (contact + self.ORBIT_GAP) * np.array([np.cos(angle), np.sin(angle)])
        other = blocks[1 - index]
        if self._blocked(pos, stage, other, contact + self.CLEARANCE):
            seg = stage - pos
            perp = np.array([-seg[1], seg[0]]) / max(np.linalg.norm(seg), 1e-9)
            side = -np.sign(np.dot(other - pos, perp)) or 1.0
            stage = other + side * perp * (contact + self.ORBIT_GAP)
        return stage, False

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action (2,) float32 for ``obs`` with keys ``agent_pos`` (2,), ``block_pos`` (2, 2) and
        ``target_pos`` (2, 2)."""
        pos = np.asarray(obs["agent_pos"], dtype=np.float64).reshape(2)
        blocks = np.asarray(obs["block_pos"], dtype=np.float64).reshape(2, 2)
        targets = np.asarray(obs["target_pos"], dtype=np.float64).reshape(2, 2)
        point, pushing = self._waypoint(pos, blocks, targets)
        delta = point - pos
        dist = float(np.linalg.norm(delta))
        speed = self.speed * (min(1.0, max(0.3, dist / self.SLOW_DISTANCE)) if pushing else 1.0)
        command = delta / dist * speed if dist > 1e-9 else np.zeros(2)
        if self.noise > 0:
            rho = self.NOISE_CORRELATION
            fresh = self._rng.normal(0.0, self.noise, 2)
            self._noise_state = rho * self._noise_state + np.sqrt(1 - rho**2) * fresh
            command = command + self._noise_state
        return np.clip(command, -1.0, 1.0).astype(np.float32)
