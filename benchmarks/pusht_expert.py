"""Push-T's scripted expert: success, the sides it goes around, and what 200 demonstrations cost.

    python benchmarks/pusht_expert.py experts --episodes 100 --results pusht_expert.jsonl
    python benchmarks/pusht_expert.py collect --episodes 200 --repeats 3 --results pusht_expert.jsonl

``experts`` rolls out the expert of ``pusht/PushT`` on seeds ``--seed``.. (the expert seeded as
``imitate collect`` seeds it) and reports its success rate (gym-pusht's: coverage > 0.95 within 300
steps) with a 95% Wilson interval, the side shares as the environment measures them (``info["mode"]``)
and as the expert drew them, how often the two agree, mean episode length, mean max coverage, and
time per episode split into planning (``expert.act``) and simulation (``env.step``).

``collect`` times the command ``imitate collect pusht/PushT --episodes N`` (a fresh process each
time, the file written to a temporary folder) ``--repeats`` times and reports the median wall time
and the median CPU time of the process (user + system: on a shared machine the wall time also
counts the waits for a core).

Needs gym-pusht (``pip install 'imitate[pusht]'``); imports no torch.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

TASK = "pusht/PushT"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def expert_rollouts(episodes: int, seed: int, progress: bool = True) -> dict:
    from tqdm import tqdm

    from imitate.envs import expert_view, make_env, make_expert

    env, expert = make_env(TASK), make_expert(TASK)
    successes, routes, drawn, lengths, max_cov, pushes = [], [], [], [], [], []
    act_s = step_s = 0.0
    start_all = time.perf_counter()
    for s in tqdm(range(seed, seed + episodes), desc="pusht expert", unit="ep", disable=not progress):
        obs, info = env.reset(seed=s)
        expert.reset(seed=int(np.random.SeedSequence([s, 1]).generate_state(1)[0]))  # as imitate collect does
        done, steps = False, 0
        while not done:
            t0 = time.perf_counter()
            action = expert.act(expert_view(env, obs))
            t1 = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(action)
            step_s += time.perf_counter() - t1
            act_s += t1 - t0
            steps += 1
            done = terminated or truncated
        successes.append(bool(info["is_success"]))
        routes.append(info["mode"])
        drawn.append(expert.route)
        lengths.append(steps)
        max_cov.append(float(info["max_coverage"]))
        pushes.append(expert.pushes)
    wall = time.perf_counter() - start_all
    env.close()
    n_ok = int(sum(successes))
    low, high = wilson(n_ok, episodes)
    measured = [r for r in routes if r is not None]
    return {
        "what": "experts", "task": TASK, "episodes": episodes, "seeds": [seed, seed + episodes - 1],
        "success": n_ok / episodes, "success_ci95": [round(low, 3), round(high, 3)],
        "route_shares": {r: measured.count(r) / len(measured) for r in sorted(set(measured))} if measured else {},
        "route_shares_successful": {r: sum(1 for m, ok in zip(routes, successes) if ok and m == r) / max(n_ok, 1)
                                    for r in ("left", "right")},
        "drawn_shares": {r: drawn.count(r) / episodes for r in ("left", "right")},
        "route_agrees_with_drawn": sum(m == d for m, d in zip(routes, drawn)) / episodes,
        "mean_length": float(np.mean(lengths)), "mean_length_successful": float(np.mean(
            [n for n, ok in zip(lengths, successes) if ok])) if n_ok else None,
        "mean_max_coverage": float(np.mean(max_cov)), "mean_pushes": float(np.mean(pushes)),
        "s_per_episode": wall / episodes, "plan_s_per_episode": act_s / episodes,
        "sim_s_per_episode": step_s / episodes,
        "failed_seeds": [seed + i for i, ok in enumerate(successes) if not ok],
    }


def collect_time(episodes: int, repeats: int) -> dict:
    import resource

    walls, cpus, outputs = [], [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "pusht.hdf5")
            cmd = [sys.executable, "-m", "imitate", "collect", TASK, "--episodes", str(episodes), "--out", out]
            start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
            outputs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"run {r + 1}/{repeats}: {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU, {outputs[-1]}",
              file=sys.stderr, flush=True)
    return {"what": "collect", "task": TASK, "command": f"imitate collect {TASK} --episodes {episodes} --out FILE",
            "episodes": episodes, "repeats": repeats, "wall_s": [round(w, 1) for w in walls],
            "median_wall_s": statistics.median(walls), "cpu_s": [round(c, 1) for c in cpus],
            "median_cpu_s": statistics.median(cpus), "success_rate": outputs[-1]["success_rate"],
            "mode_shares": outputs[-1]["mode_shares"], "transitions": outputs[-1]["transitions"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("experts", help="success and side shares of the expert")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default=None, help="append the JSON record to this file")
    p = sub.add_parser("collect", help="wall time of imitate collect")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--results", default=None)
    args = parser.parse_args(argv)
    record = expert_rollouts(args.episodes, args.seed) if args.cmd == "experts" else collect_time(
        args.episodes, args.repeats)
    record["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    print(json.dumps(record), flush=True)
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
