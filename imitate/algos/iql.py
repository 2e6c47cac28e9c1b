"""Implicit Q-learning (Kostrikov, Nair and Levine, 2021) with any head as the actor.

    V:      expectile regression of V(s) on min_j Q_target_j(s, a)      (tau = algo.expectile, 0.7)
    Q:      Q_j(s, a) -> r + gamma^k (1 - terminal) V(s')               (never queries an unseen action)
    actor:  the head's own loss, each row weighted by exp(beta * (min_j Q_target_j(s, a) - V(s))),
            clipped at algo.max_weight (advantage-weighted regression; beta 3 by default)

The actor is trained by `Policy.compute_loss(..., weight)`, so every head can be IQL's actor: a
mixture or diffusion actor keeps the modes of the good behaviour where a Gaussian would average them.
The weighted loss is a weighted mean over rows (`policy_heads.base.weighted_mean`), so the weights
decide which rows count, not the step size.
"""
from __future__ import annotations

import torch

from imitate.algos.critics import (Critics, OfflineAlgorithm, Transitions, awr_weights, check_weighted_loss,
                                   expectile_loss, normalize_obs)



class IQL(OfflineAlgorithm):
    name = "iql"
    needs_value = True
    default_beta = 3.0

    def __init__(self, policy, critics: Critics, cfg, algo):
        check_weighted_loss(policy.head, self.name)
        super().__init__(policy, critics, cfg, algo)
        self.add_optimizer("v", critics.v.parameters(), algo.critic_lr)

    def update(self, batch: Transitions, step: int) -> dict[str, torch.Tensor]:
        policy, critics, algo = self.policy, self.critics, self.algo
        obs, next_obs = normalize_obs(policy, batch.obs), normalize_obs(policy, batch.next_obs)
        action = policy.normalizer.normalize("action", batch.action)

        with torch.no_grad():
            q_target = critics.q_min(obs, action, target=True)
        value = critics.value(obs)
        v_loss = expectile_loss(q_target - value, algo.expectile)
        self.step_optimizer("v", v_loss)

        with torch.no_grad():
            target = batch.reward + batch.discount * critics.value(next_obs)
        q = critics.q_values(obs, action)
        q_loss = (q - target).square().mean(1).sum()
        self.step_optimizer("q", q_loss)

        weight = awr_weights(q_target - value.detach(), self.beta, algo.max_weight)
        actor_loss, info = policy.compute_loss(batch.obs, batch.action, batch.action_mask, weight)
        self.step_actor(actor_loss, step)
        critics.update_targets(algo.polyak)
        return {"actor_loss": actor_loss.detach(), "q_loss": q_loss.detach(), "v_loss": v_loss.detach(),
                "q_mean": q.detach().mean(), "v_mean": value.detach().mean(), "weight_mean": weight.mean(),
                "weight_clipped": (weight >= algo.max_weight).float().mean(),
                **{f"head/{k}": v for k, v in info.items()}}
