"""Behaviour cloning from pixels next to the same heads from the state, and what images cost the tasks.

Two parts:

    python benchmarks/visual_bc.py speed [--repeats 5]
        env.step per second of ForkedPath, BlockPush (and ReacherModes where MuJoCo is installed) with
        obs_mode state, image and state+image (84 x 84), the time of one observation image, and `imitate collect` of 200 ForkedPath demos
        with obs_mode=state vs state+image (seconds, file size). Runs on any branch with the tasks.

    python benchmarks/visual_bc.py bc [--quick] [--out runs/visual_bc]
        per task (image-only ForkedPath, image BlockPush): one demo file collected with
        obs_mode=state+image, so both inputs see the very same demonstrations; then `imitate compare`
        twice on it with the same heads, seeds and budget: once from pixels (``obs_keys=image``, conv
        encoder, ``--set encoder.image_encoder=conv``), once from the state keys. Heads: every
        registered head, diffusion and flow with the MLP denoiser (CPU-sized). The table gives
        success and mode shares (mean +- std over seeds) of both inputs side by side, and the
        training time per step. ``--quick``: 1 seed, 30 demos, 150 steps, 10 rollouts (a smoke run).

The ``bc`` part needs image keys in demo files and the image encoders (the data layer and the
encoder settings of the image contract); where they are missing it stops with the library's message.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TASKS = {"forked_path": ("imitate/ForkedPath-v0", ("agent_pos", "goal_pos")),
         "block_push": ("imitate/BlockPush-v0", ("agent_pos", "block_pos", "target_pos"))}


# -- speed ------------------------------------------------------------------------------------------
def steps_per_s(env_id: str, obs_mode: str, steps: int, seed: int = 0) -> float:
    from imitate.envs import make_env

    env = make_env(env_id, {"obs_mode": obs_mode})
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, 2)).astype(np.float32)
    env.reset(seed=seed)
    start = time.perf_counter()
    for i, a in enumerate(actions):
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset(seed=seed + i)
    return steps / (time.perf_counter() - start)


def image_us(env_id: str, calls: int = 2000) -> float:
    from imitate.envs import make_env

    env = make_env(env_id, {"obs_mode": "image"})
    env.reset(seed=0)
    draw = env.unwrapped.observation_image
    start = time.perf_counter()
    for _ in range(calls):
        draw()
    return 1e6 * (time.perf_counter() - start) / calls


def collect_s(obs_mode: str, episodes: int) -> tuple[float, int, int]:
    from imitate.collect import collect

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demos.hdf5"
        start = time.perf_counter()
        res = collect("imitate/ForkedPath-v0", episodes, out, env_kwargs={"obs_mode": obs_mode}, progress=False)
        return time.perf_counter() - start, res.transitions, out.stat().st_size


def speed(args) -> None:
    import importlib.util

    rows = []
    tasks = [env_id for env_id, _ in TASKS.values()]
    if importlib.util.find_spec("mujoco") is not None:
        tasks.append("imitate/ReacherModes-v0")
    for env_id in tasks:
        for mode in ("state", "image", "state+image"):
            runs = [steps_per_s(env_id, mode, args.steps, seed=r) for r in range(args.repeats)]
            rows.append((env_id, mode, statistics.median(runs)))
            print(f"{env_id:24s} obs_mode={mode:12s} {statistics.median(runs):9.0f} steps/s "
                  f"(median of {args.repeats} x {args.steps} steps)", flush=True)
        print(f"{env_id:24s} one 84x84 observation image: {image_us(env_id):.1f} us", flush=True)
    for mode in ("state", "state+image"):
        runs = [collect_s(mode, args.demos) for _ in range(args.repeats_collect)]
        secs = statistics.median(r[0] for r in runs)
        print(f"collect {args.demos} ForkedPath demos, obs_mode={mode:12s}: {secs:.2f} s "
              f"(median of {args.repeats_collect}; {runs[0][1]} steps, file {runs[0][2] / 2**20:.1f} MiB)", flush=True)


# -- BC from pixels vs from the state -----------------------------------------------------------------
def fmt(stat) -> str:
    if not stat:
        return "n/a"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if len(stat["values"]) > 1 else f"{stat['mean']:.2f}"


def bc(args) -> None:
    from imitate.collect import collect
    from imitate.compare import compare, parse_heads
    from imitate.errors import ImitateError

    heads = parse_heads(args.heads)
    quick = args.quick
    seeds = 1 if quick else args.seeds
    demos = 30 if quick else args.demos
    steps = 150 if quick else args.steps
    episodes = 10 if quick else args.episodes
    out = Path(args.out)
    table = []
    for name in args.tasks.split(","):
        env_id, state_keys = TASKS[name]
        data = out / f"{name}_state+image{args.image_size}_{demos}.hdf5"
        if not data.exists():
            data.parent.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            collect(env_id, demos, data, env_kwargs={"obs_mode": "state+image", "image_size": args.image_size},
                    progress=True)
            print(f"collected {demos} {env_id} demos with obs_mode=state+image ({args.image_size} px) in {time.perf_counter() - t:.1f} s",
                  flush=True)
        for inputs, keys, encoder in (("pixels", ("image",), {"encoder.image_encoder": "conv"}),
                                      ("state", state_keys, {})):
            if inputs not in args.inputs.split(","):
                continue
            settings = {**encoder, **{f"{h}.denoiser": "mlp" for h in ("diffusion", "flow") if h in heads}}
            try:
                res = compare(str(data), str(out / name / f"{inputs}{args.image_size}"), settings=settings, heads=args.heads, seeds=seeds,
                              episodes=episodes, steps=steps, batch_size=args.batch_size, obs_keys=keys,
                              jobs=args.jobs, device=args.device, progress=True)
            except ImitateError as e:
                sys.exit(f"visual_bc: {name} from {inputs} cannot run here: {e}")
            for head, v in res["heads"].items():
                s = v["summary"]
                shares = {k.split("/", 1)[1]: round(st["mean"], 2) for k, st in s.items() if k.startswith("share/") and st}
                table.append({"task": env_id, "inputs": inputs, "head": head, "success": fmt(s.get("success_rate")),
                              "entropy": fmt(s.get("behaviour_entropy")), "shares": shares,
                              "ms_per_step": round(float(np.mean([r["ms_per_step"] for r in v["runs"]])), 1)})
    (out / "visual_bc.json").write_text(json.dumps(table, indent=1))
    print(f"\n| task | head | inputs | success | behaviour entropy | mode shares | ms/step |\n|---|---|---|---|---|---|---|")
    for r in sorted(table, key=lambda r: (r["task"], r["head"], r["inputs"])):
        print(f"| {r['task']} | {r['head']} | {r['inputs']} | {r['success']} | {r['entropy']} | "
              f"{', '.join(f'{m} {v}' for m, v in r['shares'].items()) or '–'} | {r['ms_per_step']} |")
    print(f"\n({seeds} seed(s), {demos} demos, {args.image_size}x{args.image_size} frames, {steps} steps, batch {args.batch_size}, {episodes} rollouts per run, "
          f"device {args.device}; "
          f"every number: {out / 'visual_bc.json'} and each compare's results.json)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed", help="env steps/s state vs image; collect 200 demos with images")
    s.add_argument("--steps", type=int, default=3000)
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--demos", type=int, default=200)
    s.add_argument("--repeats-collect", type=int, default=3)
    b = sub.add_parser("bc", help="every head from pixels vs from the state")
    b.add_argument("--quick", action="store_true", help="1 seed, 30 demos, 150 steps, 10 rollouts")
    b.add_argument("--out", default="runs/visual_bc")
    b.add_argument("--tasks", default="forked_path,block_push")
    b.add_argument("--heads", default="all")
    b.add_argument("--inputs", default="pixels,state", help="which halves to run: pixels, state or both")
    b.add_argument("--seeds", type=int, default=3)
    b.add_argument("--demos", type=int, default=200)
    b.add_argument("--steps", type=int, default=3000)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--episodes", type=int, default=50)
    b.add_argument("--image-size", type=int, default=84, help="side of the camera frames (84: the tasks' default)")
    b.add_argument("--jobs", type=int, default=0, help="runs at once (0: one per core, at most 4)")
    b.add_argument("--device", default="cpu", help="cpu (the CPU-sized budget), cuda or auto")
    args = p.parse_args()
    speed(args) if args.part == "speed" else bc(args)


if __name__ == "__main__":
    main()
