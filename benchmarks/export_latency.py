"""Latency of an exported policy against eager PyTorch, per head, at batch 1 and 64.

    python benchmarks/export_latency.py --data datasets/forked_path.hdf5 --out runs/bench_export

For every head (the CPU settings of benchmarks/bc_quality.py, Ta = 8, To = 2, plus the diffusion head
with its default U-Net denoiser) a short run is trained (latency does not depend on the weights),
exported once with both formats, and one chunk is predicted by

    eager     Policy.predict_chunk (PyTorch, torch.no_grad)
    onnx      imitate.export.runtime predict_chunk on onnxruntime (all graph optimizations)
    torch     the same runtime on the torch.export program (model.pt2)

with one intra-op thread everywhere, calls interleaved (eager, onnx, torch, eager, ...), median of
``--calls`` calls each. The runtime's times include its input checks and drawing the noise with
numpy, as eager includes drawing it with torch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from imitate.checkpoint import load_policy
from imitate.export.exporter import export_run
from imitate.export.runtime import load
from imitate.train import TrainConfig, train

# name -> (head, head settings); the CPU settings of benchmarks/bc_quality.py, and the U-Net default.
CASES = {
    "deterministic": ("deterministic", {}),
    "gaussian": ("gaussian", {}),
    "gmm": ("gmm", {}),
    "autoregressive": ("autoregressive", {"d_model": "64", "num_layers": "2"}),
    "diffusion (mlp)": ("diffusion", {"denoiser": "mlp", "prediction_type": "sample"}),
    "diffusion (unet)": ("diffusion", {"denoiser": "unet"}),
}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/forked_path.hdf5")
    p.add_argument("--out", default="runs/bench_export")
    p.add_argument("--steps", type=int, default=20, help="training steps of each run (latency needs no more)")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--cases", default=",".join(CASES))
    args = p.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name in args.cases.split(","):
        head, settings = CASES[name]
        run = Path(args.out) / name.replace(" ", "_").replace("(", "").replace(")", "")
        if not (run / "model.safetensors").exists():
            cfg = TrainConfig(data=args.data, out=str(run), head=head, steps=args.steps, batch_size=64, action_horizon=8,
                              n_act=4, warmup_steps=2, val_every=0, eval_episodes=0, log_every=10)
            train(cfg, dict(settings), {}, progress=False)
        exported = run / "export"
        if not (exported / "export.json").exists():
            start = time.perf_counter()
            export_run(run, exported, ["onnx", "torch"], overwrite=True)
            print(f"{name}: exported in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        policy = load_policy(run)
        onnx, program = load(exported, "onnx", threads=1, seed=0), load(exported, "torch", threads=1, seed=0)
        generator = torch.Generator().manual_seed(0)
        for batch in args.batches:
            rng = np.random.default_rng(batch)
            obs = {k: rng.normal(size=(batch, policy.obs_horizon, *s)).astype(np.float32) for k, s in policy.obs_shapes.items()}
            runners = {"eager": lambda: policy.predict_chunk(obs, generator=generator),
                       "onnx": lambda: onnx.predict_chunk(obs), "torch": lambda: program.predict_chunk(obs)}
            for run_once in runners.values():
                for _ in range(5):
                    run_once()
            times = {k: [] for k in runners}
            for _ in range(args.calls):
                for k, run_once in runners.items():
                    times[k].append(timed(run_once))
            ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            results[f"{name} B={batch}"] = ms
            print(f"{name:18s} B={batch:<3d} eager {ms['eager']:8.3f} ms   onnxruntime {ms['onnx']:8.3f} ms "
                  f"({ms['eager'] / ms['onnx']:5.2f}x)   torch.export {ms['torch']:8.3f} ms "
                  f"({ms['eager'] / ms['torch']:5.2f}x)", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
