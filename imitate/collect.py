"""Run a task's scripted expert and write its demonstrations in robomimic's layout.

``collect(..., mix=...)`` (``imitate collect --mix expert:0.2,noisy:0.5,random:0.3``) makes a
mixed-quality file: a share of the episodes from the expert, the others from the expert with Gaussian
action noise (``noisy``) or from uniform random actions (``random``); every demo's attrs record its
``quality`` and the file holds a filter key ``quality_<source>`` per source."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from imitate.data.episode import Episode
from imitate.data.hdf5 import image_compression_filter, make_env_args, write_demo_file


def obs_to_dict(obs: Any) -> dict[str, np.ndarray]:
    """An environment observation as observation keys: a Dict space's keys, or ``state``."""
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    return {"state": np.asarray(obs)}


#: The episode sources of a mixed-quality file (``--mix``), in the order the plan lists them.
MIX_SOURCES = ("expert", "noisy", "random")
#: Default standard deviation of the ``noisy`` source's Gaussian action noise, as a fraction of each
#: action dimension's half-range ((high - low) / 2); ``--noisy-std`` changes it.
DEFAULT_NOISY_STD = 1.0


def parse_mix(spec: str, flag: str = "--mix") -> dict[str, float]:
    """``"expert:0.2,noisy:0.5,random:0.3"`` -> ``{"expert": 0.2, "noisy": 0.5, "random": 0.3}``.

    Shares are of episodes; each source at most once, each share a number in [0, 1], the shares
    summing to 1 (within 1e-6). Anything else raises an `ImitateError` naming ``flag`` and ``spec``.
    """
    from imitate.errors import ConfigError

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{flag} {spec!r}: {why}; expected SOURCE:SHARE,... with SOURCE one of "
                           f"{list(MIX_SOURCES)} and shares summing to 1, e.g. expert:0.2,noisy:0.5,random:0.3")

    shares: dict[str, float] = {}
    for part in str(spec).split(","):
        name, sep, value = part.strip().partition(":")
        name = name.strip()
        if not sep or not name:
            raise bad(f"{part.strip()!r} is not SOURCE:SHARE")
        if name not in MIX_SOURCES:
            raise bad(f"unknown source {name!r}")
        if name in shares:
            raise bad(f"source {name!r} given twice")
        try:
            share = float(value)
        except ValueError:
            raise bad(f"share {value.strip()!r} of {name!r} is not a number") from None
        if not np.isfinite(share) or share < 0 or share > 1:
            raise bad(f"share {share} of {name!r} must lie in [0, 1]")
        shares[name] = share
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise bad(f"shares sum to {total:g}, not 1")
    return shares


def mix_plan(shares: dict[str, float], episodes: int, seed: int) -> list[str]:
    """The source of each of ``episodes`` episodes: counts by largest remainder (``round(share * episodes)``
    up to the rounding that keeps the total), in an order shuffled by ``seed`` (so that the train/valid
    split and any prefix of the file mix the sources). Same arguments, same plan."""
    exact = {k: shares.get(k, 0.0) * episodes for k in MIX_SOURCES}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    left = episodes - sum(counts.values())
    for k in sorted(MIX_SOURCES, key=lambda k: (-(exact[k] - counts[k]), MIX_SOURCES.index(k)))[:left]:
        counts[k] += 1
    plan = [k for k in MIX_SOURCES for _ in range(counts[k])]
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x6D6978])).permutation(episodes)
    return [plan[i] for i in order]


class _SourceActor:
    """Turns the expert's action into the action of one source: ``expert`` unchanged, ``noisy`` plus
    Gaussian noise (std ``noisy_std`` times the half-range per dimension, clipped to the bounds; on a
    discrete space a uniform random action with probability ``min(1, noisy_std)``), ``random`` a
    uniform action from the space. Its generator is seeded per episode."""

    def __init__(self, source: str, space, noisy_std: float, seed: int):
        import gymnasium

        self.source, self.space, self.noisy_std = source, space, float(noisy_std)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.box = isinstance(space, gymnasium.spaces.Box)

    def _uniform(self, like: np.ndarray) -> np.ndarray:
        import gymnasium

        space = self.space
        if self.box:
            return self.rng.uniform(space.low, space.high).astype(np.float32).reshape(-1)
        if isinstance(space, gymnasium.spaces.Discrete):
            return np.array([self.rng.integers(space.n)], dtype=np.float32).reshape(like.shape)
        if isinstance(space, gymnasium.spaces.MultiDiscrete):
            return self.rng.integers(space.nvec).astype(np.float32).reshape(like.shape)
        raise ValueError(f"mixed-quality collection does not know action space {space}")

    def __call__(self, action: np.ndarray) -> np.ndarray:
        if self.source == "expert":
            return action
        if self.source == "random":
            return self._uniform(action)
        if self.box:
            low, high = self.space.low.reshape(-1), self.space.high.reshape(-1)
            noisy = action + self.rng.normal(0.0, 1.0, action.shape) * self.noisy_std * (high - low) / 2
            return np.clip(noisy, low, high).astype(np.float32)
        return self._uniform(action) if self.rng.random() < min(1.0, self.noisy_std) else action


@dataclass
class CollectResult:
    """What `collect` wrote and how well the expert did."""

    path: str
    episodes: int
    transitions: int
    success_rate: float | None
    mean_return: float
    mode_shares: dict[str, float]
    quality_counts: dict[str, int] | None = None
    """With ``mix``: episodes per source."""


def rollout_expert(env, expert, seed: int, source: str | None = None,
                   noisy_std: float = DEFAULT_NOISY_STD) -> Episode:
    """One seeded episode of the expert in ``env``, as an Episode (attrs: return, is_success, route).

    The episode's observations are what ``env`` observes (with ``obs_mode="image"`` only the image);
    the expert acts on `expert_view`, the task's state where it has one.
    With ``source`` (one of `MIX_SOURCES`) the executed action is that source's (`_SourceActor`) and
    the attrs record it as ``quality``. An expert may steer the episode: ``reset_options()`` (the env's
    reset options), ``finished`` (True once its part is over: the episode ends there, truncated) and
    ``episode_attrs()`` (more attrs for the demo).
    """
    from imitate.envs import expert_view, to_env_action

    expert_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    if hasattr(expert, "reset_options"):  # the expert chooses where the episode starts
        expert.reset(seed=expert_seed)
        obs, info = env.reset(seed=seed, options=expert.reset_options())
    else:
        obs, info = env.reset(seed=seed)
        expert.reset(seed=expert_seed)
    actor = _SourceActor(source, env.action_space, noisy_std, seed) if source else None
    steps: dict[str, list] = {"obs": [], "next_obs": [], "actions": [], "rewards": [], "dones": []}
    sim = env.unwrapped
    states = [] if hasattr(sim, "sim_state") else None  # simulator state before each action (robomimic's states)
    model_file = sim.model_xml() if hasattr(sim, "model_xml") else None
    done = False
    while not done:
        action = np.asarray(expert.act(expert_view(env, obs)), dtype=np.float32).reshape(-1)
        if getattr(expert, "finished", False) and steps["actions"]:
            break  # the expert's part is over: truncated here
        if states is not None:
            states.append(sim.sim_state())
        if actor is not None:
            action = actor(action)
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
    if hasattr(expert, "episode_attrs"):
        attrs.update(expert.episode_attrs())
    if source is not None:
        attrs["quality"] = source
    keys = steps["obs"][0].keys()
    return Episode(obs={k: np.stack([o[k] for o in steps["obs"]]) for k in keys},
                   next_obs={k: np.stack([o[k] for o in steps["next_obs"]]) for k in keys},
                   actions=np.stack(steps["actions"]), rewards=np.asarray(steps["rewards"], np.float32),
                   dones=np.asarray(steps["dones"], np.uint8), attrs=attrs,
                   states=np.stack(states) if states is not None else None)


def collect(task: str, episodes: int, out: str | os.PathLike, seed: int = 0, overwrite: bool = False,
            env_kwargs: dict[str, Any] | None = None, expert_kwargs: dict[str, Any] | None = None,
            valid_fraction: float = 0.1, progress: bool = True, mix: str | dict[str, float] | None = None,
            noisy_std: float = DEFAULT_NOISY_STD, image_compression: str = "gzip") -> CollectResult:
    """Roll out the task's scripted expert for ``episodes`` seeded episodes and write them to ``out``.

    Episode i is reset with seed ``seed + i``. The file's env_args name ``task`` and ``env_kwargs`` so
    that the environment can be re-created from the file (``obs_mode`` included: with "state+image"
    the file holds the ``image`` key next to the state keys, with "image" only the image, and each
    demo's ``route`` attribute still names its mode; the expert labels from the state either way); an environment with its own robomimic
    env_args (robosuite's: type 1) writes those, with each demo's simulator ``states`` and
    ``model_file`` as robomimic lays them out.

    ``mix`` (a `parse_mix` spec or its dict) draws each episode's source per `mix_plan`; the noisy
    source's noise is ``noisy_std`` (`DEFAULT_NOISY_STD`). The file then holds a filter key
    ``quality_<source>`` per source present (e.g. ``--filter-key quality_expert`` trains on the expert
    episodes alone). Camera keys are written compressed with ``image_compression`` (see
    `imitate.data.hdf5.write_demo_file`).
    """
    from imitate.envs import make_env, make_expert
    from imitate.errors import ImitateError

    image_compression_filter(image_compression)  # a bad name is refused before any episode runs
    if episodes < 1:
        raise ImitateError(f"--episodes must be at least 1 (got {episodes})")
    if os.path.exists(out) and not overwrite:
        raise ImitateError(f"{out} already exists; pass --overwrite to replace it")
    plan = None
    if mix is not None:
        shares = parse_mix(mix) if isinstance(mix, str) else parse_mix(",".join(f"{k}:{v}" for k, v in mix.items()))
        if not (np.isfinite(noisy_std) and noisy_std >= 0):
            raise ImitateError(f"--noisy-std must be a number >= 0 (got {noisy_std})")
        plan = mix_plan(shares, episodes, seed)
    env = make_env(task, env_kwargs)
    expert = make_expert(task, **{**({"env_kwargs": env_kwargs} if env_kwargs else {}), **(expert_kwargs or {})})
    eps = []
    for i in tqdm(range(episodes), desc=f"collect {task}", unit="ep", disable=not progress):
        ep = rollout_expert(env, expert, seed + i, source=plan[i] if plan else None, noisy_std=noisy_std)
        eps.append(Episode(**{**ep.__dict__, "name": f"demo_{i}", "source": str(out)}))
    own_args = getattr(env.unwrapped, "robomimic_env_args", None)
    env_args = own_args() if own_args is not None else make_env_args(task, env_kwargs)
    env.close()
    filter_keys = None
    if plan is not None:
        filter_keys = {f"quality_{k}": [ep.name for ep in eps if ep.attrs["quality"] == k]
                       for k in MIX_SOURCES if k in plan}
    write_demo_file(out, eps, env_args, overwrite=overwrite, valid_fraction=valid_fraction, seed=seed,
                    filter_keys=filter_keys, image_compression=image_compression)
    successes = [ep.attrs["is_success"] for ep in eps if "is_success" in ep.attrs]
    routes = [ep.attrs["route"] for ep in eps if "route" in ep.attrs]
    shares = {r: routes.count(r) / len(routes) for r in sorted(set(routes))}
    return CollectResult(str(out), len(eps), sum(len(ep) for ep in eps),
                         float(np.mean(successes)) if successes else None,
                         float(np.mean([ep.attrs["return"] for ep in eps])), shares,
                         {k: plan.count(k) for k in MIX_SOURCES if k in plan} if plan else None)
