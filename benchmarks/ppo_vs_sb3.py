"""imitate's PPO (its Policy and heads) vs Stable-Baselines3's PPO on the true rewards, same settings.

    python benchmarks/ppo_vs_sb3.py run --env CartPole-v1 --steps 50000 --seeds 0,1,2 --results ppo.jsonl
    python benchmarks/ppo_vs_sb3.py table ppo.jsonl

Both use `imitate.algos.ppo.PRESETS` (envs, steps per rollout, gamma, lambda, learning rate,
epochs, minibatch), clip 0.2, no entropy bonus, observation normalization and return-based reward
scaling (SB3: VecNormalize), single-threaded torch. Learning curve: every ``steps / 10`` env steps,
the mean return of the last 20 finished training episodes. Final: 20 seeded episodes (seeds
10000..10019, actions sampled). Wall time covers training only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def run_ours(env_id: str, steps: int, seed: int) -> dict:
    from imitate.algos.rl_loop import train_rl

    head = "autoregressive" if env_id == "CartPole-v1" else "gaussian"
    curve = []
    start = time.perf_counter()
    final = train_rl(env_id, tempfile.mkdtemp(prefix="ppo-"), head, steps, seed=seed, progress=False,
                     log_every=steps // 10, on_log=curve.append)
    return {"wall_s": final["time_s"], "total_s": time.perf_counter() - start, "eval_return": final["eval_return"],
            "curve": [(r["env_steps"], r["return"]) for r in curve]}


def run_sb3(env_id: str, steps: int, seed: int) -> dict:
    import gymnasium
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from imitate.algos.ppo import PRESETS

    p = PRESETS[env_id]
    venv = VecNormalize(make_vec_env(env_id, n_envs=p["n_envs"], seed=seed), gamma=p["gamma"])
    curve = []

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps // (steps // 10) > len(curve):
                eps = list(self.model.ep_info_buffer)[-20:]
                curve.append((self.num_timesteps, float(np.mean([e["r"] for e in eps])) if eps else None))
            return True

    model = PPO("MlpPolicy", venv, n_steps=p["n_steps"], batch_size=p["batch_size"], gamma=p["gamma"],
                gae_lambda=p["gae_lambda"], learning_rate=p["lr"], n_epochs=p["epochs"], ent_coef=0.0, seed=seed,
                device="cpu")
    start = time.perf_counter()
    model.learn(steps, callback=Curve())
    wall = time.perf_counter() - start
    venv.training = False
    env = gymnasium.make(env_id)
    returns = []
    for i in range(20):
        obs, _ = env.reset(seed=10_000 + i)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=False)
            obs, r, terminated, truncated, _ = env.step(action[0])
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    return {"wall_s": wall, "eval_return": float(np.mean(returns)), "curve": curve}


def table(path: str) -> None:
    rows: dict[tuple, list] = {}
    for line in open(path):
        r = json.loads(line)
        rows.setdefault((r["env"], r["lib"], r["steps"]), []).append(r)
    print("| env | library | env steps | seeds | curve: mean training return at 20/40/60/80/100% of the budget | "
          "final eval return (mean ± std) | wall time per run (s) |")
    print("|---|---|---|---|---|---|---|")
    for (env, lib, steps), rs in sorted(rows.items()):
        points = []
        for k in (1, 3, 5, 7, 9):
            vals = [r["curve"][k][1] for r in rs if len(r["curve"]) > k and r["curve"][k][1] is not None]
            points.append(f"{np.mean(vals):.0f}" if vals else "-")
        ret, wall = np.array([r["eval_return"] for r in rs]), np.array([r["wall_s"] for r in rs])
        print(f"| {env} | {lib} | {steps:,} | {len(rs)} | {' / '.join(points)} | {ret.mean():.1f} ± {ret.std():.1f} | "
              f"{wall.mean():.0f} ± {wall.std():.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--env", required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--seeds", default="0")
    r.add_argument("--libs", default="imitate,sb3")
    r.add_argument("--results", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "table":
        return table(args.results)
    for seed in (int(s) for s in args.seeds.split(",")):
        for lib in args.libs.split(","):
            res = run_ours(args.env, args.steps, seed) if lib == "imitate" else run_sb3(args.env, args.steps, seed)
            res.update({"env": args.env, "lib": "imitate" if lib == "imitate" else "stable-baselines3",
                        "steps": args.steps, "seed": seed})
            print(json.dumps(res), flush=True)
            with open(args.results, "a") as f:
                f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
