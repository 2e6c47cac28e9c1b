"""Maximum causal entropy IRL (Ziebart et al., 2010) with exact soft value iteration on a tabular task.

The reward is linear in state features, r(s) = phi(s) . w: the task's own features (GridWorld: the
one-hot terrain of a cell), or one-hot states (one weight per state, `features="onehot"`). The model of the demonstrator is the discounted maximum-causal-entropy policy:

    soft value iteration   Q(s, a) = r(s) + gamma * sum_s' P(s'|s, a) V(s')
                           V(s)    = log sum_a exp Q(s, a)                 (iterated to a fixed point)
                           pi(a|s) = exp(Q(s, a) - V(s))
    visitation             d_0 = the demos' first states,  d_{t+1}(s') = sum_{s, a} d_t(s) pi(a|s) P(s'|s, a)
                           mu_pi = sum_{t < H} gamma^t d_t . phi        (the expected discounted features)
    gradient (ascent)      d log-likelihood / dw = mu_expert - mu_pi - l2 * w

mu_expert is the same discounted sum over the demonstrations' first H steps, averaged over
trajectories. d_0 is the empirical distribution of the demonstrations' first states (not the task's
start distribution): both sums then start from the same states, which removes the start-state
sampling noise from the gradient (with 20 demos it is most of the noise). The weights follow Adam
on that gradient. Reported: the Pearson correlation of the recovered and true rewards over all
states, the exact expected discounted return (under the true reward, from the task's start
distribution) of the policy optimal for the recovered reward, the expert's, and a uniformly random
policy's.

    from imitate.algos.maxent_irl import IRLConfig, run_maxent_irl
    result = run_maxent_irl(IRLConfig(task="imitate/GridWorld-v0", demos=200))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imitate.errors import ConfigError


@dataclass
class IRLConfig:
    """Settings of a maximum-entropy IRL run."""

    task: str = "imitate/GridWorld-v0"
    """A tabular task exposing transition_matrix, true_reward and start_distribution."""
    demos: int = 200
    """Expert trajectories to learn from."""
    horizon: int = 50
    """Steps per trajectory (H)."""
    gamma: float = 0.9
    """Discount of soft value iteration, of the visitation and of the reported returns."""
    iterations: int = 300
    """Gradient steps on the reward weights."""
    lr: float = 0.1
    """Adam step size."""
    l2: float = 0.0
    """L2 penalty on the reward weights."""
    features: str = "task"
    """Reward features: task (the task's own `features`, e.g. GridWorld's one-hot terrain) or onehot (one weight per state)."""
    expert_temperature: float = 0.0
    """0: the optimal (deterministic) expert; > 0: a Boltzmann-rational one, a ~ exp(Q*(s, a) / T)."""
    seed: int = 0
    """Seed of the demonstration rollouts."""
    out: str = ""
    """Directory to write reward.json and metrics.jsonl into (empty: write nothing)."""


def soft_value_iteration(P: np.ndarray, reward: np.ndarray, gamma: float, tol: float = 1e-10,
                         max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft Q (S, A), V (S,) and the policy pi (S, A) for transitions P (S, A, S) and state reward (S,)."""
    V = np.zeros(P.shape[0])
    for _ in range(max_iter):
        Q = reward[:, None] + gamma * P @ V
        top = Q.max(1)
        V_new = top + np.log(np.exp(Q - top[:, None]).sum(1))
        if np.abs(V_new - V).max() < tol:
            V = V_new
            break
        V = V_new
    Q = reward[:, None] + gamma * P @ V
    return Q, V, np.exp(Q - V[:, None])


def discounted_visitation(P: np.ndarray, policy: np.ndarray, start: np.ndarray, gamma: float, horizon: int) -> np.ndarray:
    """sum_{t < horizon} gamma^t d_t (S,), with d_0 = start and d_{t+1} = d_t pi P."""
    d, total = start.copy(), np.zeros_like(start)
    step = np.einsum("sa,sax->sx", policy, P)  # state-to-state matrix under the policy
    for t in range(horizon):
        total += gamma**t * d
        d = d @ step
    return total


def policy_value(P: np.ndarray, policy: np.ndarray, reward: np.ndarray, start: np.ndarray, gamma: float) -> float:
    """Exact expected discounted return sum_t gamma^t r(s_t) of a policy (S, A) from ``start`` (infinite horizon)."""
    step = np.einsum("sa,sax->sx", policy, P)
    V = np.linalg.solve(np.eye(len(reward)) - gamma * step, reward)
    return float(start @ V)


def expert_trajectories(env, expert, n: int, horizon: int, seed: int) -> np.ndarray:
    """States (n, horizon) visited by ``expert`` in ``env``, episode i reset with seed + i."""
    states = np.zeros((n, horizon), dtype=np.int64)
    for i in range(n):
        s, _ = env.reset(seed=seed + i)
        expert.reset(seed + i)
        for t in range(horizon):
            states[i, t] = s
            s, *_ = env.step(int(expert.act(s)[0]))
    return states


def maxent_irl(P: np.ndarray, features: np.ndarray, states: np.ndarray, cfg: IRLConfig,
               on_step: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Reward weights (K,) for features (S, K) that explain the demonstrated states (N, H)."""
    H = states.shape[1]
    start = np.bincount(states[:, 0], minlength=P.shape[0]) / len(states)
    discounts = cfg.gamma ** np.arange(H)
    mu_expert = (discounts[None, :, None] * features[states]).sum(1).mean(0)
    w = np.zeros(features.shape[1])
    m, v = np.zeros_like(w), np.zeros_like(w)
    b1, b2 = 0.9, 0.999
    for i in range(1, cfg.iterations + 1):
        _, _, pi = soft_value_iteration(P, features @ w, cfg.gamma)
        mu_pi = discounted_visitation(P, pi, start, cfg.gamma, H) @ features
        grad = mu_expert - mu_pi - cfg.l2 * w
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2
        w = w + cfg.lr * (m / (1 - b1**i)) / (np.sqrt(v / (1 - b2**i)) + 1e-8)
        if on_step is not None:
            on_step(i, w)
    return w


def run_maxent_irl(cfg: IRLConfig, on_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Collect expert demonstrations on ``cfg.task``, recover a reward, report how well it matches."""
    from imitate.envs import make_env, make_expert

    env = make_env(cfg.task)
    base = env.unwrapped
    if not all(hasattr(base, k) for k in ("transition_matrix", "true_reward", "start_distribution")):
        raise ConfigError(f"--task {cfg.task}: maximum-entropy IRL needs a tabular task exposing transition_matrix, "
                          f"true_reward and start_distribution (e.g. imitate/GridWorld-v0)")
    if cfg.demos < 1 or cfg.iterations < 1 or cfg.horizon < 1:
        raise ConfigError("--demos, --iterations and --horizon must be at least 1")
    P, true_r, start = base.transition_matrix, base.true_reward, base.start_distribution
    expert = make_expert(cfg.task, env_kwargs={"gamma": cfg.gamma},
                         **({"temperature": cfg.expert_temperature} if cfg.expert_temperature else {}))
    states = expert_trajectories(base, expert, cfg.demos, cfg.horizon, cfg.seed)
    if cfg.features not in ("task", "onehot"):
        raise ConfigError(f"--features {cfg.features!r}: choose task or onehot")
    features = np.eye(len(true_r)) if cfg.features == "onehot" or not hasattr(base, "features") else base.features

    def step(i: int, w: np.ndarray) -> None:
        if on_log is not None and (i % 50 == 0 or i == cfg.iterations):
            on_log({"iteration": i, "reward_correlation": float(np.corrcoef(features @ w, true_r)[0, 1])})

    w = maxent_irl(P, features, states, cfg, step)
    recovered = features @ w
    from imitate.envs.gridworld import value_iteration

    greedy = np.eye(P.shape[1])[value_iteration(P, recovered, cfg.gamma)[0].argmax(1)]
    optimal = np.eye(P.shape[1])[value_iteration(P, true_r, cfg.gamma)[0].argmax(1)]
    expert_policy = expert.policy()
    uniform = np.full(optimal.shape, 1.0 / P.shape[1])
    result = {"task": cfg.task, "demos": cfg.demos, "reward_correlation": float(np.corrcoef(recovered, true_r)[0, 1]),
              "return_recovered_policy": policy_value(P, greedy, true_r, start, cfg.gamma),
              "return_expert": policy_value(P, expert_policy, true_r, start, cfg.gamma),
              "return_optimal": policy_value(P, optimal, true_r, start, cfg.gamma),
              "return_random": policy_value(P, uniform, true_r, start, cfg.gamma)}
    span = result["return_expert"] - result["return_random"]
    result["normalized_return"] = (result["return_recovered_policy"] - result["return_random"]) / span if span else None
    if cfg.out:
        from imitate.checkpoint import write_json
        from imitate.config import to_dict

        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "reward.json", {"format": "imitate-tabular-reward/1", "config": to_dict(cfg),
                                         "weights": w.tolist(), "reward": recovered.tolist(), "result": result})
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"final": result}) + "\n")
    env.close()
    return result
