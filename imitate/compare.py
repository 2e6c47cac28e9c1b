"""Which head should I use on my demonstrations? Train every chosen head on one file with the same
budget and seeds, then measure them side by side and write a report.

    compare(data, out)
      for each head x seed (worker processes, one torch thread each, slowest heads first):
        DIR/runs/<head>/seed<k>/   an ordinary run directory (imitate eval / load_policy work on it),
                                   trained by imitate.train, then measured once into compare.json:
          from the data      action samples at held-out states vs the demonstrated actions
                             (energy distance, MMD, coverage; see imitate.sample_metrics)
          in the task        rollouts: success, return, behaviour entropy, mode shares, the task's
                             episode metrics, agent trajectories (tasks that draw themselves)
          cost               training time, parameter count
      then, one run at a time: inference latency of predict_chunk at batch 1
      DIR/results.json       every number; DIR/report.md + DIR/plots/, DIR/report.html (self-contained)

Resumable: a run whose measurements are in its compare.json is not trained or measured again; a
run interrupted during training continues from its last checkpoint (`imitate.train.resume`). A run
directory trained with other settings is an error, never silently reused.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from imitate.compare_runs import latency_ms, run_all, step_cost, write_json
from imitate.config import apply_overrides
from imitate.errors import ConfigError
from imitate.settings import TrainConfig

#: The BC settings of a compare run where the caller gives none: a CPU-sized budget, the same for every head.
COMPARE_TRAIN = {"steps": 2000, "batch_size": 128, "action_horizon": 8, "n_act": 4, "eval_episodes": 0}


@dataclass
class CompareConfig:
    """Settings of `imitate compare`; every run's BC settings are the nested `train` (flags of
    `imitate train`; head settings go through ``--set HEAD.KEY=VALUE``)."""

    data: str = ""
    """Demonstration file (robomimic HDF5 layout)."""
    out: str = ""
    """Output folder: runs/, results.json, report.md, report.html, plots/."""
    heads: str = "all"
    """Heads to compare: all, or names separated by commas (e.g. deterministic,diffusion)."""
    seeds: int = 3
    """Seeds per head (0 .. seeds-1); tables report mean ± std over them."""
    episodes: int = 50
    """Rollouts per run when the file names an environment (0: none)."""
    queries: int = 64
    """Held-out states (valid split) at which action samples are compared with the demonstrations."""
    samples: int = 128
    """Action chunks drawn from each head at each held-out state."""
    neighbours: int = 16
    """Demonstrations whose nearest state forms the demonstrated action distribution at a query."""
    eval_seed: int = 10000
    """Rollout i of every run is reset with seed eval_seed + i (the same starts for every head)."""
    jobs: int = 0
    """Runs trained at once, each in its own process with one thread (0: one per CPU core, at most 4)."""
    latency_calls: int = 50
    """predict_chunk calls at batch 1 whose median is the reported latency."""
    algo: str = "bc"
    """How every head is trained: bc (behaviour cloning), or iql, awac or cql (offline RL on the file's
    rewards, `imitate offline`; its settings by ``--set algo.KEY=VALUE``; cql: deterministic and gaussian only)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**COMPARE_TRAIN))
    """The BC settings of every run (its data, out, head and seed are set per run)."""


#: The fields of the nested TrainConfig that compare sets per run (or measures itself: rollouts), never
#: from the command line.
PER_RUN = ("data", "out", "head", "seed", "init", "eval_episodes", "eval_every", "eval_seed")


def make_config(data: str, out: str, **options: Any) -> CompareConfig:
    """A CompareConfig from compare's own fields and `TrainConfig` fields (``steps=1000``...). Where
    ``steps`` is given, the warm-up, log, validation and checkpoint intervals not given scale with it."""
    own = {f.name for f in fields(CompareConfig)} - {"train"}
    train_fields = {f.name for f in fields(TrainConfig)} - set(PER_RUN)
    unknown = sorted(set(options) - own - train_fields)
    if unknown:
        raise ConfigError(f"imitate compare: unknown setting(s) {unknown}")
    train_opts = {k: v for k, v in options.items() if k in train_fields}
    steps = int(train_opts.get("steps", COMPARE_TRAIN["steps"]))
    scaled = {"warmup_steps": min(200, max(1, steps // 5)), "log_every": max(1, steps // 50),
              "val_every": max(1, steps // 10), "ckpt_every": max(1, steps // 4)}
    train = apply_overrides(TrainConfig(**COMPARE_TRAIN), {**scaled, **train_opts}, "imitate compare")
    return apply_overrides(CompareConfig(), {"data": data, "out": out, **{k: v for k, v in options.items() if k in own},
                                             "train": train}, "imitate compare")


def _check_algo(algo: str, heads: list[str]) -> None:
    """--algo: bc or an offline algorithm; cql only with heads that have a reparameterized sample."""
    from imitate.settings import CQL_ACTOR_HEADS

    if algo not in ("bc", "iql", "awac", "cql"):
        raise ConfigError(f"--algo {algo!r}: choose bc, iql, awac or cql")
    if algo == "cql" and set(heads) - set(CQL_ACTOR_HEADS):
        raise ConfigError(f"--algo cql trains an actor through its sampled action: heads "
                          f"{sorted(set(heads) - set(CQL_ACTOR_HEADS))} have no reparameterized sample; "
                          f"choose --heads from {', '.join(CQL_ACTOR_HEADS)}")


def _algo_settings(settings: dict[str, Any], algo: str) -> dict[str, Any]:
    """Takes the ``algo.KEY`` entries out of ``settings`` and returns them ({KEY: value}), checked against
    `OfflineAlgoConfig`; they need an offline ``--algo``."""
    from imitate.config import apply_overrides
    from imitate.settings import OfflineAlgoConfig

    found = {k.partition(".")[2]: settings.pop(k) for k in list(settings) if k.startswith("algo.")}
    if found and algo == "bc":
        raise ConfigError(f"--set {', '.join('algo.' + k for k in found)}: algorithm settings need --algo iql, awac "
                          f"or cql (BC has none)")
    apply_overrides(OfflineAlgoConfig(), found, "algo")
    return found


def parse_heads(text: str) -> list[str]:
    """``all`` (every registered head, in registration order) or comma-separated head names -> the names;
    unknown names are a ConfigError."""
    from policy_heads import registered_heads

    known = registered_heads()
    if text.strip() == "all":
        return known
    heads = [h.strip() for h in text.split(",") if h.strip()]
    unknown = [h for h in heads if h not in known]
    if unknown or not heads:
        raise ConfigError(f"--heads {text!r}: unknown head(s) {unknown or '(none given)'}; "
                          f"available heads: {', '.join(sorted(known))} (or all)")
    return list(dict.fromkeys(heads))


def split_settings(settings: dict[str, Any], heads: list[str], on_cpu: bool = True, sizing: str = "auto",
                   action_horizon: int = 8) -> tuple[dict[str, dict], dict[str, Any]]:
    """``{"gmm.num_modes": "3", "encoder.feature_dim": "128"}`` -> per-head settings (over each head's
    CPU-sized defaults where the runs train on a CPU, as `imitate train` chooses them) and encoder
    settings, each checked against its Config. A setting for a head that is not compared is an error."""
    from imitate.settings import EncoderConfig, head_settings_for
    from policy_heads import make_head, registered_heads

    per_head: dict[str, dict[str, Any]] = {h: {} for h in heads}
    encoder: dict[str, Any] = {}
    for key, value in settings.items():
        owner, _, name = key.partition(".")
        if owner == "encoder" and name:
            encoder[name] = value
        elif owner in per_head and name:
            per_head[owner][name] = value
        elif owner in registered_heads() and name:
            raise ConfigError(f"--set {key}={value}: the {owner} head is not among --heads ({', '.join(heads)})")
        else:
            raise ConfigError(f"--set {key}={value}: expected HEAD.KEY=VALUE (HEAD one of "
                              f"{', '.join(heads)}) or encoder.KEY=VALUE")
    for h in heads:
        per_head[h] = head_settings_for(h, on_cpu, sizing, per_head[h])[0]
        try:   # a tiny instance checks the values too (a misspelled denoiser, groups that do not divide)
            make_head(h, 8, 2, action_horizon, **per_head[h])
        except ValueError as e:
            raise ConfigError(f"--set: {e}") from None
    apply_overrides(EncoderConfig(), encoder, "encoder")
    return per_head, encoder


def compare(data: str, out: str, *, settings: dict[str, Any] | None = None, progress: bool = True,
            **options: Any) -> dict[str, Any]:
    """Train, measure and report every chosen head on ``data``; return the contents of results.json.

    Args:
        data: demonstration file. out: output folder.
        settings: ``{"HEAD.KEY": value, "encoder.KEY": value}`` head and encoder settings.
        progress: print a line per started and finished run (and training bars with one job).
        **options: fields of `CompareConfig` (heads, seeds, episodes, jobs, ...) and of the runs'
            `TrainConfig` (steps, batch_size, lr, ...); see `make_config`.
    """
    from imitate.data import load_demo_file
    from imitate.envs import task_of
    from imitate.report import summarize, write_report
    from imitate.sample_metrics import distribution_metrics, query_set

    cfg = make_config(data, out, **options)
    tr = cfg.train
    for name, value in (("steps", tr.steps), ("batch_size", tr.batch_size), ("seeds", cfg.seeds),
                        ("queries", cfg.queries), ("samples", cfg.samples), ("neighbours", cfg.neighbours),
                        ("latency_calls", cfg.latency_calls)):
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if not cfg.data or not cfg.out:
        raise ConfigError("imitate compare needs --data FILE and --out DIR")
    heads = parse_heads(cfg.heads)
    _check_algo(cfg.algo, heads)
    settings = dict(settings or {})
    algo_settings = _algo_settings(settings, cfg.algo)
    head_settings, encoder_settings = split_settings(settings, heads, _trains_on_cpu(tr.device), tr.sizing,
                                                     tr.action_horizon)
    store = load_demo_file(cfg.data, format=tr.data_format)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    env_id, env_kwargs = task_of(store.env_args) if cfg.episodes else (None, None)
    qs = query_set(store, tr.obs_horizon, tr.action_horizon, tr.n_act, cfg.queries, cfg.neighbours)
    plot_queries = _spread_out_queries(qs, 3)
    measure = {"queries": cfg.queries, "samples": cfg.samples, "neighbours": cfg.neighbours,
               "episodes": cfg.episodes if env_id else 0, "eval_seed": cfg.eval_seed, "plot_queries": plot_queries}
    jobs = [{"head": head, "seed": seed, "run_dir": str(out_dir / "runs" / head / f"seed{seed}"),
             "train": asdict(dataclasses.replace(tr, data=str(Path(cfg.data).resolve()), head=head, seed=seed,
                                                 out=str(out_dir / "runs" / head / f"seed{seed}"))),
             "head_config": head_settings[head], "encoder_config": encoder_settings, "env_id": env_id,
             "env_kwargs": env_kwargs or {}, "measure": measure, "algo": cfg.algo, "algo_settings": algo_settings}
            for seed in range(cfg.seeds) for head in heads]
    jobs.sort(key=lambda j: -step_cost(j["head"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_jobs = max(1, min(cfg.jobs or min(4, cores), len(jobs)))
    say = print if progress else (lambda *a, **k: None)
    say(f"imitate compare: {len(heads)} heads x {cfg.seeds} seeds on {cfg.data}, {tr.steps} steps each, "
        f"{n_jobs} at a time -> {out_dir}", flush=True)
    runs = run_all(jobs, n_jobs, progress, say)

    for job in sorted(jobs, key=lambda j: (j["head"], j["seed"])):   # latency: one run at a time, nothing else training
        key = (job["head"], job["seed"])
        if "latency_ms" not in runs[key]:
            runs[key]["latency_ms"] = latency_ms(job["run_dir"], cfg.latency_calls)
            write_json(Path(job["run_dir"]) / "compare.json", {k: v for k, v in runs[key].items() if k != "_cached"})

    baseline = distribution_metrics(np.repeat(qs.reference.mean(1, keepdims=True), cfg.samples, axis=1), qs)
    flat = {**{k: v for k, v in asdict(tr).items() if k not in PER_RUN}, **{k: v for k, v in asdict(cfg).items() if k != "train"},
            **({"algo_settings": algo_settings} if algo_settings else {})}
    results = summarize(flat, heads, head_settings, encoder_settings, store, env_id, runs, baseline)
    reference = _reference(qs, plot_queries)
    env = _drawable_env(env_id, env_kwargs) if cfg.episodes else None
    if env is not None:
        reference["demo_trajectories"] = _demo_trajectories(env, store)
    results["report"] = write_report(results, runs, reference, out_dir, env)
    write_json(out_dir / "results.json", results)
    say(f"report: {out_dir / 'report.html'} (and report.md); every number: {out_dir / 'results.json'}", flush=True)
    return results


def _trains_on_cpu(device: str) -> bool:
    """Whether runs with this ``--device`` train on a CPU (auto: when no GPU is found)."""
    if device != "auto":
        return device == "cpu"
    import torch

    return not torch.cuda.is_available()


def _drawable_env(env_id: str | None, env_kwargs: dict | None):
    """The task (unwrapped) when it can draw its scene and agent positions, else None."""
    if not env_id:
        return None
    from imitate.envs import make_env

    env = make_env(env_id, env_kwargs).unwrapped
    return env if hasattr(env, "plot_scene") and hasattr(env, "agent_xy") else None


def _reference(qs, plot_queries: list[int]) -> dict:
    """What the report shows of the plotted queries: the low-dim keys' last observation (``obs``), the
    image keys' windows (``frames``: key -> (S, To, H, W, C) uint8, never written as lists) and the
    demonstrated actions (the last executed action of each chunk)."""
    from imitate.data.checks import is_image

    images = {k for k, v in qs.obs.items() if is_image(v.shape[2:], v.dtype)}
    return {"obs": {k: v[plot_queries, -1].tolist() for k, v in qs.obs.items() if k not in images},
            "frames": {k: qs.obs[k][plot_queries] for k in sorted(images)},
            "actions": qs.reference[plot_queries, :, -1].tolist()}


def _demo_trajectories(env, store, keep: int = 40) -> list[dict]:
    """The first ``keep`` demonstrations' agent paths (``env.agent_xy``) with success and mode; none
    when the file lacks the state keys the task draws from (a file of images only)."""
    try:
        return [{"xy": env.agent_xy(store.episode(i).obs).tolist(),
                 "success": bool(store.demo_attrs[i].get("is_success", True)),
                 "mode": store.demo_attrs[i].get("route")} for i in range(min(keep, store.n_episodes))]
    except KeyError:
        return []


def _spread_out_queries(qs, n: int) -> list[int]:
    """Indices of ``n`` queries where the demonstrations disagree most, from different demos where
    there are enough of them."""
    order = [int(i) for i in np.argsort(-qs.spread(), kind="stable")]
    chosen, seen = [], set()
    for i in order:
        if int(qs.episodes[i]) not in seen and len(chosen) < n:
            chosen.append(i)
            seen.add(int(qs.episodes[i]))
    chosen += [i for i in order if i not in chosen][:n - len(chosen)]
    return chosen
