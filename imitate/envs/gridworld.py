"""``imitate/GridWorld-v0``: a tabular task with known dynamics and a known reward, for inverse RL.

An ``size`` x ``size`` grid (default 8 x 8, state s = row * size + col, row 0 at the top). Actions:

    0 up   1 down   2 left   3 right   4 stay

A move succeeds with probability 1 - ``slip``; otherwise the agent moves in one of the four
directions drawn uniformly (a move into the border leaves it in place). The reward of a step is
the reward of the state it starts from, R[s] (state-only, as maximum-entropy IRL models it):

    s s s s . . . .        G  +1.0   the goal corner (bottom right, 2 x 2)
    s s s s . . . .        g  +0.5   a bonus region (right edge, 2 x 2)
    . . L L . . g g        L  -1.0   lava (a 3 x 2 and a 2 x 2 block)
    . . L L . . g g        .  -0.05  grass, s -0.05 sand
    . . L L . . . .
    . . . . L L . .
    . . . . L L G G
    . . . . . . G G

Episodes start in a uniformly drawn state and last 50 steps (the registered time limit, never a
termination). Everything an IRL algorithm needs is exposed exactly: `transition_matrix` (S, A, S),
`true_reward` (S,), `start_distribution` (S,), and `features` (S, 5), the one-hot terrain of
every state (the true reward is linear in them, with weights `TERRAIN_REWARD`). `GridWorldExpert` acts optimally for the true
reward (value iteration with the discount ``gamma``).
"""
from __future__ import annotations

import gymnasium
import numpy as np

MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]])


TERRAINS = ("grass", "sand", "lava", "bonus", "goal")
TERRAIN_REWARD = np.array([-0.05, -0.05, -1.0, 0.5, 1.0])


def terrain_map(size: int = 8) -> np.ndarray:
    """Terrain index per cell (size, size), see `TERRAINS`: sand in the top-left corner (the same
    reward as grass: a feature the reward does not depend on), two lava blocks, bonus, goal."""
    t = np.zeros((size, size), dtype=np.int64)
    t[:2, :4] = 1
    t[2:5, 2:4] = 2
    t[5:7, 4:6] = 2
    t[2:4, size - 2:] = 3
    t[size - 2:, size - 2:] = 4
    return t


def reward_map(size: int = 8) -> np.ndarray:
    """The true reward (size, size): goal corner +1, bonus region +0.5, lava -1, elsewhere -0.05."""
    return TERRAIN_REWARD[terrain_map(size)]


def transition_matrix(size: int = 8, slip: float = 0.1) -> np.ndarray:
    """P[s, a, s'] (S, 5, S): the intended move with probability 1 - slip, else a uniformly random one of the four moves."""
    n = size * size
    P = np.zeros((n, len(MOVES), n))
    for s in range(n):
        row, col = divmod(s, size)
        dest = [min(max(row + dr, 0), size - 1) * size + min(max(col + dc, 0), size - 1) for dr, dc in MOVES]
        for a in range(len(MOVES)):
            P[s, a, dest[a]] += 1.0 - slip
            for m in range(4):
                P[s, a, dest[m]] += slip / 4
    return P


def value_iteration(P: np.ndarray, reward: np.ndarray, gamma: float, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Optimal Q (S, A) and V (S,) of the state reward (S,): Q = R[s] + gamma * P V."""
    V = np.zeros(P.shape[0])
    while True:
        Q = reward[:, None] + gamma * P @ V
        V_new = Q.max(1)
        if np.abs(V_new - V).max() < tol:
            return Q, V_new
        V = V_new


class GridWorldEnv(gymnasium.Env):
    """The grid world; observations are state indices (Discrete(S)), actions Discrete(5)."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 8, slip: float = 0.1, gamma: float = 0.9, render_mode: str | None = None):
        if size < 4:
            raise ValueError(f"GridWorld: size={size} must be at least 4")
        if not 0 <= slip <= 1:
            raise ValueError(f"GridWorld: slip={slip} must lie in [0, 1]")
        self.size, self.slip, self.gamma, self.render_mode = size, slip, gamma, render_mode
        self.n_states, self.n_actions = size * size, len(MOVES)
        self.observation_space = gymnasium.spaces.Discrete(self.n_states)
        self.action_space = gymnasium.spaces.Discrete(self.n_actions)
        self.transition_matrix = transition_matrix(size, slip)
        self.true_reward = reward_map(size).reshape(-1)
        self.features = np.eye(len(TERRAINS))[terrain_map(size).reshape(-1)]  # (S, 5): one-hot terrain
        self.start_distribution = np.full(self.n_states, 1.0 / self.n_states)
        self._state = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.n_states, p=self.start_distribution))
        return self._state, {}

    def step(self, action):
        reward = float(self.true_reward[self._state])
        self._state = int(self.np_random.choice(self.n_states, p=self.transition_matrix[self._state, int(action)]))
        return self._state, reward, False, False, {}


class GridWorldExpert:
    """Acts optimally for the true reward of ``imitate/GridWorld-v0`` (value iteration, the env's gamma).

    With ``temperature`` > 0 it is Boltzmann-rational instead: it samples a ~ exp(Q*(s, a) / temperature),
    the noisy-optimal demonstrator that inverse RL methods model (``seed`` / `reset` seed its draws).
    """

    def __init__(self, env_kwargs: dict | None = None, temperature: float = 0.0, seed: int | None = None):
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        env = GridWorldEnv(**{k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"})
        self.q, _ = value_iteration(env.transition_matrix, env.true_reward, env.gamma)
        self.temperature = float(temperature)
        self.rng = np.random.default_rng(seed)
        if self.temperature == 0:
            self._policy = np.eye(self.q.shape[1])[self.q.argmax(1)]
        else:
            p = np.exp((self.q - self.q.max(1, keepdims=True)) / self.temperature)
            self._policy = p / p.sum(1, keepdims=True)

    def reset(self, seed: int | None = None) -> None:
        """Reseed the Boltzmann draws (the optimal expert has no per-episode choices)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def policy(self) -> np.ndarray:
        """Action probabilities (S, A) of every state."""
        return self._policy.copy()

    def act(self, obs) -> np.ndarray:
        """Action index (1,) float32 for the state index ``obs``."""
        p = self._policy[int(np.asarray(obs).reshape(-1)[0])]
        return np.array([float(np.argmax(p) if self.temperature == 0 else self.rng.choice(len(p), p=p))], np.float32)
