"""AWAC, advantage-weighted actor-critic (Nair, Gupta, Dalal and Levine, 2020), with any head as the actor.

    Q:      Q_j(s, a) -> r + gamma^k (1 - terminal) min_j Q_target_j(s', a'),  a' ~ pi(s')  (the head's sample)
    actor:  the head's own loss, each row weighted by exp(beta * A(s, a)), clipped at algo.max_weight,
            A(s, a) = min_j Q_j(s, a) - min_j Q_j(s, a~pi(s))  (one policy sample estimates V; beta 1)

It needs only the head's `sample` and its weighted loss, so every head can be AWAC's actor; it is
also the algorithm made for continuing online (`imitate offline --online-steps`).
"""
from __future__ import annotations

import torch

from imitate.algos.critics import (Critics, OfflineAlgorithm, Transitions, awr_weights, check_weighted_loss,
                                   normalize_obs)



class AWAC(OfflineAlgorithm):
    name = "awac"
    needs_value = False
    default_beta = 1.0

    def __init__(self, policy, critics: Critics, cfg, algo):
        check_weighted_loss(policy.head, self.name)
        super().__init__(policy, critics, cfg, algo)

    def update(self, batch: Transitions, step: int) -> dict[str, torch.Tensor]:
        policy, critics, algo = self.policy, self.critics, self.algo
        obs, next_obs = normalize_obs(policy, batch.obs), normalize_obs(policy, batch.next_obs)
        action = policy.normalizer.normalize("action", batch.action)

        with torch.no_grad():
            next_action = policy.head.sample(policy.encode(batch.next_obs))
            target = batch.reward + batch.discount * critics.q_min(next_obs, next_action, target=True)
        q = critics.q_values(obs, action)
        q_loss = (q - target).square().mean(1).sum()
        self.step_optimizer("q", q_loss)

        with torch.no_grad():
            baseline = critics.q_min(obs, policy.head.sample(policy.encode(batch.obs)))
            advantage = critics.q_min(obs, action) - baseline
        weight = awr_weights(advantage, self.beta, algo.max_weight)
        actor_loss, info = policy.compute_loss(batch.obs, batch.action, batch.action_mask, weight)
        self.step_actor(actor_loss, step)
        critics.update_targets(algo.polyak)
        return {"actor_loss": actor_loss.detach(), "q_loss": q_loss.detach(), "q_mean": q.detach().mean(),
                "advantage_mean": advantage.mean(), "weight_mean": weight.mean(),
                "weight_clipped": (weight >= algo.max_weight).float().mean(),
                **{f"head/{k}": v for k, v in info.items()}}
