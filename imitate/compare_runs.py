"""The runs of `imitate compare`: the pool that trains them, and one run trained (or resumed) and measured.

    run_all(jobs)    worker processes, one torch thread each; a line per finished run and, every 30 s,
                     the runs in training with an estimate of the time left
    run_one(job)     DIR/runs/<head>/seed<k>/: train or resume (`imitate.train`), then measure once into
                     compare.json: action samples at held-out states, rollouts, loss curves, cost
    latency_ms       predict_chunk at batch 1, one thread, measured after training (nothing else running)

A run directory trained with other settings than the job's is an error, never silently reused.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from imitate.errors import ImitateError


def write_json(path: Path, data: Any) -> None:
    """`imitate.checkpoint.write_json` (atomic), imported when first needed: this module stays torch-free."""
    from imitate.checkpoint import write_json as write

    write(path, data)


def step_cost(head: str) -> float:
    """The head's training cost relative to the deterministic head (`PolicyHead.step_cost`)."""
    from policy_heads import get_head_class

    return get_head_class(head).step_cost


def run_all(jobs: list[dict], n_jobs: int, progress: bool, say) -> dict[tuple[str, int], dict]:
    runs, start, done = {}, time.perf_counter(), 0

    def finished(job, res):
        nonlocal done
        done += 1
        runs[(job["head"], job["seed"])] = res
        what = "cached" if res.get("_cached") else f"{res['run_time_s']:.0f} s"
        success = res.get("success_rate")
        say(f"[{done}/{len(jobs)}] {job['head']} seed {job['seed']}: "
            + (f"success {success:.2f}, " if success is not None else "")
            + f"energy distance {res['energy_distance']:.3f}, coverage {res['coverage']:.2f} ({what}; "
            f"{_overall(jobs, runs, [], time.perf_counter() - start)})", flush=True)

    if n_jobs == 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in jobs:
                finished(job, run_one({**job, "progress": progress}))
        finally:
            torch.set_num_threads(threads)
        return runs
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})                  # inherited by the workers
    pool = ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    try:
        futures = {pool.submit(run_one, {**job, "progress": False}): job for job in jobs}
        pending = set(futures)
        while pending:
            done_now, pending = wait(pending, timeout=30, return_when=FIRST_COMPLETED)
            for future in done_now:
                finished(futures[future], future.result())
            if pending and not done_now and progress:
                running = [futures[f] for f in pending]
                say(f"  ... {_overall(jobs, runs, running, time.perf_counter() - start)}; training: "
                    + (", ".join(_step_of(j) for j in running if _step_of(j)) or "starting"), flush=True)
    except BaseException as e:       # an error or Ctrl-C: start nothing more (running runs checkpoint on Ctrl-C)
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(e, KeyboardInterrupt):
            say("interrupted: run the same command again to continue (finished runs are kept)", flush=True)
        raise
    else:
        pool.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    return runs


def _step_of(job: dict) -> str:
    """``head seed k at step n/N`` for a run that has logged steps, else ''."""
    step = _steps_logged(job)
    return f"{job['head']} seed {job['seed']} at step {step}/{job['train']['steps']}" if step is not None else ""


def _steps_logged(job: dict) -> int | None:
    """The last step in a training run's metrics.jsonl; None before its first line or once measured."""
    metrics = Path(job["run_dir"]) / "metrics.jsonl"
    if not metrics.exists() or (Path(job["run_dir"]) / "compare.json").exists():
        return None
    step = 0
    for line in metrics.read_text().splitlines()[-3:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:      # a line being written
            continue
        step = max(step, rec.get("step", rec.get("final", {}).get("step", 0)))
    return step


def _overall(jobs: list[dict], runs: dict, running: list[dict], elapsed: float) -> str:
    """``n/N runs done, 3 min elapsed, 40% of the training work, about 5 min left``.

    The work of a run is its steps times its head's relative step cost (`PolicyHead.step_cost`); finished
    runs count whole, running ones by their logged steps. Runs found finished (cached) count neither
    as work nor as time, so the estimate is the rate of this session's work: approximate, and
    absent until some work is done."""
    def cost(job):
        return job["train"]["steps"] * step_cost(job["head"])

    cached = {k for k, r in runs.items() if r.get("_cached")}
    todo = [j for j in jobs if (j["head"], j["seed"]) not in cached]
    total = sum(cost(j) for j in todo)
    work = sum(cost(j) for j in todo if (j["head"], j["seed"]) in runs)
    work += sum(cost(j) * min(1.0, (_steps_logged(j) or 0) / j["train"]["steps"]) for j in running)
    line = f"{len(runs)}/{len(jobs)} runs done, {_duration(elapsed)} elapsed"
    if total and work and work < total:
        line += f", {100 * work / total:.0f}% of the training work, about {_duration(elapsed * (total - work) / work)} left"
    return line


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _training_state(run_dir: Path, job: dict) -> str:
    """``new`` (nothing usable: train), ``partial`` (resume) or ``trained``; an error for a run
    directory trained with other settings."""
    from imitate.checkpoint import read_run_config
    from imitate.config import apply_overrides, to_dict
    from imitate.settings import EncoderConfig
    from policy_heads import config_from_dict, config_to_dict, get_head_class

    if not (run_dir / "config.json").exists() or not (run_dir / "train_state.safetensors").exists():
        return "new"
    saved = read_run_config(run_dir)
    want = {k: v for k, v in job["train"].items() if k not in ("out", "data", "obs_keys")}
    run_settings = saved.get("train") or saved.get("offline") or {}   # a BC run, or an offline one (--algo)
    differ = [k for k, v in want.items() if k in run_settings and run_settings[k] != v]  # settings added later: as default
    if (saved.get("algo") if "offline" in saved else "bc") != job.get("algo", "bc"):
        differ.append("algo")
    if saved["data"]["path"] != job["train"]["data"]:
        differ.append("data")
    if job.get("algo_settings"):
        from imitate.settings import OfflineAlgoConfig

        asked_algo = to_dict(apply_overrides(OfflineAlgoConfig(), job["algo_settings"], "algo"))
        differ += [f"algo.{k}" for k in job["algo_settings"] if (saved.get("algo_settings") or {}).get(k) != asked_algo[k]]
    asked = config_to_dict(config_from_dict(get_head_class(job["head"]), job["head_config"]))
    differ += [f"{job['head']}.{k}" for k in job["head_config"] if saved["policy"]["head_config"].get(k) != asked[k]]
    enc = to_dict(apply_overrides(EncoderConfig(), job["encoder_config"], "encoder"))
    differ += [f"encoder.{k}" for k in job["encoder_config"] if saved["policy"]["encoder_config"].get(k) != enc[k]]
    if differ:
        raise ImitateError(f"{run_dir} was trained with other settings ({', '.join(differ)}); use another --out "
                           f"or delete that run directory")
    metrics = run_dir / "metrics.jsonl"
    finished = metrics.exists() and any('"final"' in line for line in metrics.read_text().splitlines())
    return "trained" if finished else "partial"


def run_one(job: dict) -> dict:
    """Train (or resume) one head x seed and measure it; the result is cached in RUN_DIR/compare.json."""
    from imitate.train import TrainConfig, resume, train

    run_dir, t0 = Path(job["run_dir"]), time.perf_counter()
    cache = run_dir / "compare.json"
    state = _training_state(run_dir, job)
    if state == "trained" and cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("measure") == job["measure"]:
            return {**cached, "_cached": True}
    if state == "new":
        shutil.rmtree(run_dir, ignore_errors=True)
        if job.get("algo", "bc") != "bc":
            from imitate.algos.offline import offline_config_from_train, train_offline

            train_offline(offline_config_from_train(job["train"], job["algo"]), job.get("algo_settings"), job["head_config"],
                          job["encoder_config"], progress=job.get("progress", False))
        else:
            train(TrainConfig(**{**job["train"], "obs_keys": tuple(job["train"]["obs_keys"])}), job["head_config"],
                  job["encoder_config"], progress=job.get("progress", False))
    elif state == "partial" and job.get("algo", "bc") != "bc":
        from imitate.algos.offline import resume_offline

        resume_offline(run_dir, progress=job.get("progress", False))
    elif state == "partial":
        resume(run_dir, progress=job.get("progress", False))
    result = {"head": job["head"], "seed": job["seed"], "run_dir": str(run_dir), "measure": job["measure"],
              **_measure(run_dir, job)}
    result["run_time_s"] = time.perf_counter() - t0
    write_json(cache, result)
    return result


def _measure(run_dir: Path, job: dict) -> dict[str, Any]:
    from imitate.checkpoint import load_policy
    from imitate.data import load_demo_file
    from imitate.sample_metrics import distribution_metrics, query_set, sample_policy

    m, tr = job["measure"], job["train"]
    policy = load_policy(run_dir)
    store = load_demo_file(tr["data"], format=tr.get("data_format"))
    qs = query_set(store, tr["obs_horizon"], tr["action_horizon"], tr["n_act"], m["queries"], m["neighbours"])
    samples = sample_policy(policy, qs, m["samples"], seed=job["seed"])
    out: dict[str, Any] = {**distribution_metrics(samples, qs),
                           "params": int(sum(p.numel() for p in policy.parameters())),
                           "plot_samples": np.round(samples[m["plot_queries"], :, -1], 4).tolist()}
    out.update(_curves(run_dir, tr["steps"]))
    if job["env_id"] and m["episodes"]:
        out.update(_rollouts(policy, job["env_id"], job["env_kwargs"], m["episodes"], m["eval_seed"]))
    return out


def _curves(run_dir: Path, steps: int) -> dict[str, Any]:
    """Training and validation loss curves, final losses and the training time (from the log's
    steps per second, so that a resumed run counts only its training)."""
    train_c, val_c, train_s, prev, final = [], [], 0.0, 0, {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "final" in rec:
            final = rec["final"]
        elif "train/loss" in rec:
            if rec["step"] > prev:
                train_s += (rec["step"] - prev) / rec["time/steps_per_s"]
            prev = rec["step"]
            train_c.append([rec["step"], rec["train/loss"]])
        elif "val/loss" in rec:
            val_c.append([rec["step"], rec["val/loss"]])
    return {"train_curve": train_c, "val_curve": val_c, "train_loss": final.get("train_loss"),
            "val_loss": final.get("val_loss"), "train_time_s": train_s, "ms_per_step": 1e3 * train_s / max(1, steps)}


def _rollouts(policy, env_id: str, env_kwargs: dict, episodes: int, seed: int, keep: int = 40) -> dict[str, Any]:
    from imitate.envs import make_env
    from imitate.evaluate import evaluate

    res = evaluate(policy, env_id, env_kwargs, episodes, seed, progress=False, return_observations=True)
    out = {k: res[k] for k in ("success_rate", "mean_return", "behaviour_entropy", "mode_shares", "episode_metrics")}
    env = make_env(env_id, env_kwargs)
    agent_xy = getattr(env.unwrapped, "agent_xy", None)
    env.close()
    if agent_xy is not None:
        successes = res["successes"] or [None] * episodes
        out["trajectories"] = [{"xy": np.round(agent_xy(obs), 3).tolist(), "success": s}
                               for obs, s in list(zip(res["observations"], successes))[:keep]]
        modes = iter(res["modes"])          # modes are listed for the successful episodes, in order
        for t in out["trajectories"]:
            t["mode"] = next(modes, None) if t["success"] else None
    return out


def latency_ms(run_dir: str, calls: int) -> float:
    """Median milliseconds of one predict_chunk at batch 1, one thread (zero observations in each key's
    dtype: image keys uint8)."""
    import torch

    from imitate.checkpoint import load_policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = load_policy(run_dir)
        dtypes = {k: o.dtype for k, o in policy.spec.obs.items()}          # image keys: uint8 (H, W, C)
        obs = {k: np.zeros((1, policy.obs_horizon, *s), "uint8" if dtypes.get(k) == "uint8" else np.float32)
               for k, s in policy.obs_shapes.items()}
        for _ in range(3):
            policy.predict_chunk(obs)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            policy.predict_chunk(obs)
            times.append(time.perf_counter() - t)
        return 1e3 * statistics.median(times)
    finally:
        torch.set_num_threads(threads)
