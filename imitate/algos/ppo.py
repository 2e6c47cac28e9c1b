"""PPO for imitate's own Policy: the RL inner loop of GAIL, AIRL and `imitate rl`.

The generator is an ordinary `imitate.policy.Policy` with To = Ta = n_act = 1, so any head with a
log-probability (also for Discrete action spaces, where the head models them) can be trained by RL,
started from a BC run, and loaded back by `imitate.checkpoint.load_policy`.

One iteration, with N vectorized environments and T steps each:

    collect:  obs (N, D) --Policy.encode--> features --head.sample--> u (N, 1, A) normalized action
              env action = unnormalize(u) clipped to the Box (or the index, Discrete)
              stored per step: obs, u, log pi_old(u|s) (N,), V(s) (N,), env reward, terminated,
              truncated, next_obs (the true s' even where the episode ended and the env reset)
    rewards:  the env's, or a learned one (GAIL / AIRL) computed from the stored (s, u, s')
    update:   reward scaling by the running std of the discounted return (as SB3's VecNormalize),
              time-limit bootstrap r += gamma V(s') where truncated, GAE(gamma, lambda),
              `epochs` passes of minibatches: clipped surrogate + vf_coef * value loss - ent_coef * entropy
              (with target_kl > 0, the update stops at the first minibatch whose approximate KL to the
              rollout's policy exceeds 1.5 target_kl)

Entropy: in closed form where the head has ``entropy(features)``; otherwise estimated
from the rollout's actions, with the score-function surrogate -E[stopgrad(log pi) log pi] whose
gradient is the entropy's gradient.

Observations: a flat Box is the Policy's key ``state``; a Dict of float Boxes (imitate's own tasks)
gives one key each, and a rollout stores them flattened side by side (`PPO.split` undoes it).
Observation normalization: the Policy's own ``obs/<key>`` normalizers. With ``obs_stats="running"``
their mean/std are refreshed from all observations seen so far before every rollout (constant within
a rollout and its update), so the saved Policy carries the final statistics; with ``"frozen"``
(GAIL and AIRL: fitted on the demonstrations) they never change. The value network is a separate
MLP on the same normalized observations.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium
import numpy as np
import torch
from torch import nn

from imitate.errors import ConfigError
from imitate.optim import clip_grad_norm, make_optimizer
from imitate.policy import Policy
from imitate.settings import PPOConfig
from imitate.spec import ActionSpec, ObsSpec, PolicySpec


#: Settings known to work per task (from rl-baselines3-zoo), applied under the user's own.
PRESETS: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {"n_envs": 4, "n_steps": 1024, "gamma": 0.9, "gae_lambda": 0.95, "lr": 1e-3, "epochs": 10,
                    "batch_size": 256},
    "CartPole-v1": {"n_envs": 8, "n_steps": 32, "gamma": 0.98, "gae_lambda": 0.8, "lr": 1e-3, "epochs": 20,
                    "batch_size": 256},
}
#: A small encoder for RL from scratch (BC warm starts keep the BC run's own).
RL_ENCODER_DEFAULTS = {"hidden_dims": (64,), "feature_dim": 64}


class RunningMeanStd:
    """Running mean and variance of rows (..., *shape), merged batch by batch (Chan et al.)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.mean.shape)
        n, mean, var = len(x), x.mean(0), x.var(0)
        delta, total = mean - self.mean, self.count + n
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        self.mean, self.count = self.mean + delta * n / total, total


def make_vec_env(env_id: str, n_envs: int, env_kwargs: dict | None = None,
                 wrap: Callable[[gymnasium.Env], gymnasium.Env] | None = None) -> gymnasium.vector.SyncVectorEnv:
    """``n_envs`` copies of ``env_id`` that reset themselves in the step where an episode ends
    (``info["final_obs"]`` then holds that episode's last observation); ``wrap`` (optional) wraps each."""
    from imitate.envs import make_env

    make_env(env_id, env_kwargs).close()  # errors name the id before the vector env wraps them

    def one():
        env = make_env(env_id, env_kwargs)
        return env if wrap is None else wrap(env)

    return gymnasium.vector.SyncVectorEnv([one for _ in range(n_envs)],
                                          autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)


def obs_shapes_of(env_id: str, obs_space: gymnasium.Space) -> dict[str, tuple[int, ...]]:
    """The observation keys PPO reads from a space and their shapes: a flat Box is the key ``state``;
    a Dict of float Boxes gives its own keys (camera images are refused)."""
    if isinstance(obs_space, gymnasium.spaces.Box) and len(obs_space.shape) == 1:
        return {"state": tuple(obs_space.shape)}
    if isinstance(obs_space, gymnasium.spaces.Dict) and obs_space.spaces and all(
            isinstance(v, gymnasium.spaces.Box) and np.issubdtype(v.dtype, np.floating) for v in obs_space.spaces.values()):
        return {k: tuple(v.shape) for k, v in obs_space.spaces.items()}
    raise ConfigError(f"{env_id}: PPO here needs a flat Box observation space or a Dict of float Boxes (low-dim "
                      f"state keys, no camera images), got {obs_space}")


def check_spaces(env_id: str, obs_space: gymnasium.Space, action_space: gymnasium.Space) -> None:
    obs_shapes_of(env_id, obs_space)
    if not isinstance(action_space, (gymnasium.spaces.Box, gymnasium.spaces.Discrete)):
        raise ConfigError(f"{env_id}: PPO here needs a Box or Discrete action space, got {action_space}")


def new_rl_policy(obs_dim: int | dict[str, tuple[int, ...]], action_space: gymnasium.Space, head: str,
                  head_config: dict | None = None, encoder_config: dict | None = None, store=None) -> Policy:
    """A fresh Policy (To = Ta = n_act = 1) for RL: obs ``state`` (obs_dim,) (or, given a dict, one
    key per entry with its shape), actions scaled from the Box's bounds (Discrete: indices). The head
    starts from its small RL settings (`rl_defaults`) under ``head_config``. Observation statistics
    come from ``store`` (the demonstrations of GAIL/AIRL), or stay identity until PPO's running
    statistics replace them."""
    from policy_heads import get_head_class, registered_heads

    try:
        cls = get_head_class(head)
    except ValueError as e:
        raise ConfigError(f"--head: {e}") from None
    if not cls.has_log_prob:
        with_one = [n for n in registered_heads() if get_head_class(n).has_log_prob]
        raise ConfigError(f"--head {head} has no log-probability; PPO needs one ({', '.join(with_one)})")
    if isinstance(action_space, gymnasium.spaces.Discrete):
        action = ActionSpec(1, (int(action_space.n),), norm="identity")
    else:
        action = ActionSpec(int(np.prod(action_space.shape)), (), tuple(map(float, action_space.low.reshape(-1))),
                            tuple(map(float, action_space.high.reshape(-1))))
    shapes = {"state": (int(obs_dim),)} if isinstance(obs_dim, (int, np.integer)) else dict(obs_dim)
    spec = PolicySpec({k: ObsSpec(tuple(v)) for k, v in shapes.items()}, action, 1, 1, 1, head,
                      {**cls.rl_defaults(), **(head_config or {})}, {**RL_ENCODER_DEFAULTS, **(encoder_config or {})})
    return Policy.from_data(spec, store)


class PPO:
    """PPO on ``env_id`` for ``policy`` (To = Ta = 1); `collect` a rollout, then `update` on it.

    Observations are kept flat: a rollout's ``obs`` (T, N, D) is every key the policy reads, flattened
    and concatenated in ``policy.obs_keys`` order (a flat Box task: the one key ``state``, D its size);
    `split` turns rows back into the policy's keys.

    Args:
        policy: the generator; its observation normalizers must be meanstd with ``obs_stats="running"``.
        env_id, env_kwargs: the task (a flat Box or a Dict of float Boxes; Box or Discrete actions).
        cfg: `PPOConfig`.
        obs_stats: "running" (refreshed from the observations seen) or "frozen" (kept as fitted).
        seed: environments are reset with seed, seed + 1, ...; the sampling noise is seeded too.
        wrap: wraps each environment of the vector env (e.g. start states from demonstrations).
    """

    def __init__(self, policy: Policy, env_id: str, cfg: PPOConfig, env_kwargs: dict | None = None,
                 obs_stats: str = "running", seed: int = 0,
                 wrap: Callable[[gymnasium.Env], gymnasium.Env] | None = None):
        if (policy.obs_horizon, policy.action_horizon, policy.n_act) != (1, 1, 1):
            raise ConfigError(f"the generator must have obs_horizon = action_horizon = n_act = 1 (got "
                              f"{policy.obs_horizon}, {policy.action_horizon}, {policy.n_act}); train the BC run with "
                              f"--obs-horizon 1 --action-horizon 1 --n-act 1")
        if obs_stats not in ("running", "frozen"):
            raise ConfigError(f"obs_stats must be 'running' or 'frozen', got {obs_stats!r}")
        self.policy, self.cfg, self.env_id, self.obs_stats = policy, cfg, env_id, obs_stats
        self.envs = make_vec_env(env_id, cfg.n_envs, env_kwargs, wrap)
        self.action_space = self.envs.single_action_space
        check_spaces(env_id, self.envs.single_observation_space, self.action_space)
        self.discrete = isinstance(self.action_space, gymnasium.spaces.Discrete)
        env_shapes = obs_shapes_of(env_id, self.envs.single_observation_space)
        self.dict_obs = isinstance(self.envs.single_observation_space, gymnasium.spaces.Dict)
        wrong = {k: s for k, s in policy.obs_shapes.items() if env_shapes.get(k) != tuple(s)}
        if wrong:
            raise ConfigError(f"the policy reads obs {policy.obs_shapes}, but {env_id} gives {env_shapes}")
        self.layout: list[tuple[str, tuple[int, ...], slice]] = []
        start = 0
        for key in policy.obs_keys:
            size = int(np.prod(policy.obs_shapes[key]))
            self.layout.append((key, tuple(policy.obs_shapes[key]), slice(start, start + size)))
            start += size
        self.obs_dim = start
        self.value = nn.Sequential()
        width = self.obs_dim
        for w in cfg.value_hidden:
            self.value.extend([nn.Linear(width, w), nn.Tanh()])
            width = w
        self.value.append(nn.Linear(width, 1))
        self.params = list(policy.parameters()) + list(self.value.parameters())
        self.optimizer = make_optimizer(self.params, cfg.lr, kind="adam", eps=1e-5)
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.obs = self.flat(self.envs.reset(seed=seed)[0])
        self.obs_rms = RunningMeanStd((self.obs_dim,))
        self.ret_rms, self.disc_return = RunningMeanStd(), np.zeros(cfg.n_envs)
        self.ep_return, self.ep_length = np.zeros(cfg.n_envs), np.zeros(cfg.n_envs, dtype=np.int64)
        self.episodes: list[tuple[int, float, int]] = []  # (env steps at its end, return, length)
        self.successes: list[tuple[int, bool]] = []       # (env steps at its end, info["is_success"]) where given
        self.env_steps, self.updates = 0, 0
        self.on_steps: Callable[[int], None] | None = None  # told of every vector step (progress bars)
        if not self.discrete:
            self.low, self.high = (torch.as_tensor(b.reshape(-1), dtype=torch.float32)
                                   for b in (self.action_space.low, self.action_space.high))

    # -- pieces -----------------------------------------------------------------------------------
    def flat(self, obs) -> np.ndarray:
        """The vector env's observations (N, D) or {key: (N, *shape)} -> (N, D) float32, keys in layout order."""
        if not self.dict_obs:
            return np.asarray(obs, dtype=np.float32)
        return np.concatenate([np.asarray(obs[k], np.float32).reshape(len(obs[k]), -1) for k, _, _ in self.layout], 1)

    def flat_one(self, obs) -> np.ndarray:
        """One environment's observation -> (D,) float32."""
        if not self.dict_obs:
            return np.asarray(obs, dtype=np.float32)
        return np.concatenate([np.asarray(obs[k], np.float32).reshape(-1) for k, _, _ in self.layout])

    def split(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat rows (B, D) -> {key: (B, *shape)}."""
        return {k: obs[:, sl].reshape(len(obs), *shape) for k, shape, sl in self.layout}

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw flat obs (B, D) -> features (B, F)."""
        return self.policy.encode({k: v.unsqueeze(1) for k, v in self.split(obs).items()})

    def normalized(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw flat obs (B, D) -> the Policy's normalized observations, flat (B, D)."""
        if len(self.layout) == 1 and len(self.layout[0][1]) == 1:
            return self.policy.normalizer.normalize(f"obs/{self.layout[0][0]}", obs)
        return torch.cat([self.policy.normalizer.normalize(f"obs/{k}", v).reshape(len(obs), -1)
                          for k, v in self.split(obs).items()], -1)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw flat obs (B, D) -> V(s) (B,) on the Policy's normalized observations."""
        return self.value(self.normalized(obs)).squeeze(-1)

    def env_action(self, u: torch.Tensor) -> np.ndarray:
        """Normalized actions u (B, 1, A) -> what the vector env takes: (B,) indices or (B, A) clipped."""
        if self.discrete:
            return u[:, 0, 0].round().long().clamp(0, self.action_space.n - 1).numpy() + int(self.action_space.start)
        raw = self.policy.normalizer.unnormalize("action", u[:, 0])
        return torch.maximum(torch.minimum(raw, self.high), self.low).numpy().reshape(-1, *self.action_space.shape)

    def refresh_obs_stats(self) -> None:
        """With running statistics: set each key's normalizer to the mean/var of every observation seen."""
        if self.obs_stats == "running" and self.obs_rms.count > 1:
            for k, shape, sl in self.layout:
                self.policy.normalizer.set_meanstd(f"obs/{k}", self.obs_rms.mean[sl].reshape(shape),
                                                   self.obs_rms.var[sl].reshape(shape))

    # -- collect ----------------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self) -> dict[str, torch.Tensor]:
        """One rollout: dict of (T, N, ...) tensors obs, u, log_prob, value, env_reward, terminated,
        truncated, next_obs, and last_obs (N, D) (the observation after the rollout)."""
        self.refresh_obs_stats()
        self.policy.eval()
        T, N = self.cfg.n_steps, self.cfg.n_envs
        A = self.policy.action_dim
        buf = {"obs": torch.zeros(T, N, self.obs_dim), "u": torch.zeros(T, N, 1, A), "log_prob": torch.zeros(T, N),
               "value": torch.zeros(T, N), "env_reward": torch.zeros(T, N), "terminated": torch.zeros(T, N),
               "truncated": torch.zeros(T, N), "next_obs": torch.zeros(T, N, self.obs_dim)}
        for t in range(T):
            obs = torch.as_tensor(self.obs, dtype=torch.float32)
            feats = self.features(obs)
            u = self.policy.head.sample(feats, generator=self.generator)
            buf["obs"][t], buf["u"][t] = obs, u
            buf["log_prob"][t], buf["value"][t] = self.policy.head.log_prob(feats, u), self.values(obs)
            next_obs, reward, terminated, truncated, info = self.envs.step(self.env_action(u))
            next_obs = self.flat(next_obs)
            done = terminated | truncated
            real_next = next_obs.copy()
            if done.any():
                for i in np.flatnonzero(done):
                    real_next[i] = self.flat_one(info["final_obs"][i])
            buf["env_reward"][t] = torch.as_tensor(reward, dtype=torch.float32)
            buf["terminated"][t] = torch.as_tensor(terminated, dtype=torch.float32)
            buf["truncated"][t] = torch.as_tensor(truncated & ~terminated, dtype=torch.float32)
            buf["next_obs"][t] = torch.as_tensor(real_next, dtype=torch.float32)
            self.ep_return += reward
            self.ep_length += 1
            self.env_steps += N
            if self.on_steps is not None:
                self.on_steps(N)
            final_info = info.get("final_info", {})
            for i in np.flatnonzero(done):
                self.episodes.append((self.env_steps, float(self.ep_return[i]), int(self.ep_length[i])))
                if "is_success" in final_info and final_info.get("_is_success", np.ones(N, bool))[i]:
                    self.successes.append((self.env_steps, bool(final_info["is_success"][i])))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
            self.obs = next_obs
        buf["last_obs"] = torch.as_tensor(self.obs, dtype=torch.float32)
        if self.obs_stats == "running":
            self.obs_rms.update(buf["obs"].numpy())
        return buf

    # -- update -----------------------------------------------------------------------------------
    def scale_rewards(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Rewards (T, N) divided by the running std of the discounted return (updated here)."""
        if not self.cfg.norm_reward:
            return rewards
        returns = np.zeros_like(rewards.numpy())
        for t in range(len(rewards)):
            self.disc_return = self.disc_return * self.cfg.gamma + rewards[t].numpy()
            returns[t] = self.disc_return
            self.disc_return = self.disc_return * (1.0 - dones[t].numpy())
        self.ret_rms.update(returns)
        return rewards / float(np.sqrt(self.ret_rms.var + 1e-8))

    @torch.no_grad()
    def advantages(self, buf: dict[str, torch.Tensor], rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and returns (T, N) for rewards (T, N), bootstrapping through time limits."""
        cfg, T = self.cfg, len(rewards)
        done = torch.maximum(buf["terminated"], buf["truncated"])
        rewards = self.scale_rewards(rewards, done)
        if buf["truncated"].any():
            trunc_value = self.values(buf["next_obs"][buf["truncated"].bool()])
            rewards = rewards.clone()
            rewards[buf["truncated"].bool()] += cfg.gamma * trunc_value
        next_value = self.values(buf["last_obs"])
        adv, last = torch.zeros_like(rewards), torch.zeros_like(next_value)
        for t in reversed(range(T)):
            v_next = next_value if t == T - 1 else buf["value"][t + 1]
            keep = 1.0 - done[t]
            delta = rewards[t] + cfg.gamma * v_next * keep - buf["value"][t]
            last = delta + cfg.gamma * cfg.gae_lambda * keep * last
            adv[t] = last
        return adv, adv + buf["value"]

    def update(self, buf: dict[str, torch.Tensor], rewards: torch.Tensor | None = None) -> dict[str, float]:
        """PPO epochs on a rollout with ``rewards`` (T, N) (default: the env's). Returns averaged losses."""
        cfg = self.cfg
        adv, returns = self.advantages(buf, buf["env_reward"] if rewards is None else rewards)
        flat = {k: buf[k].flatten(0, 1) for k in ("obs", "u", "log_prob")}
        adv, returns = adv.flatten(), returns.flatten()
        self.policy.train()
        has_entropy = hasattr(self.policy.head, "entropy")
        sums: dict[str, float] = {}
        n, skipped, stopped = 0, 0, False
        for _ in range(cfg.epochs):
            if stopped:
                break
            order = torch.randperm(len(adv), generator=self.generator)
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                a = adv[idx]
                a = (a - a.mean()) / (a.std() + 1e-8) if len(idx) > 1 else a
                feats = self.features(flat["obs"][idx])
                log_prob = self.policy.head.log_prob(feats, flat["u"][idx])
                log_ratio = log_prob - flat["log_prob"][idx]
                ratio = log_ratio.exp()
                policy_loss = -torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
                value_loss = (self.values(flat["obs"][idx]) - returns[idx]).square().mean()
                if has_entropy:
                    entropy = self.policy.head.entropy(feats).mean()
                    entropy_obj = entropy
                else:  # score-function surrogate: its gradient is the entropy's gradient
                    entropy = -log_prob.detach().mean()
                    entropy_obj = -((log_prob.detach() + entropy) * log_prob).mean()
                loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_obj
                extra = self.extra_loss()
                if extra is not None:
                    loss = loss + extra[0]
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                if cfg.target_kl > 0 and approx_kl > 1.5 * cfg.target_kl:
                    stopped = True
                    break
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if not torch.isfinite(clip_grad_norm(self.params, cfg.max_grad_norm)):
                    skipped += 1                           # a non-finite gradient: no update from this minibatch
                    continue
                self.optimizer.step()
                with torch.no_grad():
                    stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                             "approx_kl": approx_kl,
                             "clip_fraction": ((ratio - 1).abs() > cfg.clip).float().mean(),
                             **(extra[1] if extra is not None else {})}
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                n += 1
        self.policy.eval()
        self.updates += 1
        return {**{f"ppo/{k}": v / max(n, 1) for k, v in sums.items()}, "ppo/early_stop": float(stopped),
                "ppo/minibatches": float(n), "ppo/skipped_minibatches": float(skipped)}

    def extra_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """A term added to every minibatch's loss, and its stats (none here; `imitate.algos.finetune`
        adds the demonstration term). ``self.updates`` counts the updates made before this one."""
        return None

    def recent_success(self, episodes: int = 20) -> float | None:
        """Success rate of the last ``episodes`` finished training episodes that report ``is_success``."""
        done = self.successes[-episodes:]
        return float(np.mean([s for _, s in done])) if done else None

    def recent_return(self, episodes: int = 20) -> float | None:
        """Mean env return of the last ``episodes`` finished training episodes (None before the first)."""
        done = self.episodes[-episodes:]
        return float(np.mean([r for _, r, _ in done])) if done else None

    def close(self) -> None:
        self.envs.close()


def random_return(env_id: str, env_kwargs: dict | None = None, episodes: int = 20, seed: int = 0) -> float:
    """Mean return of a uniformly random policy over ``episodes`` seeded episodes."""
    from imitate.envs import make_env

    env = make_env(env_id, env_kwargs)
    env.action_space.seed(seed)
    total = 0.0
    for i in range(episodes):
        env.reset(seed=seed + i)
        done = False
        while not done:
            _, r, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(r)
            done = terminated or truncated
    env.close()
    return total / episodes


def normalized_return(value: float | None, random: float, expert: float) -> float | None:
    """(return - random) / (expert - random): 0 for the random policy, 1 for the expert."""
    if value is None or not math.isfinite(value) or expert == random:
        return None
    return (value - random) / (expert - random)


RewardFn = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
