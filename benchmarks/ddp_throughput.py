"""Samples per second of `imitate train` in one process vs two (torchrun, gloo, one torch thread each).

Three settings, run in turn (1, 2, 2, 1, 2, 2, ...) so that a busy machine disturbs them alike:

    one      1 process, --batch-size B
    two_B    2 processes, --batch-size B   (the same global batch: B/2 windows per process)
    two_2B   2 processes, --batch-size 2B  (the same batch per process: B windows each)

A run's speed is rank 0's own ``time/steps_per_s`` over the second half of its steps (after warm-up)
times the global batch. On a machine shared with other jobs, wall-clock speed also measures how much
of the CPU the scheduler gives N processes against the others' jobs, so each setting is also
measured in CPU time: the CPU seconds of all its processes (RUSAGE_CHILDREN) for ``--steps`` steps,
less those of a 2-step run of the same setting (start-up: imports, loading, process group), give
samples per CPU-second. Every two-process run also reports whether the processes' weights (raw and
EMA) were identical at the end, as the trainer checks (SHA-256 of every rank's weights).

    python benchmarks/ddp_throughput.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HEAD_SETTINGS = {"diffusion": ["--set", "denoiser=mlp"], "gmm": ["--set", "hidden_dims=256,256"]}


def cpu_seconds() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run(nproc: int, batch: int, args, out: str, steps: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    flags = ["train", "--data", args.data, "--out", out, "--head", args.head, "--steps", str(steps),
             "--batch-size", str(batch), "--action-horizon", "8", "--n-act", "4", "--log-every", str(max(1, steps // 2)),
             "--val-every", "0", "--eval-episodes", "0", "--ckpt-every", str(10 * args.steps), "--device", "cpu",
             "--quiet", *HEAD_SETTINGS.get(args.head, [])]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] \
        if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cpu = cpu_seconds()
    res = subprocess.run([*launcher, "-m", "imitate", *flags], env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{nproc} process(es) failed:\n{res.stderr[-3000:]}")
    cpu = cpu_seconds() - cpu
    final = json.loads(res.stdout.strip().splitlines()[-1])
    lines = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    steps_per_s = [l["time/steps_per_s"] for l in lines if "time/steps_per_s" in l][-1]
    return {"samples_per_s": steps_per_s * batch, "steps_per_s": steps_per_s, "cpu_s": cpu, "load": os.getloadavg()[0],
            "identical_weights": "weights_sha256" in final if nproc > 1 else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/forked_path.hdf5")
    p.add_argument("--head", default="diffusion")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="ddp_throughput_")
    settings = {"one": (1, args.batch_size), "two_B": (2, args.batch_size), "two_2B": (2, 2 * args.batch_size)}
    results: dict[str, list[dict]] = {k: [] for k in settings}
    startup = {name: run(nproc, batch, args, f"{tmp}/{name}", 2)["cpu_s"] for name, (nproc, batch) in settings.items()}
    print(json.dumps({"startup_cpu_s": startup}), flush=True)
    for r in range(args.rounds):
        for name, (nproc, batch) in settings.items():
            row = run(nproc, batch, args, f"{tmp}/{name}", args.steps)
            row["samples_per_cpu_s"] = batch * (args.steps - 2) / max(1e-9, row["cpu_s"] - startup[name])
            results[name].append(row)
            print(json.dumps({"round": r, "setting": name, **row}), flush=True)
    one = statistics.median(x["samples_per_s"] for x in results["one"])
    one_cpu = statistics.median(x["samples_per_cpu_s"] for x in results["one"])
    summary = {"head": args.head, "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
               "cpu_count": os.cpu_count(), "load_avg_range": [round(min(x["load"] for v in results.values() for x in v), 2),
                                                               round(max(x["load"] for v in results.values() for x in v), 2)]}
    for name, rows in results.items():
        med = statistics.median(x["samples_per_s"] for x in rows)
        med_cpu = statistics.median(x["samples_per_cpu_s"] for x in rows)
        summary[name] = {"samples_per_s": round(med, 1), "vs_one": round(med / one, 2),
                         "all_runs": [round(x["samples_per_s"], 1) for x in rows],
                         "samples_per_cpu_s": round(med_cpu, 1), "cpu_vs_one": round(med_cpu / one_cpu, 2)}
        if settings[name][0] > 1:
            summary[name]["identical_weights_every_run"] = all(x["identical_weights"] for x in rows)
    print(json.dumps(summary))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
