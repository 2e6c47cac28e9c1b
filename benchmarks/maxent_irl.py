"""Maximum-entropy IRL on imitate/GridWorld-v0: reward correlation and the return of the policy that is
optimal for the recovered reward, over seeds, demo counts and feature sets.

    python benchmarks/maxent_irl.py --seeds 0,1,2 --demos 20,200 --features task,onehot --temperatures 0,0.1

Prints one JSON line per run and a Markdown table (mean ± std over seeds).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from imitate.algos.maxent_irl import IRLConfig, run_maxent_irl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--demos", default="20,200")
    ap.add_argument("--features", default="task,onehot")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--temperatures", default="0", help="expert temperatures (0: optimal; > 0: Boltzmann-rational)")
    args = ap.parse_args()
    rows = {}
    for temperature in (float(t) for t in args.temperatures.split(",")):
        for features in args.features.split(","):
            for demos in (int(d) for d in args.demos.split(",")):
                for seed in (int(s) for s in args.seeds.split(",")):
                    start = time.perf_counter()
                    r = run_maxent_irl(IRLConfig(demos=demos, seed=seed, features=features, iterations=args.iterations,
                                                 expert_temperature=temperature))
                    r.update({"features": features, "seed": seed, "temperature": temperature,
                              "wall_s": time.perf_counter() - start})
                    print(json.dumps(r), flush=True)
                    rows.setdefault((temperature, features, demos), []).append(r)
    print("\n| expert | features | demos | seeds | reward correlation | normalized return of the recovered reward's "
          "optimal policy | wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    for (temperature, features, demos), rs in rows.items():
        c = np.array([r["reward_correlation"] for r in rs])
        n = np.array([r["normalized_return"] for r in rs])
        w = np.array([r["wall_s"] for r in rs])
        expert = "optimal" if temperature == 0 else f"Boltzmann, T = {temperature:g}"
        print(f"| {expert} | {features} | {demos} | {len(rs)} | {c.mean():.3f} ± {c.std():.3f} | {n.mean():.3f} ± {n.std():.3f} | {w.mean():.1f} |")


if __name__ == "__main__":
    main()
