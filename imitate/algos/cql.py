"""Conservative Q-learning (Kumar, Zhou, Tucker and Levine, 2020) with a SAC-style actor.

    Q:       Q_j(s, a) -> r + gamma^k (1 - terminal) min_j Q_target_j(s', a'),  a' ~ pi(s')
             + cql_alpha * (logmeanexp over sampled actions of Q_j(s, .) - Q_j(s, a_data))
             the sampled actions: cql_samples from the uniform box [-1, 1] and as many from the
             policy at s and at s' (the CQL(H) penalty, without importance weights)
    actor:   gaussian: minimise cql_entropy * log pi(a|s) - min_j Q_j(s, a), a = mean + std * noise
             (reparameterized); deterministic: minimise -min_j Q_j(s, pi(s))

The actor's gradient flows through the sampled action, which only a reparameterized sample gives:
the gaussian head (mean + std * noise) and the deterministic head (the prediction itself). A head
whose sample draws discrete choices (gmm's component, autoregressive tokens) or runs a denoising
chain (diffusion, flow) is refused with the reason; IQL and AWAC train every head.
"""
from __future__ import annotations

import math

import torch

from imitate.algos.critics import Critics, OfflineAlgorithm, Transitions, normalize_obs

from imitate.errors import ConfigError
from imitate.settings import CQL_ACTOR_HEADS

#: Heads whose sample is a differentiable function of the weights given the noise: the prediction itself
#: (deterministic), mean + std * noise (gaussian).
REPARAMETERIZED = CQL_ACTOR_HEADS


def check_head(head_name: str) -> None:
    if head_name not in REPARAMETERIZED:
        raise ConfigError(f"--algo cql trains a SAC-style actor through the sampled action, which needs a "
                          f"reparameterized sample; the '{head_name}' head has none (its sample is not a "
                          f"differentiable function of its weights). Heads that have one: "
                          f"{', '.join(REPARAMETERIZED)}; or use --algo iql / awac, which train every head")


class CQL(OfflineAlgorithm):
    name = "cql"
    needs_value = False
    default_beta = 0.0

    def __init__(self, policy, critics: Critics, cfg, algo):
        check_head(policy.head.name)
        if algo.cql_samples < 1:
            raise ConfigError(f"algo.cql_samples must be at least 1 (got {algo.cql_samples})")
        super().__init__(policy, critics, cfg, algo)

    def update(self, batch: Transitions, step: int) -> dict[str, torch.Tensor]:
        policy, critics, algo = self.policy, self.critics, self.algo
        head = policy.head
        obs, next_obs = normalize_obs(policy, batch.obs), normalize_obs(policy, batch.next_obs)
        action = policy.normalizer.normalize("action", batch.action)
        b, n = action.shape[0], algo.cql_samples

        # Each observation is encoded once (policy and every Q-network); the n sampled actions per row
        # reuse its features repeated n times. The actor's step below reuses the policy's features: the
        # Q step leaves the policy's weights as they are.
        features = policy.encode(batch.obs)
        with torch.no_grad():
            next_features = policy.encode(batch.next_obs)
            next_action = head.sample(next_features)
            target = batch.reward + batch.discount * critics.q_min(next_obs, next_action, target=True)
        q_features = critics.q_features(obs)
        q = critics.q_scores(q_features, action)
        td_loss = (q - target).square().mean(1).sum()

        uniform = torch.rand(b * n, critics.n_act, action.shape[2], device=action.device) * 2 - 1
        with torch.no_grad():
            here = head.sample(features.detach().repeat_interleave(n, 0))
            there = head.sample(next_features.repeat_interleave(n, 0))
        candidates = torch.cat([uniform, here[:, :critics.n_act], there[:, :critics.n_act]])   # (3 B n, n_act, A)
        repeated = [f.repeat_interleave(n, 0).repeat(3, 1) for f in q_features]
        sampled = critics.q_scores(repeated, candidates).view(-1, 3, b, n).permute(0, 2, 1, 3).reshape(-1, b, 3 * n)
        logmeanexp = torch.logsumexp(sampled, dim=-1) - math.log(sampled.shape[-1])   # (K, B)
        penalty = (logmeanexp - q).mean(1).sum()
        q_loss = td_loss + algo.cql_alpha * penalty
        self.step_optimizer("q", q_loss)

        chunk = head.sample_with_noise(features, head.draw_noise(b, None, features.device, features.dtype))
        actor_loss = -critics.q_min(obs, chunk)
        if head.has_log_prob and algo.cql_entropy:
            actor_loss = actor_loss + algo.cql_entropy * head.log_prob(features, chunk)
        actor_loss = actor_loss.mean()
        self.step_actor(actor_loss, step)
        critics.update_targets(algo.polyak)
        return {"actor_loss": actor_loss.detach(), "q_loss": q_loss.detach(), "td_loss": td_loss.detach(),
                "cql_penalty": penalty.detach(), "q_mean": q.detach().mean()}
