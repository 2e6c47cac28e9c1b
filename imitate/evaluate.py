"""Rollouts of a policy: success rate, return, the modes it uses, videos.

Episodes run in waves of ``n_envs`` environments stepped in lockstep, so one batched policy call
serves every environment of a wave. Episode i is reset with seed ``seed + i``, the same seeds as
`imitate collect` uses, so a policy can be compared with its demonstrations start by start.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from imitate.collect import obs_to_dict
from imitate.errors import ImitateError


def behaviour_entropy(modes: list[str], n_modes: int) -> float | None:
    """Entropy of the mode shares divided by log(n_modes): 1.0 = every mode equally often, 0 = one mode."""
    if not modes or n_modes < 2:
        return None
    counts = np.array(list(Counter(modes).values()), dtype=float)
    p = counts / counts.sum()
    return max(0.0, float(-(p * np.log(p)).sum() / math.log(n_modes)))


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.suffix.lower() == ".gif":
            imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(path, frames, fps=fps)
    except (ValueError, RuntimeError, ImportError) as e:
        raise ImitateError(f"cannot write video {path} ({e}); use a .gif path or install imageio-ffmpeg for .mp4") from None


def check_video_writer(path: str | Path) -> None:
    """Write two blank frames to a temporary file of ``path``'s kind, so that a missing writer (.mp4
    needs imageio-ffmpeg) is an ImitateError before any rollout, not after all of them."""
    import tempfile

    path = Path(path)
    if not path.suffix:
        raise ImitateError(f"--video {path}: give the file a .gif or .mp4 extension")
    frames = [np.zeros((16, 16, 3), np.uint8)] * 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _write_video(Path(tmp) / f"probe{path.suffix}", frames, fps=10)
        except ImitateError:
            hint = ("install the mp4 writer (pip install imageio-ffmpeg)" if path.suffix.lower() != ".gif"
                    else "check that pillow is installed")
            raise ImitateError(f"--video {path}: no writer for {path.suffix} files here; {hint} or give a .gif path. "
                               "Nothing was rolled out.") from None


def check_obs_keys(policy, env, obs: Any, env_id: str) -> None:
    """An ImitateError naming the keys ``policy`` reads that ``env``'s observation lacks, the keys it
    has, and the simulator's version where the environment states one (``version_note``)."""
    have = obs_to_dict(obs)
    missing = [k for k in getattr(policy, "obs_keys", None) or [] if k not in have]
    if missing:
        note = getattr(env.unwrapped, "version_note", None)
        raise ImitateError(f"env {env_id!r}{f' ({note})' if note else ''} gives no observation key(s) {missing} that "
                           f"the policy reads; it gives {sorted(have)}")


def evaluate(policy, env_id: str, env_kwargs: dict[str, Any] | None = None, episodes: int = 20, seed: int = 0,
             n_envs: int = 25, video: str | None = None, deterministic: bool = False, progress: bool = True,
             return_observations: bool = False) -> dict[str, Any]:
    """Roll out ``policy`` for ``episodes`` seeded episodes; return a JSON-able summary.

    Keys: ``success_rate`` (None when the task reports no ``is_success``), ``mean_return``,
    ``std_return``, ``mean_length``, ``mode_shares`` and ``behaviour_entropy`` over successful episodes
    (tasks that report ``info["mode"]``), ``returns``, ``successes``, ``modes``, and
    ``episode_metrics``: for each info key the task lists in ``metadata["episode_metrics"]``, the mean
    over episodes of its value at the last step (empty when the task lists none).
    ``video``: a .gif or .mp4 path; the first episode is recorded. Its writer is checked before the
    first rollout (`check_video_writer`).
    ``return_observations``: also return ``observations``, per episode a dict of (T + 1, *shape)
    arrays (reset observation first); not JSON-able. For tasks with a state view
    (`imitate.envs.expert_view`: ForkedPath, BlockPush) these are the state keys whatever the
    ``obs_mode``, so trajectories can be drawn from pixel rollouts and no image is kept.

    Observations reach the policy as the environment gives them: image keys as (n_envs, H, W, C)
    uint8, never flattened or converted here.
    """
    from imitate.envs import expert_view, make_env

    if episodes < 1:
        raise ImitateError(f"--episodes must be at least 1 (got {episodes})")
    if video:
        check_video_writer(video)
    policy.eval()
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    returns, lengths, successes, modes = [], [], [], []
    observations: list[dict[str, np.ndarray]] = []
    metric_keys: list[str] = []
    finals: dict[str, list[float]] = {}
    frames: list[np.ndarray] = []
    n_modes = 0
    bar = tqdm(total=episodes, desc=f"eval {env_id}", unit="ep", disable=not progress)
    for wave_start in range(0, episodes, n_envs):
        n = min(n_envs, episodes - wave_start)
        envs = [make_env(env_id, env_kwargs, render_mode="rgb_array" if (video and wave_start == 0 and i == 0) else None)
                for i in range(n)]
        n_modes = len(getattr(envs[0].unwrapped, "modes", getattr(envs[0].unwrapped, "MODES", ())))
        metric_keys = list((envs[0].metadata or {}).get("episode_metrics", []))
        space = envs[0].action_space
        obs = [env.reset(seed=seed + wave_start + i)[0] for i, env in enumerate(envs)]
        try:
            check_obs_keys(policy, envs[0], obs[0], env_id)
        except ImitateError:
            for env in envs:
                env.close()
            raise
        trace = [[obs_to_dict(expert_view(env, o))] for env, o in zip(envs, obs)] if return_observations else None
        record = bool(video) and wave_start == 0
        if record:
            frames.append(envs[0].render())
        ret, length, info_last = _run_wave(policy, envs, obs, space, generator, deterministic, trace,
                                           frames if record else None, lambda k: bar.update(k - bar.n + wave_start))
        for i, env in enumerate(envs):
            returns.append(float(ret[i]))
            lengths.append(int(length[i]))
            if "is_success" in info_last[i]:
                successes.append(bool(info_last[i]["is_success"]))
                if info_last[i]["is_success"] and info_last[i].get("mode") is not None:
                    modes.append(str(info_last[i]["mode"]))
            for key in metric_keys:
                if key in info_last[i]:
                    finals.setdefault(key, []).append(float(info_last[i][key]))
            if trace is not None:
                observations.append({k: np.stack([o[k] for o in trace[i]]) for k in trace[i][0]})
            env.close()
    bar.close()
    if video:
        _write_video(Path(video), frames, fps=10)
    result = _summary(env_id, episodes, seed, returns, lengths, successes, modes, n_modes, finals)
    if return_observations:
        result["observations"] = observations
    return result


def _run_wave(policy, envs: list, obs: list, space, generator, deterministic: bool, trace: list | None,
              frames: list | None, on_done) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Step ``envs`` in lockstep with ``policy`` (one batch per step) until every episode ended; append
    state views (`imitate.envs.expert_view`) to ``trace`` and the first env's frames to ``frames``
    where given; ``on_done(k)`` is told how many episodes have ended. Returns per env the return,
    the length and the last info."""
    from imitate.envs import expert_view, to_env_action

    n = len(envs)
    policy.reset()
    done = np.zeros(n, bool)
    ret, length, info_last = np.zeros(n), np.zeros(n, int), [dict() for _ in range(n)]
    while not done.all():
        batch = {k: np.stack([obs_to_dict(o)[k] for o in obs]) for k in obs_to_dict(obs[0])}
        actions = policy.act(batch, generator=generator, deterministic=deterministic)
        for i, env in enumerate(envs):
            if done[i]:
                continue
            obs[i], r, terminated, truncated, info_last[i] = env.step(to_env_action(space, actions[i]))
            ret[i] += r
            length[i] += 1
            done[i] = terminated or truncated
            if trace is not None:
                trace[i].append(obs_to_dict(expert_view(env, obs[i])))
            if i == 0 and frames is not None:
                frames.append(env.render())
        on_done(int(done.sum()))
    return ret, length, info_last


def _summary(env_id: str, episodes: int, seed: int, returns: list, lengths: list, successes: list, modes: list,
             n_modes: int, finals: dict[str, list[float]]) -> dict[str, Any]:
    shares = {m: c / len(modes) for m, c in sorted(Counter(modes).items())} if modes else {}
    return {"env_id": env_id, "episodes": episodes, "seed": seed,
            "success_rate": float(np.mean(successes)) if successes else None,
            "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "mean_length": float(np.mean(lengths)), "mode_shares": shares,
            "behaviour_entropy": behaviour_entropy(modes, n_modes), "returns": returns, "successes": successes,
            "modes": modes, "episode_metrics": {k: float(np.mean(v)) for k, v in finals.items()}}
