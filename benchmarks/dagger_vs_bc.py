"""Covariate shift on ForkedPath: success against expert-labelled steps for BC with more demos,
DAgger, human-gated DAgger (scripted gate) and HumanCompatibleAI/imitation's SimpleDAggerTrainer.

The task is the one where behaviour cloning's errors compound: the expert demonstrates on a clean
system (``action_noise=0``), the policy is deployed with actuation noise (``action_noise``) and a
narrower passage (``gap_width``). The expert always takes the left passage (``p_left=1``) and
labels without noise, so that the only difficulty is the drift, not the choice of route. Every
method starts from the same clean demonstrations (BC: more of them; the DAgger variants: two) and
every policy is evaluated on the same noisy start seeds.

    python benchmarks/dagger_vs_bc.py --seeds 0 1 2 --out runs/bench_dagger
    python benchmarks/dagger_vs_bc.py --seeds 0 1 2 --methods bc dagger hg_dagger \
        --action-horizon 1 --n-act 1 --out runs/bench_dagger_ta1        # single-step policies

Each (method, seed) runs in its own process, ``--jobs`` at a time, one torch thread each; results
are cached as JSON in OUT, so an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TASK = "imitate/ForkedPath-v0"
METHODS = ("bc", "dagger", "hg_dagger", "imitation_dagger", "expert")
HEAD_SET = {"hidden_dims": "64", "encoder.hidden_dims": "64", "encoder.feature_dim": "64"}


def env_kwargs(args) -> dict:
    return {"gap_width": args.gap_width, "action_noise": args.action_noise}


def expert_kwargs() -> dict:
    return {"p_left": 1.0, "noise": 0.0}


def demo_seed(seed: int, i: int) -> int:
    """Reset seed of clean demonstration i of benchmark seed ``seed`` (BC and DAgger share them)."""
    return 1_000_000 * (seed + 1) + i


def clean_demos(n: int, seed: int, args):
    """n expert demonstrations on the clean system (no actuation noise)."""
    from imitate.collect import rollout_expert
    from imitate.envs import make_env, make_expert

    clean = {**env_kwargs(args), "action_noise": 0.0}
    env, expert = make_env(TASK, clean), make_expert(TASK, env_kwargs=clean, **expert_kwargs())
    return [rollout_expert(env, expert, demo_seed(seed, i)) for i in range(n)]


def run_bc(seed: int, args, out: Path) -> list[dict]:
    from imitate.checkpoint import load_policy
    from imitate.evaluate import evaluate
    from imitate.train import TrainConfig, train

    points = []
    for n in args.demos:
        data = out / f"bc_seed{seed}_demos{n}.hdf5"
        labels = write_clean_demos(data, n, seed, args)
        run = out / f"bc_seed{seed}_demos{n}"
        cfg = TrainConfig(data=str(data), out=str(run), head=args.head, steps=args.steps, batch_size=args.batch_size,
                          action_horizon=args.action_horizon, n_act=args.n_act, warmup_steps=100, val_every=0,
                          eval_episodes=0, ckpt_every=args.steps, seed=seed, device="cpu")
        train(cfg, {k: v for k, v in HEAD_SET.items() if "." not in k},
              {k.split(".")[1]: v for k, v in HEAD_SET.items() if "." in k}, progress=False)
        res = evaluate(load_policy(run), TASK, env_kwargs(args), args.eval_episodes, args.eval_seed, progress=False)
        points.append({"demos": n, "expert_labels": labels, "success_rate": res["success_rate"]})
    return points


def write_clean_demos(path: Path, n: int, seed: int, args) -> int:
    """Write n clean demonstrations to ``path``; return their transitions (expert labels)."""
    from imitate.data import Episode, make_env_args, write_demo_file

    eps = [Episode(**{**ep.__dict__, "name": f"demo_{i}"}) for i, ep in enumerate(clean_demos(n, seed, args))]
    write_demo_file(path, eps, make_env_args(TASK, env_kwargs(args)), overwrite=True, valid_fraction=0.0)
    return sum(len(e) for e in eps)


def run_dagger(seed: int, args, out: Path, gate: str) -> list[dict]:
    from imitate.algos.dagger import dagger_config, dagger

    initial = out / f"{gate}_seed{seed}_initial.hdf5"
    write_clean_demos(initial, args.initial_demos, seed, args)  # the same demos as BC's smallest set
    cfg = dagger_config(task=TASK, out=str(out / f"{gate}_seed{seed}"), head=args.head, rounds=args.rounds,
                       episodes_per_round=args.episodes_per_round, initial_demos=args.initial_demos,
                       initial_data=str(initial), beta_schedule="constant:0",
                       gate="none" if gate == "dagger" else "scripted",
                       gate_threshold=args.gate_threshold, env_kwargs=env_kwargs(args),
                       demo_env_kwargs={"action_noise": 0.0}, expert_kwargs=expert_kwargs(), steps=args.steps,
                       steps_per_round=args.steps_per_round, batch_size=args.batch_size,
                       action_horizon=args.action_horizon, n_act=args.n_act, eval_episodes=args.eval_episodes,
                       eval_seed=args.eval_seed, seed=seed, head_config=dict(HEAD_SET))
    return [{k: r[k] for k in ("round", "expert_labels", "new_labels", "rollout_steps", "success_rate")}
            for r in dagger(cfg, progress=False)]


def run_expert(seed: int, args, out: Path) -> list[dict]:
    """The labelling expert itself on the evaluation seeds of the noisy task (a ceiling)."""
    from imitate.collect import rollout_expert
    from imitate.envs import make_env, make_expert
    from imitate.envs.experts import LABEL_SETTINGS

    env = make_env(TASK, env_kwargs(args))
    expert = make_expert(TASK, env_kwargs=env_kwargs(args), **{**expert_kwargs(), **LABEL_SETTINGS[TASK]})
    eps = [rollout_expert(env, expert, args.eval_seed + i) for i in range(args.eval_episodes)]
    return [{"expert_labels": 0, "success_rate": float(np.mean([e.attrs["is_success"] for e in eps]))}]


def run_imitation(seed: int, args, out: Path) -> list[dict]:
    """imitation's DAgger on the same task, demos, rounds and episodes per round (its own BC policy:
    a 32x32 MLP Gaussian trained by likelihood, batches of 64, evaluated by its mean)."""
    import gymnasium as gym
    import torch
    from imitation.algorithms import bc
    from imitation.algorithms.dagger import SimpleDAggerTrainer
    from imitation.data import rollout as il_rollout
    from imitation.data import types
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from imitate.envs import make_env, make_expert
    from imitate.envs.experts import LABEL_SETTINGS

    labeler = make_expert(TASK, env_kwargs=env_kwargs(args), **{**expert_kwargs(), **LABEL_SETTINGS[TASK]})

    class ResetsLabeler(gym.Wrapper):
        """Starts a new episode of the labelling expert with every episode of the environment, as
        imitate's DAgger does (its route and offsets are drawn per episode)."""

        def reset(self, **kwargs):
            labeler.reset()
            return self.env.reset(**kwargs)

    def flat_env(kwargs):
        return gym.wrappers.FlattenObservation(ResetsLabeler(make_env(TASK, kwargs)))

    class ScriptedExpert(BasePolicy):
        """imitate's scripted expert as a stable-baselines3 policy over flattened observations."""

        def __init__(self, observation_space, action_space, expert):
            super().__init__(observation_space, action_space)
            self.expert = expert

        def _predict(self, observation, deterministic=False):
            obs = observation.detach().cpu().numpy().reshape(-1, 4)
            acts = [self.expert.act({"agent_pos": o[:2], "goal_pos": o[2:]}) for o in obs]
            return torch.as_tensor(np.stack(acts))

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    venv = DummyVecEnv([lambda: flat_env(env_kwargs(args))])
    venv.seed(seed)
    expert = ScriptedExpert(venv.observation_space, venv.action_space, labeler)
    trajs = []
    for ep in clean_demos(args.initial_demos, seed, args):
        obs = np.concatenate([np.concatenate([ep.obs["agent_pos"], ep.obs["goal_pos"]], 1),
                              np.concatenate([ep.next_obs["agent_pos"][-1:], ep.next_obs["goal_pos"][-1:]], 1)])
        trajs.append(types.Trajectory(obs=obs, acts=ep.actions, infos=None, terminal=bool(ep.dones[-1])))
    # imitation's BC needs one full batch of transitions: two demos hold about 120, so 64 per batch
    learner = bc.BC(observation_space=venv.observation_space, action_space=venv.action_space, rng=rng,
                    batch_size=min(args.batch_size, 64))
    trainer = SimpleDAggerTrainer(venv=venv, scratch_dir=str(out / f"imitation_seed{seed}"), expert_policy=expert,
                                  rng=rng, expert_trajs=trajs, bc_trainer=learner, beta_schedule=lambda r: 0.0)
    eval_env = flat_env(env_kwargs(args))

    def success() -> float:
        wins = 0
        for i in range(args.eval_episodes):
            o, _ = eval_env.reset(seed=args.eval_seed + i)
            done, info = False, {}
            while not done:
                a, _ = trainer.policy.predict(o, deterministic=True)
                o, _, term, trunc, info = eval_env.step(a)
                done = term or trunc
            wins += bool(info.get("is_success"))
        return wins / args.eval_episodes

    labels = sum(len(t) for t in trajs)
    trainer.extend_and_update({"n_batches": args.steps, "progress_bar": False})
    points = [{"round": 0, "expert_labels": labels, "success_rate": success()}]
    for r in range(1, args.rounds + 1):
        collector = trainer.create_trajectory_collector()
        new = il_rollout.generate_trajectories(
            policy=expert, venv=collector, rng=collector.rng, deterministic_policy=True,
            sample_until=il_rollout.make_sample_until(min_timesteps=None, min_episodes=args.episodes_per_round))
        labels += sum(len(t) for t in new)
        trainer.extend_and_update({"n_batches": args.steps_per_round, "progress_bar": False})
        points.append({"round": r, "expert_labels": labels, "success_rate": success()})
    return points


def worker(method: str, seed: int, args) -> None:
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    start = time.perf_counter()
    if method == "bc":
        points = run_bc(seed, args, out)
    elif method in ("dagger", "hg_dagger"):
        points = run_dagger(seed, args, out, method)
    elif method == "expert":
        points = run_expert(seed, args, out)
    else:
        points = run_imitation(seed, args, out)
    result = {"method": method, "seed": seed, "points": points, "wall_s": round(time.perf_counter() - start, 1)}
    (out / f"{method}_seed{seed}.json").write_text(json.dumps(result))


def launch(method: str, seed: int, args, argv: list[str]) -> dict:
    path = Path(args.out) / f"{method}_seed{seed}.json"
    if not path.exists():
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        res = subprocess.run([sys.executable, __file__, *argv, "--worker", method, str(seed)], capture_output=True,
                             text=True, env=env)
        if res.returncode != 0:
            print(f"{method} seed {seed} failed:\n{res.stderr[-3000:]}", flush=True)
            return {"method": method, "seed": seed, "error": res.stderr[-3000:]}
    result = json.loads(path.read_text())
    print(f"{method:17s} seed {seed}: " + ", ".join(f"{p['expert_labels']}:{p['success_rate']:.2f}"
                                                    for p in result["points"]) + f" ({result['wall_s']} s)", flush=True)
    return result


def fmt(values) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def report(results: list[dict], args) -> str:
    by = {m: sorted((r for r in results if r["method"] == m and "points" in r), key=lambda r: r["seed"])
          for m in METHODS}
    lines = ["| method | point | expert labels | success |", "|---|---|---|---|"]
    curves = {}
    for m in METHODS:
        runs = by[m]
        if not runs:
            continue
        for i in range(len(runs[0]["points"])):
            labels = [r["points"][i]["expert_labels"] for r in runs]
            succ = [r["points"][i]["success_rate"] for r in runs]
            point = {"bc": lambda p: f"{p['demos']} demos", "expert": lambda p: "expert (labeller)"}.get(
                m, lambda p: f"round {p['round']}")(runs[0]["points"][i])
            lines.append(f"| {m} | {point} | {np.mean(labels):.0f} | {fmt(succ)} |")
            curves.setdefault(m, []).append((float(np.mean(labels)), float(np.mean(succ))))
    summary = []
    if "bc" in curves:
        final, best = curves["bc"][-1], max(curves["bc"], key=lambda p: p[1])
        summary.append(f"BC's final success: {final[1]:.2f} with {final[0]:.0f} expert labels; "
                       f"BC's best: {best[1]:.2f} with {best[0]:.0f}.")
        for m in ("dagger", "hg_dagger", "imitation_dagger"):
            if m not in curves:
                continue
            for name, (labels, target) in (("BC's final", final), ("BC's best", best)):
                hit = [lab for lab, s in curves[m] if s >= target]
                summary.append(f"{m}: reaches {name} ({target:.2f}) with {hit[0]:.0f} labels "
                               f"({hit[0] / labels:.2f} of BC's)" if hit else
                               f"{m}: does not reach {name} ({target:.2f}; its best {max(s for _, s in curves[m]):.2f})")
        for m in ("dagger", "hg_dagger", "imitation_dagger"):
            if m in curves:
                labels, succ = curves[m][-1]
                near = min(curves["bc"], key=lambda p: abs(p[0] - labels))
                summary.append(f"{m} after its last round: {succ:.2f} with {labels:.0f} labels; "
                               f"BC with the nearest budget: {near[1]:.2f} with {near[0]:.0f}")
    return "\n".join(lines + [""] + summary)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench_dagger")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--head", default="deterministic")
    p.add_argument("--gap-width", type=float, default=0.2)
    p.add_argument("--action-noise", type=float, default=0.4)
    p.add_argument("--demos", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    p.add_argument("--initial-demos", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--episodes-per-round", type=int, default=2)
    p.add_argument("--gate-threshold", type=float, default=0.06)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--steps-per-round", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--action-horizon", type=int, default=8)
    p.add_argument("--n-act", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--eval-seed", type=int, default=10000)
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args)
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    argv = [a for a in sys.argv[1:]]
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: launch(job[0], job[1], args, argv), jobs))
    text = report(results, args)
    print(text)
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    (Path(args.out) / "report.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
