"""Run a task's scripted expert and write its demonstrations in robomimic's layout."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from imitate.data.episode import Episode
from imitate.data.hdf5 import make_env_args, write_demo_file


def obs_to_dict(obs: Any) -> dict[str, np.ndarray]:
    """An environment observation as observation keys: a Dict space's keys, or ``state``."""
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    return {"state": np.asarray(obs)}


@dataclass
class CollectResult:
    """What `collect` wrote and how well the expert did."""

    path: str
    episodes: int
    transitions: int
    success_rate: float | None
    mean_return: float
    mode_shares: dict[str, float]


def rollout_expert(env, expert, seed: int) -> Episode:
    """One seeded episode of the expert in ``env``, as an Episode (attrs: return, is_success, route).

    The episode's observations are what ``env`` observes (with ``obs_mode="image"`` only the image);
    the expert acts on `expert_view`, the task's state where it has one."""
    from imitate.envs import expert_view, to_env_action

    obs, info = env.reset(seed=seed)
    expert.reset(seed=int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
    steps: dict[str, list] = {"obs": [], "next_obs": [], "actions": [], "rewards": [], "dones": []}
    sim = env.unwrapped
    states = [] if hasattr(sim, "sim_state") else None  # simulator state before each action (robomimic's states)
    model_file = sim.model_xml() if hasattr(sim, "model_xml") else None
    done = False
    while not done:
        if states is not None:
            states.append(sim.sim_state())
        action = np.asarray(expert.act(expert_view(env, obs)), dtype=np.float32).reshape(-1)
        next_obs, reward, terminated, truncated, info = env.step(to_env_action(env.action_space, action))
        steps["obs"].append(obs_to_dict(obs))
        steps["next_obs"].append(obs_to_dict(next_obs))
        steps["actions"].append(action)
        steps["rewards"].append(float(reward))
        steps["dones"].append(bool(terminated))
        obs, done = next_obs, terminated or truncated
    attrs: dict[str, Any] = {"return": float(np.sum(steps["rewards"])), "seed": int(seed)}
    if "is_success" in info:
        attrs["is_success"] = bool(info["is_success"])
    route = info.get("mode", getattr(expert, "route", None))
    if route is not None:
        attrs["route"] = str(route)
    if model_file is not None:
        attrs["model_file"] = model_file
    keys = steps["obs"][0].keys()
    return Episode(obs={k: np.stack([o[k] for o in steps["obs"]]) for k in keys},
                   next_obs={k: np.stack([o[k] for o in steps["next_obs"]]) for k in keys},
                   actions=np.stack(steps["actions"]), rewards=np.asarray(steps["rewards"], np.float32),
                   dones=np.asarray(steps["dones"], np.uint8), attrs=attrs,
                   states=np.stack(states) if states is not None else None)


def collect(task: str, episodes: int, out: str | os.PathLike, seed: int = 0, overwrite: bool = False,
            env_kwargs: dict[str, Any] | None = None, expert_kwargs: dict[str, Any] | None = None,
            valid_fraction: float = 0.1, progress: bool = True) -> CollectResult:
    """Roll out the task's scripted expert for ``episodes`` seeded episodes and write them to ``out``.

    Episode i is reset with seed ``seed + i``. The file's env_args name ``task`` and ``env_kwargs`` so
    that the environment can be re-created from the file (``obs_mode`` included: with "state+image"
    the file holds the ``image`` key next to the state keys, with "image" only the image, and each
    demo's ``route`` attribute still names its mode; the expert labels from the state either way); an environment with its own robomimic
    env_args (robosuite's: type 1) writes those, with each demo's simulator ``states`` and
    ``model_file`` as robomimic lays them out.
    """
    from imitate.envs import make_env, make_expert
    from imitate.errors import ImitateError

    if episodes < 1:
        raise ImitateError(f"--episodes must be at least 1 (got {episodes})")
    if os.path.exists(out) and not overwrite:
        raise ImitateError(f"{out} already exists; pass --overwrite to replace it")
    env = make_env(task, env_kwargs)
    expert = make_expert(task, **{**({"env_kwargs": env_kwargs} if env_kwargs else {}), **(expert_kwargs or {})})
    eps = []
    for i in tqdm(range(episodes), desc=f"collect {task}", unit="ep", disable=not progress):
        ep = rollout_expert(env, expert, seed + i)
        eps.append(Episode(**{**ep.__dict__, "name": f"demo_{i}", "source": str(out)}))
    own_args = getattr(env.unwrapped, "robomimic_env_args", None)
    env_args = own_args() if own_args is not None else make_env_args(task, env_kwargs)
    env.close()
    write_demo_file(out, eps, env_args, overwrite=overwrite, valid_fraction=valid_fraction, seed=seed)
    successes = [ep.attrs["is_success"] for ep in eps if "is_success" in ep.attrs]
    routes = [ep.attrs["route"] for ep in eps if "route" in ep.attrs]
    shares = {r: routes.count(r) / len(routes) for r in sorted(set(routes))}
    return CollectResult(str(out), len(eps), sum(len(ep) for ep in eps),
                         float(np.mean(successes)) if successes else None,
                         float(np.mean([ep.attrs["return"] for ep in eps])), shares)
