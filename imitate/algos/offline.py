"""`imitate offline`: IQL, AWAC or CQL on a demonstration file, with any head as the actor.

    open the run   a new run directory, or the last checkpoint of one (`resume_offline`)
    the loop       TransitionSampler batch --algorithm.update--> critics step, actor step, targets (Polyak)
                   --> EMA of the actor; log, checkpoint
    online         (--online-steps N, iql and awac) N environment steps in the file's environment, one
                   update after each on a batch of offline and online transitions (algo.online_ratio), and
                   with --online-demos FILE a fixed share from that file's demonstrations (algo.demo_ratio);
                   --online-eval-every K evaluates the EMA actor every K environment steps (and at 0)

    RUN_DIR/
      config.json               imitate-run/2: policy (the PolicySpec), algo (its name), offline (the
                                OfflineConfig), algo_settings (OfflineAlgoConfig), data, versions
      model.safetensors         the actor's EMA weights and normalizer statistics: `load_policy`,
                                `imitate eval` and `imitate export` read it as any run's
      critics.safetensors       the Q ensemble, its targets and V (IQL)
      train_state.safetensors   actor, EMA, critics, every optimizer, RNG; metadata: step, sampler position
      metrics.jsonl             one record per log step (``step`` counts from 1), then {"final": ...}

``resume`` continues the offline phase exactly where its last checkpoint left it (on CPU identical
to an uninterrupted run). The online phase is not resumable: a run stopped in it keeps its last
checkpoint (the policy of that moment) and says so.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from imitate import checkpoint as ckpt
from imitate.algos.critics import Critics, OfflineAlgorithm, Transitions
from imitate.config import apply_overrides, to_dict
from imitate.data import WindowSampler, load_demo_file
from imitate.errors import ConfigError, DemoFileError, ImitateError
from imitate.optim import ema_update
from imitate.policy import Policy
from imitate.settings import OfflineAlgoConfig, OfflineConfig, head_settings_for
from imitate.spec import PolicySpec

__all__ = ["OfflineConfig", "OfflineAlgoConfig", "train_offline", "resume_offline", "ALGORITHMS"]

ONLINE_ALGOS = ("iql", "awac")


def algorithms() -> dict[str, type[OfflineAlgorithm]]:
    from imitate.algos.awac import AWAC
    from imitate.algos.cql import CQL
    from imitate.algos.iql import IQL

    return {"iql": IQL, "awac": AWAC, "cql": CQL}


ALGORITHMS = ("iql", "awac", "cql")


# -- transitions from the file -------------------------------------------------------------------------


class TransitionSampler(WindowSampler):
    """`WindowSampler` whose batches are `Transitions`: the window, its chunk, and the executed decision's
    discounted reward, discount and bootstrap window (see `imitate.algos.critics` for the chunk timing).

    Order, resumption and sharding are the WindowSampler's (the same seed gives the same windows).
    """

    def __init__(self, store, obs_horizon: int, action_horizon: int, batch_size: int, n_act: int, gamma: float,
                 reward_scale: float = 1.0, reward_shift: float = 0.0, **kwargs):
        super().__init__(store, obs_horizon, action_horizon, batch_size, with_next=False, **kwargs)
        self.n_act, self.gamma, self.reward_scale, self.reward_shift = n_act, gamma, reward_scale, reward_shift

    def gather(self, windows: np.ndarray) -> Transitions:
        batch = super().gather(windows)
        store, n = self.store, self.n_act
        t = self._anchor[np.sort(windows)].astype(np.int64)
        episode = np.searchsorted(self._ends, t, side="right")
        start, end = self._starts[episode], self._ends[episode]
        steps = t[:, None] + np.arange(n)                              # (B, n) the executed steps
        real = steps < end[:, None]
        rows = np.minimum(steps, end[:, None] - 1)
        rewards = np.asarray(store.get_windows("rewards", rows), np.float64).reshape(len(t), n)
        dones = np.asarray(store.get_windows("dones", rows)).reshape(len(t), n).astype(bool)
        discounts = self.gamma ** np.arange(n)
        reward = ((rewards * self.reward_scale + self.reward_shift) * discounts * real).sum(1)
        terminal = (dones & real).any(1)
        k = real.sum(1)
        discount = np.where(terminal, 0.0, self.gamma ** k)
        # the window k steps later: observation rows u-To+1..u (clamped at the episode start); row u = end
        # (the episode ended inside the chunk) is the last step's next_obs
        u = t + k
        obs_rows = np.maximum(u[:, None] + self._obs_offsets, start[:, None])
        past = obs_rows >= end[:, None]
        bootstrap = past & ~terminal[:, None]                          # terminated: never read (discount 0)
        next_obs = {}
        for key in self.obs_keys:
            values = store.get_windows(f"obs/{key}", np.minimum(obs_rows, end[:, None] - 1))
            if bootstrap.any():
                values = values.copy()
                values[bootstrap] = store.get(f"next_obs/{key}", (end[:, None] - 1 + 0 * obs_rows)[bootstrap])
            next_obs[key] = values
        return Transitions(batch.obs, batch.action, batch.action_mask, reward.astype(np.float32),
                           discount.astype(np.float32), next_obs)


def transitions_to_torch(batch: Transitions, device) -> Transitions:
    def conv(x):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device) if isinstance(x, np.ndarray) else x.to(device)
    return Transitions({k: conv(v) for k, v in batch.obs.items()}, conv(batch.action), conv(batch.action_mask),
                       conv(batch.reward), conv(batch.discount), {k: conv(v) for k, v in batch.next_obs.items()})


def offline_config_from_train(train: dict[str, Any], algo: str) -> OfflineConfig:
    """The OfflineConfig of a BC run's settings (`TrainConfig` as a dict: the fields both have), trained by
    ``algo``, without rollouts (`imitate compare --algo` measures them itself)."""
    known = {f.name for f in dataclasses.fields(OfflineConfig)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in train.items() if k in known}
    return OfflineConfig(**{**values, "algo": algo, "eval_episodes": 0})


# -- checks ----------------------------------------------------------------------------------------------


def _check(cfg: OfflineConfig, algo: OfflineAlgoConfig) -> None:
    from imitate.train import check_run_flags

    if cfg.algo not in ALGORITHMS:
        raise ConfigError(f"--algo {cfg.algo!r}: choose one of {', '.join(ALGORITHMS)}")
    check_run_flags(cfg, "the demonstration file (with rewards) to learn from",
                    ("steps", "batch_size", "obs_horizon", "action_horizon", "n_act", "log_every", "ckpt_every"))
    if cfg.online_steps < 0:
        raise ConfigError(f"--online-steps must be >= 0 (got {cfg.online_steps})")
    if cfg.n_act > cfg.action_horizon:
        raise ConfigError(f"--n-act {cfg.n_act} exceeds --action-horizon {cfg.action_horizon}")
    if cfg.online_steps and cfg.algo not in ONLINE_ALGOS:
        raise ConfigError(f"--online-steps continues {' or '.join(ONLINE_ALGOS)} online; --algo {cfg.algo} has no "
                          f"online continuation")
    if not 0 <= algo.online_ratio <= 1:
        raise ConfigError(f"algo.online_ratio must lie in [0, 1] (got {algo.online_ratio})")
    if not 0 <= algo.demo_ratio <= 1 or algo.online_ratio + algo.demo_ratio > 1:
        raise ConfigError(f"algo.demo_ratio must lie in [0, 1 - algo.online_ratio] (got {algo.demo_ratio} with "
                          f"online_ratio {algo.online_ratio})")
    if algo.demo_ratio > 0 and not cfg.online_demos:
        raise ConfigError(f"algo.demo_ratio {algo.demo_ratio} draws from --online-demos FILE, which is not given")
    if cfg.online_eval_every < 0:
        raise ConfigError(f"--online-eval-every must be >= 0 (got {cfg.online_eval_every})")
    if cfg.online_eval_every and not (cfg.online_steps and cfg.eval_episodes):
        raise ConfigError(f"--online-eval-every {cfg.online_eval_every} evaluates during the online phase: it needs "
                          f"--online-steps N and --eval-episodes N above 0 (got {cfg.online_steps} and "
                          f"{cfg.eval_episodes})")
    if cfg.online_demos and not cfg.online_steps:
        raise ConfigError("--online-demos mixes demonstrations into the online phase; give --online-steps N too")
    if not 0 < algo.expectile < 1:
        raise ConfigError(f"algo.expectile must lie in (0, 1) (got {algo.expectile})")
    if not 0 < algo.gamma <= 1 or not 0 < algo.polyak <= 1:
        raise ConfigError(f"algo.gamma and algo.polyak must lie in (0, 1] (got {algo.gamma}, {algo.polyak})")


def _load_data(cfg: OfflineConfig):
    """The file's store, its rewards checked: a file without rewards, or whose rewards are all zero, is refused."""
    try:
        store = load_demo_file(cfg.data, obs_keys=list(cfg.obs_keys) or None, format=cfg.data_format)
    except DemoFileError as e:
        if "'rewards'" in str(e) or "'dones'" in str(e):
            raise DemoFileError(f"{e}\n{cfg.data}: offline RL learns from the rewards and dones of every step; "
                                f"this file lacks them") from None
        raise
    rewards = np.concatenate(list(store.iter_chunks("rewards"))).astype(np.float64)
    if not np.any(rewards):
        raise DemoFileError(f"{cfg.data}: every reward is 0 ({len(rewards)} steps): offline RL needs rewards that tell "
                            f"good behaviour from bad (a file recorded without them? use imitate train for cloning)")
    if store.next_obs_derived:   # next_obs from the next row of obs: unknown after a demo cut by a time limit
        cut = [store.demo_names[i] for i, d in enumerate(np.asarray(store.get("dones", store.episode_ends - 1)))
               if not d]
        if cut:
            raise DemoFileError(f"{cfg.data}: the file has no next_obs and {len(cut)} demo(s) end without done "
                                f"({', '.join(cut[:3])}{' ...' if len(cut) > 3 else ''}): the state after their last "
                                f"step is unknown, and the critics need it; write next_obs into the file")
    if np.asarray(store.get("actions", np.zeros(1, np.int64))).dtype.kind in "iub":
        raise ConfigError(f"{cfg.data}: its actions are integers (a discrete action space); imitate offline "
                          f"supports continuous actions")
    return store


def _task(cfg: OfflineConfig, store) -> tuple[str | None, dict | None]:
    """The environment for evaluations and the online phase, when either is asked for (`rollout_task`)."""
    from imitate.train import rollout_task

    if not (cfg.eval_episodes or cfg.online_steps):
        return None, None
    return rollout_task(cfg.data, store, online=bool(cfg.online_steps))


# -- the run -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class OfflineRun:
    cfg: OfflineConfig
    algo_cfg: OfflineAlgoConfig
    out: Path
    device: torch.device
    store: Any
    policy: Policy
    ema: Policy
    critics: Critics
    algorithm: OfflineAlgorithm
    sampler: TransitionSampler
    env_id: str | None
    env_kwargs: dict | None
    step: int = 0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"--device {name!r}: {e}") from None


def _assemble(cfg, algo_cfg, out, device, store, policy: Policy, task) -> OfflineRun:
    policy.to(device).train()
    ema = copy.deepcopy(policy).eval().requires_grad_(False)
    algorithm_cls = algorithms()[cfg.algo]
    critics = Critics(policy.spec, algo_cfg.n_q, algo_cfg.critic_hidden, cfg.n_act, algorithm_cls.needs_value).to(device)
    algorithm = algorithm_cls(policy, critics, cfg, algo_cfg)
    sampler = TransitionSampler(store, cfg.obs_horizon, cfg.action_horizon, cfg.batch_size, cfg.n_act,
                                algo_cfg.gamma, algo_cfg.reward_scale, algo_cfg.reward_shift, obs_keys=policy.obs_keys,
                                seed=cfg.seed)
    return OfflineRun(cfg, algo_cfg, out, device, store, policy, ema, critics, algorithm, sampler, *task)


def train_offline(cfg: OfflineConfig, algo_settings: dict[str, Any] | None = None,
                  head_config: dict[str, Any] | None = None, encoder_config: dict[str, Any] | None = None,
                  progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Train a policy by ``cfg.algo`` on ``cfg.data`` in the new run directory ``cfg.out``; return the final record.

    Args:
        algo_settings: overrides of `OfflineAlgoConfig` (``--set algo.KEY=VALUE``).
        head_config, encoder_config: head and encoder settings, as for `imitate.train.train`.
        stop_at: stop (with a checkpoint) once this step is reached, as an interruption would.
    """
    from imitate.train import _claim_run_dir, _spec_from_data

    algo_cfg = apply_overrides(OfflineAlgoConfig(), dict(algo_settings or {}), "algo")
    _check(cfg, algo_cfg)
    device = _device(cfg.device)
    store = _load_data(cfg)
    task = _task(cfg, store)
    if cfg.algo == "cql":
        from imitate.algos.cql import check_head
        check_head(cfg.head)
    torch.manual_seed(cfg.seed)
    head_config, note = head_settings_for(cfg.head, device.type == "cpu", cfg.sizing, dict(head_config or {}))
    if note and progress:
        print(note, flush=True)
    spec = _spec_from_data(cfg, store, head_config, dict(encoder_config or {}))
    if spec.action.discrete:
        raise ConfigError("imitate offline supports continuous actions; drop head.discrete_nvec")
    policy = Policy.from_data(spec, store, None, cfg.seed)
    out = Path(cfg.out)
    run = _assemble(cfg, algo_cfg, out, device, store, policy, task)
    _claim_run_dir(out)
    ckpt.write_json(out / "config.json", {
        "format": ckpt.RUN_FORMAT, "policy": policy.spec.to_json(), "algo": cfg.algo, "offline": to_dict(cfg),
        "algo_settings": to_dict(algo_cfg),
        "data": {"path": str(Path(cfg.data).resolve()), "env_args": store.env_args, "demos": store.n_episodes,
                 "transitions": len(store)},
        "versions": ckpt.versions()})
    return _fit(run, progress, stop_at)


def resume_offline(run_dir: str | Path, steps: int | None = None, progress: bool = True,
                   stop_at: int | None = None) -> dict[str, Any]:
    """Continue the offline run in ``run_dir`` from its last checkpoint with its own settings (``steps``
    may raise the total)."""
    run_dir = Path(run_dir)
    saved = ckpt.read_run_config(run_dir)
    cfg_path = run_dir / "config.json"
    if not isinstance(saved.get("offline"), dict):
        raise ImitateError(f"{cfg_path}: no 'offline' section: this run was not written by imitate offline")
    known = {f.name for f in dataclasses.fields(OfflineConfig)}
    cfg = apply_overrides(OfflineConfig(), {**{k: v for k, v in saved["offline"].items() if k in known},
                                            "out": str(run_dir)}, f"{cfg_path}: offline")
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    algo_cfg = apply_overrides(OfflineAlgoConfig(), saved.get("algo_settings") or {}, f"{cfg_path}: algo_settings")
    _check(cfg, algo_cfg)
    state_path = run_dir / "train_state.safetensors"
    if not state_path.exists():
        raise ImitateError(f"{run_dir}: no checkpoint yet (train_state.safetensors); start the run again")
    tensors, state = ckpt.load_train_state(state_path)
    if state.get("phase") == "online":
        raise ImitateError(f"{run_dir}: the run stopped in its online phase (step {state['step']}), which cannot be "
                           f"resumed; model.safetensors holds the policy of that checkpoint")
    store = _load_data(cfg)
    policy = Policy(PolicySpec.from_json(saved["policy"]))
    run = _assemble(cfg, algo_cfg, run_dir, _device(cfg.device), store, policy, _task(cfg, store))
    where, head = str(state_path), cfg.head
    for prefix, module in (("model.", run.policy), ("ema.", run.ema), ("critics.", run.critics)):
        ckpt.load_state_into(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                             where, head)
    for name, optimizer in run.algorithm.optimizers.items():
        prefix = f"{name}."
        ckpt.optimizer_from_tensors(optimizer, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                    state["optimizers"][name])
    run.step = int(state["step"])
    run.sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(tensors["rng.torch"])
    ckpt.remove_stale_temporaries(run_dir)
    _drop_log_lines_after(run_dir / "metrics.jsonl", run.step)
    return _fit(run, progress, stop_at)


def _drop_log_lines_after(path: Path, step: int) -> None:
    from imitate.train import _drop_log_lines_after as drop

    drop(path, step)


# -- checkpoints -------------------------------------------------------------------------------------------


def _checkpoint(run: OfflineRun, phase: str = "offline") -> None:
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("model.", run.policy), ("ema.", run.ema), ("critics.", run.critics)):
        tensors.update({prefix + k: v for k, v in module.state_dict().items()})
    meta = {}
    for name, optimizer in run.algorithm.optimizers.items():
        opt_tensors, meta[name] = ckpt.optimizer_to_tensors(optimizer)
        tensors.update({f"{name}.{k}": v for k, v in opt_tensors.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ImitateError(f"training diverged before step {run.step}: non-finite values in {bad[:4]}; nothing was "
                           f"written, the last good checkpoint in {run.out} is kept (try a lower --lr or algo.critic_lr)")
    state = {"step": run.step, "phase": phase, "sampler": run.sampler.state_dict(), "optimizers": meta}
    ckpt.save_train_state(run.out / "train_state.safetensors", tensors, state)
    ckpt.save_weights(run.out / "model.safetensors", run.ema, {"step": run.step})
    ckpt.save_weights(run.out / "critics.safetensors", run.critics, {"step": run.step, "algo": run.cfg.algo})


# -- the loop ----------------------------------------------------------------------------------------------


class _Log:
    """Averages of the update's info between log steps -> progress bar and metrics.jsonl."""

    def __init__(self, run: OfflineRun, progress: bool):
        total = run.cfg.steps + run.cfg.online_steps
        self.run, self.bar = run, tqdm(total=total, initial=run.step, desc=f"offline {run.cfg.algo} {run.cfg.head}",
                                       unit="step", disable=not progress)
        self.file = open(run.out / "metrics.jsonl", "a")
        self.sums: dict[str, torch.Tensor] = {}
        self.n, self.t = 0, time.perf_counter()
        self.last: dict[str, Any] = {}

    def add(self, info: dict[str, torch.Tensor]) -> None:
        for k, v in info.items():
            self.sums[k] = v if k not in self.sums else self.sums[k] + v
        self.n += 1
        self.bar.update(1)

    def flush(self, extra: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        means = {f"train/{k}": float(v) / self.n for k, v in self.sums.items()}
        record = {"step": self.run.step, "train/loss": means.get("train/actor_loss"), **means,
                  "time/steps_per_s": self.n / (now - self.t), **(extra or {})}
        bad = sorted(k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            raise ImitateError(f"training diverged by step {self.run.step}: non-finite {bad}; the last good checkpoint "
                               f"in {self.run.out} is kept (try a lower --lr or algo.critic_lr)")
        self.sums, self.n, self.t, self.last = {}, 0, now, record
        if "train/actor_loss" in record:
            self.bar.set_postfix(actor=f"{record['train/actor_loss']:.3f}", q=f"{record.get('train/q_mean', 0):.2f}")
        self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.bar.close()
        if not self.file.closed:
            self.file.close()


def _one_step(run: OfflineRun, batch: Transitions, log: _Log) -> None:
    info = run.algorithm.update(batch, run.step)
    ema_update(list(run.ema.parameters()), list(run.policy.parameters()),
               min(run.cfg.ema_decay, (1 + run.step) / (10 + run.step)))
    run.step += 1
    log.add(info)


def _fit(run: OfflineRun, progress: bool, stop_at: int | None) -> dict[str, Any]:
    cfg = run.cfg
    log = _Log(run, progress)
    try:
        while run.step < cfg.steps:
            _one_step(run, transitions_to_torch(run.sampler.sample(), run.device), log)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                log.flush()
            if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps or run.step == stop_at:
                _checkpoint(run)
            if run.step == stop_at:
                log.close()
                return {"run_dir": str(run.out), "step": run.step, "stopped": True}
        online = _online(run, log) if cfg.online_steps else {}
    except KeyboardInterrupt:
        log.close()
        if run.step <= cfg.steps:
            _checkpoint(run)
            print(f"interrupted at step {run.step}: checkpoint saved in {run.out}; continue with --resume")
        raise
    finally:
        log.close()
    return _finish(run, log, online)


def _finish(run: OfflineRun, log: _Log, online: dict[str, Any]) -> dict[str, Any]:
    final: dict[str, Any] = {"run_dir": str(run.out), "algo": run.cfg.algo, "head": run.cfg.head, "step": run.step,
                             "train_loss": log.last.get("train/loss"),
                             **{k.split("/", 1)[1]: v for k, v in log.last.items() if k.startswith("train/") and k != "train/loss"},
                             **online}
    if run.env_id and run.cfg.eval_episodes:
        from imitate.evaluate import evaluate

        with torch.random.fork_rng(devices=[]):
            res = evaluate(run.ema, run.env_id, run.env_kwargs, run.cfg.eval_episodes, run.cfg.eval_seed,
                           progress=False)
        final.update({"success_rate": res["success_rate"], "mean_return": res["mean_return"],
                      "mode_shares": res["mode_shares"], "behaviour_entropy": res["behaviour_entropy"]})
    with open(run.out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"final": final}) + "\n")
    return final


# -- offline to online ---------------------------------------------------------------------------------------


class OnlineBuffer:
    """The online phase's transitions, one row per environment step in arrays of fixed capacity, cut into
    episodes (the last one may still be running). A batch is windows drawn uniformly over every step so far
    and built by the same `TransitionSampler` as the file's: the run's horizons, n_act-step decisions, and a
    bootstrap from the stored next observation where an unfinished episode's steps run out."""

    def __init__(self, capacity: int, obs: dict[str, np.ndarray], action_dim: int):
        self.arrays = {f"{part}/{k}": np.zeros((capacity, *np.shape(v)), np.asarray(v).dtype)
                       for part in ("obs", "next_obs") for k, v in obs.items()}
        self.arrays.update(actions=np.zeros((capacity, action_dim), np.float32), rewards=np.zeros(capacity, np.float32),
                           dones=np.zeros(capacity, bool))
        self.ends: list[int] = []
        self.size = 0

    def add(self, obs: dict, action: np.ndarray, reward: float, terminal: bool, next_obs: dict) -> None:
        i = self.size
        for k in obs:
            self.arrays[f"obs/{k}"][i], self.arrays[f"next_obs/{k}"][i] = obs[k], next_obs[k]
        self.arrays["actions"][i], self.arrays["rewards"][i], self.arrays["dones"][i] = action, reward, terminal
        self.size += 1

    def end_episode(self) -> None:
        if self.size and (not self.ends or self.ends[-1] != self.size):
            self.ends.append(self.size)

    def sample(self, n: int, rng: np.random.Generator, cfg: OfflineConfig, algo: OfflineAlgoConfig,
               obs_keys: list[str]) -> Transitions:
        from imitate.data.store import EpisodeStore

        ends = self.ends + ([self.size] if not self.ends or self.ends[-1] != self.size else [])
        store = EpisodeStore({k: v[:self.size] for k, v in self.arrays.items()}, np.asarray(ends),
                             [f"online_{i}" for i in range(len(ends))], source="the online transitions")
        sampler = TransitionSampler(store, cfg.obs_horizon, cfg.action_horizon, n, cfg.n_act, algo.gamma,
                                    algo.reward_scale, algo.reward_shift, obs_keys=obs_keys)
        return sampler.gather(rng.integers(0, self.size, n))


def _concat(a: Transitions, b: Transitions) -> Transitions:
    cat = lambda x, y: torch.cat([x, y])  # noqa: E731
    return Transitions({k: cat(a.obs[k], b.obs[k].to(a.obs[k].dtype)) for k in a.obs}, cat(a.action, b.action.to(a.action.dtype)),
                       cat(a.action_mask, b.action_mask), cat(a.reward, b.reward), cat(a.discount, b.discount),
                       {k: cat(a.next_obs[k], b.next_obs[k].to(a.next_obs[k].dtype)) for k in a.next_obs})


def _online(run: OfflineRun, log: _Log) -> dict[str, Any]:
    """``online_steps`` environment steps with the current actor (sampled actions), one update after each on a
    batch of which ``online_ratio`` comes from the online transitions (RLPD's symmetric sampling at 0.5),
    ``demo_ratio`` from the ``online_demos`` file (when given) and the rest from the offline data."""
    from imitate.collect import obs_to_dict
    from imitate.envs import make_env, to_env_action

    cfg, algo = run.cfg, run.algo_cfg
    demo_sampler, n_demo = None, 0
    if cfg.online_demos:     # loaded before the environment: a bad file fails before any step
        n_demo = int(round(cfg.batch_size * algo.demo_ratio))
        if n_demo:
            demo_store = _load_data(dataclasses.replace(cfg, data=cfg.online_demos, obs_keys=tuple(run.policy.obs_keys)))
            demo_sampler = TransitionSampler(demo_store, cfg.obs_horizon, cfg.action_horizon, n_demo, cfg.n_act,
                                             algo.gamma, algo.reward_scale, algo.reward_shift,
                                             obs_keys=run.policy.obs_keys, seed=cfg.seed + 2)
    env = make_env(run.env_id, run.env_kwargs)
    buffer = None   # made at the first step, with the observations' dtypes
    rng = np.random.default_rng([cfg.seed, 1])
    generator = torch.Generator(device=run.device).manual_seed(cfg.seed + 1)
    n_online = int(round(cfg.batch_size * algo.online_ratio))
    n_offline = max(0, cfg.batch_size - n_online - n_demo)
    offline_sampler = TransitionSampler(run.store, cfg.obs_horizon, cfg.action_horizon, n_offline, cfg.n_act, algo.gamma,
                                        algo.reward_scale, algo.reward_shift, obs_keys=run.policy.obs_keys,
                                        seed=cfg.seed + 1) if n_offline > 0 else None
    episode, returns, ret, successes = 0, [], 0.0, []
    obs, _ = env.reset(seed=cfg.seed + 20_000)
    run.policy.reset()
    evals = []
    try:
        if cfg.online_eval_every:
            evals.append(_online_eval(run, log))
        for _ in range(cfg.online_steps):
            current = obs_to_dict(obs)
            run.policy.eval()
            action = run.policy.act(current, generator=generator).reshape(-1)
            run.policy.train()
            obs, reward, terminated, truncated, info = env.step(to_env_action(env.action_space, action))
            if buffer is None:
                buffer = OnlineBuffer(cfg.online_steps, current, run.policy.action_dim)
            buffer.add(current, action, float(reward), bool(terminated), obs_to_dict(obs))
            ret += float(reward)
            if terminated or truncated:
                buffer.end_episode()
                returns.append(ret)
                if "is_success" in info:
                    successes.append(bool(info["is_success"]))
                episode, ret = episode + 1, 0.0
                obs, _ = env.reset(seed=cfg.seed + 20_000 + episode)
                run.policy.reset()
            parts = []
            if offline_sampler is not None:
                parts.append(transitions_to_torch(offline_sampler.sample(), run.device))
            if demo_sampler is not None:
                parts.append(transitions_to_torch(demo_sampler.sample(), run.device))
            if n_online:
                parts.append(transitions_to_torch(buffer.sample(n_online, rng, cfg, algo, run.policy.obs_keys), run.device))
            batch = parts[0]
            for part in parts[1:]:
                batch = _concat(batch, part)
            _one_step(run, batch, log)
            if (run.step - cfg.steps) % cfg.log_every == 0 or run.step == cfg.steps + cfg.online_steps:
                log.flush({"env_steps": run.step - cfg.steps,
                           "online/return": float(np.mean(returns[-10:])) if returns else None,
                           "online/success": float(np.mean(successes[-10:])) if successes else None,
                           "online/batch_shares": {"offline": n_offline / cfg.batch_size,
                                                   "demos": n_demo / cfg.batch_size, "online": n_online / cfg.batch_size}})
            env_steps = run.step - cfg.steps
            if cfg.online_eval_every and (env_steps % cfg.online_eval_every == 0 or env_steps == cfg.online_steps):
                evals.append(_online_eval(run, log))
            if run.step % cfg.ckpt_every == 0:
                _checkpoint(run, "online")
        _checkpoint(run, "online")
    finally:
        env.close()
    return {"online_episodes": len(returns), "online_return_last10": float(np.mean(returns[-10:])) if returns else None,
            "online_success_last10": float(np.mean(successes[-10:])) if successes else None,
            "online_batch_shares": {"offline": n_offline / cfg.batch_size, "demos": n_demo / cfg.batch_size,
                                    "online": n_online / cfg.batch_size},
            **({"online_evals": evals} if evals else {})}


def _online_eval(run: OfflineRun, log: _Log) -> dict[str, Any]:
    """``eval_episodes`` seeded episodes (seeds eval_seed...) of the EMA actor, the one the run saves, written to
    metrics.jsonl as ``{"step", "env_steps", "eval/return", "eval/success_rate"[, "eval/mode_shares"]}``; the
    training's random streams are left as they were."""
    from imitate.evaluate import evaluate

    with torch.random.fork_rng(devices=[]):
        res = evaluate(run.ema, run.env_id, run.env_kwargs, run.cfg.eval_episodes, run.cfg.eval_seed, progress=False)
    record = {"step": run.step, "env_steps": run.step - run.cfg.steps, "eval/return": res["mean_return"],
              "eval/success_rate": res["success_rate"]}
    if res.get("mode_shares"):
        record["eval/mode_shares"] = res["mode_shares"]
    log.write(record)
    return {k.replace("eval/", ""): v for k, v in record.items() if k != "step"}
