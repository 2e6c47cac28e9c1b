"""d3rlpy's IQL, AWAC and CQL on an imitate demo file: the external reference of the offline RL benchmark.

    python benchmarks/d3rlpy_adapter.py --data FILE --algo iql|awac|cql [--steps N] [--seed S]
                                        [--episodes E] [--batch-size B] [--reward-shift C] [--set KEY=V]

prints one JSON line: success rate and returns over E seeded episodes (seeds 10000.., as
``imitate eval``), wall time of training (``train_s``: d3rlpy's ``fit``), of the evaluation (``eval_s``)
and of the whole call after start-up (``wall_s``).

The conversion (`to_mdp_dataset`): every observation key of the file, flattened and concatenated in
sorted key order, is one observation vector; actions, rewards as they are. An episode that ends in a
terminal step (``dones`` 1 at its last step) is given to d3rlpy as terminal. An episode cut by a time
limit (or by its collector) keeps its last transition too: its final ``next_obs`` is appended as one
more observation row (with a zero action and reward that no transition uses) and the episode is
marked as a timeout there, so d3rlpy's transition count equals the file's.

d3rlpy is only the reference: it is never imported by imitate. Install it next to imitate with
``pip install --no-deps d3rlpy`` plus what it imports (gym, structlog, dataclasses-json, colorama,
scikit-learn); ``pip install d3rlpy`` would pin gymnasium 1.0.0. Its algorithms keep d3rlpy's
defaults (Gaussian actor, d3rlpy's learning rates and batch size 256) except the number of gradient
steps (and what ``--reward-shift`` / ``--set`` change), single-threaded torch on CPU; actions in evaluation are its deterministic ``predict`` (the mean).
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

ALGOS = ("iql", "awac", "cql")


def d3rlpy_missing() -> str | None:
    """Why d3rlpy cannot be used here (a sentence naming it), or None when it imports."""
    try:
        import d3rlpy  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means the reference is unavailable
        return (f"d3rlpy is not importable ({type(err).__name__}: {err}); install it with "
                "`pip install --no-deps d3rlpy gym structlog dataclasses-json colorama scikit-learn`")
    return None


def flat_obs(obs: dict[str, np.ndarray], keys: list[str], batch: bool = True) -> np.ndarray:
    """Observation dict -> (N, D) float32 (``batch``) or (D,), keys in the given order."""
    if batch:
        n = len(obs[keys[0]])
        return np.concatenate([np.asarray(obs[k], np.float32).reshape(n, -1) for k in keys], axis=1)
    return np.concatenate([np.asarray(obs[k], np.float32).reshape(-1) for k in keys])


def file_arrays(path: str) -> dict:
    """The file as flat arrays in d3rlpy's layout (see the module docstring): ``observations`` (N', D),
    ``actions`` (N', A), ``rewards`` (N',), ``terminals`` (N',), ``timeouts`` (N',), plus ``keys``
    (observation keys, in order), ``transitions`` (the file's count), ``env_args``, ``demo_attrs``."""
    from imitate.data import load_demo_file

    store = load_demo_file(path)
    keys = sorted(store.obs_keys)
    obs_rows, act_rows, rew_rows, term_rows, tout_rows = [], [], [], [], []
    for start, end in zip(store.episode_starts, store.episode_ends):
        rows = np.arange(start, end)
        obs = flat_obs({k: store.get(f"obs/{k}", rows) for k in keys}, keys)
        actions = store.get("actions", rows).astype(np.float32).reshape(len(rows), -1)
        rewards = store.get("rewards", rows).astype(np.float32).reshape(-1)
        dones = store.get("dones", rows).astype(bool).reshape(-1)
        terminal, timeout = np.zeros(len(rows), np.float32), np.zeros(len(rows), np.float32)
        if dones[-1]:
            terminal[-1] = 1.0
        else:  # keep the last transition: its next_obs becomes one more row, the timeout
            last = flat_obs({k: store.get(f"next_obs/{k}", rows[-1:]) for k in keys}, keys)
            obs = np.concatenate([obs, last])
            actions = np.concatenate([actions, np.zeros_like(actions[:1])])
            rewards = np.concatenate([rewards, np.zeros(1, np.float32)])
            terminal = np.concatenate([terminal, np.zeros(1, np.float32)])
            timeout = np.concatenate([timeout, np.ones(1, np.float32)])
        obs_rows.append(obs)
        act_rows.append(actions)
        rew_rows.append(rewards)
        term_rows.append(terminal)
        tout_rows.append(timeout)
    return {"observations": np.concatenate(obs_rows), "actions": np.concatenate(act_rows),
            "rewards": np.concatenate(rew_rows), "terminals": np.concatenate(term_rows),
            "timeouts": np.concatenate(tout_rows), "keys": keys, "transitions": len(store),
            "env_args": store.env_args, "demo_attrs": store.demo_attrs}


def to_mdp_dataset(path: str):
    """(d3rlpy ``MDPDataset``, `file_arrays` of the file)."""
    import d3rlpy

    quiet_d3rlpy()
    arrays = file_arrays(path)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=arrays["observations"], actions=arrays["actions"], rewards=arrays["rewards"],
        terminals=arrays["terminals"], timeouts=arrays["timeouts"],
        action_space=d3rlpy.constants.ActionSpace.CONTINUOUS)
    return dataset, arrays


def quiet_d3rlpy() -> None:
    """d3rlpy logs through structlog at debug level; keep warnings and errors only."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def make_algo(name: str, seed: int, batch_size: int = 256, reward_shift: float = 0.0,
              settings: dict | None = None):
    """d3rlpy's algorithm ``name`` with its default settings (Gaussian actor), on CPU; ``reward_shift``
    adds a constant to every reward (d3rlpy's ``ConstantShiftRewardScaler``; antmaze's usual -1) and
    ``settings`` overrides fields of its config (e.g. ``{"expectile": 0.9, "weight_temp": 10.0}``)."""
    import d3rlpy

    quiet_d3rlpy()
    d3rlpy.seed(seed)
    configs = {"iql": d3rlpy.algos.IQLConfig, "awac": d3rlpy.algos.AWACConfig, "cql": d3rlpy.algos.CQLConfig}
    if name not in configs:
        raise ValueError(f"--algo {name!r}: d3rlpy's algorithms here are {list(configs)}")
    kwargs = {"batch_size": batch_size, **(settings or {})}
    if reward_shift:
        kwargs["reward_scaler"] = d3rlpy.preprocessing.ConstantShiftRewardScaler(shift=reward_shift)
    return configs[name](**kwargs).create(device="cpu:0")


def evaluate_d3rlpy(algo, env_args: dict, keys: list[str], episodes: int, seed: int = 10000) -> dict:
    """Roll out ``algo.predict`` in the environment the file names, as ``imitate eval`` does
    (episode i reset with seed + i): success rate (None without ``is_success``), returns, lengths."""
    from imitate.envs import make_env, task_of, to_env_action

    env_id, env_kwargs = task_of(env_args)
    returns, successes, lengths, modes = [], [], [], []
    env = make_env(env_id, env_kwargs)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        done, total, steps = False, 0.0, 0
        while not done:
            x = flat_obs(obs if isinstance(obs, dict) else {"state": obs}, keys, batch=False)[None]
            action = algo.predict(x)[0]
            obs, r, terminated, truncated, info = env.step(to_env_action(env.action_space, action))
            total += float(r)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        if "is_success" in info:
            successes.append(bool(info["is_success"]))
            if info["is_success"] and info.get("mode") is not None:
                modes.append(str(info["mode"]))
    env.close()
    shares = {m: modes.count(m) / len(modes) for m in sorted(set(modes))} if modes else {}
    return {"env_id": env_id, "success_rate": float(np.mean(successes)) if successes else None,
            "mean_return": float(np.mean(returns)), "returns": returns, "mean_length": float(np.mean(lengths)),
            "mode_shares": shares}


def run_d3rlpy(path: str, algo_name: str, steps: int, seed: int = 0, episodes: int = 20,
               batch_size: int = 256, reward_shift: float = 0.0, settings: dict | None = None) -> dict:
    """Train d3rlpy's ``algo_name`` for ``steps`` gradient steps on the file, evaluate it; one record."""
    import torch

    torch.set_num_threads(1)
    from d3rlpy.logging import NoopAdapterFactory

    start = time.perf_counter()
    dataset, arrays = to_mdp_dataset(path)
    algo = make_algo(algo_name, seed, batch_size, reward_shift, settings)
    t0 = time.perf_counter()
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, save_interval=10**9,
             logger_adapter=NoopAdapterFactory())
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evaluate_d3rlpy(algo, arrays["env_args"], arrays["keys"], episodes)
    eval_s = time.perf_counter() - t1
    return {"impl": "d3rlpy", "algo": algo_name, "head": "gaussian", "data": str(path), "steps": steps,
            "seed": seed, "batch_size": batch_size, "reward_shift": reward_shift, "settings": settings or {},
            "train_s": train_s, "eval_s": eval_s, "wall_s": time.perf_counter() - start, **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="an imitate demo file (HDF5) with rewards and dones")
    p.add_argument("--algo", choices=ALGOS, required=True)
    p.add_argument("--steps", type=int, default=5000, help="gradient steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reward-shift", type=float, default=0.0, help="add this to every reward (antmaze: -1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of d3rlpy's algorithm config, e.g. expectile=0.9 or weight_temp=10")
    args = p.parse_args(argv)
    missing = d3rlpy_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    from imitate.config import parse_key_values

    settings = parse_key_values(args.set, "--set", as_json=True)
    rec = run_d3rlpy(args.data, args.algo, args.steps, args.seed, args.episodes, args.batch_size,
                     args.reward_shift, settings)
    print(json.dumps({k: v for k, v in rec.items() if k != "returns"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
