"""The one behaviour-cloning trainer: every head trains through `train`.

    open the run      a new run directory (config.json), or the last checkpoint of one (`resume`)
    the loop          batch --Policy.compute_loss--> loss --backward, clip--> AdamW step --> EMA
    callbacks         `imitate.train_callbacks`: log, validate, evaluate rollouts, checkpoint, guard

One batch: EpisodeStore --WindowSampler(train split)--> raw obs {key: (B, To, *shape)}, raw actions
(B, Ta, A), mask (B, Ta) --Policy: normalize, encode, head.loss--> scalar loss. The EMA of the weights
is what is evaluated, saved and exported. Learning rate: linear warm-up, then cosine decay to zero
(`imitate.optim`). A step whose gradient norm is not finite is skipped and counted, a diverging run
stops with the step it happened at, and nothing non-finite is ever written (`DivergenceGuard`).

``resume`` continues a run exactly where its last checkpoint left it (on CPU the result is identical
to an uninterrupted run); a run stopped before its first checkpoint starts again from step 0 with
its own settings. Ctrl-C and SIGTERM write a checkpoint.

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
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from imitate import checkpoint as ckpt
from imitate import distributed
from imitate.config import apply_overrides, to_dict
from imitate.data import WindowSampler, load_demo_file
from imitate.errors import ConfigError, ImitateError
from imitate.optim import clip_grad_norm, ema_update, lr_at, make_optimizer
from imitate.policy import Policy
from imitate.settings import TrainConfig, head_settings_for
from imitate.spec import ActionSpec, ObsSpec, PolicySpec
from imitate.train_callbacks import DivergenceGuard, Logger, Validation, checkpoint, evaluate_rollouts

__all__ = ["TrainConfig", "train", "resume"]


def train(cfg: TrainConfig, head_config: dict[str, Any] | None = None, encoder_config: dict[str, Any] | None = None,
          progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Train a new policy as ``cfg`` says, in the new run directory ``cfg.out``; return the final metrics.

    Args:
        cfg: the run's settings.
        head_config: head settings (strings are converted), e.g. ``{"num_modes": "8"}``; they override
            the CPU-sized defaults that ``cfg.sizing`` may choose.
        encoder_config: overrides of `imitate.settings.EncoderConfig`.
        progress: show a progress bar.
        stop_at: stop (with a checkpoint) once this step is reached, as an interruption would.
    """
    return _run(cfg, lambda ctx: _open_new(ctx, cfg, dict(head_config or {}), dict(encoder_config or {}), progress),
                progress, stop_at)


def resume(run_dir: str | Path, steps: int | None = None, progress: bool = True,
           stop_at: int | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint, with its own settings (``steps`` may
    raise the total; the learning-rate schedule then stretches to the new total). A run that wrote no
    checkpoint yet starts again from step 0 with its own settings."""
    saved = ckpt.read_run_config(run_dir, resuming=True)
    cfg = _saved_train_config(saved, run_dir)
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    if not (Path(run_dir) / "train_state.safetensors").exists():
        spec = PolicySpec.from_json(saved["policy"])
        print(f"{run_dir}: no checkpoint yet; training again from step 0 with the run's own settings")
        return _run(cfg, lambda ctx: _open_new(ctx, cfg, dict(spec.head_config), dict(spec.encoder_config), progress,
                                               restart=True), progress, stop_at)
    return _run(cfg, lambda ctx: _open_resumed(ctx, cfg, saved), progress, stop_at)


# -- opening a run --------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the loop needs: the run's settings and directory, its data, modules and position."""

    cfg: TrainConfig
    out: Path
    ctx: distributed.Context
    store: Any
    policy: Policy
    ema: Policy
    optimizer: torch.optim.Optimizer
    sampler: WindowSampler
    valid_eps: Any
    env_id: str | None
    env_kwargs: dict | None
    step: int = 0


def check_run_flags(cfg, data_is: str, counts: tuple[str, ...]) -> None:
    """The flags every trainer of a run directory checks alike: ``--data`` (described as ``data_is``),
    ``--out``, ``--head``, and the ``counts`` that must be at least 1."""
    if not cfg.data:
        raise ConfigError(f"--data is required: {data_is}")
    if not cfg.out:
        raise ConfigError("--out is required: the run directory to create")
    from imitate.data.sources import normalize_format

    normalize_format(getattr(cfg, "data_format", None))  # an unknown --format, before anything is written
    from policy_heads import available_heads

    if cfg.head not in available_heads():
        raise ConfigError(f"--head {cfg.head!r} is unknown; available heads: {', '.join(available_heads())}")
    for name in counts:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(cfg, name)})")


def _check(cfg: TrainConfig, world_size: int) -> None:
    check_run_flags(cfg, "the demonstration file to train on",
                    ("steps", "batch_size", "obs_horizon", "action_horizon", "n_act", "log_every", "max_bad_grad_steps"))
    if cfg.n_act > cfg.action_horizon:
        raise ConfigError(f"--n-act {cfg.n_act} exceeds --action-horizon {cfg.action_horizon}")
    if cfg.precision not in ("fp32", "bf16"):
        raise ConfigError(f"--precision {cfg.precision!r}: choose fp32 or bf16")
    if cfg.batch_size % world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must divide evenly among "
                          f"{world_size} processes")


def _run(cfg: TrainConfig, open_run: Callable[[distributed.Context], Run], progress: bool,
         stop_at: int | None) -> dict[str, Any]:
    _check(cfg, distributed.env_rank()[1])
    ctx = distributed.setup(cfg.device, cfg.dist_timeout)
    with ctx.collective("training"), _sigterm_interrupts():
        return fit(open_run(ctx), progress, stop_at)


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a scheduler stopping the job) is handled as Ctrl-C: a checkpoint, then exit."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:            # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _load_data(cfg: TrainConfig):
    store = load_demo_file(cfg.data, obs_keys=list(cfg.obs_keys) or None, lazy=cfg.lazy, format=cfg.data_format)
    train_eps = store.episodes_in("train") if "train" in store.filter_keys else None
    valid_eps = store.episodes_in("valid") if "valid" in store.filter_keys else None
    return store, train_eps, valid_eps


def _spec_from_data(cfg: TrainConfig, store, head_config: dict[str, Any], encoder_config: dict[str, Any]) -> PolicySpec:
    """The policy a run trains: the file's observation keys, shapes and dtypes and its action width;
    ``discrete_nvec`` among the head settings makes the actions discrete (categories per entry).
    Camera keys (uint8 (H, W, C), `imitate.data.checks.is_image`) are not normalized (norm identity):
    the image encoder scales them."""
    from imitate.data.checks import is_image
    from policy_heads.fields import convert_value

    head_config = dict(head_config)
    nvec = tuple(convert_value(head_config.pop("discrete_nvec", ()), tuple[int, ...]))
    first = np.zeros(1, dtype=np.int64)   # the dtype of a key: that of its first row as the store reads it
    obs = {}
    for k in store.obs_keys:
        shape, dtype = tuple(store.shape(f"obs/{k}")), store.get(f"obs/{k}", first).dtype
        obs[k] = ObsSpec(shape, str(dtype), "identity" if is_image(shape, dtype) else cfg.obs_norm)
    action = ActionSpec(store.action_dim, nvec, norm="identity" if nvec else cfg.action_norm)
    return PolicySpec(obs, action, cfg.obs_horizon, cfg.action_horizon, cfg.n_act, cfg.head, head_config, encoder_config)


def image_encoder_for(on_cpu: bool, sizing: str, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The encoder settings of a policy with camera keys: ``image_encoder`` auto (the default) becomes
    conv where ``sizing`` is cpu, or auto and the run trains ``on_cpu``, and resnet18 otherwise; with a
    one-line note when auto was resolved."""
    value = str(given.get("image_encoder", "auto"))
    if value != "auto":
        return dict(given), ""
    cpu = sizing == "cpu" or (sizing == "auto" and on_cpu)
    chosen = "conv" if cpu else "resnet18"
    why = ("no GPU found" if on_cpu else "a GPU found") if sizing == "auto" else f"--sizing {sizing}"
    return {**given, "image_encoder": chosen}, (f"{why}: images go through the {chosen} encoder; pass --set "
                                                f"encoder.image_encoder=conv|resnet18 to choose")


def rollout_task(data: str, store, online: bool = False) -> tuple[str | None, dict | None]:
    """(env id, kwargs) of the environment the file names, checked to build before anything is written;
    (None, None) when it names none. A ConfigError naming the file when it cannot be built, or, with
    ``online`` (training that steps the environment, not only evaluates in it), when it names none."""
    from imitate.envs import make_env, task_of

    try:
        env_id, env_kwargs = task_of(store.env_args)
        if env_id:
            make_env(env_id, env_kwargs).close()
    except ImitateError as e:
        if online:
            raise ConfigError(f"{data}: --online-steps needs the environment the file names, and it cannot be "
                              f"built ({e})") from None
        raise ConfigError(f"{data}: its environment cannot be built for rollouts ({e}); pass --eval-episodes 0 "
                          f"to train without them") from None
    if online and not env_id:
        raise ConfigError(f"{data}: --online-steps needs an environment, and the file names none (env_args)")
    return env_id, env_kwargs


def _task(cfg: TrainConfig, store) -> tuple[str | None, dict | None]:
    """The environment for rollouts when asked for (``eval_episodes``): `rollout_task`."""
    return rollout_task(cfg.data, store) if cfg.eval_episodes else (None, None)


def _open_new(ctx: distributed.Context, cfg: TrainConfig, head_config: dict[str, Any], encoder_config: dict[str, Any],
              progress: bool, restart: bool = False) -> Run:
    out = Path(cfg.out)
    store, train_eps, valid_eps = _load_data(cfg)
    task = _task(cfg, store)
    torch.manual_seed(cfg.seed)
    if cfg.init:
        policy = _initial_policy(cfg, store, head_config, encoder_config)
    else:
        head_config, note = head_settings_for(cfg.head, ctx.device.type == "cpu", cfg.sizing, head_config)
        if note and progress and ctx.is_main:
            print(note, flush=True)
        spec = _spec_from_data(cfg, store, head_config, encoder_config)
        if spec.image_keys:
            encoder_config, note = image_encoder_for(ctx.device.type == "cpu", cfg.sizing, encoder_config)
            if note and progress and ctx.is_main:
                print(note, flush=True)
            spec = spec.replace(encoder_config=encoder_config)
        policy = Policy.from_data(spec, store, train_eps, cfg.seed)

    def new_run_dir() -> None:
        if not restart:
            _claim_run_dir(out)
        for stale in ("metrics.jsonl",):
            (out / stale).unlink(missing_ok=True)
        ckpt.write_json(out / "config.json", {
            "format": ckpt.RUN_FORMAT, "policy": policy.spec.to_json(), "train": to_dict(cfg),
            "data": {"path": str(Path(cfg.data).resolve()), "env_args": store.env_args, "demos": store.n_episodes,
                     "transitions": len(store), "train_demos": None if train_eps is None else len(train_eps),
                     "valid_demos": None if valid_eps is None else len(valid_eps)},
            "versions": ckpt.versions()})
    ctx.on_main(new_run_dir, "creating the run directory")
    return _assemble(ctx, cfg, out, store, policy, train_eps, valid_eps, task)


def _claim_run_dir(out: Path) -> None:
    if (out / "config.json").exists():
        raise ImitateError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if out.exists() and any(out.iterdir()):
        raise ImitateError(f"{out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def _assemble(ctx, cfg: TrainConfig, out: Path, store, policy: Policy, train_eps, valid_eps, task) -> Run:
    policy.to(ctx.device).train()
    ema = copy.deepcopy(policy).eval().requires_grad_(False)
    optimizer = make_optimizer(list(policy.parameters()), cfg.lr, cfg.weight_decay)
    sampler = WindowSampler(store, cfg.obs_horizon, cfg.action_horizon, cfg.batch_size // ctx.world_size,
                            episodes=train_eps, obs_keys=policy.obs_keys, seed=cfg.seed, rank=ctx.rank,
                            world_size=ctx.world_size)
    if ctx.rank:
        torch.manual_seed(distributed.rank_seed(cfg.seed, ctx.rank))  # each rank its own sampling noise
    return Run(cfg, out, ctx, store, policy, ema, optimizer, sampler, valid_eps, *task)


def _saved_train_config(saved: dict[str, Any], run_dir: str | Path) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved["train"].items() if k in known}
    return apply_overrides(TrainConfig(), {**values, "out": str(run_dir)}, f"{run_dir}/config.json: train")


def _open_resumed(ctx: distributed.Context, cfg: TrainConfig, saved: dict[str, Any]) -> Run:
    out = Path(cfg.out)
    store, train_eps, valid_eps = _load_data(cfg)
    policy = Policy(PolicySpec.from_json(saved["policy"]))
    run = _assemble(ctx, cfg, out, store, policy, train_eps, valid_eps, _task(cfg, store))
    tensors, state = ckpt.load_train_state(out / "train_state.safetensors")
    where = str(out / "train_state.safetensors")
    ckpt.load_state_into(run.policy, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, where, cfg.head)
    ckpt.load_state_into(run.ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, where, cfg.head)
    ckpt.optimizer_from_tensors(run.optimizer, tensors, state["optimizer"])
    run.step = int(state["step"])
    saved_ranks = int(state.get("world_size", 1))
    if saved_ranks == ctx.world_size:  # each rank continues exactly where it stopped
        run.sampler.load_state_dict(state["samplers"][ctx.rank] if ctx.enabled else state["sampler"])
        torch.set_rng_state(tensors["rng.torch" + (f".rank{ctx.rank}" if ctx.rank else "")])
    else:  # another number of processes: the same point of the epoch, fresh noise beyond rank 0
        pos = state["sampler"]
        run.sampler.load_state_dict({"epoch": pos["epoch"], "cursor": pos["cursor"] * saved_ranks // ctx.world_size})
        torch.set_rng_state(tensors["rng.torch"])
        if ctx.rank:
            torch.manual_seed(distributed.rank_seed(cfg.seed, ctx.rank, run.step))
    if ctx.is_main:
        ckpt.remove_stale_temporaries(out)
        _drop_log_lines_after(out / "metrics.jsonl", run.step)
    return run


def _drop_log_lines_after(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (a resumed run repeats the later ones) and no final line."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:          # a line cut by a killed write
            continue
        if "final" not in record and record.get("step", 0) <= step:
            keep.append(line + "\n")
    ckpt.atomic_write(path, lambda tmp: Path(tmp).write_text("".join(keep)))


def _initial_policy(cfg: TrainConfig, store, head_config: dict[str, Any], encoder_config: dict[str, Any]) -> Policy:
    """The policy of run ``cfg.init`` (weights and normalizer statistics), checked against ``cfg`` and the data."""
    if head_config or encoder_config:
        raise ConfigError(f"--init {cfg.init}: head and encoder settings come from that run; drop --set")
    policy = ckpt.load_policy(cfg.init)
    spec = policy.spec
    want = {"head": cfg.head, "obs_horizon": cfg.obs_horizon, "action_horizon": cfg.action_horizon, "n_act": cfg.n_act}
    for key, value in want.items():
        if getattr(spec, key) != value:
            raise ConfigError(f"--init {cfg.init}: that run has {key}={getattr(spec, key)!r} but this one asks for {value!r}")
    shapes = {k: tuple(store.shape(f"obs/{k}")) for k in spec.obs_keys if f"obs/{k}" in store.keys}
    if shapes != policy.obs_shapes or store.action_dim != spec.action.dim:
        raise ConfigError(f"--init {cfg.init}: that run was trained on observations {policy.obs_shapes} and "
                          f"{spec.action.dim}-D actions; {cfg.data} has {shapes} and {store.action_dim}-D actions")
    return policy


def fit(run, progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """Train ``run`` (an `imitate.train.Run`) to ``run.cfg.steps`` (or ``stop_at``); return the final metrics."""
    cfg, ctx = run.cfg, run.ctx
    compute_loss = ctx.data_parallel(run.policy)  # several processes: DistributedDataParallel averages gradients
    params, ema_params = list(run.policy.parameters()), list(run.ema.parameters())
    autocast = (lambda: torch.autocast(ctx.device.type, dtype=torch.bfloat16)) if cfg.precision == "bf16" \
        else contextlib.nullcontext
    guard, log = DivergenceGuard(run), Logger(run, progress)
    validate = Validation(run, autocast) if ctx.is_main else None
    try:
        while run.step < cfg.steps:
            loss, info, grad_norm, taken = train_step(run, compute_loss, params, ema_params, autocast)
            run.step += 1
            guard.after_step(loss, grad_norm, taken)
            log.after_step(loss, info, grad_norm)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                guard.check()
                guard.check_spike(log.flush())
            if validate is not None and validate.due():
                log.write({"step": run.step, "val/loss": validate()})
            if cfg.eval_every and run.step % cfg.eval_every == 0 and run.step < cfg.steps and ctx.is_main:
                log.write({"step": run.step, **evaluate_rollouts(run)})
            if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps or run.step == stop_at:
                checkpoint(run, guard)
            if run.step == stop_at:
                break
    except KeyboardInterrupt:
        log.close()
        if ctx.enabled:  # the ranks stopped at different points: the last periodic checkpoint stands
            print(f"interrupted at step {run.step}: continue from the last checkpoint in {run.out} with --resume")
            raise
        checkpoint(run, guard)
        print(f"interrupted at step {run.step}: checkpoint saved in {run.out}; continue with --resume")
        raise
    finally:
        log.close()
    return finish(run, log, validate)


def finish(run, log: Logger, validate: Validation | None) -> dict[str, Any]:
    """The final record: loss, validation loss and rollouts of a finished run (rank 0), written to the log."""
    cfg, ctx = run.cfg, run.ctx
    final: dict[str, Any] = {"run_dir": str(run.out), "head": cfg.head, "step": run.step,
                             "train_loss": log.last.get("train/loss")}
    if ctx.enabled:  # DDP keeps the ranks' weights equal: check it
        digests = ctx.all_gather_object(distributed.weights_digest(run.policy, run.ema), "comparing the ranks' weights")
        if len(set(digests)) > 1:
            raise ImitateError(f"rank {ctx.rank}: the processes' weights differ after training ({digests})")
        final.update(processes=ctx.world_size, weights_sha256=digests[0])
    if run.step >= cfg.steps and ctx.is_main:
        if validate is not None and validate.batches:
            final["val_loss"] = validate()
        final.update({k.split("/")[1]: v for k, v in evaluate_rollouts(run).items()})
        with open(run.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"final": final}) + "\n")
    return final



def train_step(run: Run, compute_loss, params: list[torch.nn.Parameter], ema_params: list[torch.Tensor],
               autocast) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, bool]:
    """One optimizer step at ``run.step``: batch -> loss -> backward -> clip -> AdamW -> EMA.

    Returns the detached loss, the head's info, the gradient norm before clipping, and whether the
    step was taken (a non-finite gradient norm skips the update and the EMA).
    """
    cfg = run.cfg
    batch = run.sampler.sample().to_torch(run.ctx.device, non_blocking=True)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, cfg.lr, cfg.warmup_steps, cfg.steps)
    with autocast():
        loss, info = compute_loss(batch.obs, batch.action, batch.action_mask)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_grad_norm(params, cfg.grad_clip)
    taken = bool(torch.isfinite(grad_norm))
    if taken:
        run.optimizer.step()
        ema_update(ema_params, params, min(cfg.ema_decay, (1 + run.step) / (10 + run.step)))
    return loss.detach(), info, grad_norm, taken
