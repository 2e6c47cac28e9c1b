"""The critics that IQL, AWAC and CQL share, on the same observations as the policy.

    normalized obs {key: (B, To, *shape)} --own encoder--> (B, F) --+-- executed chunk (B, n_act * A)
                                                                    +--MLP--> Q_j(s, a)   j = 1..K (clipped double Q: min)
    normalized obs --own encoder--> (B, F) --MLP--> V(s)

Every network has its own observation encoder (imitate.encoders' class, the policy's encoder
settings, separate weights) and reads the observations normalized by the policy's normalizer (its
statistics are the policy's, never trained here). The Q ensemble has target copies updated by
Polyak averaging.

Action chunks: with Ta > 1 a policy executes the first ``n_act`` actions of each chunk before it
plans again, so one decision is that executed chunk. A critic scores it:

    Q(s_t, a_t..a_{t+n-1}) = sum_{j<k} gamma^j r_{t+j} + gamma^k (1 - terminal) V(s_{t+k})

with k = n_act, or fewer where the episode ends inside the chunk (k = the steps left). n_act = 1
is the usual one-step critic. `Transitions` holds one batch of such decisions.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from imitate.config import apply_overrides
from imitate.encoders import EncoderConfig, make_encoder
from imitate.errors import ConfigError
from imitate.spec import PolicySpec
from policy_heads.base import mlp


@dataclass
class Transitions:
    """One batch of decisions (torch tensors; raw, unnormalized values).

    Attributes:
        obs: key -> (B, To, *shape), the window the decision was taken from.
        action: (B, Ta, A), the chunk the data holds (the policy's regression target).
        action_mask: (B, Ta) bool, False past the episode's end.
        reward: (B,) discounted sum of the rewards of the executed steps (k <= n_act of them), scaled.
        discount: (B,) gamma^k, 0 where the episode terminated inside the executed steps.
        next_obs: key -> (B, To, *shape), the window k steps later (the bootstrap state).
    """

    obs: dict
    action: Tensor
    action_mask: Tensor
    reward: Tensor
    discount: Tensor
    next_obs: dict

    def to(self, device) -> "Transitions":
        return Transitions({k: v.to(device) for k, v in self.obs.items()}, self.action.to(device),
                           self.action_mask.to(device), self.reward.to(device), self.discount.to(device),
                           {k: v.to(device) for k, v in self.next_obs.items()})


class StateNet(nn.Module):
    """Own observation encoder, then an MLP to one number: V(s) (``action_width`` 0) or Q(s, a)."""

    def __init__(self, spec: PolicySpec, hidden: tuple[int, ...], action_width: int):
        super().__init__()
        config = apply_overrides(EncoderConfig(), dict(spec.encoder_config), "encoder")
        self.encoder = make_encoder(spec, config)
        self.action_width = action_width
        self.net = mlp(self.encoder.feature_dim + action_width, tuple(hidden), 1)

    def forward(self, obs: Mapping[str, Tensor], action: Tensor | None = None) -> Tensor:
        """obs normalized {key: (B, To, *shape)}, action normalized (B, n_act, A) for Q -> (B,)."""
        return self.score(self.encoder(obs), action)

    def score(self, features: Tensor, action: Tensor | None = None) -> Tensor:
        """The MLP alone, on this network's encoder features (B, F): several actions per observation
        are scored by repeating the features, not by encoding the observation again."""
        if self.action_width:
            features = torch.cat([features, action.reshape(action.shape[0], -1)], dim=-1)
        return self.net(features).squeeze(-1)


class Critics(nn.Module):
    """K Q-networks with target copies, and V(s) where the algorithm uses one (IQL).

    Args:
        spec: the policy's description (observation keys and shapes, To, the encoder settings, A).
        n_q: K, the size of the Q ensemble (2: clipped double Q).
        hidden: hidden widths of each critic's MLP after its encoder.
        n_act: actions of a chunk a Q-network scores (the executed ones).
        with_v: also build V(s).
    """

    def __init__(self, spec: PolicySpec, n_q: int = 2, hidden: tuple[int, ...] = (256, 256), n_act: int = 1,
                 with_v: bool = True):
        super().__init__()
        if n_q < 1:
            raise ConfigError(f"algo.n_q must be at least 1 (got {n_q})")
        self.n_act = n_act
        width = n_act * spec.action.dim
        self.q = nn.ModuleList([StateNet(spec, hidden, width) for _ in range(n_q)])
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = StateNet(spec, hidden, 0) if with_v else None

    def q_values(self, obs: Mapping[str, Tensor], action: Tensor, target: bool = False) -> Tensor:
        """(K, B): every Q-network's value of the executed chunk ``action[:, :n_act]`` (normalized)."""
        executed = action[:, :self.n_act]
        return torch.stack([q(obs, executed) for q in (self.q_target if target else self.q)])

    def q_features(self, obs: Mapping[str, Tensor]) -> list[Tensor]:
        """Each Q-network's encoder features of ``obs`` [(B, F)] * K, for `q_scores`."""
        return [q.encoder(obs) for q in self.q]

    def q_scores(self, features: list[Tensor], action: Tensor) -> Tensor:
        """(K, N): `q_values` from `q_features` (rows of ``features[j]`` and ``action`` paired)."""
        executed = action[:, :self.n_act]
        return torch.stack([q.score(f, executed) for q, f in zip(self.q, features)])

    def q_min(self, obs: Mapping[str, Tensor], action: Tensor, target: bool = False) -> Tensor:
        """(B,): the smallest of the K values (clipped double Q)."""
        return self.q_values(obs, action, target).min(0).values

    def value(self, obs: Mapping[str, Tensor]) -> Tensor:
        """V(s) (B,)."""
        return self.v(obs)

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Polyak averaging: target <- (1 - tau) target + tau online."""
        torch._foreach_lerp_(list(self.q_target.parameters()), list(self.q.parameters()), tau)


def expectile_loss(diff: Tensor, tau: float) -> Tensor:
    """Mean of |tau - 1(diff < 0)| * diff^2: the asymmetric squared loss whose minimiser over a
    constant is the tau-expectile of the targets (diff = target - prediction)."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.square()).mean()


def awr_weights(advantage: Tensor, beta: float, max_weight: float) -> Tensor:
    """exp(beta * A) clipped at ``max_weight`` (B,), detached: advantage-weighted regression's weights."""
    return torch.exp(beta * advantage.detach()).clamp(max=max_weight)


def normalize_obs(policy, obs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Raw observations -> normalized by the policy's normalizer (what every network here reads); camera
    keys stay uint8 (each encoder scales and crops them itself, as the policy's does)."""
    images = policy.image_keys
    return {k: obs[k] if k in images else policy.normalizer.normalize(f"obs/{k}", obs[k]) for k in policy.obs_keys}


def check_weighted_loss(head, algo: str) -> None:
    """ConfigError naming the head and the algorithm when the head's loss takes no per-row weight."""
    if "weight" not in inspect.signature(head.loss).parameters:
        raise ConfigError(f"--algo {algo} trains the actor by advantage-weighted regression, which needs per-row "
                          f"weights in the head's loss, loss(features, action, mask, weight); the '{head.name}' "
                          f"head's loss takes no weight argument")


class OfflineAlgorithm:
    """What IQL, AWAC and CQL share: the actor (the policy) and its optimizer, the critics and theirs.

    A subclass sets ``name``, ``needs_value`` (it trains V) and ``default_beta``, and implements
    ``update(batch, step) -> info`` (detached 0-dim tensors); `imitate.algos.offline` runs the loop,
    checkpoints every optimizer in `optimizers` and resumes them.
    """

    name: str = ""
    needs_value: bool = False
    default_beta: float = 1.0

    def __init__(self, policy, critics: Critics, cfg, algo):
        from imitate.optim import make_optimizer

        self.policy, self.critics, self.cfg, self.algo = policy, critics, cfg, algo
        self.beta = algo.beta if algo.beta >= 0 else self.default_beta
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._params: dict[str, list[nn.Parameter]] = {}
        self._make = make_optimizer
        self.add_optimizer("actor", policy.parameters(), cfg.lr, cfg.weight_decay, "adamw")
        self.add_optimizer("q", critics.q.parameters(), algo.critic_lr)

    def add_optimizer(self, name: str, params, lr: float, weight_decay: float = 0.0, kind: str = "adam") -> None:
        self._params[name] = [p for p in params if p.requires_grad]
        self.optimizers[name] = self._make(self._params[name], lr, weight_decay, kind=kind)

    def step_optimizer(self, name: str, loss: Tensor) -> bool:
        """Backward, clip, step; a non-finite gradient norm skips the step (returns False)."""
        from imitate.optim import clip_grad_norm

        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_grad_norm(self._params[name], self.cfg.grad_clip)
        if not bool(torch.isfinite(norm)):
            return False
        optimizer.step()
        return True

    def step_actor(self, loss: Tensor, step: int) -> bool:
        """The actor's step at the learning rate of ``step`` (warm-up, then cosine decay over the run)."""
        from imitate.optim import lr_at

        total = self.cfg.steps + self.cfg.online_steps
        for group in self.optimizers["actor"].param_groups:
            group["lr"] = lr_at(step, self.cfg.lr, self.cfg.warmup_steps, total)
        return self.step_optimizer("actor", loss)

    def update(self, batch: Transitions, step: int) -> dict[str, Tensor]:
        raise NotImplementedError
