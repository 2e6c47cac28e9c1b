"""How much of Pendulum-v1's reward does AIRL's state reward g(s) hold, and can PPO re-optimize it?

    python benchmarks/airl_reward.py run --data pendulum.hdf5 --variants default,gp10,replay_gp10 \\
        --seed 0 --results airl_reward.jsonl
    python benchmarks/airl_reward.py table airl_reward.jsonl

For each variant: AIRL on the demos (``--steps``, gaussian generator), then
  - the correlation (Pearson, Spearman) of g with the true state reward -(theta^2 + 0.1 theta_dot^2)
    over 5000 uniformly drawn states (theta in [-pi, pi], theta_dot in [-8, 8]);
  - a fresh PPO policy trained on g(s) - ``--rl-entropy`` * log pi(a|s) (`imitate.algos.rl_loop.train_rl`;
    default 0: g alone; `imitate rl` uses 1) for ``--rl-steps`` and each discount in ``--rl-gammas``,
    scored on 20 seeded episodes, normalized like the AIRL run;
  - the 0.99-discounted g-return of the expert and of the last re-optimized policy over 10 episodes:
    if the expert's is higher, g does rank the expert first and the failure is PPO's, not g's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

VARIANTS = {  # name: (AdversarialConfig overrides, PPO overrides of the AIRL run)
    "default": ({}, {}),
    "gamma0.99": ({}, {"gamma": 0.99}),
    "gp10_gamma0.99": ({"grad_penalty": 10.0}, {"gamma": 0.99}),
    "gp100_gamma0.99": ({"grad_penalty": 100.0}, {"gamma": 0.99}),
    "replay": ({"disc_replay": 100_000}, {}),
    "replay_gp10": ({"disc_replay": 100_000, "grad_penalty": 10.0}, {}),
}


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def reward_correlation(reward) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    th, thd = rng.uniform(-np.pi, np.pi, 5000), rng.uniform(-8, 8, 5000)
    with torch.no_grad():
        g = reward(torch.tensor(np.stack([np.cos(th), np.sin(th), thd], 1), dtype=torch.float32)).numpy()
    true = -(th**2 + 0.1 * thd**2)
    return float(np.corrcoef(g, true)[0, 1]), float(np.corrcoef(ranks(g), ranks(true))[0, 1])


def g_return(reward, act, episodes: int = 10, gamma: float = 0.99) -> float:
    import gymnasium

    env = gymnasium.make("Pendulum-v1")
    total = 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=100 + i)
        for t in range(200):
            with torch.no_grad():
                total += gamma**t * float(reward(torch.tensor(obs[None], dtype=torch.float32))[0])
            obs, *_ = env.step(np.clip(act(obs, i * 1000 + t), -2.0, 2.0))
    return total / episodes


def run(variant: str, data: str, steps: int, rl_steps: int, rl_gammas: list[float], seed: int,
        rl_entropy: float) -> dict:
    from imitate.algos.airl import train_airl
    from imitate.algos.adversarial import AdversarialConfig
    from imitate.algos.state_reward import load_reward
    from imitate.algos.rl_loop import train_rl
    from imitate.checkpoint import load_policy
    from imitate.envs import make_expert

    overrides, ppo = VARIANTS[variant]
    out = tempfile.mkdtemp(prefix=f"airl-{variant}-{seed}-", dir=os.environ.get("BENCH_RUNS", None))
    cfg = AdversarialConfig(data=data, out=out, env="Pendulum-v1", head="gaussian", steps=steps, seed=seed,
                            log_every=steps, **overrides)
    final = train_airl(cfg, ppo_overrides=ppo, progress=False)
    reward, _ = load_reward(out)
    pearson, spearman = reward_correlation(reward)
    row = {"variant": variant, "seed": seed, "steps": steps, "airl_normalized_return": final["eval_normalized_return"],
           "g_pearson": pearson, "g_spearman": spearman, "run_dir": out, "rl_entropy": rl_entropy, "rl": {}}
    for gamma in rl_gammas:
        rl_dir = tempfile.mkdtemp(prefix=f"rl-{variant}-{gamma}-", dir=os.environ.get("BENCH_RUNS", None))
        res = train_rl("Pendulum-v1", rl_dir, "gaussian", rl_steps, out, seed, ppo_overrides={"gamma": gamma},
                       progress=False, log_every=rl_steps, reward_entropy=rl_entropy)
        row["rl"][str(gamma)] = res["eval_normalized_return"]
    policy, expert = load_policy(rl_dir), make_expert("Pendulum-v1")

    def learned(obs, key):
        gen = torch.Generator().manual_seed(key)
        return policy.predict_chunk({"state": obs[None, None].astype(np.float32)}, generator=gen)[0, 0]

    row["g_return_expert"] = g_return(reward, lambda obs, key: expert.act(obs))
    row["g_return_reoptimized"] = g_return(reward, learned)
    return row


def table(path: str) -> None:
    rows = [json.loads(line) for line in open(path)]
    gammas = sorted({g for r in rows for g in r["rl"]}, key=float)
    print("| AIRL variant | seed | AIRL normalized return | g vs true reward: Pearson / Spearman | "
          + " | ".join(f"fresh PPO on g, gamma {g}" for g in gammas)
          + " | 0.99-discounted g-return: expert / re-optimized |")
    print("|---|---|---|---|" + "---|" * len(gammas) + "---|")
    for r in rows:
        rl = " | ".join(f"{r['rl'][g]:.2f}" if g in r["rl"] else "-" for g in gammas)
        print(f"| {r['variant']} | {r['seed']} | {r['airl_normalized_return']:.2f} | {r['g_pearson']:.2f} / "
              f"{r['g_spearman']:.2f} | {rl} | {r['g_return_expert']:.1f} / {r['g_return_reoptimized']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--variants", default=",".join(VARIANTS))
    r.add_argument("--steps", type=int, default=100_000)
    r.add_argument("--rl-steps", type=int, default=200_000)
    r.add_argument("--rl-gammas", default="0.9,0.99")
    r.add_argument("--rl-entropy", type=float, default=0.0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--results", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "table":
        return table(args.results)
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"--variants: unknown {variant!r}; known: {sorted(VARIANTS)}")
        row = run(variant, args.data, args.steps, args.rl_steps, [float(g) for g in args.rl_gammas.split(",")], args.seed,
                  args.rl_entropy)
        print(json.dumps(row), flush=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
