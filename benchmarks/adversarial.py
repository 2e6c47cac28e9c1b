"""GAIL and AIRL: imitate (its PPO, its heads) vs HumanCompatibleAI/imitation (SB3 PPO), same demos, same budget.

    python benchmarks/adversarial.py run --lib ours --algo gail --env CartPole-v1 --data cartpole.hdf5 \\
        --steps 50000 --seeds 0,1,2 --results results.jsonl
    python benchmarks/adversarial.py run --lib imitation --algo airl ...
    python benchmarks/adversarial.py rl --reward RUN_DIR --env Pendulum-v1 --steps 100000 --seeds 0 --results ...
    python benchmarks/adversarial.py table results.jsonl

Both sides read the same HDF5 demos (converted to imitation's Trajectory objects for imitation),
use the same PPO settings (`imitate.algos.ppo.PRESETS`: envs, steps per rollout, gamma, lambda,
learning rate, epochs, minibatch), run single-threaded, and are scored the same way: the final
policy's mean return over 20 seeded episodes (seeds 10000..10019, actions sampled), normalized as
(return - random) / (expert - random) with the demos' mean return and a measured random return.
Wall time covers training only. Run it as ``python benchmarks/adversarial.py`` (not ``-c`` from the
repository root, where the ``datasets/`` folder would shadow the HuggingFace package imitation imports).
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


def run_ours(algo: str, env_id: str, data: str, steps: int, seed: int, head: str) -> dict:
    from imitate.algos.airl import train_airl
    from imitate.algos.gail import train_gail
    from imitate.algos.adversarial import AdversarialConfig

    out = tempfile.mkdtemp(prefix=f"{algo}-{env_id}-{seed}-", dir=os.environ.get("BENCH_RUNS", None))
    cfg = AdversarialConfig(data=data, out=out, env=env_id, head=head, steps=steps, seed=seed, log_every=steps // 5)
    curve = []
    start = time.perf_counter()
    final = (train_gail if algo == "gail" else train_airl)(cfg, progress=False, on_log=curve.append)
    return {"wall_s": final["time_s"], "total_s": time.perf_counter() - start, "eval_return": final["eval_return"], "run_dir": out,
            "curve": [(r["env_steps"], r["return"]) for r in curve]}


def trajectories(data: str, discrete: bool):
    from imitation.data.types import Trajectory

    from imitate.data import load_demo_file

    store = load_demo_file(data)
    out = []
    for s, e in zip(store.episode_starts, store.episode_ends):
        rows = np.arange(s, e)
        obs = np.concatenate([store.get("obs/state", rows), store.get("next_obs/state", rows[-1:])])
        acts = store.get("actions", rows)
        acts = acts[:, 0].astype(np.int64) if discrete else acts.astype(np.float32)
        out.append(Trajectory(obs=obs, acts=acts, infos=None, terminal=bool(store.get("dones", rows[-1:])[0])))
    return out


def run_imitation(algo: str, env_id: str, data: str, steps: int, seed: int) -> dict:
    import gymnasium
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO

    from imitate.algos.ppo import PRESETS

    p = PRESETS[env_id]
    discrete = isinstance(gymnasium.make(env_id).action_space, gymnasium.spaces.Discrete)
    venv = make_vec_env(env_id, rng=np.random.default_rng(seed), n_envs=p["n_envs"],
                        post_wrappers=[lambda env, _: RolloutInfoWrapper(env)])
    learner = PPO("MlpPolicy", venv, n_steps=p["n_steps"], batch_size=p["batch_size"], gamma=p["gamma"],
                  gae_lambda=p["gae_lambda"], learning_rate=p["lr"], n_epochs=p["epochs"], ent_coef=0.0, seed=seed,
                  device="cpu")
    rollout = p["n_envs"] * p["n_steps"]
    if algo == "gail":
        net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
        cls = GAIL
    else:
        net = BasicShapedRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
        cls = AIRL
    trainer = cls(demonstrations=trajectories(data, discrete), demo_batch_size=min(1024, rollout),
                  gen_replay_buffer_capacity=2 * rollout, n_disc_updates_per_round=4, venv=venv, gen_algo=learner,
                  reward_net=net, allow_variable_horizon=True)
    start = time.perf_counter()
    trainer.train(steps)
    wall = time.perf_counter() - start
    env = gymnasium.make(env_id)
    returns = []
    for i in range(20):
        obs, _ = env.reset(seed=10_000 + i)
        done, total = False, 0.0
        while not done:
            action, _ = learner.predict(obs, deterministic=False)
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    return {"wall_s": wall, "eval_return": float(np.mean(returns))}


def run_rl(reward: str, env_id: str, steps: int, seed: int, head: str) -> dict:
    from imitate.algos.rl_loop import train_rl

    out = tempfile.mkdtemp(prefix=f"rl-{env_id}-{seed}-", dir=os.environ.get("BENCH_RUNS", None))
    start = time.perf_counter()
    final = train_rl(env_id, out, head, steps, reward, seed, progress=False, log_every=steps // 5)
    return {"wall_s": final["time_s"], "total_s": time.perf_counter() - start, "eval_return": final["eval_return"],
            "run_dir": out}


def table(path: str) -> None:
    rows: dict[tuple, list] = {}
    for line in open(path):
        r = json.loads(line)
        rows.setdefault((r["env"], r["algo"], r["lib"], r["steps"]), []).append(r)
    print("| env | algorithm | library | env steps | seeds | normalized return (mean ± std) | return | wall time per run (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for (env, algo, lib, steps), rs in sorted(rows.items()):
        nr = np.array([r["normalized_return"] for r in rs])
        ret = np.array([r["eval_return"] for r in rs])
        wall = np.array([r["wall_s"] for r in rs])
        print(f"| {env} | {algo} | {lib} | {steps:,} | {len(rs)} | {nr.mean():.3f} ± {nr.std():.3f} | "
              f"{ret.mean():.1f} ± {ret.std():.1f} | {wall.mean():.0f} ± {wall.std():.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--lib", choices=["ours", "imitation"], required=True)
    r.add_argument("--algo", choices=["gail", "airl"], required=True)
    r.add_argument("--env", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--head", default=None, help="ours: generator head (default gaussian; autoregressive for Discrete)")
    q = sub.add_parser("rl")
    q.add_argument("--reward", required=True, help="an AIRL run directory of ours")
    q.add_argument("--env", required=True)
    q.add_argument("--head", default=None)
    for p in (r, q):
        p.add_argument("--steps", type=int, required=True)
        p.add_argument("--seeds", default="0")
        p.add_argument("--results", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "table":
        return table(args.results)

    from imitate.algos.ppo import random_return
    from imitate.algos.adversarial import expert_return, load_expert

    head = args.head or ("autoregressive" if args.env == "CartPole-v1" else "gaussian")
    if args.cmd == "rl":
        expert = json.loads((Path(args.reward) / "reward.json").read_text())["expert_return"]
    else:
        expert = expert_return(load_expert(args.data)[1])
    random = random_return(args.env)
    for seed in (int(s) for s in args.seeds.split(",")):
        if args.cmd == "rl":
            res, lib, algo = run_rl(args.reward, args.env, args.steps, seed, head), "imitate", "AIRL reward -> fresh PPO"
        elif args.lib == "ours":
            res, lib, algo = run_ours(args.algo, args.env, args.data, args.steps, seed, head), "imitate", args.algo
        else:
            res, lib, algo = run_imitation(args.algo, args.env, args.data, args.steps, seed), "imitation 1.0.1", args.algo
        res.update({"env": args.env, "algo": algo, "lib": lib, "steps": args.steps, "seed": seed,
                    "normalized_return": (res["eval_return"] - random) / (expert - random), "random": random,
                    "expert": expert})
        print(json.dumps(res), flush=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
