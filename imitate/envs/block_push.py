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

from imitate.envs.draw import IMAGE_KEY, Canvas, check_view, image_space, observe, stored_state

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
    ``target_pos`` (2, 2) rows zone 1 and zone 2 (fixed in the default geometry). That is
    ``obs_mode`` "state" (default); "image" gives only ``image`` (image_size, image_size, 3) uint8, a
    top-down view (`observation_image`), "state+image" all four keys. `state_obs` returns the state
    keys in every mode (the scripted expert reads them).
    Action: (2,) float32 in [-1, 1], a velocity command; the agent moves by
    ``action * max_speed * dt`` per step (0.05 arena units at full speed on one axis).

    Reward per step: the change in the number of occupied zones (+1 when a block enters a free zone,
    -1 when it leaves), so an episode's return is the number of zones occupied at its end. With
    ``reward="sparse"``: 1 at success (both zones occupied) and 0 at every other step.

    Stored states: `sim_state` is the state as a float vector [agent x, y, block A x, y, block B x, y,
    step each block entered its zone (-1: not in one), step count] (`imitate collect` writes it as
    each demo's ``states``); ``reset(options={"state": s})`` puts the episode into it.

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
        obs_mode: "state", "image" or "state+image" (see Observation).
        image_size: height and width of the ``image`` key in pixels (default 84).
        reward: "dense" (default: the change in occupied zones) or "sparse" (1 at success only).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "episode_metrics": ["p1", "p2"]}
    MODES = BLOCK_PUSH_MODES
    FRICTION_CONE = np.deg2rad(45.0)
    RENDER_SIZE = 256
    COLOURS = {"agent": (40, 90, 210), "blocks": ((230, 140, 30), (150, 60, 170)),
               "targets": ((250, 215, 160), (225, 190, 235)), "border": (40, 40, 40)}

    def __init__(self, render_mode: str | None = None, obs_mode: str = "state", image_size: int = 84,
                 reward: str = "dense"):
        if reward not in ("dense", "sparse"):
            raise ValueError(f"BlockPush: reward={reward!r}; use 'dense' or 'sparse'")
        self.reward_kind = reward
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"BlockPush: render_mode={render_mode!r} is not supported; "
                f"use None or one of {self.metadata['render_modes']}"
            )
        self.obs_mode, self.image_size = check_view("BlockPush", obs_mode, image_size)
        self.geometry = BlockPushGeometry()
        self.modes = BLOCK_PUSH_MODES
        self.render_mode = render_mode
        half = self.geometry.arena_half
        point = gym.spaces.Box(-half, half, shape=(2,), dtype=np.float32)
        pair = gym.spaces.Box(-half, half, shape=(2, 2), dtype=np.float32)
        spaces = {} if self.obs_mode == "image" else {"agent_pos": point, "block_pos": pair, "target_pos": pair}
        if self.obs_mode != "state":
            spaces[IMAGE_KEY] = image_space(self.image_size)
        self.observation_space = gym.spaces.Dict(spaces)
        self._canvas = Canvas(self.image_size, half)
        self._background: tuple[bytes, np.ndarray] | None = None
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._agent = np.zeros(2)
        self._blocks = np.zeros((2, 2))
        self._targets = np.asarray(self.geometry.targets, dtype=np.float64)
        self._entered = [-1, -1]
        self._steps = 0
        self._mode: str | None = None

    # ----------------------------------------------------------------- state and bookkeeping
    def state_obs(self) -> dict[str, np.ndarray]:
        """The state observation (``agent_pos``, ``block_pos``, ``target_pos``) now, whatever
        ``obs_mode`` shows."""
        return {
            "agent_pos": self._agent.astype(np.float32),
            "block_pos": self._blocks.astype(np.float32),
            "target_pos": self._targets.astype(np.float32),
        }

    def _obs(self) -> dict[str, np.ndarray]:
        return observe(self.obs_mode, self.state_obs, self.observation_image)

    def observation_image(self) -> np.ndarray:
        """The ``image`` observation now: (image_size, image_size, 3) uint8, top-down, y up: the
        arena's wall, target zones 1 and 2 (pale orange, pale purple), blocks A and B (orange,
        purple) and the agent (blue disc, at least 2 pixels in radius), in `COLOURS`. Available in
        every ``obs_mode``."""
        geo, canvas = self.geometry, self._canvas
        key = self._targets.tobytes()
        if self._background is None or self._background[0] != key:   # targets are fixed per geometry
            img = canvas.blank((245, 245, 245))
            canvas.frame(img, self.COLOURS["border"])
            for k, centre in enumerate(self._targets):
                canvas.disc(img, centre, geo.target_radius, self.COLOURS["targets"][k])
            self._background = (key, img)
        img = self._background[1].copy()
        for k, centre in enumerate(self._blocks):
            canvas.disc(img, centre, geo.block_radius, self.COLOURS["blocks"][k])
        canvas.disc(img, self._agent, geo.agent_radius, self.COLOURS["agent"], min_pixels=2.0)
        return img

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

    STATE_SIZE = 9

    def sim_state(self) -> np.ndarray:
        """The state now as float64 (9,): agent x, y, blocks A and B x, y, the step each block entered
        its zone (-1: none), the step count."""
        return np.array([*self._agent, *self._blocks.reshape(-1), *self._entered, self._steps], dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        geo, rng = self.geometry, self.np_random
        self._agent = np.asarray(geo.agent_start) + rng.uniform(-1, 1, 2) * geo.agent_jitter
        self._blocks = np.asarray(geo.block_starts) + rng.uniform(-1, 1, (2, 2)) * geo.block_jitter
        self._targets = np.asarray(geo.targets, dtype=np.float64)
        self._entered = [-1, -1]
        self._steps = 0
        self._mode = None
        if options and options.get("state") is not None:
            state = stored_state("BlockPush", options["state"], self.STATE_SIZE)
            self._agent, self._blocks = state[:2].copy(), state[2:6].reshape(2, 2).copy()
            self._entered = [int(round(state[6])), int(round(state[7]))]
            self._steps = int(round(state[8]))
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
        reward = float(info["is_success"]) if self.reward_kind == "sparse" else float(self._occupied() - before)
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
