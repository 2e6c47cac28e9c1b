"""Gaussian-mixture head: K diagonal Gaussians over the flattened action chunk.

    features (B, F) --MLP trunk--> logits (B, K)          mixture weights = softmax(logits)
                                   means  (B, K, Ta * A)
                                   stds   (B, K, Ta * A)  softplus(raw) + min_std

    log p(a) = logsumexp_k [ log w_k + sum_d log N(a_d; mean_kd, std_kd) ]

With a mask, each component's sum runs over the real entries only, so padded steps change
nothing. The loss is the negative log-likelihood divided by the number of real entries (nats per
entry). `mode` is the mean of the heaviest component; `sample` draws a component, then a Gaussian.
At initialisation the component means are spread over the action box, so that components begin
apart instead of collapsing onto one mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from policy_heads.base import PolicyHead, mlp_trunk, step_mask_to_entries

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MixtureHead(PolicyHead, name="gmm"):
    """Mixture of diagonal Gaussians; multi-modal and with an exact log-likelihood."""

    step_cost = 1.3

    @classmethod
    def rl_defaults(cls) -> dict:
        return {"hidden_dims": (64,), "num_modes": 3, "init_std": 0.5}

    has_log_prob = True
    has_mode = True

    @dataclass
    class Config:
        num_modes: int = 5
        """Number of mixture components K."""
        hidden_dims: tuple[int, ...] = (256, 256)
        """Widths of the hidden layers of the shared MLP trunk."""
        min_std: float = 1e-4
        """Floor added to every component standard deviation."""
        init_std: float = 0.3
        """Standard deviation every component starts with."""
        init_mean_spread: float = 0.8
        """Initial component means are drawn uniformly from [-spread, spread] per entry."""

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Config | None = None) -> None:
        super().__init__(feature_dim, action_dim, action_horizon, config)
        cfg = self.config
        if cfg.num_modes < 1:
            raise ValueError(f"gmm head: config field 'num_modes' must be >= 1, got {cfg.num_modes}")
        if not 0 < cfg.min_std < cfg.init_std:
            raise ValueError(f"gmm head: config needs 0 < min_std < init_std, got min_std={cfg.min_std}, init_std={cfg.init_std}")
        self.dim = action_horizon * action_dim
        self.trunk, width = mlp_trunk(feature_dim, cfg.hidden_dims)
        self.logits = nn.Linear(width, cfg.num_modes)
        self.means = nn.Linear(width, cfg.num_modes * self.dim)
        self.raw_stds = nn.Linear(width, cfg.num_modes * self.dim)
        # Equal weights, means spread over the box, every std at init_std.
        nn.init.zeros_(self.logits.weight)
        nn.init.zeros_(self.logits.bias)
        with torch.no_grad():
            self.means.weight.mul_(0.1)
            self.means.bias.uniform_(-cfg.init_mean_spread, cfg.init_mean_spread)
            self.raw_stds.weight.mul_(0.1)
            excess = cfg.init_std - cfg.min_std
            self.raw_stds.bias.fill_(excess + math.log(-math.expm1(-excess)))  # softplus^-1(excess)

    def _mixture(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log mixture weights (B, K), means (B, K, D) and stds (B, K, D), with D = Ta * A."""
        hidden = self.trunk(features)
        log_weights = F.log_softmax(self.logits(hidden), dim=-1)
        means = rearrange(self.means(hidden), "b (k d) -> b k d", d=self.dim)
        stds = F.softplus(rearrange(self.raw_stds(hidden), "b (k d) -> b k d", d=self.dim)) + self.config.min_std
        return log_weights, means, stds

    def _log_likelihood(self, features: Tensor, action: Tensor, entries: Tensor | None) -> tuple[Tensor, Tensor]:
        """Log-likelihood (B,) of action (B, Ta, A) over the entries (B, D) that are True (all if None).

        Also returns the log mixture weights (B, K) for logging.
        """
        log_weights, means, stds = self._mixture(features)
        flat = rearrange(action, "b t a -> b 1 (t a)")
        entry = -0.5 * ((flat - means) / stds).square() - stds.log() - _LOG_SQRT_2PI  # (B, K, D)
        if entries is not None:
            entry = torch.where(entries.unsqueeze(1), entry, torch.zeros_like(entry))
        return torch.logsumexp(log_weights + entry.sum(-1), dim=-1), log_weights

    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        action, mask = self._check_batch(features, action, mask)
        weight = self._check_weight(features, weight)
        entries = step_mask_to_entries(mask, self.action_dim)
        log_likelihood, log_weights = self._log_likelihood(features, action, entries)
        if weight is None:
            count = log_likelihood.new_tensor(log_likelihood.numel() * self.dim) if entries is None else entries.sum()
            nll = -log_likelihood.sum() / count.clamp_min(1).to(log_likelihood.dtype)
        else:  # a row's log-likelihood sums over its real entries: sum_i w_i (-log p_i) / sum_i w_i n_i
            per_row = torch.full_like(log_likelihood, self.dim) if entries is None else entries.sum(1).to(log_likelihood.dtype)
            count = (per_row * weight).sum()
            nll = -(log_likelihood * weight).sum() / torch.where(count > 0, count, torch.ones_like(count))
        weight_entropy = -(log_weights.exp() * log_weights).sum(-1).mean()
        return nll, {"nll": nll.detach(), "weight_entropy": weight_entropy.detach()}

    def noise_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {"component": ((self.config.num_modes,), "exponential"), "normal": ((self.dim,), "normal")}

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """Component k = argmax_k w_k / E_k with E = noise["component"] (B, K) ~ Exp(1), a draw from the
        weights (what torch.multinomial does for one sample), then mean_k + std_k * noise["normal"] (B, D)."""
        self._check_features(features)
        self._check_noise(features, noise)
        log_weights, means, stds = self._mixture(features)
        component = (log_weights.exp() / noise["component"]).argmax(-1, keepdim=True)  # (B, 1)
        index = component.unsqueeze(-1).expand(-1, 1, self.dim)
        mean, std = means.gather(1, index).squeeze(1), stds.gather(1, index).squeeze(1)
        return rearrange(mean + std * noise["normal"], "b (t a) -> b t a", t=self.action_horizon)

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        self._check_action(features, action)
        return self._log_likelihood(features, action, None)[0]

    @torch.no_grad()
    def mode(self, features: Tensor) -> Tensor:
        self._check_features(features)
        log_weights, means, _ = self._mixture(features)
        index = log_weights.argmax(-1).view(-1, 1, 1).expand(-1, 1, self.dim)
        return rearrange(means.gather(1, index).squeeze(1), "b (t a) -> b t a", t=self.action_horizon)
