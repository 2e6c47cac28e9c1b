"""Offline to online: environment steps until the evaluated normalized return first reaches a target, from
an offline start (`imitate offline ... --online-steps N`) against PPO from scratch (`imitate rl`).

    python benchmarks/offline_to_online.py --data datasets/pendulum_mixed.hdf5 --out runs/o2o \\
        [--methods iql,awac,ppo] [--seeds 0,1,2] [--offline-steps 5000] [--online-steps 5000] \\
        [--ppo-steps 200000] [--eval-every 1000] [--ppo-eval-every 10000] [--episodes 10] [--target 0.9]
    python benchmarks/offline_to_online.py --table runs/o2o      # the table again from results.jsonl

- ``iql`` / ``awac``: ``imitate offline --algo A --data F --head gaussian --steps OFFLINE --online-steps N
  --online-eval-every K --eval-episodes E --seed S`` (its defaults otherwise): the EMA actor is evaluated
  before the first online step and every K environment steps (metrics.jsonl ``eval/return``).
- ``ppo``: ``imitate rl --env ENV --steps P --eval-every K' --eval-episodes E --seed S`` (PPO's defaults, the
  gaussian head) on the environment the file names; its evaluations (``eval/return``) from env step 0.

Normalized return = (R - R_random) / (R_expert - R_random) with the file's ``quality`` demos' mean returns
(as `benchmarks/offline_rl.py`). Per run: the evaluated curve, the environment steps at which the normalized
return first reaches ``--target`` (None: not within the budget) and the best value reached. Offline runs
count only online environment steps (the offline phase uses none). Every finished run is one record in
OUT/results.jsonl (a run already there is skipped when rerun); OUT/table.md is rewritten after each.
Runs go one at a time, single-threaded torch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_rl import ENV, IMITATE, BenchmarkError, normalized, references  # noqa: E402

METHODS = ("iql", "awac", "ppo")


def eval_curve(metrics: Path, refs: dict) -> list[dict]:
    """[{"env_steps", "return", "normalized"}] of a run's evaluation records (``eval/return``), in order."""
    curve = []
    for line in metrics.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        if "eval/return" in rec and rec.get("env_steps") is not None:
            curve.append({"env_steps": int(rec["env_steps"]), "return": rec["eval/return"],
                          "normalized": normalized(rec["eval/return"], refs)})
    return curve


def steps_to(curve: list[dict], target: float) -> int | None:
    """Environment steps of the first evaluation whose normalized return is at least ``target`` (None: none)."""
    for point in curve:
        if point["normalized"] is not None and point["normalized"] >= target:
            return point["env_steps"]
    return None


def command(method: str, args, seed: int, run_dir: Path, env_id: str) -> list[str]:
    if method == "ppo":
        return IMITATE + ["rl", "--env", env_id, "--out", str(run_dir), "--steps", str(args.ppo_steps),
                          "--eval-every", str(args.ppo_eval_every), "--eval-episodes", str(args.episodes),
                          "--seed", str(seed), "--quiet"]
    return IMITATE + ["offline", "--algo", method, "--data", args.data, "--head", "gaussian", "--out", str(run_dir),
                      "--steps", str(args.offline_steps), "--online-steps", str(args.online_steps),
                      "--online-eval-every", str(args.eval_every), "--eval-episodes", str(args.episodes),
                      "--seed", str(seed), "--quiet"]


def run_key(method: str, seed: int, args) -> str:
    budget = (f"p{args.ppo_steps}k{args.ppo_eval_every}" if method == "ppo"
              else f"o{args.offline_steps}n{args.online_steps}k{args.eval_every}")
    return f"{Path(args.data).name}|{method}|s{seed}|{budget}|e{args.episodes}"


def read_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def table(records: list[dict], target: float) -> str:
    """Markdown: per run its steps to the target, the best and the last normalized return; per method the medians."""
    lines = [f"| method | seed | budget (env steps) | env steps to {target} | best normalized | at env steps | "
             "start | last | wall s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    num = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in records:
        lines.append(f"| {r['method']} | {r['seed']} | {r['budget']} | {'not reached' if r['steps_to_target'] is None else r['steps_to_target']} | "
                     f"{num(r['best'])} | {r['best_at']} | {num(r['curve'][0]['normalized'] if r['curve'] else None)} | "
                     f"{num(r['curve'][-1]['normalized'] if r['curve'] else None)} | {r['wall_s']:.0f} |")
    lines += ["", "| method | seeds | reached | median env steps to target (reached runs) | median best |",
              "|---|---:|---:|---:|---:|"]
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["method"], []).append(r)
    for method, rs in groups.items():
        reached = [r["steps_to_target"] for r in rs if r["steps_to_target"] is not None]
        bests = [r["best"] for r in rs if r["best"] is not None]
        lines.append(f"| {method} | {len(rs)} | {len(reached)}/{len(rs)} | "
                     f"{statistics.median(reached) if reached else '-'} | {num(statistics.median(bests) if bests else None)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", default="datasets/pendulum_mixed.hdf5", help="mixed-quality demo file (quality attrs)")
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default="iql,awac,ppo")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--offline-steps", type=int, default=5000)
    p.add_argument("--online-steps", type=int, default=5000, help="environment steps of the online phase")
    p.add_argument("--eval-every", type=int, default=1000, help="online env steps between evaluations")
    p.add_argument("--ppo-steps", type=int, default=200000, help="PPO's environment steps")
    p.add_argument("--ppo-eval-every", type=int, default=10000)
    p.add_argument("--episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--target", type=float, default=0.9, help="normalized return to reach")
    p.add_argument("--table", action="store_true", help="only rewrite OUT/table.md from OUT/results.jsonl")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.table:
        (out / "table.md").write_text(table(read_results(out), args.target))
        print((out / "table.md").read_text())
        return 0
    if not Path(args.data).exists():
        raise BenchmarkError(f"--data {args.data}: no such file")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if set(methods) - set(METHODS):
        raise BenchmarkError(f"--methods: unknown {sorted(set(methods) - set(METHODS))}; choose from {', '.join(METHODS)}")
    refs = references(args.data)
    if normalized(0.0, refs) is None:
        raise BenchmarkError(f"--data {args.data}: needs demos with quality attrs 'expert' and 'random' "
                             "(imitate collect --mix) for the normalized return")
    from imitate.data.scan import scan_demo_file
    from imitate.envs import task_of

    env_id, _ = task_of(scan_demo_file(args.data).env_args)
    out.mkdir(parents=True, exist_ok=True)
    done = {r["key"] for r in read_results(out)}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    plan = [(m, s) for s in seeds for m in methods]          # every method of seed 0 first, then seed 1, ...
    for i, (method, seed) in enumerate(plan):
        key = run_key(method, seed, args)
        if key in done:
            continue
        print(f"[{i + 1}/{len(plan)}] {key}", flush=True)
        run_dir = out / "runs" / key.replace("|", "_")
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        cmd = command(method, args, seed, run_dir, env_id)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
        curve = eval_curve(run_dir / "metrics.jsonl", refs)
        best = max(curve, key=lambda c: c["normalized"]) if curve else None
        record = {"key": key, "method": method, "seed": seed, "data": args.data, "command": " ".join(cmd[2:]),
                  "budget": args.ppo_steps if method == "ppo" else args.online_steps, "curve": curve,
                  "steps_to_target": steps_to(curve, args.target), "best": best["normalized"] if best else None,
                  "best_at": best["env_steps"] if best else None, "wall_s": wall}
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: record[k] for k in ("steps_to_target", "best", "best_at", "wall_s")}), flush=True)
        (out / "table.md").write_text(table(read_results(out), args.target))
    print((out / "table.md").read_text() if (out / "table.md").exists() else "(no runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
