"""Tasks others built: the experts' success, simulator speed, and every head trained on their demos.

    python benchmarks/external.py experts --tasks mt10 --episodes 20 --results experts.jsonl
    python benchmarks/external.py run --tasks mt10 --demos 50 --steps 2000 --seeds 0,1,2 \\
        --eval-episodes 50 --out runs/external
    python benchmarks/external.py table runs/external/results.jsonl

``--tasks``: comma-separated gymnasium ids (``metaworld/push-v3``, ``robosuite/Lift``) or ``mt10``
(Meta-World's ten MT10 tasks). ``experts`` rolls out each task's scripted expert (episode i reset
with seed i) and records its success rate, env steps per second (single environment, time inside
``env.step``) and seconds per reset. ``run`` collects ``--demos`` expert episodes per task
(seeds 0..), trains every head (``--heads``, default all) on them with the same budget and the
settings ``imitate compare`` gives its runs (`imitate.compare.make_config`: batch 128, To 2, Ta 8,
n_act 4, validation every steps/10; `imitate.compare.split_settings`: each head's CPU defaults on a
CPU, under ``--set HEAD.KEY=VALUE``), evaluates each on ``--eval-episodes`` unseen configurations
(seeds 10000.., ``--n-envs`` environments stepped in lockstep) and appends one JSON line per run to
``OUT/results.jsonl``. Runs go seed by seed (every task and head of seed 0 first, then seed 1, ...),
so a run stopped early has finished whole seeds first; finished runs are skipped when it is started
again (a run directory left part-trained is trained again from scratch). ``table`` prints success per
task and head, mean ± std over seeds (``--seeds`` to count some only), with the expert's success and
the seeds complete beside it, then each head's median training and evaluation time.

Runs single-threaded (``OMP_NUM_THREADS=1``); set ``MUJOCO_GL=egl`` on a headless machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

EVAL_SEED = 10000


def parse_tasks(text: str) -> list[str]:
    from imitate.envs.metaworld import MT10_TASKS, env_id

    tasks: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        tasks += [env_id(t) for t in MT10_TASKS] if item == "mt10" else [item]
    return tasks


def expert_rollouts(task: str, episodes: int) -> dict:
    """Success rate of the task's expert over seeds 0..episodes-1; env steps per second (time inside
    ``env.step`` only) and seconds per reset."""
    from imitate.envs import make_env, make_expert, to_env_action

    env, expert = make_env(task), make_expert(task)
    successes, steps, step_s, reset_s = [], 0, 0.0, 0.0
    for seed in range(episodes):
        start = time.perf_counter()
        obs, info = env.reset(seed=seed)
        reset_s += time.perf_counter() - start
        expert.reset(seed=seed)
        done = False
        while not done:
            action = to_env_action(env.action_space, expert.act(obs))
            start = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(action)
            step_s += time.perf_counter() - start
            steps += 1
            done = terminated or truncated
        successes.append(bool(info.get("is_success", False)))
    env.close()
    return {"task": task, "episodes": episodes, "expert_success": float(np.mean(successes)),
            "mean_length": steps / episodes, "steps_per_s": steps / step_s, "reset_s": reset_s / episodes}


def cmd_experts(args) -> None:
    for task in parse_tasks(args.tasks):
        record = expert_rollouts(task, args.episodes)
        print(json.dumps(record), flush=True)
        if args.results:
            with open(args.results, "a") as f:
                f.write(json.dumps(record) + "\n")


def _done(results: Path) -> set[tuple[str, str, int]]:
    if not results.exists():
        return set()
    return {(r["task"], r["head"], r["seed"]) for r in map(json.loads, results.read_text().splitlines()) if r}


def run_config(data: Path, run_dir: Path, head: str, seed: int, args):
    """The `TrainConfig` of one run: `imitate compare`'s (`make_config`: its batch, horizons and the
    intervals that scale with ``--steps``) with this run's data, directory, head and seed, no rollouts."""
    import dataclasses

    from imitate.compare import make_config

    options = {"steps": args.steps, "obs_keys": tuple(k for k in args.obs_keys.split(",") if k)}
    if args.batch_size:
        options["batch_size"] = args.batch_size
    train_cfg = make_config(str(data), str(run_dir), **options).train
    return dataclasses.replace(train_cfg, data=str(data), out=str(run_dir), head=head, seed=seed, eval_episodes=0)


def head_settings(heads: list[str], sets: list[str] | None, args) -> tuple[dict[str, dict], dict]:
    """Per-head and encoder settings as `imitate compare` gives them (`split_settings`: each head's CPU
    defaults where training runs on a CPU, under ``--set HEAD.KEY=VALUE`` / ``encoder.KEY=VALUE``)."""
    from imitate.compare import _trains_on_cpu, split_settings
    from imitate.config import parse_key_values

    cfg = run_config(Path("data.hdf5"), Path("run"), heads[0], 0, args)
    return split_settings(parse_key_values(sets), heads, _trains_on_cpu(cfg.device), cfg.sizing, cfg.action_horizon)


def run_one(task: str, data: Path, head: str, seed: int, args, run_dir: Path, head_config: dict,
            encoder_config: dict) -> dict:
    """Train ``head`` on ``data`` and evaluate it on unseen configurations."""
    from imitate.checkpoint import load_policy
    from imitate.data import load_demo_file
    from imitate.envs import env_from_args
    from imitate.evaluate import evaluate
    from imitate.train import train

    cfg = run_config(data, run_dir, head, seed, args)
    start = time.perf_counter()
    final = train(cfg, head_config, encoder_config, progress=False)
    train_s = time.perf_counter() - start
    env_id, env_kwargs = env_from_args(load_demo_file(str(data)).env_args)
    start = time.perf_counter()
    res = evaluate(load_policy(str(run_dir)), env_id, env_kwargs, episodes=args.eval_episodes, seed=EVAL_SEED,
                   n_envs=args.n_envs, progress=False)
    eval_s = time.perf_counter() - start
    return {"task": task, "head": head, "seed": seed, "steps": cfg.steps, "demos": args.demos,
            "batch_size": cfg.batch_size, "obs_horizon": cfg.obs_horizon, "action_horizon": cfg.action_horizon,
            "n_act": cfg.n_act, "head_config": head_config, "success_rate": res["success_rate"],
            "mean_return": res["mean_return"], "mean_length": res["mean_length"],
            "train_loss": final.get("train_loss"), "val_loss": final.get("val_loss"), "train_s": train_s,
            "eval_s": eval_s, "eval_episodes": args.eval_episodes, "n_envs": args.n_envs,
            "eval_steps_per_s": args.eval_episodes * res["mean_length"] / eval_s}


def cmd_run(args) -> None:
    from imitate.collect import collect
    from imitate.compare import parse_heads

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = _done(results)
    heads = parse_heads(args.heads)
    head_configs, encoder_config = head_settings(heads, args.set, args)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = parse_tasks(args.tasks)
    total, finished = len(seeds) * len(tasks) * len(heads), 0
    start = time.perf_counter()
    for seed in seeds:
        for task in tasks:
            data = out / "data" / f"{task.replace('/', '_')}.hdf5"
            if not data.exists():
                res = collect(task, args.demos, data, seed=0, progress=False)
                record = {"task": task, "head": "expert", "seed": 0, "demos": args.demos,
                          "success_rate": res.success_rate}
                with open(results, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)
            for head in heads:
                finished += 1
                if (task, head, seed) in done:
                    continue
                run_dir = out / "runs" / task.replace("/", "_") / head / f"seed{seed}"
                if run_dir.exists():     # a run stopped part-way: train it again from scratch
                    import shutil

                    shutil.rmtree(run_dir)
                record = run_one(task, data, head, seed, args, run_dir, head_configs[head], encoder_config)
                with open(results, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"[{finished}/{total}, {(time.perf_counter() - start) / 60:.1f} min] " + json.dumps(record),
                      flush=True)
    print(table(results))


def table(results: Path, seeds: str = "") -> str:
    """Markdown: success per task (rows) and head (columns), mean ± std over seeds, the expert first, and
    how many seeds each task has for every head; then each head's median training and evaluation time.
    ``seeds``: comma-separated seeds to count (empty: all)."""
    rows = [json.loads(line) for line in Path(results).read_text().splitlines() if line.strip()]
    if seeds:
        keep = {int(s) for s in seeds.split(",")}
        rows = [r for r in rows if r["head"] == "expert" or r["seed"] in keep]
    heads = list(dict.fromkeys(r["head"] for r in rows))
    trained = [h for h in heads if h != "expert"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = ["| task | " + " | ".join(heads) + " | seeds |", "|---" * (len(heads) + 2) + "|"]
    for task in tasks:
        cells = []
        for head in heads:
            vals = [r["success_rate"] for r in rows if r["task"] == task and r["head"] == head
                    and r["success_rate"] is not None]
            cells.append(f"{np.mean(vals):.2f} ± {np.std(vals):.2f}" if len(vals) > 1
                         else (f"{vals[0]:.2f}" if vals else "-"))
        complete = set.intersection(*[{r["seed"] for r in rows if r["task"] == task and r["head"] == h}
                                      for h in trained]) if trained else set()
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {len(complete)} |")
    timed = [r for r in rows if "train_s" in r]
    if timed:
        lines += ["", "| head | runs | train (s, median) | evaluate (s, median) | eval env steps/s (median) |",
                  "|---|---|---|---|---|"]
        for head in trained:
            mine = [r for r in timed if r["head"] == head]
            if mine:
                med = {k: float(np.median([r[k] for r in mine if k in r] or [np.nan]))
                       for k in ("train_s", "eval_s", "eval_steps_per_s")}
                lines.append(f"| {head} | {len(mine)} | {med['train_s']:.0f} | {med['eval_s']:.0f} | "
                             f"{med['eval_steps_per_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("experts", help="expert success and env steps/s per task")
    p.add_argument("--tasks", default="mt10")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--results", default="")
    p.set_defaults(fn=cmd_experts)
    p = sub.add_parser("run", help="collect, train every head, evaluate, one table")
    p.add_argument("--tasks", default="mt10")
    p.add_argument("--heads", default="all")
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=0, help="windows per batch (0: imitate compare's, 128)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--n-envs", type=int, default=10)
    p.add_argument("--obs-keys", default="", help="comma-separated observation keys (empty: all of the file)")
    p.add_argument("--set", action="append", metavar="HEAD.KEY=VALUE",
                   help="head or encoder setting, as imitate compare's --set (repeatable)")
    p.add_argument("--out", default="runs/external")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("table", help="print the table of a results.jsonl")
    p.add_argument("results")
    p.add_argument("--seeds", default="", help="comma-separated seeds to count (default: all)")
    p.set_defaults(fn=lambda a: print(table(Path(a.results), a.seeds)))
    args = parser.parse_args(argv)
    from imitate.errors import ImitateError

    try:
        args.fn(args)
    except ImitateError as e:
        sys.exit(f"external.py {args.command}: {e}")


if __name__ == "__main__":
    main()
