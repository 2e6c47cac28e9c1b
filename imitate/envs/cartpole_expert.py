"""A scripted expert for ``CartPole-v1`` (discrete actions: 0 pushes left, 1 pushes right)."""
from __future__ import annotations

import numpy as np


class CartPoleExpert:
    """Balances ``CartPole-v1`` for its full 500 steps with a linear state-feedback law.

    With obs = [x, x', θ, θ'] (θ from upright, positive leaning right), the cart is pushed right
    (action 1) when ``GAINS · obs > 0``: towards the side the pole leans to, with smaller terms
    that pull the cart back towards the centre. Deterministic and stateless.

    Args:
        env_kwargs: the kwargs given to ``gym.make("CartPole-v1", ...)``; none are used.
    """

    GAINS = np.array([0.1, 0.5, 10.0, 2.0])

    def __init__(self, env_kwargs: dict | None = None):
        unknown = sorted(k for k in (env_kwargs or {}) if k not in ("render_mode", "sutton_barto_reward"))
        if unknown:
            raise ValueError(f"CartPoleExpert: env_kwargs {unknown} are not CartPole-v1 arguments")

    def reset(self, seed: int | None = None) -> None:
        """The controller has no per-episode choices."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Action index (1,) float32 for ``obs`` = [x, x', θ, θ'] (4,)."""
        return np.array([float(np.dot(self.GAINS, np.asarray(obs, dtype=np.float64).reshape(4)) > 0)], np.float32)
