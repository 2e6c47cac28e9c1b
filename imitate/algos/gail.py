"""GAIL: generative adversarial imitation learning on a demo file, with any head that has a log-probability.

    demo file (obs, actions, next_obs) ----------------------------\\
                                                                  D(s, a [, s']) = sigmoid(logit), expert = 1
    generator Policy --PPO rollouts (s, a, s')--------------------/       |
          ^                                                               v
          \\------- PPO update on r = -log(1 - D(s, a))  (or the logit, `--reward logit`)

Each iteration: one PPO rollout, `disc_epochs` passes of the discriminator over it against as many
expert transitions (binary cross-entropy, optional gradient penalty), then rewards from the updated
discriminator and one PPO update. The discriminator reads the generator's normalized observations
and normalized, clipped actions (one-hot for Discrete actions); see `imitate.algos.adversarial`.

    from imitate.algos.gail import train_gail
    from imitate.algos.adversarial import AdversarialConfig
    train_gail(AdversarialConfig(data="pendulum.hdf5", out="runs/gail", head="gaussian", steps=500_000))
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from imitate.algos.adversarial import AdversarialConfig, run_adversarial
from imitate.algos.state_reward import mlp


class GAILDiscriminator(nn.Module):
    """logit(s, a) = MLP([s, a]) (B,), or over [s, a, s'] with ``use_next_obs``."""

    default_reward = "positive"
    # Without a penalty the discriminator sharpens late in training and PPO's updates blow up
    # (Pendulum-v1, seed 0: 0.97 at 100k env steps, 0.33 at 500k; with 10: 0.99 at 500k).
    default_grad_penalty = 10.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], use_next_obs: bool = False):
        super().__init__()
        self.use_next_obs = use_next_obs
        self.net = mlp(obs_dim * (2 if use_next_obs else 1) + act_dim, hidden)

    def logits(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor,
               log_pi: torch.Tensor) -> torch.Tensor:
        """Normalized obs (B, D), action features (B, A'), next obs (B, D) -> logits (B,); expert = high."""
        parts = [obs, act, next_obs] if self.use_next_obs else [obs, act]
        return self.net(torch.cat(parts, -1)).squeeze(-1)


def train_gail(cfg: AdversarialConfig, ppo_overrides: dict[str, Any] | None = None,
               head_config: dict[str, Any] | None = None, use_next_obs: bool = False, progress: bool = True,
               on_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train a generator by GAIL as ``cfg`` says, in the new run directory ``cfg.out``; return the final metrics.

    The run directory holds what `imitate.algos.rl_loop.run_loop` writes plus ``discriminator.safetensors``.
    """
    from imitate import checkpoint as ckpt

    def save(disc, normalizer, out, meta, seen):
        ckpt.save_weights(out / "discriminator.safetensors", disc)

    return run_adversarial(cfg, "gail", lambda obs_dim, act_dim, gamma: GAILDiscriminator(obs_dim, act_dim, cfg.disc_hidden,
                                                                                         use_next_obs),
                           ppo_overrides, head_config, progress, on_log, save)
