"""The RL run loop shared by `imitate rl`, `imitate gail` and `imitate airl`, and `imitate rl` itself.

    RUN_DIR/
      config.json          format, the Policy's spec (so `load_policy` / `imitate eval` work), every setting,
                           the task (env_args), the expert and random returns used for normalization
      model.safetensors    the generator Policy (To = Ta = 1), normalizer statistics included
      metrics.jsonl, tb/   one record per log line: env_steps, return, normalized_return, losses
      + what the algorithm adds (GAIL: discriminator.safetensors; AIRL: reward.safetensors, reward.json)

Every iteration: PPO collects a rollout, the algorithm's reward function (if any) turns it into
rewards (training its discriminator on the way), PPO updates. ``return`` is the mean true return
of the last 20 finished training episodes; at the end the policy is also evaluated on fresh seeded
episodes (`imitate.evaluate.evaluate`, actions sampled from the head).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium
import torch
from tqdm.auto import tqdm

from imitate import checkpoint as ckpt
from imitate.algos.ppo import (PPO, PPOConfig, PRESETS, RewardFn, new_rl_policy, normalized_return, obs_shapes_of,
                               random_return)
from imitate.config import apply_overrides, to_dict
from imitate.errors import ConfigError, ImitateError
from imitate.settings import RLDemoConfig


def new_run_dir(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ImitateError(f"{out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def ppo_config(env_id: str, overrides: dict[str, Any] | None) -> PPOConfig:
    """PPOConfig: defaults, then the task's preset (`PRESETS`), then ``overrides`` (``--set ppo.key=value``)."""
    return apply_overrides(apply_overrides(PPOConfig(), PRESETS.get(env_id, {}), "ppo preset"), overrides or {}, "ppo")


def run_loop(ppo: PPO, out: Path, steps: int, config: dict[str, Any], random: float, expert: float | None,
             reward_fn: RewardFn | None = None, save_extra: Callable[[Path], None] | None = None,
             log_every: int = 10_000, ckpt_every: int = 100_000, eval_episodes: int = 20,
             progress: bool = True, on_log: Callable[[dict[str, Any]], None] | None = None,
             eval_every: int = 0, before_training: Callable[[], dict[str, float]] | None = None) -> dict[str, Any]:
    """Alternate PPO rollouts, rewards and updates until ``steps`` env steps; write the run to ``out``.

    Args:
        ppo: the PPO instance (its policy is the generator that is saved).
        config: written into config.json beside the policy's spec.
        random, expert: returns that define ``normalized_return`` (expert None: not reported).
        reward_fn: rollout -> (rewards (T, N), info); None trains on the env's rewards.
        save_extra: writes the algorithm's own artifacts into the run dir at every checkpoint.
        on_log: called with every log record (the CLI prints them as JSON lines).
        eval_every: env steps between evaluations of ``eval_episodes`` seeded episodes from the task's
            own starts (logged as ``eval/success_rate``, ``eval/return``), one also before training; 0: none.
        before_training: called once after the first evaluation, before the first rollout (the value
            warm-up of `imitate.algos.finetune`); its numbers are logged.
    """
    ckpt.write_json(out / "config.json", {"format": ckpt.RUN_FORMAT, "policy": ppo.policy.spec.to_json(), **config,
                                          "returns": {"random": random, "expert": expert},
                                          "versions": ckpt.versions()})
    log = _Log(out, on_log)

    def save() -> None:
        ckpt.save_weights(out / "model.safetensors", ppo.policy, {"env_steps": ppo.env_steps})
        if save_extra is not None:
            save_extra(out)

    bar = tqdm(total=steps, desc=f"{config.get('algo', 'rl')} {ppo.env_id}", unit="step", disable=not progress)
    ppo.on_steps = lambda k: bar.update(max(0, min(k, steps - bar.n)))      # moves during each rollout, ends at steps
    start, next_log, next_ckpt, sums, n = time.perf_counter(), log_every, ckpt_every, {}, 0
    next_eval = eval_every
    try:
        if eval_every and eval_episodes:
            log({"env_steps": ppo.env_steps, **_evaluate(ppo, config, eval_episodes)})
        if before_training is not None:
            warm = before_training()
            log({"env_steps": ppo.env_steps, **warm})
        while ppo.env_steps < steps:
            buf = ppo.collect()
            rewards, info = (None, {}) if reward_fn is None else reward_fn(buf)
            info = {**info, **ppo.update(buf, rewards)}
            if info["ppo/minibatches"] == 0 and not info["ppo/early_stop"]:
                raise ImitateError(f"training diverged at {ppo.env_steps} env steps: every minibatch of the update had "
                                   f"a non-finite gradient norm (skipped); the last checkpoint in {out} is kept")
            for k, v in info.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if ppo.env_steps >= next_log or ppo.env_steps >= steps:
                if any(not torch.isfinite(torch.tensor(v)) for v in sums.values()):
                    raise ImitateError(f"training diverged at {ppo.env_steps} env steps: non-finite losses "
                                       f"{sorted(k for k, v in sums.items() if v != v or abs(v) == float('inf'))}")
                ret = ppo.recent_return()
                extra = {"success": ppo.recent_success()} if ppo.successes else {}
                if eval_every and eval_episodes and ppo.env_steps >= next_eval:
                    extra.update(_evaluate(ppo, config, eval_episodes))
                    next_eval = (ppo.env_steps // eval_every + 1) * eval_every
                log({"env_steps": ppo.env_steps, "return": ret,
                     "normalized_return": None if expert is None else normalized_return(ret, random, expert),
                     "time_s": round(time.perf_counter() - start, 2), **extra, **{k: v / n for k, v in sums.items()}})
                if ret is not None:
                    bar.set_postfix(ret=f"{ret:.1f}")
                sums, n, next_log = {}, 0, next_log + log_every
            if ppo.env_steps >= next_ckpt:
                save()
                next_ckpt += ckpt_every
        save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
        ppo.close()
    final = _final(ppo, out, config, random, expert, eval_episodes, time.perf_counter() - start)
    log.close(final)
    return final


class _Log:
    """metrics.jsonl, TensorBoard (RUN_DIR/tb) and the caller's ``on_log``, one record per log step."""

    def __init__(self, out: Path, on_log: Callable[[dict[str, Any]], None] | None):
        from torch.utils.tensorboard import SummaryWriter

        self.metrics, self.tb, self.on_log = open(out / "metrics.jsonl", "a"), SummaryWriter(str(out / "tb")), on_log

    def __call__(self, record: dict[str, Any]) -> None:
        for k, v in record.items():
            if isinstance(v, (int, float)) and k != "env_steps":
                self.tb.add_scalar(k, v, record["env_steps"])
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.on_log is not None:
            self.on_log(record)

    def close(self, final: dict[str, Any]) -> None:
        self.metrics.write(json.dumps({"final": final}) + "\n")
        self.metrics.close()
        self.tb.close()


def _evaluate(ppo: PPO, config: dict[str, Any], episodes: int) -> dict[str, Any]:
    """``episodes`` seeded rollouts (seeds 10000...) of the current policy from the task's own starts."""
    from imitate.evaluate import evaluate

    with torch.random.fork_rng(devices=[]):
        res = evaluate(ppo.policy, ppo.env_id, config.get("data", {}).get("env_args", {}).get("env_kwargs"),
                       episodes, seed=10_000, progress=False)
    ppo.policy.eval()
    out = {"eval/return": res["mean_return"], "eval/success_rate": res["success_rate"]}
    if res.get("mode_shares"):
        out["eval/mode_shares"] = res["mode_shares"]
    return out


def _final(ppo: PPO, out: Path, config: dict[str, Any], random: float, expert: float | None, eval_episodes: int,
           seconds: float) -> dict[str, Any]:
    """The final record: the last training episodes' return and, with ``eval_episodes``, fresh seeded rollouts."""
    final: dict[str, Any] = {"run_dir": str(out), "env_steps": ppo.env_steps, "return": ppo.recent_return(),
                             "time_s": round(seconds, 2)}
    final["normalized_return"] = None if expert is None else normalized_return(final["return"], random, expert)
    if eval_episodes:
        from imitate.evaluate import evaluate

        with torch.random.fork_rng(devices=[]):
            res = evaluate(ppo.policy, ppo.env_id, config.get("data", {}).get("env_args", {}).get("env_kwargs"),
                           eval_episodes, seed=10_000, progress=False)
        final["eval_return"] = res["mean_return"]
        if res["success_rate"] is not None:
            final["eval_success_rate"] = res["success_rate"]
            final["eval_mode_shares"] = res["mode_shares"]
        final["eval_normalized_return"] = None if expert is None else normalized_return(res["mean_return"], random, expert)
    return final


def train_rl(env_id: str | None, out: str | Path, head: str = "gaussian", steps: int = 200_000, reward: str | None = None,
             seed: int = 0, ppo_overrides: dict[str, Any] | None = None, head_config: dict[str, Any] | None = None,
             expert_return: float | None = None, log_every: int = 10_000, eval_episodes: int = 20,
             progress: bool = True, on_log: Callable[[dict[str, Any]], None] | None = None,
             reward_entropy: float = 1.0, env_kwargs: dict[str, Any] | None = None,
             demo: RLDemoConfig | None = None) -> dict[str, Any]:
    """Train a Policy by PPO on ``env_id``: on the env's reward, or on the state reward g(s)
    saved by AIRL in the directory ``reward`` (then ``return`` still reports the true return).

    AIRL recovers the reward of the maximum-entropy objective E[sum_t gamma^t (r(s_t) + H(pi(.|s_t)))],
    so a recovered reward is re-optimized as r_t = g(s_t) - reward_entropy * log pi(a_t|s_t), with
    ``reward_entropy`` 1 by default (0: g alone). On Pendulum-v1 this reaches 0.94 of the expert's
    normalized return over 3 seeds where g alone reaches 0.18 (BENCHMARKS.md).

    ``expert_return`` (default: the one recorded with the reward, from its demos) defines
    ``normalized_return`` together with the measured random return.

    ``demo`` (`RLDemoConfig`) brings in demonstrations (`imitate.algos.finetune`): ``init`` starts from a
    BC run's policy (then ``head`` and ``head_config`` are the run's, ``env_id`` defaults to its task,
    its normalizer stays frozen and the value function is warmed up first), ``demos``/``demo_coef`` add
    the DAPG term, ``start_states`` draws start states from demonstrations; ``eval_every`` evaluates
    on the task's own starts while training.
    """
    from imitate.algos import finetune
    from imitate.algos.state_reward import load_reward
    from imitate.data.hdf5 import make_env_args
    from imitate.envs import make_env

    demo = demo or RLDemoConfig()
    finetune.check_demo_config(demo)
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1 (got {steps})")
    if reward_entropy < 0:
        raise ConfigError(f"--reward-entropy must be >= 0 (got {reward_entropy})")
    if demo.init:
        policy = finetune.load_init_policy(demo.init)
        run_env, run_kwargs = finetune.init_task(demo.init, env_id)
        env_id = run_env
        env_kwargs = {**(run_kwargs or {}), **(env_kwargs or {})} or None
        head = policy.head.name
    elif not env_id:
        raise ConfigError("imitate rl needs --env ENV_ID (or --init BC_RUN, whose task is used)")
    reward_model, reward_meta = load_reward(reward) if reward else (None, {})
    expert = expert_return if expert_return is not None else reward_meta.get("expert_return")
    probe = make_env(env_id, env_kwargs)
    obs_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    if reward_model is not None and (not isinstance(obs_space, gymnasium.spaces.Box)
                                     or reward_model.obs_dim != int(obs_space.shape[0])):
        raise ConfigError(f"--reward {reward}: the reward reads observations of size {reward_model.obs_dim}, "
                          f"{env_id} gives {obs_space}")
    cfg = ppo_config(env_id, ppo_overrides)
    torch.manual_seed(seed)
    if not demo.init:
        policy = new_rl_policy(obs_shapes_of(env_id, obs_space), action_space, head, head_config)
    ppo, starts = finetune.make_ppo(policy.train() if demo.init else policy, env_id, env_kwargs, cfg, demo, steps,
                                    seed, "frozen" if demo.init else "running")
    run = new_run_dir(out)

    def learned(buf):
        with torch.no_grad():
            g = reward_model(buf["obs"].flatten(0, 1)).view(buf["obs"].shape[:2])
        return g - reward_entropy * buf["log_prob"], {"reward/learned_mean": float(g.mean())}

    def warm_up() -> dict[str, float]:
        return ppo.warm_up_value(demo.value_warmup, demo.value_warmup_epochs)

    config = {"algo": "rl", "env_id": env_id, "head": head, "steps": steps, "seed": seed,
              "reward": str(Path(reward).resolve()) if reward else None,
              "reward_entropy": reward_entropy if reward else None, "ppo": to_dict(cfg),
              "demo": {**to_dict(demo), **{k: finetune.bc_path(getattr(demo, k)) for k in ("init", "demos", "start_states")
                                           if getattr(demo, k)}},
              "data": {"env_args": make_env_args(env_id, env_kwargs or {})}}
    final = run_loop(ppo, run, steps, config, random_return(env_id, env_kwargs), expert,
                     learned if reward_model is not None else None, log_every=log_every, eval_episodes=eval_episodes,
                     progress=progress, on_log=on_log, eval_every=demo.eval_every,
                     before_training=warm_up if demo.init and demo.value_warmup else None)
    if starts is not None:
        final["start_states"] = starts.summary()
    return final
