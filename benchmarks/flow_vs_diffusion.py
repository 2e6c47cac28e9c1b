"""Flow matching (K = 10, 2, 1 steps; plain, shortcut- and MeanFlow-trained) against diffusion (DDIM-10) and gmm.

    python benchmarks/flow_vs_diffusion.py quality --data datasets/forked_path3.hdf5 --out runs/bench_flow --seeds 2
    python benchmarks/flow_vs_diffusion.py quality --data datasets/block_push.hdf5 --out runs/bench_flow_bp \
        --seeds 3 --steps 5000 --jobs 1 --objectives shortcut,meanflow
    python benchmarks/flow_vs_diffusion.py latency --data datasets/forked_path.hdf5 --out runs/bench_flow_latency

quality: `imitate.compare.compare` trains the flow head once per objective in --objectives (shortcut,
meanflow, flow = plain flow matching; one compare each, in OUT/<objective>/), the first of them beside
the --baselines gmm and diffusion (MLP denoiser, sample prediction, 10 DDIM steps), all with the same
budget and seeds. Every flow run is then measured again at K = 10, 2 and 1 steps (the same weights,
`num_inference_steps` changed; cached in the run's flow_steps.json): rollouts (success, behaviour
entropy, mode-share gap against the demonstrations, the task's episode metrics such as BlockPush's
p1/p2) on compare's start seeds and the data metrics (energy distance, coverage) at compare's
held-out states. Seed by seed: every case of seed 0 first, then seed 1, ...; after each seed the
table so far (mean ± std over the seeds done) is printed and written to OUT/flow_vs_diffusion.json.
Finished runs are reused, so a stopped benchmark continues where it stopped.

latency: a short run per head (latency does not depend on the weights), CPU head settings, Ta = 8;
`predict_chunk` at batch 1 with one torch thread, every case loaded in one process and called in
turn (gmm, flow, ..., gmm, flow, ...), median per case; with --onnx, the same for the exported graph
on onnxruntime (one intra-op thread); --rounds rounds of --calls calls, the median of the round
medians. Also the training time per step of each case (from the trainer's log, median over
--train-rounds runs of --train-steps steps, the cases in turn).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

FLOW = {"flow.denoiser": "mlp"}
DIFFUSION = {"diffusion.denoiser": "mlp", "diffusion.prediction_type": "sample"}
STEPS = (10, 2, 1)

# Latency cases: name -> (head, settings); the CPU head settings of `imitate compare` (the autoregressive head's
# CPU defaults: one transformer position per step), and the autoregressive head's earlier layouts: one position
# per entry, and one joint token per step of ForkedPath's two dimensions (16 bins each: 256 categories per token).
AR_ENTRY = {"layout": "entry", "d_model": "64", "num_layers": "2", "ff_mult": "4"}
CASES = {
    "deterministic": ("deterministic", {}),
    "gaussian": ("gaussian", {}),
    "gmm": ("gmm", {}),
    "autoregressive": ("autoregressive", {}),
    "autoregressive per-entry": ("autoregressive", AR_ENTRY),
    "autoregressive step-tokens": ("autoregressive", {**AR_ENTRY, "dims_per_token": "2", "bins": "16"}),
    "autoregressive step d64": ("autoregressive", {"layout": "step", "d_model": "64", "num_layers": "2", "ff_mult": "4"}),
    "diffusion DDIM-10": ("diffusion", {"denoiser": "mlp", "prediction_type": "sample"}),
    **{f"flow K={k}": ("flow", {"denoiser": "mlp", "objective": "shortcut", "num_inference_steps": str(k)}) for k in STEPS},
}


OBJECTIVES = ("shortcut", "meanflow", "flow")
"""Flow objectives the quality benchmark can train; each is one compare of the flow head in OUT/<objective>/."""


def measure_flow(run_dir: Path, k: int, args, qs, demo_shares: dict[str, float], env_id: str, env_kwargs: dict,
                 seed: int) -> dict:
    """Rollouts and data metrics of a trained flow run sampled with k steps (as compare measures them).

    Cached in RUN_DIR/flow_steps.json (one entry per k and measurement setting)."""
    from imitate.checkpoint import load_policy
    from imitate.evaluate import evaluate
    from imitate.sample_metrics import distribution_metrics, sample_policy

    cache_file = run_dir / "flow_steps.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    key = f"K={k} episodes={args.episodes} eval_seed={args.eval_seed} samples={args.samples}"
    if key in cache:
        return cache[key]
    policy = load_policy(run_dir)
    policy.head.config = dataclasses.replace(policy.head.config, num_inference_steps=k)
    out = distribution_metrics(sample_policy(policy, qs, args.samples, seed=seed), qs)
    res = evaluate(policy, env_id, env_kwargs, args.episodes, args.eval_seed, progress=False)
    cache[key] = {**out, "success_rate": res["success_rate"], "behaviour_entropy": res["behaviour_entropy"],
                  "mode_share_gap": mode_gap(res["mode_shares"], demo_shares), **{f"episode/{m}": v for m, v in (res.get("episode_metrics") or {}).items()}}
    cache_file.write_text(json.dumps(cache, indent=1))
    return cache[key]


def mode_gap(shares: dict[str, float] | None, demo_shares: dict[str, float]) -> float | None:
    """The largest difference in points between the rollouts' and the demonstrations' mode shares; None on a
    task without modes (neither the demonstrations nor the rollouts name one, as on Meta-World)."""
    shares = shares or {}
    modes = set(demo_shares) | set(shares)
    return 100 * max(abs(shares.get(m, 0.0) - demo_shares.get(m, 0.0)) for m in modes) if modes else None


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _table(rows: dict[str, dict[str, list]]) -> str:
    keys = list(next(iter(rows.values()))) if rows else []
    lines = ["| case | seeds | " + " | ".join(keys) + " |"]
    for label, values in rows.items():
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v and all(x is not None for x in v) else "n/a"
                 for v in values.values()]
        lines.append(f"| {label} | {len(next(iter(values.values())))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quality(args) -> None:
    """Seed by seed (every case of seed 0 first, then seed 1, ...): one compare per flow objective (the
    first also trains the baselines), then every flow run measured at K = 10, 2, 1; the table so far
    is written to OUT/flow_vs_diffusion.json after each seed."""
    from imitate.compare import compare
    from imitate.data import load_demo_file
    from imitate.sample_metrics import query_set

    objectives = [o for o in args.objectives.split(",") if o]
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise SystemExit(f"--objectives: choose from {', '.join(OBJECTIVES)} (got {args.objectives!r})")
    baselines = [b for b in args.baselines.split(",") if b]
    if any(b not in ("gmm", "diffusion") for b in baselines):
        raise SystemExit(f"--baselines: choose from gmm, diffusion (got {args.baselines!r})")
    common = dict(steps=args.steps, episodes=args.episodes, jobs=args.jobs, eval_seed=args.eval_seed,
                  samples=args.samples, latency_calls=10)
    out = Path(args.out)
    store = load_demo_file(args.data)
    routes = [a["route"] for a in store.demo_attrs if "route" in a]
    demo_shares = {r: routes.count(r) / len(routes) for r in sorted(set(routes))}
    env_args = store.env_args or {}
    qs = query_set(store, 2, 8, 4, 64, 16)
    keys = ("success_rate", "behaviour_entropy", "mode_share_gap", "energy_distance", "coverage", "train_time_s")
    labels = {"gmm": "gmm", "diffusion": "diffusion DDIM-10"}
    rows: dict[str, dict[str, list]] = {}
    for n in range(1, args.seeds + 1):
        for i, objective in enumerate(objectives):
            heads = (baselines if i == 0 else []) + ["flow"]
            steps = "10" if objective == "flow" else "1"  # what compare itself measures; every K is measured below
            results = compare(args.data, str(out / objective), heads=",".join(heads), progress=True, seeds=n, **common,
                              settings={**(DIFFUSION if "diffusion" in heads else {}), **FLOW,
                                        "flow.objective": objective, "flow.num_inference_steps": steps})
            for head in heads[:-1]:
                runs = results["heads"][head]["runs"]
                extra = sorted({m for r in runs for m in (r.get("episode_metrics") or {})})
                for r in runs:
                    r["mode_share_gap"] = mode_gap(r.get("mode_shares"), demo_shares)
                rows[labels[head]] = {**{key: [r.get(key) for r in runs] for key in keys},
                                      **{f"episode/{m}": [(r.get("episode_metrics") or {}).get(m) for r in runs] for m in extra}}
            runs = results["heads"]["flow"]["runs"]
            for k in STEPS:
                label = f"{objective} K={k}"
                rows[label] = {}
                for seed, run in enumerate(runs):
                    m = measure_flow(Path(run["run_dir"]), k, args, qs, demo_shares, env_args.get("env_name"),
                                     env_args.get("env_kwargs") or {}, seed)
                    m = {**m, "train_time_s": run.get("train_time_s")}
                    for key in (*keys, *sorted(x for x in m if x.startswith("episode/"))):
                        rows[label].setdefault(key, []).append(m[key])
                    if seed == n - 1:
                        print(f"{label} seed {seed}: " + " ".join(f"{key} {_num(m[key])}" for key in keys), flush=True)
        (out / "flow_vs_diffusion.json").write_text(json.dumps({"demo_shares": demo_shares, "seeds": n, "rows": rows},
                                                               indent=1))
        print(f"after seed {n - 1}:\n{_table(rows)}", flush=True)


def train_run(args, head: str, settings: dict, run: Path, steps: int) -> float:
    """Train a fresh run of `steps` steps; its milliseconds per step from the trainer's last log line."""
    import shutil

    from imitate.train import TrainConfig, train

    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainConfig(data=args.data, out=str(run), head=head, steps=steps, batch_size=128, action_horizon=8, n_act=4,
                      warmup_steps=2, val_every=0, eval_episodes=0, log_every=max(1, steps // 2), ckpt_every=steps)
    train(cfg, dict(settings), {}, progress=False)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return 1e3 / [r for r in lines if "time/steps_per_s" in r][-1]["time/steps_per_s"]


def latency(args) -> None:
    from imitate.checkpoint import load_policy

    torch.set_num_threads(1)
    names = args.cases.split(",")
    out = Path(args.out)
    step_ms: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(args.train_rounds):
        for name in names:
            head, settings = CASES[name]
            step_ms[name].append(train_run(args, head, settings, out / f"{name.replace(' ', '_')}_r{round_}", args.train_steps))
    if not args.train_rounds:  # latency only: the runs of an earlier call
        step_ms = {n: [float("nan")] for n in names}
    policies = {n: load_policy(out / f"{n.replace(' ', '_')}_r0") for n in names}
    runners = {}
    for name, policy in policies.items():
        obs = {k: np.zeros((1, policy.obs_horizon, *s), np.float32) for k, s in policy.obs_shapes.items()}
        generator = torch.Generator().manual_seed(0)
        runners[f"{name} eager"] = (lambda p=policy, o=obs, g=generator: p.predict_chunk(o, generator=g))
        if name in args.onnx.split(","):
            from imitate.export.exporter import export_run
            from imitate.export.runtime import load

            folder = out / f"{name.replace(' ', '_')}_onnx"
            if not (folder / "export.json").exists():
                start = time.perf_counter()
                export_run(out / f"{name.replace(' ', '_')}_r0", folder, ["onnx"], overwrite=True)
                print(f"{name}: exported in {time.perf_counter() - start:.0f} s", flush=True)
            model = load(folder, "onnx", threads=1, seed=0)
            runners[f"{name} onnx"] = (lambda m=model, o=obs: m.predict_chunk(o))
    for run_once in runners.values():
        for _ in range(5):
            run_once()
    rounds: dict[str, list[float]] = {k: [] for k in runners}  # per round: the median of --calls calls
    for _ in range(args.rounds):
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.calls):
            for key, run_once in runners.items():
                start = time.perf_counter()
                run_once()
                times[key].append(time.perf_counter() - start)
        for key, values in times.items():
            rounds[key].append(1e3 * statistics.median(values))
    ms = {k: statistics.median(v) for k, v in rounds.items()}
    print("round medians (ms): " + json.dumps({k: [round(x, 3) for x in v] for k, v in rounds.items()}))
    gmm = ms.get("gmm eager")
    print("| case | predict_chunk eager (ms) | x gmm | onnxruntime (ms) | train step (ms) | x gmm |")
    for name in names:
        eager, onnx = ms[f"{name} eager"], ms.get(f"{name} onnx")
        train_ms = statistics.median(step_ms[name])
        gmm_train = statistics.median(step_ms["gmm"]) if "gmm" in step_ms else None
        print(f"| {name} | {eager:.2f} | {eager / gmm:.2f}x | {f'{onnx:.2f}' if onnx else ''} | {train_ms:.1f} | "
              f"{train_ms / gmm_train:.2f}x |" if gmm and gmm_train else f"| {name} | {eager:.2f} | | | {train_ms:.1f} | |")
    (out / "latency.json").write_text(json.dumps({"predict_chunk_ms": ms, "train_step_ms": step_ms}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--data", default="datasets/forked_path3.hdf5")
    q.add_argument("--out", default="runs/bench_flow")
    q.add_argument("--steps", type=int, default=2000)
    q.add_argument("--seeds", type=int, default=2)
    q.add_argument("--episodes", type=int, default=50)
    q.add_argument("--samples", type=int, default=128)
    q.add_argument("--eval-seed", type=int, default=10000)
    q.add_argument("--jobs", type=int, default=2)
    q.add_argument("--objectives", default="shortcut,flow",
                   help=f"flow objectives, comma-separated, from {', '.join(OBJECTIVES)} (one compare each)")
    q.add_argument("--baselines", default="gmm,diffusion", help="heads trained beside the first objective ('' for none)")
    lat = sub.add_parser("latency")
    lat.add_argument("--data", default="datasets/forked_path.hdf5")
    lat.add_argument("--out", default="runs/bench_flow_latency")
    lat.add_argument("--cases", default=",".join(CASES))
    lat.add_argument("--onnx", default="", help="cases also exported and timed on onnxruntime (comma-separated)")
    lat.add_argument("--calls", type=int, default=100, help="calls per round and case")
    lat.add_argument("--rounds", type=int, default=5, help="rounds of calls; the table gives the median of the round medians")
    lat.add_argument("--train-steps", type=int, default=60)
    lat.add_argument("--train-rounds", type=int, default=2, help="0: reuse the runs in --out, no training time")
    args = p.parse_args()
    quality(args) if args.command == "quality" else latency(args)


if __name__ == "__main__":
    main()
