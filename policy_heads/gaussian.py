"""Gaussian head: a diagonal Gaussian over the flattened action chunk.

    features (B, F) --MLP trunk--> mean (B, Ta * A)
                                   log_std (B, Ta * A), squashed into [min_log_std, max_log_std]
                                   (or, with state_dependent_std=False, one learned log_std per entry)

Trained by negative log-likelihood (nats per action entry). `log_prob` sums over all Ta * A
entries; `mode` is the mean. Samples are not clipped to [-1, 1]: clipping would break the
relation between `sample` and `log_prob` that adversarial algorithms rely on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from policy_heads.base import PolicyHead, mlp_trunk, step_mask_to_entries, weighted_mean

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianHead(PolicyHead, name="gaussian"):
    """Diagonal Gaussian with a bounded standard deviation, state-dependent by default."""

    step_cost = 1.1

    @classmethod
    def rl_defaults(cls) -> dict:
        return {"hidden_dims": (64,), "init_std": 0.6, "state_dependent_std": False}

    has_log_prob = True
    has_mode = True

    @dataclass
    class Config:
        hidden_dims: tuple[int, ...] = (256, 256)
        """Widths of the hidden layers of the shared MLP trunk."""
        min_log_std: float = -5.0
        """Lower bound of the log standard deviation (per entry)."""
        max_log_std: float = 2.0
        """Upper bound of the log standard deviation (per entry)."""
        init_std: float = 0.3
        """Standard deviation every entry starts with (must lie inside the bounds)."""
        state_dependent_std: bool = True
        """Predict the standard deviation from the features; False: one learned value per action entry
        (as in most PPO implementations; steadier exploration in RL from scratch)."""

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Config | None = None) -> None:
        super().__init__(feature_dim, action_dim, action_horizon, config)
        cfg = self.config
        if not (cfg.init_std > 0 and cfg.min_log_std < math.log(cfg.init_std) < cfg.max_log_std):
            raise ValueError(
                f"gaussian head: config needs min_log_std < log(init_std) < max_log_std, got "
                f"min_log_std={cfg.min_log_std}, init_std={cfg.init_std}, max_log_std={cfg.max_log_std}"
            )
        dim = action_horizon * action_dim
        self.trunk, width = mlp_trunk(feature_dim, cfg.hidden_dims)
        self.mean = nn.Linear(width, dim)
        # log_std = lo + (hi - lo) * sigmoid(raw); start every entry at init_std.
        fraction = (math.log(cfg.init_std) - cfg.min_log_std) / (cfg.max_log_std - cfg.min_log_std)
        raw = math.log(fraction / (1 - fraction))
        if cfg.state_dependent_std:
            self.log_std = nn.Linear(width, dim)
            nn.init.zeros_(self.log_std.weight)
            nn.init.constant_(self.log_std.bias, raw)
        else:
            self.log_std_raw = nn.Parameter(torch.full((dim,), raw))

    def _distribution(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation, both (B, Ta * A), for features (B, F)."""
        hidden = self.trunk(features)
        lo, hi = self.config.min_log_std, self.config.max_log_std
        mean = self.mean(hidden)
        raw = self.log_std(hidden) if self.config.state_dependent_std else self.log_std_raw.expand_as(mean)
        return mean, lo + (hi - lo) * torch.sigmoid(raw)

    def _entry_log_prob(self, features: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Per-entry log-density (B, Ta * A) of action (B, Ta, A), and the log std (B, Ta * A)."""
        mean, log_std = self._distribution(features)
        z = (rearrange(action, "b t a -> b (t a)") - mean) * torch.exp(-log_std)
        return -0.5 * z.square() - log_std - _LOG_SQRT_2PI, log_std

    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        action, mask = self._check_batch(features, action, mask)
        weight = self._check_weight(features, weight)
        entry_log_prob, log_std = self._entry_log_prob(features, action)
        entries = step_mask_to_entries(mask, self.action_dim)
        if weight is not None:
            nll = -weighted_mean(entry_log_prob, entries, weight)
        elif entries is None:
            nll = -entry_log_prob.mean()
        else:
            kept = torch.where(entries, entry_log_prob, torch.zeros_like(entry_log_prob))
            nll = -kept.sum() / entries.sum().clamp_min(1).to(kept.dtype)
        return nll, {"nll": nll.detach(), "mean_log_std": log_std.detach().mean()}

    def noise_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {"normal": ((self.action_horizon * self.action_dim,), "normal")}

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """mean + std * noise["normal"] (B, Ta * A), reshaped to (B, Ta, A)."""
        self._check_features(features)
        self._check_noise(features, noise)
        mean, log_std = self._distribution(features)
        return rearrange(mean + noise["normal"] * log_std.exp(), "b (t a) -> b t a", t=self.action_horizon)

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        self._check_action(features, action)
        return self._entry_log_prob(features, action)[0].sum(-1)

    def entropy(self, features: Tensor) -> Tensor:
        """Differential entropy (B,) of the chunk distribution for features (B, F), in closed form."""
        self._check_features(features)
        return (self._distribution(features)[1] + 0.5 + _LOG_SQRT_2PI).sum(-1)

    @torch.no_grad()
    def mode(self, features: Tensor) -> Tensor:
        self._check_features(features)
        return rearrange(self._distribution(features)[0], "b (t a) -> b t a", t=self.action_horizon)
