"""Offline RL side by side on the same demo files and budget: BC (every head), imitate's IQL/AWAC/CQL
(every head), d3rlpy's IQL/AWAC/CQL (Gaussian actor).

    python benchmarks/offline_rl.py --data datasets/stitch_maze.hdf5 --out runs/offline_rl \\
        [--methods bc,offline,d3rlpy] [--heads all|a,b] [--algos iql,awac,cql] [--seeds 0,1,2] \\
        [--steps 5000] [--episodes 20] [--batch-size 256] [--set algo.KEY=V ...] [--flags "--action-horizon 8 --n-act 4"] \\
        [--deterministic] [--quick]
    python benchmarks/offline_rl.py --table runs/offline_rl      # the table again from results.jsonl

Every run is one record in OUT/results.jsonl (a run already there is skipped when rerun) and the
table, OUT/table.md, is rewritten after each run. Per (file, method, algorithm, head): the median over
seeds of the success rate, of the normalized return and of the wall time, and the mean mode shares
of the successful episodes.

- ``bc``: ``imitate train --data F --head H --steps N --seed S --eval-episodes 0`` + ``--bc-flags`` (its
  defaults otherwise: batch 256, observation history 2, action chunks of 16 executed 8 at a time) then
  ``imitate eval RUN --episodes E``.
- ``offline``: ``imitate offline --algo A --data F --head H --steps N`` (+ ``--seed S`` when the command
  takes it, + the ``--set`` values) then ``imitate eval``. When the command is missing the script
  stops with a message saying so before any run (leave ``offline`` out of ``--methods``).
- ``d3rlpy``: `benchmarks/d3rlpy_adapter.py` (its IQL / AWAC / CQL, d3rlpy's defaults, Gaussian
  actor, the same number of gradient steps, evaluated with imitate's success and return measure).
  The settings both libraries have are passed on: ``algo.reward_shift`` (d3rlpy's constant-shift reward
  scaler), and for IQL ``algo.expectile`` and ``algo.beta`` (d3rlpy's ``expectile``, ``weight_temp``).

``--set`` and ``--flags`` (further flags of ``imitate offline``, e.g. its horizons), and ``--bc-flags`` (of
``imitate train``) are part of each run's key: rerunning with other values adds rows, never mixes them.

Evaluation of imitate's runs samples from the head (``imitate eval``'s default) unless ``--deterministic``
is given: then it acts with the head's most likely action (``imitate eval --deterministic``: a Gaussian's
mean), which is how the IQL paper and d3rlpy's ``predict`` evaluate. The record says which (``eval``:
``sampled`` or ``deterministic``; d3rlpy's runs are always ``deterministic``), deterministic runs get
``|det`` at the end of their key, and the tables keep the two apart. A run trained before under the same
key but the other evaluation is evaluated again, not trained again (its training times are kept).

Normalized return = (R - R_random) / (R_expert - R_random), with R_expert and R_random the mean
returns of the file's demos whose ``quality`` attr is ``expert`` and ``random`` (files made with
``imitate collect --mix``); without both it is left empty. Evaluation: E episodes, seeds 10000..
(``imitate eval``'s). Times, each library in its own processes: ``wall_s`` the whole run (start-up, loading,
training, evaluation); ``train_s`` the run less its evaluation (for imitate the ``imitate train``/``offline``
process); ``loop_s`` the training loop alone (imitate: from the ``time/steps_per_s`` of its metrics.jsonl;
d3rlpy: its ``fit``). Runs go one at a time, single-threaded torch, ordered seed by seed, and within a seed
each imitate algorithm is followed at once by its d3rlpy counterpart, so that the two ran under the same
load; table.md ends with these pairs (Gaussian actor, same file, seed, steps, batch size and settings) and
the ratios d3rlpy / imitate of their training-loop and whole-run times (above 1: imitate is faster), with
the median per algorithm.

``--quick``: steps 200, seed 0, 5 episodes, heads gaussian and gmm, IQL only: a check that every
path runs, not a measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
IMITATE = [sys.executable, "-m", "imitate"]
QUICK = {"steps": 200, "seeds": "0", "episodes": 5, "heads": "gaussian,gmm", "algos": "iql"}


class BenchmarkError(SystemExit):
    """Stops the benchmark with a message (exit status 2)."""

    def __init__(self, message: str):
        print(f"offline_rl: {message}", file=sys.stderr)
        super().__init__(2)


def all_heads() -> list[str]:
    from policy_heads import load_heads
    from policy_heads.base import registered_heads

    load_heads()
    return list(registered_heads())


def offline_command_help() -> tuple[str | None, str]:
    """(``imitate offline --help``, or None when this checkout has no working ``imitate offline``; the
    last line of its error output)."""
    proc = subprocess.run(IMITATE + ["offline", "--help"], capture_output=True, text=True, env=ENV)
    err = (proc.stderr.strip().splitlines() or [""])[-1]
    return (proc.stdout if proc.returncode == 0 else None), err


def references(path: str) -> dict:
    """Mean return of the file's demos per ``quality`` attr (expert / noisy / random), and counts."""
    import h5py
    import numpy as np

    returns: dict[str, list[float]] = {}
    with h5py.File(path, "r") as f:
        for name in f["data"]:
            attrs = f["data"][name].attrs
            if "quality" in attrs:
                rew = np.asarray(f["data"][name]["rewards"], dtype=np.float64)
                returns.setdefault(str(attrs["quality"]), []).append(float(rew.sum()))
    return {k: {"mean_return": float(np.mean(v)), "episodes": len(v)} for k, v in returns.items()}


def normalized(ret: float, refs: dict) -> float | None:
    if "expert" not in refs or "random" not in refs:
        return None
    lo, hi = refs["random"]["mean_return"], refs["expert"]["mean_return"]
    return (ret - lo) / (hi - lo) if hi != lo else None


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in output:\n{text[-2000:]}")


def _run(cmd: list[str], what: str) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd)}):\n{(proc.stderr or proc.stdout)[-3000:]}")
    return _last_json(proc.stdout), time.perf_counter() - start


def evaluate_run(run_dir: Path, episodes: int, deterministic: bool) -> tuple[dict, float]:
    """``imitate eval RUN`` (``--deterministic`` when asked): (its JSON result, seconds)."""
    return _run(IMITATE + ["eval", str(run_dir), "--episodes", str(episodes), "--quiet"]
                + (["--deterministic"] if deterministic else []), "imitate eval")


def eval_record(ev: dict) -> dict:
    return {"success_rate": ev.get("success_rate"), "mean_return": ev["mean_return"],
            "mode_shares": ev.get("mode_shares", {})}


def run_imitate(method: str, data: str, head: str, algo: str | None, steps: int, seed: int, episodes: int,
                run_dir: Path, sets: list[str], takes_seed: bool, flags: list[str] = (), batch_size: int = 256,
                deterministic: bool = False) -> dict:
    if method == "bc":
        cmd = IMITATE + ["train", "--data", data, "--head", head, "--out", str(run_dir), "--steps", str(steps),
                         "--seed", str(seed), "--eval-episodes", "0", "--quiet"] + list(flags)
    else:
        cmd = IMITATE + ["offline", "--algo", algo, "--data", data, "--head", head, "--out", str(run_dir),
                         "--steps", str(steps), "--batch-size", str(batch_size)] + (["--seed", str(seed)] if takes_seed else [])
        for s in sets:
            cmd += ["--set", s]
        cmd += list(flags)
    train_out, train_s = _run(cmd, f"{method} {algo or ''} {head}")
    ev, eval_s = evaluate_run(run_dir, episodes, deterministic)
    return {"train_s": train_s, "wall_s": train_s + eval_s, "loop_s": loop_seconds(run_dir / "metrics.jsonl"),
            **eval_record(ev), "train": train_out}


def reevaluate(trained: dict, run_dir: Path, episodes: int, deterministic: bool) -> dict:
    """A finished run's record with its evaluation made again (the other way): training times kept."""
    ev, eval_s = evaluate_run(run_dir, episodes, deterministic)
    return {"train_s": trained.get("train_s"), "loop_s": trained.get("loop_s"),
            "wall_s": (trained.get("train_s") or 0.0) + eval_s, **eval_record(ev)}


def loop_seconds(metrics: Path) -> float | None:
    """Seconds of the training loop alone (no start-up, no evaluation) from a run's metrics.jsonl: the sum over
    its log records of the steps since the previous record over ``time/steps_per_s``; None without them."""
    if not metrics.exists():
        return None
    total, last, seen = 0.0, 0, False
    for line in metrics.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        rate = rec.get("time/steps_per_s")
        if "step" in rec and rate:
            total += (rec["step"] - last) / rate
            last, seen = rec["step"], True
    return total if seen else None


def run_d3rlpy_process(data: str, algo: str, steps: int, seed: int, episodes: int, batch_size: int,
                       shift: float, fields: dict) -> dict:
    """`d3rlpy_adapter.py` in its own process, as imitate's runs are: ``wall_s`` is the whole process (start-up,
    conversion, training, evaluation), ``loop_s`` d3rlpy's ``fit`` alone, ``train_s`` the process less its
    evaluation."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "d3rlpy_adapter.py"), "--data", data, "--algo", algo,
           "--steps", str(steps), "--seed", str(seed), "--episodes", str(episodes), "--batch-size", str(batch_size),
           "--reward-shift", str(shift)] + [a for k, v in fields.items() for a in ("--set", f"{k}={v}")]
    res, wall = _run(cmd, f"d3rlpy {algo}")
    return {"train_s": wall - res["eval_s"], "wall_s": wall, "loop_s": res["train_s"],
            "success_rate": res.get("success_rate"), "mean_return": res["mean_return"],
            "mode_shares": res.get("mode_shares", {})}


def pair_ratios(records: list[dict]) -> list[dict]:
    """Each imitate offline run next to the d3rlpy run of the same file, algorithm, seed, steps and settings
    (gaussian actor): their times and the ratios d3rlpy / imitate (above 1: imitate is faster)."""
    by_key = {}
    for r in sorted(records, key=lambda r: eval_of(r) == "deterministic"):   # deterministic last: it wins
        if r["method"] in ("offline", "d3rlpy") and r["head"] == "gaussian":
            by_key[(r["method"], Path(r["data"]).name, r["algo"], r["seed"], r["steps"], r.get("variant", ""))] = r
    pairs = []
    for (method, data, algo, seed, steps, variant), mine in sorted(by_key.items()):
        ref = by_key.get(("d3rlpy", data, algo, seed, steps, variant)) if method == "offline" else None
        if ref is None:
            continue
        row = {"data": data, "algo": algo, "seed": seed, "steps": steps, "variant": variant, "eval": eval_of(mine),
               "imitate_norm": mine.get("normalized_return"), "d3rlpy_norm": ref.get("normalized_return"),
               "imitate_success": mine.get("success_rate"), "d3rlpy_success": ref.get("success_rate")}
        for what in ("loop_s", "wall_s"):
            a, b = mine.get(what), ref.get(what)
            row[f"imitate_{what}"], row[f"d3rlpy_{what}"] = a, b
            row[f"ratio_{what}"] = b / a if a and b else None
        pairs.append(row)
    return pairs


def pairs_table(records: list[dict]) -> str:
    """Markdown: one row per imitate / d3rlpy pair, then the median ratio per (file, algorithm, steps, settings)."""
    pairs = pair_ratios(records)
    if not pairs:
        return ""
    num = lambda v, f="{:.2f}": "-" if v is None else f.format(v)  # noqa: E731
    lines = ["| file | algo | settings | steps | seed | imitate's evaluation | normalized return imitate / d3rlpy | "
             "success imitate / d3rlpy | training loop s imitate / d3rlpy | ratio | whole run s imitate / d3rlpy | ratio |",
             "|---|---|---|---:|---:|---|---|---|---|---:|---|---:|"]
    groups: dict[tuple, list[dict]] = {}
    for p in pairs:
        groups.setdefault((p["data"], p["algo"], p["variant"], p["steps"]), []).append(p)
        lines.append(f"| {p['data']} | {p['algo']} | {p['variant'] or '-'} | {p['steps']} | {p['seed']} | {p['eval']} | "
                     f"{num(p['imitate_norm'])} / {num(p['d3rlpy_norm'])} | "
                     f"{num(p['imitate_success'])} / {num(p['d3rlpy_success'])} | "
                     f"{num(p['imitate_loop_s'], '{:.0f}')} / {num(p['d3rlpy_loop_s'], '{:.0f}')} | "
                     f"{num(p['ratio_loop_s'])} | {num(p['imitate_wall_s'], '{:.0f}')} / "
                     f"{num(p['d3rlpy_wall_s'], '{:.0f}')} | {num(p['ratio_wall_s'])} |")
    lines += ["", "| file | algo | settings | steps | pairs | median ratio, training loop | median ratio, whole run |",
              "|---|---|---|---:|---:|---:|---:|"]
    for (data, algo, variant, steps), ps in sorted(groups.items()):
        lines.append(f"| {data} | {algo} | {variant or '-'} | {steps} | {len(ps)} | "
                     f"{_fmt([p['ratio_loop_s'] for p in ps])} | {_fmt([p['ratio_wall_s'] for p in ps])} |")
    return "\n".join(lines) + "\n"


def plan(args) -> list[dict]:
    heads = all_heads() if args.heads == "all" else [h.strip() for h in args.heads.split(",") if h.strip()]
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - {"bc", "offline", "d3rlpy"})
    if unknown:
        raise BenchmarkError(f"--methods: unknown {unknown}; choose from bc, offline, d3rlpy")
    runs = []
    for data in args.data:
        for seed in seeds:      # every run of seed 0 first, then seed 1, ...: partial results are whole seeds
            if "bc" in methods:
                runs += [{"data": data, "method": "bc", "algo": "bc", "head": h, "seed": seed} for h in heads]
            for a in algos:     # each imitate algorithm next to its d3rlpy counterpart: the pair ran under one load
                if "offline" in methods:
                    runs += [{"data": data, "method": "offline", "algo": a, "head": h, "seed": seed} for h in heads]
                if "d3rlpy" in methods:
                    runs.append({"data": data, "method": "d3rlpy", "algo": a, "head": "gaussian", "seed": seed})
    return runs


def run_key(run: dict, steps: int, episodes: int, variant: str = "", deterministic: bool = False) -> str:
    """The run's identity in results.jsonl; ``|det`` at the end for an imitate run evaluated deterministically."""
    key = f"{Path(run['data']).name}|{run['method']}|{run['algo']}|{run['head']}|s{run['seed']}|n{steps}|e{episodes}"
    key += f"|{variant}" if variant else ""
    return key + ("|det" if deterministic and run["method"] != "d3rlpy" else "")


def eval_of(record: dict) -> str:
    """How a record's policy acted in evaluation: d3rlpy's ``predict`` is always the deterministic action."""
    return "deterministic" if record["method"] == "d3rlpy" else record.get("eval", "sampled")


def variant_of(sets: list[str], flags: list[str]) -> str:
    """The settings that make a run differ from the defaults, as one short string (part of its key)."""
    return " ".join([*flags, *sorted(sets)])


def d3rlpy_settings(algo: str, sets: list[str]) -> tuple[float, dict]:
    """(reward shift, d3rlpy config fields) for the ``--set algo.*`` values both libraries have."""
    values = dict(s.split("=", 1) for s in sets if s.startswith("algo."))
    shift = float(values.get("algo.reward_shift", 0.0))
    fields = {}
    if algo == "iql":
        if "algo.expectile" in values:
            fields["expectile"] = float(values["algo.expectile"])
        if "algo.beta" in values:
            fields["weight_temp"] = float(values["algo.beta"])
    return shift, fields


def next_time_of_day(hhmm: str, now: float | None = None) -> float:
    """The epoch seconds of the next time the UTC clock reads ``hhmm`` (today, or tomorrow when it has passed)."""
    import calendar

    try:
        hour, minute = (int(v) for v in hhmm.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise BenchmarkError(f"--start-before {hhmm!r}: expected a UTC time of day HH:MM") from None
    now = time.time() if now is None else now
    day = time.gmtime(now)
    at = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, hour, minute, 0))
    return at if at > now else at + 86400


def read_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    text = f"{med:.2f}"
    if len(values) > 1:
        text += f" ({min(values):.2f}-{max(values):.2f})"
    return text


def table(records: list[dict]) -> str:
    """The markdown table: one row per (file, method, algorithm, head)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((Path(r["data"]).name, r["method"], r["algo"], r["head"], r["steps"], r.get("variant", ""),
                           eval_of(r)), []).append(r)
    lines = ["| file | method | algo | head | settings | steps | evaluation | seeds | success | normalized return | "
             "mean return | train s | wall s | mode shares |",
             "|---|---|---|---|---|---:|---|---:|---|---|---|---|---|---|"]
    for (data, method, algo, head, steps, variant, how), rs in sorted(groups.items()):
        modes: dict[str, float] = {}
        for r in rs:
            for m, share in (r.get("mode_shares") or {}).items():
                modes[m] = modes.get(m, 0.0) + share / len(rs)
        mode_text = ", ".join(f"{m} {v:.2f}" for m, v in sorted(modes.items())) or "-"
        lines.append(f"| {data} | {method} | {algo} | {head} | {variant or '-'} | {steps} | {how} | {len(rs)} | "
                     f"{_fmt([r.get('success_rate') for r in rs])} | {_fmt([r.get('normalized_return') for r in rs])} | "
                     f"{_fmt([r.get('mean_return') for r in rs])} | {_fmt([r.get('train_s') for r in rs])} | "
                     f"{_fmt([r.get('wall_s') for r in rs])} | {mode_text} |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path) -> None:
    """OUT/table.md from OUT/results.jsonl: the table, then the imitate / d3rlpy pairs with their time ratios."""
    records = read_results(out)
    pairs = pairs_table(records)
    (out / "table.md").write_text(table(records) + ("\n" + pairs if pairs else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", action="append", default=[], help="a demo file (repeat for several)")
    p.add_argument("--out", required=True, help="output folder: results.jsonl, table.md, runs/")
    p.add_argument("--methods", default="bc,offline,d3rlpy", help="any of bc, offline, d3rlpy")
    p.add_argument("--heads", default="all", help="heads for BC and imitate offline (all, or a,b,...)")
    p.add_argument("--algos", default="iql,awac,cql", help="offline algorithms (imitate's and d3rlpy's)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=5000, help="gradient steps of every run")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per run")
    p.add_argument("--batch-size", type=int, default=256,
                   help="transitions per batch of imitate offline and d3rlpy (BC keeps its own default)")
    p.add_argument("--set", action="append", default=[], help="passed to imitate offline (algo.KEY=V, head.KEY=V)")
    p.add_argument("--bc-flags", default="", help='further flags of imitate train (BC), e.g. "--action-horizon 8 --n-act 4"')
    p.add_argument("--flags", default="", help='further flags of imitate offline, e.g. "--obs-horizon 2 --n-act 8"')
    p.add_argument("--start-before", default="", metavar="HH:MM",
                   help="start no run at or after the next time this UTC time of day comes round (past midnight "
                        "when it is earlier than now); the runs not started are listed")
    p.add_argument("--deterministic", action="store_true",
                   help="evaluate imitate's runs with the head's most likely action (as d3rlpy's predict does)")
    p.add_argument("--quick", action="store_true", help="a tiny version: " + json.dumps(QUICK))
    p.add_argument("--table", action="store_true", help="only rewrite OUT/table.md from OUT/results.jsonl")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.table:
        write_tables(out)
        print((out / "table.md").read_text())
        return 0
    if not args.data:
        raise BenchmarkError("--data FILE is required (repeat it for several files)")
    for data in args.data:
        if not Path(data).exists():
            raise BenchmarkError(f"--data {data}: no such file")
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    runs = plan(args)
    flags = shlex.split(args.flags)
    bc_flags = shlex.split(args.bc_flags)
    variants = {"bc": " ".join(bc_flags), "offline": variant_of(args.set, flags), "d3rlpy": variant_of(args.set, flags)}
    takes_seed = False
    if any(r["method"] == "offline" for r in runs):
        helptext, err = offline_command_help()
        if helptext is None:
            raise BenchmarkError("`imitate offline` is not available in this checkout (issue 17's offline "
                                 f"algorithms; `imitate offline --help` said: {err}); run with --methods "
                                 "bc,d3rlpy until it is")
        takes_seed = "--seed" in helptext
    if any(r["method"] == "d3rlpy" for r in runs):
        from d3rlpy_adapter import d3rlpy_missing

        missing = d3rlpy_missing()
        if missing:
            raise BenchmarkError(f"{missing} (or leave d3rlpy out of --methods)")
    out.mkdir(parents=True, exist_ok=True)
    deadline = next_time_of_day(args.start_before) if args.start_before else None
    records = {r["key"]: r for r in read_results(out)}
    done = set(records)
    refs = {data: references(data) for data in args.data}
    for i, run in enumerate(runs):
        key = run_key(run, args.steps, args.episodes, variants[run["method"]], args.deterministic)
        trained_key = run_key(run, args.steps, args.episodes, variants[run["method"]])
        other_key = trained_key if args.deterministic else trained_key + "|det"
        if key in done:
            continue
        if deadline is not None and time.time() >= deadline:
            left = [run_key(r, args.steps, args.episodes, variants[r["method"]], args.deterministic) for r in runs[i:]]
            print(f"--start-before {args.start_before} UTC: not started: {[k for k in left if k not in done]}",
                  flush=True)
            break
        print(f"[{i + 1}/{len(runs)}] {key}", flush=True)
        if run["method"] == "d3rlpy":
            shift, fields = d3rlpy_settings(run["algo"], args.set)
            res = run_d3rlpy_process(run["data"], run["algo"], args.steps, run["seed"], args.episodes, args.batch_size,
                                     shift, fields)
        else:
            run_dir = out / "runs" / trained_key.replace("|", "_")
            if other_key in records and (run_dir / "model.safetensors").exists():
                res = reevaluate(records[other_key], run_dir, args.episodes, args.deterministic)
            else:
                if run_dir.exists():
                    import shutil

                    shutil.rmtree(run_dir)
                res = run_imitate(run["method"], run["data"], run["head"],
                                  run["algo"] if run["method"] == "offline" else None, args.steps, run["seed"],
                                  args.episodes, run_dir, args.set, takes_seed,
                                  bc_flags if run["method"] == "bc" else flags, args.batch_size, args.deterministic)
                res.pop("train", None)
        record = {"key": key, **run, "steps": args.steps, "episodes": args.episodes,
                  "variant": variants[run["method"]],
                  "eval": "deterministic" if args.deterministic or run["method"] == "d3rlpy" else "sampled", **res,
                  "normalized_return": normalized(res["mean_return"], refs[run["data"]])}
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: record[k] for k in ("success_rate", "mean_return", "normalized_return", "wall_s")}),
              flush=True)
        write_tables(out)
    print((out / "table.md").read_text() if (out / "table.md").exists() else "(no runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
