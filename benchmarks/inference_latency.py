"""Inference latency per head at batch 1: one chunk (`predict_chunk`) and per executed action
(`act`, which re-plans every n_act steps), one torch thread, median over repeated calls.

    python benchmarks/inference_latency.py --runs runs/bench_quality --seed 0
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from imitate.checkpoint import load_policy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/bench_quality", help="folder of <head>_seed<k> run directories")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run in sorted(Path(args.runs).glob(f"*_seed{args.seed}")):
        policy = load_policy(run)
        obs1 = {k: np.zeros((1, policy.obs_horizon, *s), np.float32) for k, s in policy.obs_shapes.items()}
        step = {k: np.zeros(s, np.float32) for k, s in policy.obs_shapes.items()}
        for _ in range(5):
            policy.predict_chunk(obs1)
        chunk = []
        for _ in range(args.calls):
            t = time.perf_counter()
            policy.predict_chunk(obs1)
            chunk.append(time.perf_counter() - t)
        policy.reset()
        per_action = []
        for _ in range(args.calls):
            t = time.perf_counter()
            policy.act(step)
            per_action.append(time.perf_counter() - t)
        head = run.name.rsplit("_seed", 1)[0]
        results[head] = {"chunk_ms": 1e3 * statistics.median(chunk),
                         "per_action_ms": 1e3 * sum(per_action) / len(per_action),
                         "params": sum(p.numel() for p in policy.parameters()), "n_act": policy.n_act,
                         "action_horizon": policy.action_horizon}
        r = results[head]
        print(f"{head:15s} predict_chunk {r['chunk_ms']:7.2f} ms   per action (act, n_act={r['n_act']}) "
              f"{r['per_action_ms']:6.2f} ms   params {r['params'] / 1e6:.2f}M", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
