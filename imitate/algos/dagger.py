"""DAgger and human-gated DAgger: the expert labels the states the policy actually visits.

    round 0   N expert demonstrations --> OUT/aggregate.hdf5 --> BC from fresh weights --> evaluate
    round i   roll out E episodes of the round i-1 policy; at every visited state s_t:
                gate none      DAgger: label a*_t = expert(s_t) at every step; the executed action is
                               a*_t with probability β_i (drawn per step), the policy's otherwise
                gate scripted  HG-DAgger: a supervisor takes control when the agent drifts more than
                gate human     `gate_threshold` from the expert's route (scripted), or a person
                               presses T (human); only the steps the expert drove are kept
              append the new samples to the aggregate (every earlier sample is kept) --> retrain from
              round i-1's weights (`TrainConfig.init`) --> evaluate --> one result per round

The aggregate is an ordinary demonstration file in robomimic's layout (every command reads it):
``actions`` holds the expert's label at each visited state, not the executed action, while
``next_obs``, ``rewards`` and ``dones`` come from the actual rollout. Per demo the attributes
``round`` and ``kind`` (expert_demo, dagger, hg_dagger) say where it came from; per step the extra
datasets ``expert_in_control`` (T,) uint8 and ``executed_actions`` (T, A) record who drove and what
ran (readers ignore them, so they never become policy inputs). A takeover segment of HG-DAgger is
one demo of its own.

From pixels (``--env-kw obs_mode=image``): the policy acts on the observation the environment
gives (the ``image`` key), the expert labels from the task's state (`imitate.envs.expert_view`, the
environment's ``state_obs()`` at that step), so labels are exact while the policy never sees the
state. The aggregate holds what the environment observes and nothing else: with obs_mode image only
``image`` (the state is not needed afterwards: every label is computed when the state is visited),
with state+image both (train with ``--obs-keys image`` to act from pixels while keeping the state
in the file for analysis); each demo keeps its ``route`` attribute where the task reports one.

The normalizer keeps round 0's statistics in every later round: refitting it on the aggregate
would change what the previous weights mean. Expert labels come from the task's expert with the
settings of `imitate.envs.experts.LABEL_SETTINGS` (ForkedPath: no noise, and after the fork it
follows the passage the agent heads for, so that labels agree with the route the episode has taken).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imitate.errors import ConfigError, ImitateError
from imitate.settings import TrainConfig

GATES = ("none", "scripted", "human")
#: The BC settings of a DAgger run where the caller gives none.
DAGGER_TRAIN = {"head": "gmm", "steps": 2000, "batch_size": 128, "action_horizon": 8, "n_act": 4, "eval_episodes": 50,
                "device": "cpu"}
#: The nested TrainConfig fields that DAgger sets per round, never from the command line.
PER_ROUND = ("data", "out", "seed", "init", "warmup_steps", "val_every", "log_every", "ckpt_every")


@dataclass
class DaggerConfig:
    """Settings of a DAgger / human-gated DAgger run."""

    task: str = "imitate/ForkedPath-v0"
    """Task id with a scripted expert (imitate/ForkedPath-v0, Pendulum-v1)."""
    out: str = ""
    """Directory to create: aggregate.hdf5, round_<i>/ run directories, rounds.jsonl."""
    rounds: int = 5
    """Rounds of rollouts and retraining after round 0 (BC on the initial demos)."""
    episodes_per_round: int = 10
    """Rollouts of the current policy per round."""
    initial_demos: int = 10
    """Expert demonstrations for round 0 (recorded with the expert's own noise, as `imitate collect`)."""
    initial_data: str = ""
    """A demonstration file whose first initial_demos demos are round 0's data (e.g. recorded with
    imitate teleop) instead of new scripted-expert demos; empty: collect them."""
    beta_schedule: str = "constant:0"
    """β_i, the probability that the expert's action is executed at a step of round i >= 1 (gate
    none): constant:B, linear:K (1 - i/K, floored at 0), exponential:P (P^i) or a comma list for
    rounds 1, 2, ... (the last value repeats)."""
    gate: str = "none"
    """Who decides when the expert drives: none (DAgger, every step labelled), scripted (a
    supervisor watching the drift from the expert's route) or human (imitate teleop's window)."""
    gate_threshold: float = 0.05
    """Scripted gate: take over when the agent is farther than this from the expert's route."""
    gate_patience: int = 5
    """Scripted gate: hand back after this many steps closer than gate_threshold / 2."""
    teleop_fps: float = 10
    """Human gate: environment steps per second in the window (10 = the task's real time; 0 = no wait)."""
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the environment (e.g. gap_width, action_noise), stored in the file."""
    demo_env_kwargs: dict = field(default_factory=dict)
    """Overrides of env_kwargs for the initial demonstrations only (e.g. action_noise=0: clean
    demonstrations, noisy deployment, the setting in which BC's errors compound)."""
    expert_kwargs: dict = field(default_factory=dict)
    """Settings of the scripted expert for demos and labels (ForkedPath: p_left, route_probs, ...)."""
    steps_per_round: int = 1000
    """Optimizer steps of each later round (continuing from the previous weights)."""
    seed: int = 0
    """Seeds demos, rollouts, β draws and training."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**DAGGER_TRAIN))
    """BC settings of every round (head, steps of round 0, batch, horizons, eval_episodes, device, ...);
    data, out, seed, init, warm-up and the log/checkpoint intervals are set per round."""
    head_config: dict = field(default_factory=dict)
    """Head settings for round 0 (key=value; encoder.key=value for the encoder); later rounds keep them."""


def dagger_config(**settings: Any) -> DaggerConfig:
    """A DaggerConfig from DAgger's own fields and the fields of its nested `TrainConfig` given side by
    side (``head="gmm", steps=500, rounds=3``), as the command line gives them."""
    from imitate.config import apply_overrides

    own = {f.name for f in dataclasses.fields(DaggerConfig)} - {"train"}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(PER_ROUND)
    unknown = sorted(set(settings) - own - train_fields)
    if unknown:
        raise ConfigError(f"imitate dagger: unknown setting(s) {unknown}")
    train = apply_overrides(TrainConfig(**DAGGER_TRAIN), {k: v for k, v in settings.items() if k in train_fields},
                            "imitate dagger")
    dicts = {k: settings[k] for k in own if k in settings and isinstance(settings[k], dict)}
    cfg = apply_overrides(DaggerConfig(), {k: v for k, v in settings.items() if k in own and k not in dicts},
                          "imitate dagger")
    return dataclasses.replace(cfg, train=train, **dicts)


def beta_schedule(spec: str) -> Callable[[int], float]:
    """β as a function of the round i >= 1 from ``spec`` (see `DaggerConfig.beta_schedule`)."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "constant":
            b = float(arg)
            fn = lambda i: b  # noqa: E731
        elif kind == "linear":
            k = float(arg)
            if k <= 0:
                raise ValueError
            fn = lambda i: min(1.0, max(0.0, 1.0 - i / k))  # noqa: E731
        elif kind == "exponential":
            p = float(arg)
            fn = lambda i: p ** i  # noqa: E731
        else:
            values = [float(v) for v in spec.split(",")]
            fn = lambda i: values[min(i, len(values)) - 1]  # noqa: E731
    except ValueError:
        raise ConfigError(f"--beta-schedule {spec!r}: expected constant:B, linear:K (K > 0), exponential:P "
                          "or a comma list of numbers") from None
    for i in range(1, 50):
        if not 0.0 <= fn(i) <= 1.0:
            raise ConfigError(f"--beta-schedule {spec!r} gives β={fn(i)} at round {i}; β must lie in [0, 1]")
    return fn


class ScriptedGate:
    """A supervisor that drives when the agent has drifted from the expert's route.

    It takes over when ``expert.route_deviation(obs)`` exceeds ``threshold`` and hands back once the
    deviation has stayed below ``threshold / 2`` for ``patience`` consecutive steps.
    """

    def __init__(self, expert, threshold: float, patience: int):
        if not hasattr(expert, "route_deviation"):
            raise ConfigError(f"--gate scripted needs an expert that measures its route deviation; "
                              f"{type(expert).__name__} does not (use --gate none or human)")
        self.expert, self.threshold, self.patience = expert, threshold, patience
        self.reset()

    def reset(self) -> None:
        self.active, self._calm = False, 0

    def step(self, env, obs, learner_action: np.ndarray) -> tuple[bool, np.ndarray | None]:
        """(expert drives this step, its action or None); the expert reads ``env``'s state
        (`imitate.envs.expert_view`), not the pixels a policy may act on."""
        from imitate.envs import expert_view

        obs = expert_view(env, obs)
        deviation = self.expert.route_deviation(obs)
        if not self.active:
            self.active, self._calm = deviation > self.threshold, 0
        else:
            self._calm = self._calm + 1 if deviation < 0.5 * self.threshold else 0
            self.active = self._calm < self.patience
        return self.active, (np.asarray(self.expert.act(obs), np.float32) if self.active else None)


def _episode(rows: list[dict], attrs: dict[str, Any]):
    from imitate.data import Episode

    keys = rows[0]["obs"].keys()
    return Episode(obs={k: np.stack([r["obs"][k] for r in rows]) for k in keys},
                   next_obs={k: np.stack([r["next_obs"][k] for r in rows]) for k in keys},
                   actions=np.stack([r["label"] for r in rows]).astype(np.float32),
                   rewards=np.asarray([r["reward"] for r in rows], np.float32),
                   dones=np.asarray([r["done"] for r in rows], np.uint8), attrs=attrs,
                   extras={"expert_in_control": np.asarray([r["expert"] for r in rows], np.uint8),
                           "executed_actions": np.stack([r["executed"] for r in rows]).astype(np.float32)})


def rollout(env, policy, labeler, seed: int, beta: float = 0.0, gate=None, rng: np.random.Generator | None = None,
            generator=None) -> tuple[list[dict], dict[str, Any]]:
    """One episode of the policy mixed with the expert; returns (steps, summary).

    Each step is a dict: obs, next_obs (dicts of arrays), label (the expert's action, None where a
    gate did not ask for one), executed (the action run), expert (whether the expert drove),
    reward, done. Without a gate the expert drives each step with probability ``beta``; with one the
    gate decides and supplies the expert's action. The policy acts on the observation; the expert
    and the gate read `imitate.envs.expert_view` (the task's state, also under obs_mode image).
    """
    from imitate.collect import obs_to_dict
    from imitate.envs import expert_view, to_env_action

    rng = rng if rng is not None else np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    labeler.reset(seed=int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))
    policy.reset()
    if gate is not None:
        gate.reset()
    steps, ret, done = [], 0.0, False
    while not done:
        learner = np.asarray(policy.act(obs_to_dict(obs), generator=generator), np.float32).reshape(-1)
        if gate is None:
            label = np.asarray(labeler.act(expert_view(env, obs)), np.float32).reshape(-1)
            expert = bool(rng.random() < beta)
        else:
            expert, label = gate.step(env, expert_view(env, obs), learner)
        executed = label if expert else learner
        next_obs, reward, terminated, truncated, info = env.step(to_env_action(env.action_space, executed))
        steps.append({"obs": obs_to_dict(obs), "next_obs": obs_to_dict(next_obs), "label": label,
                      "executed": executed, "expert": expert, "reward": float(reward), "done": bool(terminated)})
        ret += float(reward)
        obs, done = next_obs, terminated or truncated
    return steps, {"is_success": info.get("is_success"), "return": ret, "route": info.get("mode")}


def takeover_segments(steps: list[dict]) -> list[tuple[int, int]]:
    """[start, end) of every run of consecutive steps in which the expert drove."""
    flags = np.r_[0, [int(s["expert"]) for s in steps], 0]
    edges = np.flatnonzero(np.diff(flags))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _new_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImitateError(f"{out} exists and is not an empty directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def _check(cfg: DaggerConfig) -> None:
    if not cfg.out:
        raise ConfigError("--out is required: the directory to create")
    if cfg.gate not in GATES:
        raise ConfigError(f"--gate {cfg.gate!r}: choose one of {', '.join(GATES)}")
    from imitate.data.sources import normalize_format

    normalize_format(cfg.train.data_format)  # an unknown --format (of --initial-data), before the directory is made
    for name, value in (("initial_demos", cfg.initial_demos), ("steps", cfg.train.steps),
                        ("steps_per_round", cfg.steps_per_round), ("eval_episodes", cfg.train.eval_episodes),
                        ("gate_patience", cfg.gate_patience)):
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    for name in ("rounds", "episodes_per_round"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 0 (got {getattr(cfg, name)})")


def dagger(cfg: DaggerConfig, progress: bool = True, on_round: Callable[[dict], None] | None = None,
           events=None) -> list[dict[str, Any]]:
    """Run round 0 (BC) and ``cfg.rounds`` rounds of (HG-)DAgger in the new directory ``cfg.out``.

    Returns one dict per round (also appended to OUT/rounds.jsonl and passed to ``on_round``):
    round, beta, expert_labels (every expert-labelled sample in the aggregate so far), new_labels,
    rollouts, rollout_steps (steps the rollouts ran; HG-DAgger keeps only the expert's),
    rollout_success (share of this round's rollouts that succeeded, expert help included),
    success_rate and mean_return (the retrained policy's evaluation), demos, data, run_dir.
    ``events``: with ``gate="human"``, the teleop window's event source (tests feed synthetic events).
    """
    from imitate.checkpoint import load_policy
    from imitate.data import make_env_args, write_demo_file
    from imitate.envs import make_env, make_expert
    from imitate.envs.experts import LABEL_SETTINGS
    from imitate.train import train

    _check(cfg)
    betas = beta_schedule(cfg.beta_schedule)
    out = Path(cfg.out)
    _new_out_dir(out)
    env_kwargs = dict(cfg.env_kwargs)
    expert_kwargs = {**({"env_kwargs": env_kwargs} if env_kwargs else {}), **cfg.expert_kwargs}
    human = None
    if cfg.gate == "human":
        from imitate.teleop import HumanGate
        human = HumanGate(cfg.task, env_kwargs, events=events, fps=cfg.teleop_fps)
    env = make_env(cfg.task, env_kwargs, render_mode="rgb_array" if human else None)
    labeler = make_expert(cfg.task, **{**expert_kwargs, **LABEL_SETTINGS.get(cfg.task, {})})
    gate = human or (ScriptedGate(labeler, cfg.gate_threshold, cfg.gate_patience) if cfg.gate == "scripted" else None)
    data, env_args = out / "aggregate.hdf5", make_env_args(cfg.task, env_kwargs)
    head = {k.removeprefix("head."): v for k, v in cfg.head_config.items() if not k.startswith("encoder.")}
    encoder = {k.removeprefix("encoder."): v for k, v in cfg.head_config.items() if k.startswith("encoder.")}

    episodes = _initial_episodes(cfg, env, env_kwargs, expert_kwargs)

    results: list[dict[str, Any]] = []
    previous = ""
    try:
        for r in range(cfg.rounds + 1):
            start = time.perf_counter()
            beta = 1.0 if r == 0 else (betas(r) if gate is None else 0.0)
            new, outcomes = _collect_round(cfg, r, beta, load_policy(previous), env, labeler, gate) if r else ([], [])
            episodes += new
            named = [_with(ep, {}, None, name=f"demo_{i}", source=str(data)) for i, ep in enumerate(episodes)]
            write_demo_file(data, named, env_args, overwrite=True, valid_fraction=0.0, seed=cfg.seed)
            run_dir = out / f"round_{r}"
            steps = cfg.train.steps if r == 0 else cfg.steps_per_round
            tcfg = dataclasses.replace(cfg.train, data=str(data), data_format="auto", out=str(run_dir), steps=steps, seed=cfg.seed + r,
                                       warmup_steps=min(200, cfg.train.steps // 10) if r == 0 else 0, val_every=0,
                                       log_every=min(50, steps), ckpt_every=steps, init=previous)
            final = train(tcfg, head if r == 0 else None, encoder if r == 0 else None, progress=progress)
            previous = str(run_dir)
            result = {"round": r, "beta": beta,
                      "expert_labels": sum(len(ep) for ep in episodes),  # every kept sample carries a label
                      "new_labels": sum(len(ep) for ep in new), "rollouts": len(outcomes),
                      "rollout_steps": sum(n for _, n in outcomes),
                      "rollout_success": float(np.mean([ok for ok, _ in outcomes])) if outcomes else None,
                      "success_rate": final.get("success_rate"), "mean_return": final.get("mean_return"),
                      "demos": len(episodes), "data": str(data), "run_dir": str(run_dir),
                      "wall_s": round(time.perf_counter() - start, 2)}
            results.append(result)
            with open(out / "rounds.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
            if on_round is not None:
                on_round(result)
    finally:
        env.close()
        if human is not None:
            human.close()
    return results


def _initial_episodes(cfg: DaggerConfig, env, env_kwargs: dict, expert_kwargs: dict) -> list:
    """Round 0's demonstrations: the first ``initial_demos`` of ``initial_data``, or new ones of the
    scripted expert (in ``demo_env_kwargs``' environment where given), marked as expert-driven."""
    from imitate.collect import rollout_expert
    from imitate.data import load_demo_file
    from imitate.envs import make_env, make_expert

    if cfg.initial_data:
        store = load_demo_file(cfg.initial_data, format=cfg.train.data_format)
        if store.n_episodes < cfg.initial_demos:
            raise ConfigError(f"--initial-data {cfg.initial_data} holds {store.n_episodes} demos; "
                              f"--initial-demos asks for {cfg.initial_demos}")
        from imitate.data.sources import store_episode  # a dataset without next_obs: the last row repeated

        demos = [store_episode(store, i) for i in range(cfg.initial_demos)]
    else:
        demo_env = make_env(cfg.task, {**env_kwargs, **cfg.demo_env_kwargs}) if cfg.demo_env_kwargs else env
        demo_expert = make_expert(cfg.task, **expert_kwargs)
        seeds = [int(np.random.SeedSequence([cfg.seed, 0, i]).generate_state(1)[0]) for i in range(cfg.initial_demos)]
        demos = [rollout_expert(demo_env, demo_expert, seed) for seed in seeds]
    return [_with(ep, {"round": 0, "kind": "expert_demo"}, {"expert_in_control": np.ones(len(ep), np.uint8),
                                                             "executed_actions": ep.actions}) for ep in demos]


def _collect_round(cfg: DaggerConfig, r: int, beta: float, policy, env, labeler, gate):
    """Round r's rollouts as new demos (a whole labelled episode each for DAgger, one demo per takeover
    segment with a gate) and per rollout (succeeded, steps)."""
    import torch

    rng = np.random.default_rng([cfg.seed, r])
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + r)
    new, outcomes = [], []
    for j in range(cfg.episodes_per_round):
        seed = int(np.random.SeedSequence([cfg.seed, r, j]).generate_state(1)[0])
        steps, summary = rollout(env, policy, labeler, seed, beta, gate, rng, generator)
        outcomes.append((bool(summary["is_success"]), len(steps)))
        base = {"round": r, "seed": seed, "rollout_success": bool(summary["is_success"])}
        if gate is None:
            new.append(_episode(steps, {**base, "kind": "dagger", "beta": beta}))
        else:
            new += [_episode(steps[a:b], {**base, "kind": "hg_dagger", "segment_start": a})
                    for a, b in takeover_segments(steps)]
    return new, outcomes


def _with(ep, attrs: dict[str, Any], extras: dict[str, np.ndarray] | None, **fields):
    """A copy of Episode ``ep`` with more attrs, other extras or other fields (name, source)."""
    from imitate.data import Episode

    return Episode(**{**ep.__dict__, "attrs": {**ep.attrs, **attrs},
                      "extras": ep.extras if extras is None else extras, **fields})
