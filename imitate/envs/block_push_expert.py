"""The scripted expert of ``imitate/BlockPush-v0``: both blocks into the zones, in an order and an
assignment drawn per episode (the task's four modes; see `imitate.envs.block_push`)."""
from __future__ import annotations

import numpy as np

from imitate.envs.block_push import BLOCK_PUSH_MODES, BlockPushGeometry
from imitate.envs.draw import VIEW_KWARGS


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
        env_kwargs: the kwargs given to ``gym.make`` for the environment (BlockPush-v0 takes only
            render_mode, obs_mode, image_size and reward; the expert ignores them and reads the state).
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
        env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("render_mode", "reward", *VIEW_KWARGS)}
        if env_kwargs:
            raise ValueError(
                f"BlockPushExpert: env_kwargs {sorted(env_kwargs)} are not BlockPush-v0 arguments (it takes "
                f"only {[*VIEW_KWARGS, 'reward']}, which the expert ignores: it reads the state)"
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
