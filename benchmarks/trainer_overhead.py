"""Trainer overhead: `imitate train`'s step time per head vs a bare PyTorch loop with the same model.

The trainer's time per step comes from its own log (``time/steps_per_s`` over the second half of a
run: sampling, normalization, forward, backward, gradient clipping, AdamW, EMA, the NaN guard). The
bare loop runs forward, backward and the same AdamW (`imitate.optim.make_optimizer`) on batches
pre-loaded as tensors, nothing else. Both
alternate, one torch thread, median of several rounds.

    python benchmarks/trainer_overhead.py --rounds 5
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from imitate.checkpoint import load_policy
from imitate.data import WindowSampler, load_demo_file
from imitate.optim import make_optimizer
from imitate.train import TrainConfig, train



def trainer_step_s(cfg: TrainConfig, head_cfg: dict) -> float:
    shutil.rmtree(cfg.out, ignore_errors=True)
    train(cfg, dict(head_cfg), progress=False)
    lines = [json.loads(l) for l in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    rates = [l["time/steps_per_s"] for l in lines if "time/steps_per_s" in l]
    return 1.0 / rates[-1]  # the second (warm) half of the run


def bare_step_s(run_dir: str, data: str, cfg: TrainConfig, steps: int) -> float:
    policy = load_policy(run_dir).train()
    store = load_demo_file(data)
    sampler = WindowSampler(store, cfg.obs_horizon, cfg.action_horizon, cfg.batch_size, episodes="train", seed=1)
    batches = [sampler.sample().to_torch() for _ in range(16)]
    opt = make_optimizer(list(policy.parameters()), cfg.lr, cfg.weight_decay)  # the trainer's own optimizer: the same update
    for i in range(3):
        b = batches[i % 16]
        loss, _ = policy.compute_loss(b.obs, b.action, b.action_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    start = time.perf_counter()
    for i in range(steps):
        b = batches[i % 16]
        loss, _ = policy.compute_loss(b.obs, b.action, b.action_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/forked_path.hdf5")
    p.add_argument("--heads", default="deterministic,gaussian,gmm,autoregressive,diffusion")
    p.add_argument("--steps", type=int, default=200, help="trainer steps per measurement (the second half is timed)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--action-horizon", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    rows = {}
    for head in args.heads.split(","):
        cfg = TrainConfig(data=args.data, out=f"{tmp}/{head}", head=head, steps=args.steps, batch_size=args.batch_size,
                          action_horizon=args.action_horizon, n_act=args.action_horizon // 2, log_every=args.steps // 2,
                          val_every=0, eval_episodes=0, ckpt_every=10 * args.steps)
        ours, bare = [], []
        for _ in range(args.rounds):
            ours.append(trainer_step_s(cfg, {}))
            bare.append(bare_step_s(cfg.out, args.data, cfg, args.steps // 2))
        rows[head] = {"trainer_ms": 1e3 * statistics.median(ours), "bare_ms": 1e3 * statistics.median(bare),
                      "ratio": statistics.median([o / b for o, b in zip(ours, bare)])}
        r = rows[head]
        print(f"{head:15s} trainer {r['trainer_ms']:7.2f} ms/step   bare loop {r['bare_ms']:7.2f} ms/step   "
              f"ratio {r['ratio']:.3f}", flush=True)
    print(json.dumps({"settings": vars(args), "results": rows}))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
