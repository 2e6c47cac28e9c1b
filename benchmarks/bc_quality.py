"""Behaviour-cloning quality of every head on the same demonstrations, budget and seeds.

Each (head, seed) runs `imitate train` (with its final rollout evaluation) in its own process,
``--jobs`` at a time with one torch thread each; the table reports mean +- std over seeds of the
success rate, the behaviour entropy of successful episodes (1.0 = routes balanced) and the share of
successful episodes taking each route.

    python benchmarks/bc_quality.py --data datasets/forked_path.hdf5 --seeds 0 1 2 --out runs/bench_quality
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np



def run_one(head: str, seed: int, args) -> dict:
    out = Path(args.out) / f"{head}_seed{seed}"
    final = out / "final.json"
    if final.exists():
        return json.loads(final.read_text())
    cmd = [sys.executable, "-m", "imitate", "train", "--data", args.data, "--head", head, "--out", str(out),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--action-horizon", str(args.action_horizon),
           "--n-act", str(args.n_act), "--seed", str(seed), "--eval-episodes", str(args.episodes), "--quiet",
           "--val-every", "0", "--ckpt-every", str(args.steps)]
    for s in args.head_set.get(head, []):
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    if out.exists() and not (out / "train_state.safetensors").exists():
        import shutil
        shutil.rmtree(out)
    if (out / "train_state.safetensors").exists():
        cmd = [sys.executable, "-m", "imitate", "train", "--out", str(out), "--resume", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{head} seed {seed} failed:\n{res.stderr[-2000:]}")
    result = json.loads(res.stdout.strip().splitlines()[-1])
    result.update(seed=seed, wall_s=time.perf_counter() - start)
    final.write_text(json.dumps(result))
    print(f"{head:15s} seed {seed}: success {result['success_rate']:.2f} entropy {result['behaviour_entropy']} "
          f"({result['wall_s']:.0f} s)", flush=True)
    return result


def fmt(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/forked_path.hdf5")
    p.add_argument("--out", default="runs/bench_quality")
    p.add_argument("--heads", default="deterministic,gaussian,gmm,autoregressive,diffusion")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--action-horizon", type=int, default=8)
    p.add_argument("--n-act", type=int, default=4)
    p.add_argument("--episodes", type=int, default=100, help="evaluation rollouts per run")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--head-set", action="append", default=[], metavar="HEAD:KEY=VALUE",
                   help="an extra head setting for one head, e.g. autoregressive:binning=quantile")
    args = p.parse_args()
    extra: dict[str, list[str]] = {}
    for item in args.head_set:
        head, _, setting = item.partition(":")
        extra.setdefault(head, []).append(setting)
    args.head_set = extra
    heads = args.heads.split(",")
    jobs = [(h, s) for h in heads for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda hs: run_one(hs[0], hs[1], args), jobs))
    by_head = {h: [r for (hh, _), r in zip(jobs, results) if hh == h] for h in heads}
    modes = sorted({m for r in results for m in (r.get("mode_shares") or {})})
    print(f"\n{args.data}: {args.steps} steps, batch {args.batch_size}, To=2, Ta={args.action_horizon}, "
          f"n_act={args.n_act}, seeds {args.seeds}, {args.episodes} rollouts each")
    print("| head | success | behaviour entropy | " + " | ".join(f"{m} share" for m in modes) + " | train time (s) |")
    print("|---|---|---|" + "---|" * len(modes) + "---|")
    for h, rs in by_head.items():
        shares = " | ".join(fmt([(r.get("mode_shares") or {}).get(m, 0.0) for r in rs if r["mode_shares"]]) for m in modes)
        print(f"| {h} | {fmt([r['success_rate'] for r in rs])} | {fmt([r['behaviour_entropy'] for r in rs])} | "
              f"{shares} | {np.median([r['wall_s'] for r in rs]):.0f} |")
    print(json.dumps({"settings": vars(args), "results": results}))


if __name__ == "__main__":
    main()
