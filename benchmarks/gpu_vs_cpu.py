"""Steps per second of the diffusion head with the U-Net denoiser: GPU (fp32 and bf16 autocast) vs CPU.

Self-contained: writes a synthetic demonstration file (random-walk observations, 10 floats; actions,
7 floats) in a temporary folder, then runs `imitate.train.train` for ``--steps`` steps per setting:
cpu (``--cpu-threads`` torch threads), cuda fp32, cuda bf16. A setting's speed is the trainer's own
``time/steps_per_s`` over the second half of its steps (after warm-up). Without a GPU only the CPU is
measured (and "cuda" is null). Prints one JSON line.

    python benchmarks/gpu_vs_cpu.py
    python benchmarks/gpu_vs_cpu.py --batch-size 256 --steps 400 --cpu-steps 40
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imitate.data import Episode, write_demo_file
from imitate.train import TrainConfig, train


def synthetic_file(path: Path, demos: int = 100, length: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(demos):
        obs = np.cumsum(rng.normal(scale=0.05, size=(length + 1, 10)), axis=0).astype(np.float32)
        actions = np.tanh(obs[1:, :7] - obs[:-1, :7] + rng.normal(scale=0.1, size=(length, 7))).astype(np.float32)
        episodes.append(Episode(obs={"state": obs[:-1]}, next_obs={"state": obs[1:]}, actions=actions,
                                rewards=np.zeros(length, np.float32), dones=np.r_[np.zeros(length - 1), 1].astype(np.uint8),
                                name=f"demo_{i}"))
    return write_demo_file(path, episodes, None, valid_fraction=0.0)


def steps_per_s(data: Path, out: Path, device: str, precision: str, steps: int, batch: int, head: dict) -> float:
    cfg = TrainConfig(data=str(data), out=str(out), head="diffusion", steps=steps, batch_size=batch, action_horizon=16,
                      n_act=8, warmup_steps=10, log_every=steps // 2, val_every=0, eval_episodes=0,
                      ckpt_every=10 * steps, device=device, precision=precision)
    train(cfg, dict(head), progress=False)
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return [l["time/steps_per_s"] for l in lines if "time/steps_per_s" in l][-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=400, help="steps per GPU setting")
    p.add_argument("--cpu-steps", type=int, default=40, help="steps of the CPU setting")
    p.add_argument("--cpu-threads", type=int, default=os.cpu_count(), help="torch threads of the CPU setting")
    p.add_argument("--down-dims", default="64,128,256", help="U-Net channels (the head's default)")
    args = p.parse_args()
    head = {"denoiser": "unet", "down_dims": args.down_dims}
    tmp = Path(tempfile.mkdtemp(prefix="gpu_vs_cpu_"))
    data = synthetic_file(tmp / "synthetic.hdf5")
    result = {"head": "diffusion/unet", "down_dims": args.down_dims, "batch_size": args.batch_size,
              "action_horizon": 16, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_threads": args.cpu_threads, "date": time.strftime("%Y-%m-%d")}
    torch.set_num_threads(args.cpu_threads)
    result["cpu_steps_per_s"] = round(steps_per_s(data, tmp / "cpu", "cpu", "fp32", args.cpu_steps, args.batch_size,
                                                  head), 2)
    result["cuda"] = None
    if torch.cuda.is_available():
        result["cuda"] = torch.cuda.get_device_name(0)
        for precision in ("fp32", "bf16"):
            rate = steps_per_s(data, tmp / f"cuda_{precision}", "cuda", precision, args.steps, args.batch_size, head)
            result[f"cuda_{precision}_steps_per_s"] = round(rate, 2)
            result[f"cuda_{precision}_vs_cpu"] = round(rate / result["cpu_steps_per_s"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
