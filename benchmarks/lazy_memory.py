"""Peak memory of training from a large demonstration file: lazy reader vs in memory.

Generates (once) a robomimic-layout file of ``--demos`` x ``--length`` transitions (by default 20,000 x
1,000 = 20 million; obs/state 10 float32, actions 7 float32, about 2.3 GB), one demo at a time so the
generation itself stays small in memory. Then trains the same short run twice, each in a fresh
process: ``--lazy true`` (episode blocks read on demand, a few cached) and in memory. Each process
reports its own peak resident memory (VmHWM), the seconds to its first step (loading, validation of
every value, normalizer statistics, the sampler's index) and its steps per second.

    python benchmarks/lazy_memory.py                       # 20M transitions in /tmp, kept for reruns
    python benchmarks/lazy_memory.py --demos 200 --steps 50 --file /tmp/small.hdf5   # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

OBS_DIM, ACTION_DIM = 10, 7


def generate(path: Path, demos: int, length: int, seed: int = 0) -> None:
    """A smooth random walk per demo (obs/state, next_obs/state, actions, rewards, dones), written
    demo by demo under a temporary name; 10% of the demos in the ``valid`` filter key."""
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = demos * length
        for i in range(demos):
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = length
            obs = np.cumsum(rng.normal(scale=0.05, size=(length + 1, OBS_DIM)), axis=0, dtype=np.float32)
            g["obs/state"], g["next_obs/state"] = obs[:-1], obs[1:]
            g["actions"] = np.tanh(obs[1:, :ACTION_DIM] - obs[:-1, :ACTION_DIM] + rng.normal(scale=0.1, size=(length, ACTION_DIM))).astype(np.float32)
            g["rewards"] = np.zeros(length, np.float32)
            g["dones"] = np.r_[np.zeros(length - 1), 1].astype(np.uint8)
        names = np.array([f"demo_{i}" for i in range(demos)], dtype="S")
        valid = np.zeros(demos, bool)
        valid[rng.permutation(demos)[:max(1, demos // 10)]] = True
        f["mask/train"], f["mask/valid"] = names[~valid], names[valid]
    os.replace(tmp, path)


def child(args) -> None:
    """One training run in this process; prints one JSON line."""
    import torch

    from imitate.train import TrainConfig, train

    torch.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="lazy_memory_run_")
    start = time.perf_counter()
    cfg = TrainConfig(data=args.file, out=f"{out}/run", head="gmm", steps=args.steps, batch_size=args.batch_size,
                      action_horizon=8, n_act=4, warmup_steps=10, log_every=max(1, args.steps // 2), val_every=0,
                      eval_episodes=0, ckpt_every=10 * args.steps, lazy=args.child == "lazy", device="cpu")
    train(cfg, {"hidden_dims": "256,256", "num_modes": "5"}, progress=False)
    total = time.perf_counter() - start
    lines = [json.loads(l) for l in Path(f"{out}/run/metrics.jsonl").read_text().splitlines()]
    rates = [l["time/steps_per_s"] for l in lines if "time/steps_per_s" in l]
    status = Path("/proc/self/status").read_text()
    hwm_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"mode": args.child, "peak_rss_mib": round(hwm_kib / 1024), "steps_per_s": round(rates[-1], 2),
                      "seconds_to_first_step": round(total - args.steps / np.mean(rates), 1),
                      "seconds_total": round(total, 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", default=f"{tempfile.gettempdir()}/imitate_lazy_20m.hdf5")
    p.add_argument("--demos", type=int, default=20_000)
    p.add_argument("--length", type=int, default=1_000)
    p.add_argument("--steps", type=int, default=300, help="training steps per mode")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--modes", default="lazy,memory")
    p.add_argument("--delete", action="store_true", help="delete the generated file at the end")
    p.add_argument("--child", choices=("lazy", "memory"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    path = Path(args.file)
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.demos, args.length)
        print(json.dumps({"generated": str(path), "transitions": args.demos * args.length,
                          "gigabytes": round(path.stat().st_size / 1e9, 2), "seconds": round(time.perf_counter() - t)}),
              flush=True)
    with h5py.File(path, "r") as f:
        transitions = int(f["data"].attrs["total"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in args.modes.split(","):
        res = subprocess.run([sys.executable, __file__, "--child", mode, "--file", str(path), "--steps",
                              str(args.steps), "--batch-size", str(args.batch_size)], env=env, capture_output=True,
                             text=True)
        if res.returncode:
            sys.exit(f"{mode} run failed:\n{res.stderr[-3000:]}")
        print(json.dumps({"transitions": transitions, "file_gb": round(path.stat().st_size / 1e9, 2),
                          **json.loads(res.stdout.strip().splitlines()[-1])}), flush=True)
    if args.delete:
        path.unlink()


if __name__ == "__main__":
    main()
