"""Demonstrations inside online RL on a sparse-reward task: success vs environment steps for PPO from
scratch, PPO from BC, PPO from BC with the DAPG term, PPO with the reverse start-state curriculum, and
IQL offline -> online with demonstrations in every batch; mode shares before and after fine-tuning.

    python benchmarks/rl_demos.py --out runs/rl_demos [--task imitate/ForkedPath-v0] [--demos 5]
        [--steps 50000] [--iql-online-steps 5000] [--eval-every 5000] [--episodes 20] [--seeds 0,1,2] [--jobs 2]
        [--methods scratch,bc,bc_dapg,reverse,iql,bc_gmm] [--timeout 300]
    python benchmarks/rl_demos.py --table runs/rl_demos        # the table again from the runs

What runs (every command is printed; each run in its own process under ``nice``, single-threaded
torch, at most ``--jobs`` at once, stopped after ``--timeout`` seconds, which the table then reports):

- data: ``imitate collect TASK --episodes N --env-kw reward=sparse`` (per-step ``states`` included).
- BC (once per head, seed 0, shared by every RL seed): ``imitate train --head H --obs-horizon 1
  --action-horizon 1 --n-act 1 --steps 1000 --batch-size 128``, an MLP of 64 units (head and encoder).
- ``scratch``: ``imitate rl --env TASK --env-kw reward=sparse --head gaussian``.
- ``bc``: ``imitate rl --init BC_gaussian`` (value warm-up: one rollout); ``bc_gmm`` the same from the
  mixture head's BC run.
- ``bc_dapg``: ``bc`` with ``--demos FILE --demo-coef 0.1 --demo-decay 0.97``.
- ``reverse``: ``scratch`` with ``--start-states FILE --curriculum reverse``.
- ``iql``: ``imitate offline --algo iql --data FILE --steps IQL_OFFLINE_STEPS --online-steps
  IQL_ONLINE_STEPS`` with half of every online batch from the demonstrations (``algo.online_ratio=0.5``,
  RLPD's symmetric sampling), critics of 64 x 64 units; ``iql_online`` the same with online batches
  from the online transitions alone (``algo.online_ratio=1.0``: no demonstrations once online); one gradient step per env step makes it far slower per env step
  than PPO here, hence its own, smaller budget.

PPO settings (all PPO runs): 8 environments x 128 steps per rollout, 5 epochs, minibatch 256; runs
from BC use ``ppo.lr=1e-4`` and ``ppo.target_kl=0.05`` (from scratch: lr 3e-4, no KL stop).
Success is measured every ``--eval-every`` env steps on ``--episodes`` seeded episodes from the task's
own starts (actions sampled), and once before training; IQL's online phase has no periodic
evaluation: its curve is the success of its last 10 training episodes, and its end point the final
evaluation.

Per method, over seeds: the median success at every evaluation, the env steps at which a seed first
reaches 0.9 (median, '>' the budget when not every seed does), the largest drop (over seeds) below
the BC policy's success as the same run measured it before training, at any later evaluation
(fine-tuning's "unlearning" dip), and the mode shares at the start and the end (successful episodes).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
IMITATE = ["nice", sys.executable, "-m", "imitate"]
METHODS = ("scratch", "bc", "bc_dapg", "reverse", "iql", "iql_online", "bc_gmm")
PPO = ["--set", "ppo.n_envs=8", "--set", "ppo.n_steps=128", "--set", "ppo.epochs=5", "--set", "ppo.batch_size=256"]
FINETUNE = ["--set", "ppo.lr=1e-4", "--set", "ppo.target_kl=0.05"]
SMALL = ["--set", "head.hidden_dims=64,64", "--set", "encoder.hidden_dims=64", "--set", "encoder.feature_dim=64"]


def run(cmd: list[str], log: Path, timeout: float | None = None) -> tuple[int, float]:
    print("$ " + " ".join(map(str, cmd)), flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - start


def prepare(args) -> dict[str, Path]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "demos.hdf5"
    if not data.exists():
        rc, _ = run(IMITATE + ["collect", args.task, "--episodes", str(args.demos), "--out", str(data), "--env-kw",
                               "reward=sparse", "--quiet"], out / "collect.log")
        if rc:
            sys.exit(f"rl_demos: collect failed, see {out / 'collect.log'}")
    bcs = {}
    for head in ("gaussian", "gmm"):
        bc = out / f"bc_{head}"
        if not (bc / "model.safetensors").exists():
            rc, secs = run(IMITATE + ["train", "--data", str(data), "--head", head, "--out", str(bc), "--steps", "1000",
                                      "--obs-horizon", "1", "--action-horizon", "1", "--n-act", "1", "--batch-size",
                                      "128", "--val-every", "0", "--eval-episodes", str(args.episodes), "--quiet",
                                      *SMALL], out / f"bc_{head}.log")
            if rc:
                sys.exit(f"rl_demos: BC training failed, see {out / f'bc_{head}.log'}")
        bcs[head] = bc
    return {"data": data, **bcs}


def command(method: str, seed: int, args, paths: dict[str, Path], run_dir: Path) -> list[str]:
    common = ["--out", str(run_dir), "--steps", str(args.steps), "--seed", str(seed), "--eval-every",
              str(args.eval_every), "--eval-episodes", str(args.episodes), "--log-every", str(args.eval_every),
              "--quiet", *PPO]
    data = str(paths["data"])
    if method == "scratch":
        return IMITATE + ["rl", "--env", args.task, "--env-kw", "reward=sparse", "--head", "gaussian", *common]
    if method == "reverse":
        return IMITATE + ["rl", "--env", args.task, "--env-kw", "reward=sparse", "--head", "gaussian",
                          "--start-states", data, "--curriculum", "reverse", *common]
    if method in ("bc", "bc_gmm"):
        return IMITATE + ["rl", "--init", str(paths["gmm" if method == "bc_gmm" else "gaussian"]), *common, *FINETUNE]
    if method == "bc_dapg":
        return IMITATE + ["rl", "--init", str(paths["gaussian"]), "--demos", data, "--demo-coef", "0.1",
                          "--demo-decay", "0.97", *common, *FINETUNE]
    if method in ("iql", "iql_online"):
        share = "0.5" if method == "iql" else "1.0"
        return IMITATE + ["offline", "--algo", "iql", "--data", data, "--out", str(run_dir), "--head", "gaussian",
                          "--steps", str(args.iql_offline_steps), "--online-steps", str(args.iql_online_steps),
                          "--seed", str(seed), "--log-every", "500", "--eval-episodes", str(args.episodes), "--quiet",
                          "--set", f"algo.online_ratio={share}", "--set", "algo.critic_hidden=64,64", *SMALL]
    raise SystemExit(f"rl_demos: unknown method {method!r}; choose from {', '.join(METHODS)}")


def curve(method: str, run_dir: Path) -> dict:
    """Evaluations [(env_steps, success)], start and end mode shares, whether the run finished."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return {"points": [], "finished": False}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    final = next((x["final"] for x in lines if "final" in x), None)
    points, shares = [], []
    if method.startswith("iql"):
        for x in lines:
            if "env_steps" in x and x.get("online/success") is not None:
                points.append((x["env_steps"], x["online/success"]))
        if final and final.get("success_rate") is not None:
            points.append((x_online(lines), final["success_rate"]))
            shares = [None, final.get("mode_shares")]
    else:
        for x in lines:
            if "eval/success_rate" in x:
                points.append((x["env_steps"], x["eval/success_rate"]))
                shares.append(x.get("eval/mode_shares"))
    return {"points": points, "finished": final is not None,
            "shares": [shares[0], shares[-1]] if shares else [None, None]}


def x_online(lines: list[dict]) -> int:
    """The online env steps of an offline run's log (its last record with env_steps)."""
    return max((x["env_steps"] for x in lines if "env_steps" in x), default=0)


def bc_success(out: Path, head: str) -> float | None:
    path = out / f"bc_{head}" / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        if '"final"' in line:
            return json.loads(line)["final"].get("success_rate")
    return None


def table(out: Path, budget: int | None = None) -> str:
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    bc = {"gaussian": bc_success(out, "gaussian"), "gmm": bc_success(out, "gmm")}
    rows = ["| method | seeds | success at each evaluation (env steps: median over seeds) | final (median) | "
            "env steps to 0.9: median (per seed) | largest drop below BC | mode shares start -> end per seed | wall s (median) |",
            "|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        runs = [r for r in results if r["method"] == method]
        if not runs:
            continue
        budget = max(r["steps"] for r in runs)
        at: dict[int, list[float]] = {}
        for r in runs:
            for steps, s in r["points"]:
                at.setdefault(int(steps), []).append(s)
        grid = sorted(at)
        if method.startswith("iql"):
            grid = grid[:: max(1, len(grid) // 8)] + ([grid[-1]] if grid and grid[-1] not in grid[:: max(1, len(grid) // 8)] else [])
        cells = ", ".join(f"{k}: {statistics.median(at[k]):.2f}" for k in grid)
        finals = [r["points"][-1][1] for r in runs if r["points"]]
        reach = []
        for r in runs:
            hit = next((steps for steps, s in r["points"] if s >= 0.9), None)
            reach.append(hit)
        per_seed = ", ".join("-" if h is None else str(h) for h in reach)
        reach_txt = (f"{statistics.median(reach):.0f} ({per_seed})" if all(h is not None for h in reach)
                     else f"> {budget} ({per_seed}: {sum(h is not None for h in reach)}/{len(reach)} seeds reach it)")
        if method.startswith("bc"):   # against each run's own evaluation of the BC policy before training
            drops = [max(0.0, r["points"][0][1] - min(s for _, s in r["points"][1:])) for r in runs
                     if len(r["points"]) > 1]
            drop_txt = f"{max(drops):.2f} (BC {statistics.median(r['points'][0][1] for r in runs):.2f})" if drops else "-"
        else:
            drop_txt = "-"
        fmt = lambda d: "-" if not d else "/".join(f"{k} {v:.2f}" for k, v in sorted(d.items()))  # noqa: E731
        start = next((r["shares"][0] for r in runs if r["shares"][0]), None)
        ends = "; ".join(fmt(r["shares"][1]) for r in sorted(runs, key=lambda r: r["seed"]))
        unfinished = sum(not r["finished"] for r in runs)
        rows.append(f"| {method}{' (' + str(unfinished) + ' stopped at the timeout)' if unfinished else ''} | "
                    f"{len(runs)} | {cells} | {statistics.median(finals):.2f} | {reach_txt} | {drop_txt} | "
                    f"{fmt(start)} -> {ends} | {statistics.median(r['wall_s'] for r in runs):.0f} |")
    text = (f"BC success (evaluation episodes of the BC run): gaussian {bc['gaussian']}, gmm {bc['gmm']}\n\n"
            + "\n".join(rows) + "\n")
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/rl_demos")
    p.add_argument("--task", default="imitate/ForkedPath-v0")
    p.add_argument("--demos", type=int, default=5)
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--iql-online-steps", type=int, default=5000)
    p.add_argument("--iql-offline-steps", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--table", metavar="OUT", help="print the table of the runs in OUT and stop")
    args = p.parse_args()
    if args.table:
        print(table(Path(args.table)))
        return
    out = Path(args.out)
    paths = prepare(args)
    done = set()
    if (out / "results.jsonl").exists():
        done = {(r["method"], r["seed"]) for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    jobs = [(m, int(s)) for s in args.seeds.split(",") for m in args.methods.split(",") if (m, int(s)) not in done]

    def one(job):
        method, seed = job
        run_dir = out / f"{method}_s{seed}"
        if run_dir.exists():
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
        rc, secs = run(command(method, seed, args, paths, run_dir), out / f"{method}_s{seed}.log", args.timeout)
        record = {"method": method, "seed": seed, "steps": args.iql_online_steps if method.startswith("iql") else args.steps,
                  "rc": rc, "wall_s": round(secs, 1),
                  **curve(method, run_dir)}
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{method} seed {seed}: rc {rc}, {secs:.0f} s, last {record['points'][-1] if record['points'] else None}",
              flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, jobs))
    print(table(out))


if __name__ == "__main__":
    main()
