"""The small callbacks that `imitate.train`'s loop calls after every step.

    DivergenceGuard    skipped steps, NaN losses, loss spikes -> stop with the step
    Logger             progress bar, RUN_DIR/metrics.jsonl, TensorBoard (RUN_DIR/tb)
    Validation         the EMA policy's loss on the file's 'valid' split
    evaluate_rollouts  rollouts in the environment the file names
    checkpoint         train_state.safetensors + model.safetensors, atomically

Steps are counted from 1: the record of step s in metrics.jsonl and a divergence message naming
step s speak of the same optimizer step. Rank 0 alone logs, validates, evaluates and writes.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from imitate import checkpoint as ckpt
from imitate.errors import ImitateError
from imitate.optim import lr_at


class DivergenceGuard:
    """Stops a run that diverges, before anything non-finite is written.

    - a step whose gradient norm is inf or NaN was skipped (`imitate.train.train_step`); after
      ``max_bad_grad_steps`` such steps in a row training stops;
    - a non-finite loss is remembered (without waiting for the device) and reported at the next log
      step or checkpoint, naming the first bad step;
    - a logged loss above ``median + loss_spike * max(1, |median|)`` of the earlier logged losses stops it.
    """

    def __init__(self, run):
        self.run = run
        self.first_bad = torch.full((), -1, dtype=torch.long, device=run.ctx.device)
        self.bad_grads_in_row, self.skipped, self.history = 0, 0, []

    def after_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, taken: bool) -> None:
        step = self.run.step
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)
        if taken:
            self.bad_grads_in_row = 0
            return
        self.bad_grads_in_row += 1
        self.skipped += 1
        if self.bad_grads_in_row >= self.run.cfg.max_bad_grad_steps:
            raise ImitateError(f"training diverged: the gradient norm was {float(grad_norm)} at {self.bad_grads_in_row} "
                               f"steps in a row (skipped), the last at step {step}; the last good checkpoint in "
                               f"{self.run.out} is kept (try a lower --lr or --grad-clip)")

    def check(self) -> None:
        """Raise if any step so far had a non-finite loss (every rank agrees on the first such step)."""
        ctx, bad = self.run.ctx, self.first_bad
        if ctx.enabled:
            steps = self.run.cfg.steps
            bad = ctx.min_(torch.where(bad < 0, steps + 1, bad), "checking the losses")
            bad = torch.where(bad > steps, -1, bad)
        bad = int(bad)
        if bad >= 0:
            raise ImitateError(f"training diverged: the loss became NaN or inf at step {bad}; the last good "
                               f"checkpoint in {self.run.out} is kept (try a lower --lr or --grad-clip)")

    def check_spike(self, record: dict[str, Any]) -> None:
        loss, factor = record["train/loss"], self.run.cfg.loss_spike
        if factor > 0 and len(self.history) >= 3:
            median = statistics.median(self.history)
            if loss > median + factor * max(1.0, abs(median)):
                raise ImitateError(f"training diverged: the loss at step {record['step']} is {loss:.4g}, far above its "
                                   f"running median {median:.4g} (--loss-spike {factor:g}); the last good checkpoint "
                                   f"in {self.run.out} is kept (try a lower --lr or --grad-clip)")
        self.history.append(loss)


class Logger:
    """Sums the losses between log steps; writes one record per log step to the progress bar,
    metrics.jsonl and TensorBoard (rank 0)."""

    def __init__(self, run, progress: bool):
        self.run, self.main = run, run.ctx.is_main
        self.bar = tqdm(total=run.cfg.steps, initial=run.step, desc=f"train {run.cfg.head}", unit="step",
                        disable=not progress or not self.main)
        self.file = open(run.out / "metrics.jsonl", "a") if self.main else None
        self.tb = None
        self.loss_sum, self.info_sum, self.grad_norm, self.n, self.t = None, {}, None, 0, time.perf_counter()
        self.last: dict[str, Any] = {}

    def after_step(self, loss: torch.Tensor, info: dict[str, torch.Tensor], grad_norm: torch.Tensor) -> None:
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        for k, v in info.items():
            self.info_sum[k] = v if k not in self.info_sum else self.info_sum[k] + v
        self.grad_norm, self.n = grad_norm, self.n + 1
        self.bar.update(1)

    def flush(self) -> dict[str, Any]:
        """The record of the steps since the last flush (averaged over ranks), written; returned."""
        ctx, step = self.run.ctx, self.run.step
        loss_sum, info_sum = self.loss_sum, self.info_sum
        if ctx.enabled:  # the losses of all ranks' windows: the mean over the ranks
            sums = ctx.sum_(torch.stack([v.float() for v in (loss_sum, *info_sum.values())]), "averaging the losses")
            loss_sum, info_sum = sums[0] / ctx.world_size, dict(zip(info_sum, sums[1:] / ctx.world_size))
        now = time.perf_counter()
        cfg = self.run.cfg
        self.last = {"step": step, "train/loss": float(loss_sum) / self.n,
                     "train/lr": lr_at(step - 1, cfg.lr, cfg.warmup_steps, cfg.steps),
                     "train/grad_norm": float(self.grad_norm), "time/steps_per_s": self.n / (now - self.t),
                     **{f"train/{k}": float(v) / self.n for k, v in info_sum.items()}}
        self.loss_sum, self.info_sum, self.n, self.t = None, {}, 0, now
        self.bar.set_postfix(loss=f"{self.last['train/loss']:.4f}")
        self.write(self.last)
        return self.last

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        if self.tb is None:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.run.out / "tb"))
        for k, v in record.items():
            if isinstance(v, (int, float)) and k != "step":
                self.tb.add_scalar(k, v, record["step"])
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.bar.close()
        if self.file is not None and not self.file.closed:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


class Validation:
    """The EMA policy's mean loss on a fixed set of windows from the file's 'valid' split (rank 0)."""

    def __init__(self, run, autocast):
        from imitate.data import WindowSampler

        self.run, self.autocast, self.batches = run, autocast, []
        cfg = run.cfg
        if run.valid_eps is not None and len(run.valid_eps) and cfg.val_every > 0:
            vs = WindowSampler(run.store, cfg.obs_horizon, cfg.action_horizon, cfg.batch_size,
                               episodes=run.valid_eps, obs_keys=run.policy.obs_keys, seed=0)
            order = vs.epoch_order(0)[:cfg.val_batches * cfg.batch_size]
            self.batches = [vs.gather(order[i:i + cfg.batch_size]).to_torch(run.ctx.device)
                            for i in range(0, len(order), cfg.batch_size)]

    def due(self) -> bool:
        return bool(self.batches) and self.run.step % self.run.cfg.val_every == 0

    def __call__(self) -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), self.autocast():
            torch.manual_seed(self.run.cfg.seed + 1)
            losses = [self.run.ema.compute_loss(b.obs, b.action, b.action_mask)[0] for b in self.batches]
        return float(torch.stack(losses).float().mean())


def evaluate_rollouts(run) -> dict[str, Any]:
    """Rollouts of the EMA policy in the environment the file names ({} without one or with 0 episodes)."""
    if not (run.env_id and run.cfg.eval_episodes):
        return {}
    from imitate.evaluate import evaluate

    with torch.random.fork_rng(devices=[]):
        res = evaluate(run.ema, run.env_id, run.env_kwargs, run.cfg.eval_episodes,
                       run.cfg.eval_seed, progress=False)
    return {"eval/success_rate": res["success_rate"], "eval/mean_return": res["mean_return"],
            "eval/behaviour_entropy": res["behaviour_entropy"], "eval/mode_shares": res["mode_shares"]}


def checkpoint(run, guard: DivergenceGuard) -> None:
    """train_state.safetensors (weights, EMA, optimizer, RNG, sampler position) and model.safetensors
    (EMA), written by rank 0 after every tensor was checked finite."""
    guard.check()
    ctx = run.ctx
    samplers = ctx.all_gather_object(run.sampler.state_dict(), "gathering the samplers' positions")
    rngs = ctx.all_gather_object(torch.get_rng_state(), "gathering the random generators' states")
    if not ctx.is_main:
        return
    opt_tensors, opt_meta = ckpt.optimizer_to_tensors(run.optimizer)
    tensors = {**{f"model.{k}": v for k, v in run.policy.state_dict().items()},
               **{f"ema.{k}": v for k, v in run.ema.state_dict().items()}, **opt_tensors,
               "rng.torch": rngs[0], **{f"rng.torch.rank{r}": rngs[r] for r in range(1, ctx.world_size)}}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ImitateError(f"training diverged before step {run.step}: non-finite values in {bad[:4]} "
                           f"({len(bad)} tensors); nothing was written, the last good checkpoint in {run.out} is kept")
    state = {"step": run.step, "sampler": samplers[0], "optimizer": opt_meta, "skipped_steps": guard.skipped}
    if ctx.enabled:
        state.update(world_size=ctx.world_size, samplers=samplers)
    ckpt.save_train_state(run.out / "train_state.safetensors", tensors, state)
    ckpt.save_weights(run.out / "model.safetensors", run.ema, {"step": run.step})
