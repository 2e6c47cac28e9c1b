"""A scripted expert for robosuite's Lift (``robosuite/Lift``): above the cube, down, grasp, lift.

It reads robomimic's observation keys (``robot0_eef_pos``, ``robot0_gripper_qpos``, ``object``,
whose first three entries are the cube's position) and commands robosuite's default OSC_POSE arm
controller (delta position, no rotation) and the gripper (-1 open, +1 close):

    eef far from above the cube (xy error > XY_TOL)      -> move to HOVER above the cube, open
    above it, not yet down (z error > Z_TOL)             -> descend to the grasp height, open
    down at the cube, fingers not yet closed on it       -> hold, close
    fingers closed (finger gap below CLOSED_GAP)         -> rise to LIFT_HEIGHT above the table, closed

The phase follows from the observation alone (DAgger can query any state), except that a grasp
counts as closed once the fingers have been closing for ``CLOSE_STEPS`` steps in a row.
"""
from __future__ import annotations

import numpy as np


class LiftExpert:
    """Picks up the cube of robosuite's Lift; per-episode jitter of the grasp point and speed.

    Args:
        noise: standard deviation of Gaussian noise added to the position command (in [-1, 1] units).
        env_kwargs: the kwargs given to ``gym.make`` (unused: the geometry comes from the observation).
        seed: seeds the per-episode jitter; ``reset(seed)`` re-seeds it.
    """

    HOVER = 0.06          # m above the cube's centre before descending
    XY_TOL = 0.012        # m: lined up above the cube
    Z_TOL = 0.008         # m: down at the grasp height
    GRASP_DZ = -0.005     # m: grasp height relative to the cube's centre
    CLOSE_STEPS = 8       # steps of closing before lifting
    LIFT_HEIGHT = 0.12    # m the cube is raised above its resting height
    GAIN = 12.0           # position error (m) -> command in [-1, 1]

    def __init__(self, noise: float = 0.0, env_kwargs: dict | None = None, seed: int | None = None):
        if noise < 0:
            raise ValueError(f"LiftExpert: noise={noise} must be >= 0")
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.offset = self._rng.uniform(-0.004, 0.004, 2)
        self.speed = float(self._rng.uniform(0.8, 1.0))
        self._closing = 0
        self._rest_z: float | None = None

    def _command(self, error: np.ndarray) -> np.ndarray:
        move = np.clip(self.GAIN * error, -1.0, 1.0) * self.speed
        if self.noise > 0:
            move = move + self._rng.normal(0.0, self.noise, 3)
        return move

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action (7,) float32: delta position (3), delta rotation (3, zero), gripper (1)."""
        eef = np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
        cube = np.asarray(obs["object"], dtype=np.float64)[:3]
        if self._rest_z is None:
            self._rest_z = float(cube[2])
        grasp = np.array([cube[0] + self.offset[0], cube[1] + self.offset[1], cube[2] + self.GRASP_DZ])
        xy_error = float(np.linalg.norm(grasp[:2] - eef[:2]))
        gripper = -1.0
        if self._closing >= self.CLOSE_STEPS:
            target, gripper = np.array([grasp[0], grasp[1], self._rest_z + self.LIFT_HEIGHT]), 1.0
            if xy_error > 3 * self.XY_TOL and cube[2] < self._rest_z + 0.01:  # the cube slipped: start over
                self._closing = 0
        elif xy_error > self.XY_TOL and self._closing == 0:
            target = np.array([grasp[0], grasp[1], max(grasp[2] + self.HOVER, eef[2])])
            if xy_error < 3 * self.XY_TOL:
                target[2] = grasp[2] + self.HOVER
        elif abs(eef[2] - grasp[2]) > self.Z_TOL and self._closing == 0:
            target = grasp
        else:
            target, gripper = grasp, 1.0
            self._closing += 1
        action = np.zeros(7)
        action[:3] = self._command(target - eef) if gripper < 0 or self._closing >= self.CLOSE_STEPS else 0.0
        action[6] = gripper
        return np.clip(action, -1.0, 1.0).astype(np.float32)
