"""The one behaviour-cloning trainer: every head trains through `train`.

    demo file --load--> EpisodeStore --WindowSampler(train split)--> Batch (raw obs, raw actions, mask)
    Policy.compute_loss: normalize --> encoder --> head.loss --> AdamW step (warm-up + cosine lr,
    gradient clipping) --> EMA of the weights (the EMA is what is evaluated, saved and exported)

Every ``log_every`` steps the losses go to the progress bar, TensorBoard (RUN_DIR/tb) and
RUN_DIR/metrics.jsonl; every ``val_every`` steps the EMA policy's loss on the file's ``valid``
split; every ``eval_every`` steps (and at the end) rollouts in the environment the file names.
Checkpoints (see `imitate.checkpoint`) are written atomically every ``ckpt_every`` steps, at the end,
and on Ctrl-C; `resume` continues a run exactly where its last checkpoint left it (on CPU the result
is identical to an uninterrupted run). Losses are checked for NaN and inf at every log step and
before every checkpoint: training stops with an error naming the first bad step, and a checkpoint
is never written from non-finite weights.

Several processes (``torchrun --nproc_per_node N -m imitate train ...``, see `imitate.distributed`):
``batch_size`` is the global batch, each rank draws its ``batch_size / N`` windows from its own share
of the epoch (together the very windows one process would draw), DistributedDataParallel averages the
gradients, and rank 0 alone logs, validates, evaluates and writes. The learning rate is not scaled.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from imitate import checkpoint as ckpt
from imitate import distributed
from imitate.config import to_dict
from imitate.data import WindowSampler, load_demo_file
from imitate.data.normalizer import Normalizer
from imitate.errors import ConfigError, ImitateError
from imitate.policy import build_policy
from policy_heads import config_from_dict, get_head_class


@dataclass
class TrainConfig:
    """Settings of a behaviour-cloning run (head and encoder settings go through ``--set``)."""

    data: str = ""
    """Demonstration file (robomimic HDF5 layout)."""
    out: str = ""
    """Run directory to create (config.json, model.safetensors, train_state.safetensors, logs)."""
    head: str = "diffusion"
    """Policy head: deterministic, gaussian, gmm, autoregressive or diffusion."""
    steps: int = 5000
    """Optimizer steps."""
    batch_size: int = 256
    """Windows per batch, in all: with N processes each draws batch_size / N (must divide evenly)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up, then cosine decay to zero at the last step."""
    grad_clip: float = 1.0
    """Clip the gradient's global norm to this value (0: no clipping)."""
    ema_decay: float = 0.999
    """Largest decay of the weights' exponential moving average (warms up from 0 as 1 - 10/(10+step))."""
    obs_horizon: int = 2
    """To: observation steps the policy sees (the current one and To-1 before it)."""
    action_horizon: int = 16
    """Ta: actions predicted per chunk."""
    n_act: int = 8
    """Actions executed from each chunk before the policy predicts again (1..Ta)."""
    obs_keys: tuple[str, ...] = ()
    """Observation keys to use (empty: every key of the file)."""
    obs_norm: str = "meanstd"
    """Observation normalization: meanstd, minmax or identity."""
    action_norm: str = "minmax"
    """Action normalization: minmax (to [-1, 1], what the heads expect) or identity."""
    lazy: bool = False
    """Read the file lazily in blocks (for files larger than memory)."""
    seed: int = 0
    """Seed of weights, batch order and sampling noise: the same seed on CPU gives the same weights."""
    log_every: int = 50
    """Steps between log lines (progress bar, TensorBoard, metrics.jsonl) and NaN checks."""
    val_every: int = 500
    """Steps between validation losses on the file's 'valid' split (0: never)."""
    val_batches: int = 4
    """Batches of the fixed validation set."""
    eval_every: int = 0
    """Steps between rollout evaluations (0: only at the end)."""
    eval_episodes: int = 20
    """Rollouts per evaluation (0: no rollouts)."""
    eval_seed: int = 10000
    """Episode i of an evaluation is reset with seed eval_seed + i (away from collection seeds)."""
    ckpt_every: int = 1000
    """Steps between checkpoints (one is also written at the end and on Ctrl-C)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available); with several processes each takes its local rank's GPU."""
    precision: str = "fp32"
    """fp32, or bf16: the forward pass and loss under bfloat16 autocast (weights, gradients, EMA stay fp32)."""
    dist_timeout: float = 1800.0
    """Several processes: seconds a process waits for the others at a collective before the run fails."""
    init: str = ""
    """Start from the model weights of this run directory (same head and shapes; its normalizer
    statistics and head settings are kept); empty: fresh weights."""


def _check(cfg: TrainConfig) -> None:
    from policy_heads import available_heads

    if not cfg.data:
        raise ConfigError("--data is required: the demonstration file to train on")
    if not cfg.out:
        raise ConfigError("--out is required: the run directory to create")
    if cfg.head not in available_heads():
        raise ConfigError(f"--head {cfg.head!r} is unknown; available heads: {', '.join(available_heads())}")
    for name in ("steps", "batch_size", "obs_horizon", "action_horizon", "n_act", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(cfg, name)})")
    if cfg.n_act > cfg.action_horizon:
        raise ConfigError(f"--n-act {cfg.n_act} exceeds --action-horizon {cfg.action_horizon}")
    if cfg.precision not in ("fp32", "bf16"):
        raise ConfigError(f"--precision {cfg.precision!r}: choose fp32 or bf16")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 0 at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step where torch supports it (CPU and CUDA), else multi-tensor."""
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their global norm is at most ``max_norm`` (0: no clipping); return
    the norm before clipping. For the trainer's single-device parameters this skips the per-device
    grouping of `torch.nn.utils.clip_grad_norm_`, which costs as much again on CPU."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm > 0:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def _run_dir_for_new_run(out: Path) -> None:
    if (out / "config.json").exists():
        raise ImitateError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if out.exists() and any(out.iterdir()):
        raise ImitateError(f"{out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def train(cfg: TrainConfig, head_config: dict[str, Any] | None = None, encoder_config: dict[str, Any] | None = None,
          progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Train a new policy as ``cfg`` says, in the new run directory ``cfg.out``; return the final metrics.

    Args:
        cfg: the run's settings.
        head_config: overrides of the head's Config (strings are converted), e.g. ``{"n_components": "8"}``.
        encoder_config: overrides of `imitate.encoders.EncoderConfig`.
        progress: show a progress bar.
        stop_at: stop (with a checkpoint) once this step is reached, as an interruption would.
    """
    return _fit(cfg, None, dict(head_config or {}), dict(encoder_config or {}), progress, stop_at)


def resume(run_dir: str | Path, steps: int | None = None, progress: bool = True,
           stop_at: int | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint, with its own settings (``steps``
    may raise the total; the learning-rate schedule then stretches to the new total)."""
    saved = ckpt.read_run_config(run_dir)
    if not (Path(run_dir) / "train_state.safetensors").exists():
        raise ImitateError(f"{run_dir}: no train_state.safetensors to resume from (no checkpoint written yet)")
    cfg = TrainConfig(**{**saved["train"], "obs_keys": tuple(saved["train"]["obs_keys"]), "out": str(run_dir)})
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    return _fit(cfg, saved["policy"], {}, {}, progress, stop_at)


def _train_rows(store, episodes) -> np.ndarray:
    idx = range(store.n_episodes) if episodes is None else episodes
    starts, ends, row_type = store.episode_starts, store.episode_ends, np.int32 if len(store) < 2**31 else np.int64
    return np.concatenate([np.arange(starts[i], ends[i], dtype=row_type) for i in idx])


def _initial_policy(cfg: TrainConfig, store, head_config: dict[str, Any], encoder_config: dict[str, Any]):
    """The policy of run ``cfg.init`` (weights and normalizer statistics), checked against ``cfg`` and the data."""
    if head_config or encoder_config:
        raise ConfigError(f"--init {cfg.init}: head and encoder settings come from that run; drop --set")
    policy = ckpt.load_policy(cfg.init)
    spec = policy.spec()
    want = {"head": cfg.head, "obs_horizon": cfg.obs_horizon, "action_horizon": cfg.action_horizon, "n_act": cfg.n_act}
    for key, value in want.items():
        if spec[key] != value:
            raise ConfigError(f"--init {cfg.init}: that run has {key}={spec[key]!r} but this one asks for {value!r}")
    shapes = {k: list(store.shape(f"obs/{k}")) for k in spec["obs_keys"] if f"obs/{k}" in store.keys}
    if shapes != spec["obs_shapes"] or store.action_dim != spec["action_dim"]:
        raise ConfigError(f"--init {cfg.init}: that run was trained on observations {spec['obs_shapes']} and "
                          f"{spec['action_dim']}-D actions; {cfg.data} has {shapes} and {store.action_dim}-D actions")
    return policy


def _fit(cfg: TrainConfig, spec: dict[str, Any] | None, head_config: dict[str, Any], encoder_config: dict[str, Any],
         progress: bool, stop_at: int | None) -> dict[str, Any]:
    _check(cfg)
    world_size = distributed.env_rank()[1]
    if cfg.batch_size % world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must divide evenly among "
                          f"{world_size} processes")
    ctx = distributed.setup(cfg.device, cfg.dist_timeout)
    with ctx.collective("training"):
        return _fit_on(ctx, cfg, spec, head_config, encoder_config, progress, stop_at)


def _fit_on(ctx: distributed.Context, cfg: TrainConfig, spec: dict[str, Any] | None, head_config: dict[str, Any],
            encoder_config: dict[str, Any], progress: bool, stop_at: int | None) -> dict[str, Any]:
    out, resuming, device = Path(cfg.out), spec is not None, ctx.device
    store = load_demo_file(cfg.data, obs_keys=list(cfg.obs_keys) or None, lazy=cfg.lazy)
    train_eps = store.episodes_in("train") if "train" in store.filter_keys else None
    valid_eps = store.episodes_in("valid") if "valid" in store.filter_keys else None

    torch.manual_seed(cfg.seed)
    init = _initial_policy(cfg, store, head_config, encoder_config) if cfg.init and not resuming else None
    if init is not None:
        spec = init.spec()
    elif not resuming:
        try:
            typed = config_from_dict(get_head_class(cfg.head), head_config)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        discrete = bool(getattr(typed, "discrete_nvec", ()))  # discrete actions are indices: not normalized
        norm = Normalizer.from_store(store, store.obs_keys, cfg.obs_norm, "identity" if discrete else cfg.action_norm,
                                     episodes=train_eps)
        spec = {"obs_keys": store.obs_keys, "obs_shapes": {k: list(store.shape(f"obs/{k}")) for k in store.obs_keys},
                "action_dim": store.action_dim, "obs_horizon": cfg.obs_horizon, "action_horizon": cfg.action_horizon,
                "n_act": cfg.n_act, "head": cfg.head, "head_config": head_config,
                "encoder_config": encoder_config, "normalizer": norm.config()}
    policy = build_policy(spec)
    if init is not None:
        policy.load_state_dict(init.state_dict())
    elif not resuming:
        policy.normalizer.load_state_dict(norm.state_dict())
        rows = np.random.default_rng(cfg.seed).permutation(_train_rows(store, train_eps))[:100_000]
        actions = policy.normalizer.normalize("action", torch.from_numpy(store.get("actions", np.sort(rows))).float())
        policy.head.prepare(actions)
        spec = policy.spec()  # with the head's full config
    if not resuming:
        def new_run_dir() -> None:
            _run_dir_for_new_run(out)
            ckpt.write_json(out / "config.json", {
                "format": ckpt.RUN_FORMAT, "policy": spec, "train": to_dict(cfg),
                "data": {"path": str(Path(cfg.data).resolve()), "env_args": store.env_args, "demos": store.n_episodes,
                         "transitions": len(store), "train_demos": None if train_eps is None else len(train_eps),
                         "valid_demos": None if valid_eps is None else len(valid_eps)},
                "versions": ckpt.versions()})
        ctx.on_main(new_run_dir, "creating the run directory")
    policy.to(device).train()
    ema = copy.deepcopy(policy).eval().requires_grad_(False)
    params, ema_params = list(policy.parameters()), list(ema.parameters())
    optimizer = make_optimizer(params, cfg)
    compute_loss = ctx.data_parallel(policy)  # several processes: DistributedDataParallel averages the gradients
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.precision == "bf16" \
        else contextlib.nullcontext
    sampler = WindowSampler(store, cfg.obs_horizon, cfg.action_horizon, cfg.batch_size // ctx.world_size,
                            episodes=train_eps, obs_keys=policy.obs_keys, seed=cfg.seed, rank=ctx.rank,
                            world_size=ctx.world_size)
    if ctx.rank:
        torch.manual_seed(distributed.rank_seed(cfg.seed, ctx.rank))  # each rank its own sampling noise
    val = None
    if valid_eps is not None and len(valid_eps) and cfg.val_every > 0 and ctx.is_main:
        vs = WindowSampler(store, cfg.obs_horizon, cfg.action_horizon, cfg.batch_size, episodes=valid_eps,
                           obs_keys=policy.obs_keys, seed=0)
        order = vs.epoch_order(0)[:cfg.val_batches * cfg.batch_size]
        val = [vs.gather(order[i:i + cfg.batch_size]).to_torch(device) for i in range(0, len(order), cfg.batch_size)]
    env_id = (store.env_args or {}).get("env_name") if (store.env_args or {}).get("type") == 2 else None

    step = 0
    if resuming:
        tensors, state = ckpt.load_train_state(out / "train_state.safetensors")
        ckpt.load_state_into(policy, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, "train_state", cfg.head)
        ckpt.load_state_into(ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, "train_state", cfg.head)
        ckpt.optimizer_from_tensors(optimizer, tensors, state["optimizer"])
        step = state["step"]
        saved_ranks = int(state.get("world_size", 1))
        if saved_ranks == ctx.world_size:  # each rank continues exactly where it stopped
            sampler.load_state_dict(state["samplers"][ctx.rank] if ctx.enabled else state["sampler"])
            torch.set_rng_state(tensors["rng.torch" + (f".rank{ctx.rank}" if ctx.rank else "")])
        else:  # another number of processes: the same point of the epoch, fresh noise beyond rank 0
            pos = state["sampler"]
            sampler.load_state_dict({"epoch": pos["epoch"], "cursor": pos["cursor"] * saved_ranks // ctx.world_size})
            torch.set_rng_state(tensors["rng.torch"])
            if ctx.rank:
                torch.manual_seed(distributed.rank_seed(cfg.seed, ctx.rank, step))

    tb = None
    metrics_file = open(out / "metrics.jsonl", "a") if ctx.is_main else None

    def log(record: dict[str, Any]) -> None:
        nonlocal tb
        if not ctx.is_main:
            return
        if tb is None:
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(str(out / "tb"))
        for k, v in record.items():
            if isinstance(v, (int, float)) and k != "step":
                tb.add_scalar(k, v, record["step"])
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()

    def save() -> None:
        check_finite()
        samplers = ctx.all_gather_object(sampler.state_dict(), "gathering the samplers' positions")
        rngs = ctx.all_gather_object(torch.get_rng_state(), "gathering the random generators' states")
        if not ctx.is_main:
            return
        opt_tensors, opt_meta = ckpt.optimizer_to_tensors(optimizer)
        tensors = {**{f"model.{k}": v for k, v in policy.state_dict().items()},
                   **{f"ema.{k}": v for k, v in ema.state_dict().items()}, **opt_tensors,
                   "rng.torch": rngs[0], **{f"rng.torch.rank{r}": rngs[r] for r in range(1, ctx.world_size)}}
        state = {"step": step, "sampler": samplers[0], "optimizer": opt_meta}
        if ctx.enabled:
            state.update(world_size=ctx.world_size, samplers=samplers)
        ckpt.save_train_state(out / "train_state.safetensors", tensors, state)
        ckpt.save_weights(out / "model.safetensors", ema, {"step": step})

    first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def check_finite() -> None:
        bad = first_bad
        if ctx.enabled:  # the first bad step of any rank, on every rank
            bad = ctx.min_(torch.where(first_bad < 0, cfg.steps + 1, first_bad), "checking the losses")
            bad = torch.where(bad > cfg.steps, -1, bad)
        bad = int(bad)
        if bad >= 0:
            raise ImitateError(f"training diverged: the loss became NaN or inf at step {bad}; the last good "
                               f"checkpoint in {out} is kept (try a lower --lr or --grad-clip)")

    def run_eval() -> dict[str, Any]:
        from imitate.evaluate import evaluate

        with torch.random.fork_rng(devices=[]):
            res = evaluate(ema, env_id, store.env_args.get("env_kwargs"), cfg.eval_episodes, cfg.eval_seed,
                           progress=False)
        return {"eval/success_rate": res["success_rate"], "eval/mean_return": res["mean_return"],
                "eval/behaviour_entropy": res["behaviour_entropy"], "eval/mode_shares": res["mode_shares"]}

    def validate() -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), autocast():
            torch.manual_seed(cfg.seed + 1)
            losses = [ema.compute_loss(b.obs, b.action, b.action_mask)[0] for b in val]
        return float(torch.stack(losses).float().mean())

    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.head}", unit="step",
               disable=not progress or not ctx.is_main)
    loss_sum, info_sum, n_sum, t_log = None, {}, 0, time.perf_counter()
    last: dict[str, Any] = {}
    try:
        while step < cfg.steps:
            batch = sampler.sample().to_torch(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            with autocast():
                loss, info = compute_loss(batch.obs, batch.action, batch.action_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = clip_grad_norm(params, cfg.grad_clip)
            optimizer.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1.0 - decay)
            loss = loss.detach()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            loss_sum = loss if loss_sum is None else loss_sum + loss
            for k, v in info.items():
                info_sum[k] = v if k not in info_sum else info_sum[k] + v
            n_sum += 1
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                check_finite()
                if ctx.enabled:  # the losses of all ranks' windows: the mean over the ranks
                    sums = ctx.sum_(torch.stack([v.float() for v in (loss_sum, *info_sum.values())]), "averaging the losses")
                    loss_sum, info_sum = sums[0] / ctx.world_size, dict(zip(info_sum, sums[1:] / ctx.world_size))
                now = time.perf_counter()
                last = {"step": step, "train/loss": float(loss_sum) / n_sum, "train/lr": lr_at(step - 1, cfg),
                        "train/grad_norm": float(grad_norm), "time/steps_per_s": n_sum / (now - t_log),
                        **{f"train/{k}": float(v) / n_sum for k, v in info_sum.items()}}
                loss_sum, info_sum, n_sum, t_log = None, {}, 0, now
                bar.set_postfix(loss=f"{last['train/loss']:.4f}")
                log(last)
            if val is not None and step % cfg.val_every == 0:
                log({"step": step, "val/loss": validate()})
            if (env_id and cfg.eval_episodes and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps
                    and ctx.is_main):
                log({"step": step, **run_eval()})
            if step % cfg.ckpt_every == 0 or step == cfg.steps or step == stop_at:
                save()
            if step == stop_at:
                break
    except KeyboardInterrupt:
        bar.close()
        if ctx.enabled:  # the ranks stopped at different points: the last periodic checkpoint stands
            print(f"interrupted at step {step}: continue from the last checkpoint in {out} with --resume")
            raise
        save()
        print(f"interrupted at step {step}: checkpoint saved in {out}; continue with --resume")
        raise
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
    final: dict[str, Any] = {"run_dir": str(out), "head": cfg.head, "step": step, "train_loss": last.get("train/loss")}
    if ctx.enabled:  # DDP keeps the ranks' weights equal: check it
        digests = ctx.all_gather_object(distributed.weights_digest(policy, ema), "comparing the ranks' weights")
        if len(set(digests)) > 1:
            raise ImitateError(f"rank {ctx.rank}: the processes' weights differ after training ({digests})")
        final.update(processes=ctx.world_size, weights_sha256=digests[0])
    if step >= cfg.steps and ctx.is_main:
        if val is not None:
            final["val_loss"] = validate()
        if env_id and cfg.eval_episodes:
            final.update({k.split("/")[1]: v for k, v in run_eval().items()})
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"final": final}) + "\n")
    if tb is not None:
        tb.close()
    return final

