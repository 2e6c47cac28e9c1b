"""Deterministic head: an MLP regresses the whole action chunk.

    features (B, F) --MLP--> (B, Ta * A) --reshape--> chunk (B, Ta, A)

Trained with mean squared error (or L1); `sample` and `mode` both return the prediction, so the
head has no randomness and no log-probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from policy_heads.base import PolicyHead, mlp, weighted_mean


class DeterministicHead(PolicyHead, name="deterministic"):
    """Regression of the action chunk; the classic behaviour-cloning baseline."""

    has_log_prob = False
    has_mode = True

    @dataclass
    class Config:
        hidden_dims: tuple[int, ...] = (256, 256)
        """Widths of the hidden layers of the MLP."""
        loss: str = "mse"
        """Regression loss: "mse" (squared error) or "l1" (absolute error)."""

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Config | None = None) -> None:
        super().__init__(feature_dim, action_dim, action_horizon, config)
        if self.config.loss not in ("mse", "l1"):
            raise ValueError(f"deterministic head: config field 'loss' must be 'mse' or 'l1', got {self.config.loss!r}")
        self.net = mlp(feature_dim, self.config.hidden_dims, action_horizon * action_dim)

    def _predict(self, features: Tensor) -> Tensor:
        """Predicted chunk (B, Ta, A) for features (B, F)."""
        return rearrange(self.net(features), "b (t a) -> b t a", t=self.action_horizon)

    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        action, mask = self._check_batch(features, action, mask)
        weight = self._check_weight(features, weight)
        error = self._predict(features) - action  # (B, Ta, A)
        per_step = error.square().mean(-1) if self.config.loss == "mse" else error.abs().mean(-1)  # (B, Ta)
        loss = weighted_mean(per_step, mask, weight)
        return loss, {self.config.loss: loss.detach()}

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """The prediction (B, Ta, A); the head takes no noise (`noise_spec()` is empty)."""
        self._check_features(features)
        return self._predict(features)

    @torch.no_grad()
    def mode(self, features: Tensor) -> Tensor:
        self._check_features(features)
        return self._predict(features)
