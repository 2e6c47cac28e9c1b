"""The adversarial core shared by GAIL and AIRL: expert transitions, the generator, discriminator
training, learned rewards, and the driver that runs them inside `imitate.algos.rl_loop`. AIRL's saved
state reward is `imitate.algos.state_reward`.

A discriminator here is any module with ``logits(obs, act, next_obs, terminated, log_pi) -> (B,)``
(expert = 1), over inputs normalized by the generator's own (frozen) observation normalizer:

    obs, next_obs (B, D)   normalized observations
    act (B, A')            continuous: the normalized action clipped to [-1, 1]; Discrete: one-hot
    terminated (B,)        1 where s' ended the episode (AIRL's h(s') is then 0)
    log_pi (B,)            log pi(a|s) of the current generator (AIRL; GAIL ignores it)

It is trained by binary cross-entropy on equal-sized expert and generator minibatches, with an
optional zero-centred gradient penalty on random interpolates of the two:
    gp = grad_penalty * E || d logit / d (obs, act, next_obs) ||^2.
With ``disc_replay`` > 0, half of every generator minibatch comes from the last ``disc_replay``
generator transitions of earlier rollouts (their log pi recomputed under the current generator), so
the discriminator keeps ranking the expert's states above every state the generator has visited,
not only above its latest ones.

The learned reward given to PPO is, per ``reward``:
    "positive":  -log(1 - D) = softplus(logit)   always > 0 (the default for GAIL and AIRL)
    "logit":     log D - log(1 - D) = logit      for AIRL f - log pi, the entropy-regularized reward of
                                                 the paper; it is mostly negative, and where episodes
                                                 can end (CartPole) PPO then learns to end them early
PPO then scales it by the running std of its discounted return (`PPOConfig.norm_reward`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imitate.errors import ConfigError, ImitateError
from imitate.settings import AdversarialConfig

# -- data -----------------------------------------------------------------------------------------
def load_expert(path: str, format: str | None = None) -> tuple[dict[str, torch.Tensor], Any]:
    """Transitions of a demo file as raw tensors obs (E, D), actions (E, A), next_obs (E, D),
    terminated (E,), and the store (for env_args and returns). Where the file has no next_obs it is
    the next row of the same demo, and each demo's last step (no known successor) is left out."""
    from imitate.data import load_demo_file

    store = load_demo_file(path, format=format)
    if store.obs_keys != ["state"]:
        raise ImitateError(f"{path}: GAIL/AIRL read flat observations 'obs/state'; the file has obs keys {store.obs_keys}")
    rows = np.flatnonzero(store.next_obs_known())   # a file without next_obs: each demo's last step has no successor
    data = {"obs": store.get("obs/state", rows), "actions": store.get("actions", rows),
            "next_obs": store.get("next_obs/state", rows), "terminated": store.get("dones", rows)}
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in data.items()}, store


def expert_return(store) -> float:
    """Mean episode return of a store (the sum of its rewards per episode)."""
    rewards = store.get("rewards", np.arange(len(store))).astype(np.float64)
    return float(np.mean(np.add.reduceat(rewards, store.episode_starts)))


def make_generator(cfg: AdversarialConfig, obs_dim: int, action_space, store, head_config: dict[str, Any] | None):
    """The generator: the BC run ``cfg.init`` (same head), or a fresh RL policy whose observation
    normalizer is fitted on the demonstrations. Either way the normalizer stays frozen."""
    from imitate.algos.ppo import new_rl_policy
    from imitate.checkpoint import load_policy

    if cfg.init:
        policy = load_policy(cfg.init)
        if policy.head.name != cfg.head:
            raise ConfigError(f"--init {cfg.init} holds a {policy.head.name!r} policy but --head is {cfg.head!r}")
        if policy.obs_keys != ["state"]:
            raise ConfigError(f"--init {cfg.init}: the policy reads {policy.obs_keys}; GAIL/AIRL need 'state' only")
        return policy.train()
    return new_rl_policy(obs_dim, action_space, cfg.head, head_config, store=store)


def action_features(u: torch.Tensor, nvec: tuple[int, ...]) -> torch.Tensor:
    """Normalized actions (B, 1, A) or (B, A) -> discriminator input: clipped to [-1, 1], or one-hot (Discrete)."""
    u = u.reshape(u.shape[0], -1)
    if nvec:
        return torch.cat([F.one_hot(u[:, i].round().long().clamp(0, n - 1), n).float() for i, n in enumerate(nvec)], -1)
    return u.clamp(-1.0, 1.0)


# -- discriminator training -----------------------------------------------------------------------
def gradient_penalty(disc: nn.Module, expert: dict[str, torch.Tensor], policy: dict[str, torch.Tensor],
                     generator: torch.Generator) -> torch.Tensor:
    """E || d logit / d (obs, act, next_obs) ||^2 at random interpolates of two equal-sized batches."""
    eps = torch.rand(len(expert["obs"]), 1, generator=generator)
    mixed = {k: (eps * expert[k] + (1 - eps) * policy[k]).requires_grad_(True) for k in ("obs", "act", "next_obs")}
    out = disc.logits(mixed["obs"], mixed["act"], mixed["next_obs"], expert["terminated"], expert["log_pi"])
    grads = torch.autograd.grad(out.sum(), list(mixed.values()), create_graph=True, allow_unused=True)
    return sum(g.square().sum(-1) for g in grads if g is not None).mean()


def train_discriminator(disc: nn.Module, optimizer: torch.optim.Optimizer, cfg: AdversarialConfig,
                        sample_expert, policy_batch: dict[str, torch.Tensor], generator: torch.Generator,
                        sample_replay=None) -> dict[str, float]:
    """``cfg.disc_epochs`` passes over the generator's transitions (dict of (M, ...) tensors, inputs as
    in the module docstring), each minibatch against as many expert transitions from ``sample_expert(n)``.
    ``sample_replay(n)`` (optional) gives earlier generator transitions; they then replace the second
    half of every generator minibatch."""
    sums, n = {}, 0
    m = len(policy_batch["obs"])
    for _ in range(cfg.disc_epochs):
        order = torch.randperm(m, generator=generator)
        for start in range(0, m, cfg.disc_batch):
            idx = order[start:start + cfg.disc_batch]
            pol = {k: v[idx] for k, v in policy_batch.items()}
            if sample_replay is not None and len(idx) > 1:
                old = sample_replay(len(idx) // 2)
                pol = {k: torch.cat([v[:len(idx) - len(old[k])], old[k]]) for k, v in pol.items()}
            exp = sample_expert(len(idx))
            args = ("obs", "act", "next_obs", "terminated", "log_pi")
            logit_e = disc.logits(*(exp[k] for k in args))
            logit_p = disc.logits(*(pol[k] for k in args))
            loss = F.binary_cross_entropy_with_logits(logit_e, torch.ones_like(logit_e)) + \
                F.binary_cross_entropy_with_logits(logit_p, torch.zeros_like(logit_p))
            gp = gradient_penalty(disc, exp, pol, generator) if cfg.grad_penalty > 0 else torch.zeros(())
            optimizer.zero_grad(set_to_none=True)
            (loss + cfg.grad_penalty * gp).backward()
            optimizer.step()
            with torch.no_grad():
                acc = 0.5 * ((logit_e > 0).float().mean() + (logit_p < 0).float().mean())
            for k, v in {"disc/loss": loss, "disc/accuracy": acc, "disc/grad_penalty": gp,
                         "disc/expert_D": torch.sigmoid(logit_e).mean(), "disc/policy_D": torch.sigmoid(logit_p).mean()}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def reward_from_logits(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """"positive": softplus(logit) = -log(1 - D); "logit": the logit itself."""
    if kind == "positive":
        return F.softplus(logits)
    if kind == "logit":
        return logits
    raise ConfigError(f"--reward {kind!r}: choose positive, logit or auto")


# -- the shared driver ------------------------------------------------------------------------------
def run_adversarial(cfg: AdversarialConfig, algo: str, make_disc, ppo_overrides: dict[str, Any] | None,
                    head_config: dict[str, Any] | None, progress: bool, on_log, save_extra=None) -> dict[str, Any]:
    """Set up data, generator, PPO and ``disc = make_disc(obs_dim, act_feature_dim, gamma)``; train.

    ``save_extra(disc, policy_normalizer, out, meta, seen)`` (optional) writes the algorithm's
    artifacts; ``seen`` (M, D) holds the normalized expert observations and the last rollout's.
    """
    from imitate.algos.ppo import PPO, random_return
    from imitate.algos.rl_loop import new_run_dir, ppo_config, run_loop

    if not cfg.data or not cfg.out:
        raise ConfigError(f"imitate {algo}: --data FILE and --out DIR are required")
    if cfg.steps < 1:
        raise ConfigError(f"--steps must be at least 1 (got {cfg.steps})")
    expert, store = load_expert(cfg.data, cfg.data_format)
    env_id, env_kwargs, obs_space, action_space = _task(cfg, store, tuple(expert["obs"].shape[1:]))
    torch.manual_seed(cfg.seed)
    policy = make_generator(cfg, int(obs_space.shape[0]), action_space, store, head_config)
    pcfg = ppo_config(env_id, ppo_overrides)
    ppo = PPO(policy, env_id, pcfg, env_kwargs, obs_stats="frozen", seed=cfg.seed)
    nvec = policy.spec.action.discrete_nvec
    norm = policy.normalizer
    exp_in = {"obs": norm.normalize("obs/state", expert["obs"]), "next_obs": norm.normalize("obs/state", expert["next_obs"]),
              "u": norm.normalize("action", expert["actions"]).unsqueeze(1), "terminated": expert["terminated"]}
    exp_in["act"] = action_features(exp_in["u"], nvec)
    disc = make_disc(int(obs_space.shape[0]), exp_in["act"].shape[1], pcfg.gamma)
    optimizer = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    kind = disc.default_reward if cfg.reward in ("", "auto") else cfg.reward
    if cfg.grad_penalty < 0:
        cfg = dataclasses.replace(cfg, grad_penalty=disc.default_grad_penalty)
    last_obs = [exp_in["obs"][:0]]
    if cfg.disc_replay < 0:
        raise ConfigError(f"--disc-replay must be >= 0 (got {cfg.disc_replay})")
    replay: dict[str, torch.Tensor] = {}

    def log_pi(obs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return policy.head.log_prob(policy.encoder({"state": obs.unsqueeze(1)}), u)

    def sample_replay(n: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(replay["obs"]), (n,), generator=gen)
        out = {k: replay[k][idx] for k in ("obs", "act", "next_obs", "terminated")}
        out["log_pi"] = log_pi(out["obs"], replay["u"][idx])
        return out

    def sample_expert(n: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(exp_in["obs"]), (n,), generator=gen)
        out = {k: exp_in[k][idx] for k in ("obs", "act", "next_obs", "terminated")}
        out["log_pi"] = log_pi(out["obs"], exp_in["u"][idx])
        return out

    def reward_fn(buf: dict[str, torch.Tensor]):
        batch = {"obs": norm.normalize("obs/state", buf["obs"].flatten(0, 1)),
                 "next_obs": norm.normalize("obs/state", buf["next_obs"].flatten(0, 1)),
                 "act": action_features(buf["u"].flatten(0, 1), nvec), "terminated": buf["terminated"].flatten(),
                 "log_pi": buf["log_prob"].flatten()}
        last_obs[0] = batch["obs"]
        info = train_discriminator(disc, optimizer, cfg, sample_expert, batch, gen, sample_replay if replay else None)
        if cfg.disc_replay:  # keep the newest disc_replay transitions
            new = {k: batch[k] for k in ("obs", "act", "next_obs", "terminated")} | {"u": buf["u"].flatten(0, 1)}
            for k, v in new.items():
                replay[k] = torch.cat([replay[k], v])[-cfg.disc_replay:] if k in replay else v[-cfg.disc_replay:]
        with torch.no_grad():
            r = reward_from_logits(disc.logits(*(batch[k] for k in ("obs", "act", "next_obs", "terminated", "log_pi"))), kind)
        return r.view(buf["obs"].shape[:2]), {**info, "reward/learned_mean": float(r.mean())}

    out = new_run_dir(cfg.out)
    meta = {"env_id": env_id, "expert_return": expert_return(store), "gamma": pcfg.gamma, "algo": algo,
            "source": str(Path(cfg.data).resolve())}
    config = _run_config(cfg, algo, kind, pcfg, env_id, env_kwargs, store)
    extra = None if save_extra is None else (
        lambda d: save_extra(disc, norm, d, meta, torch.cat([exp_in["obs"], last_obs[0]])))
    return run_loop(ppo, out, cfg.steps, config, random_return(env_id, env_kwargs), meta["expert_return"], reward_fn,
                    extra, cfg.log_every, cfg.ckpt_every, cfg.eval_episodes, progress, on_log)


def _task(cfg: AdversarialConfig, store, obs_shape: tuple[int, ...]):
    """The environment of a run (``--env``, else the one the demo file names): id, keyword arguments,
    observation and action spaces, checked against the demonstrations' observations."""
    from imitate.envs import make_env, task_of

    env_id, env_kwargs = task_of(store.env_args, cfg.env or None)
    if not env_id:
        raise ConfigError(f"{cfg.data} names no environment imitate can build; pass --env ENV_ID")
    probe = make_env(env_id, env_kwargs)
    obs_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    if tuple(obs_space.shape) != obs_shape:
        raise ConfigError(f"{cfg.data}: observations {obs_shape} but {env_id} gives {obs_space.shape}")
    return env_id, env_kwargs, obs_space, action_space


def _run_config(cfg: AdversarialConfig, algo: str, kind: str, pcfg, env_id: str, env_kwargs, store) -> dict[str, Any]:
    """What config.json holds beside the policy: the algorithm, its settings, PPO's, and the data."""
    from imitate.config import to_dict

    return {"algo": algo, "adversarial": to_dict(cfg), "reward_kind": kind, "ppo": to_dict(pcfg),
            "data": {"path": str(Path(cfg.data).resolve()), "env_args": {"env_name": env_id, "type": 2,
                                                                         "env_kwargs": dict(env_kwargs or {})},
                     "demos": store.n_episodes, "transitions": len(store)}}
