"""Datasets in other formats for the tests, written with the formats' own libraries where they install:
a Diffusion Policy ReplayBuffer with ``zarr`` (as its ``ReplayBuffer.add_episode`` grows one), a Minari
dataset with ``minari``'s own storage writer (``create_dataset_from_buffers``; its ``DataCollector``
needs jax) or with h5py following Minari's layout."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


def episodes_arrays(n_episodes=3, lengths=None, image=(16, 16, 3), seed=0):
    """Per-episode arrays of a small Push-T-like dataset: img (uint8), state (5,), action (2,)."""
    rng = np.random.default_rng(seed)
    lengths = lengths or [int(rng.integers(6, 14)) for _ in range(n_episodes)]
    out = []
    for T in lengths:
        ep = {"state": rng.normal(size=(T, 5)).astype(np.float32), "action": rng.normal(size=(T, 2)).astype(np.float32)}
        if image:
            ep["img"] = rng.integers(0, 256, size=(T, *image), dtype=np.uint8)
        out.append(ep)
    return out


def write_replay_buffer(path, episodes, compressor="blosc", chunk_rows=5, zip_file=False):
    """A Diffusion Policy ReplayBuffer written with zarr: data/<key> grown episode by episode and
    meta/episode_ends (cumulative), zarr format 2 as Diffusion Policy writes it. ``compressor``: blosc
    (DP's default, lz4), zstd, gzip or none. ``zip_file``: a .zarr.zip of the same tree."""
    import numcodecs
    import zarr

    codec = {"blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE),
             "zstd": numcodecs.Zstd(level=3), "gzip": numcodecs.GZip(level=5), "none": None}[compressor]
    path = Path(path)
    folder = path.with_suffix("") if zip_file else path
    root = zarr.open_group(str(folder), mode="w", zarr_format=2)
    data, meta = root.require_group("data"), root.require_group("meta")
    ends = meta.create_array("episode_ends", shape=(0,), dtype="int64", chunks=(64,), compressors=None)
    arrays, n = {}, 0  # zarr 3 arrays have no len(): shape[0]
    for ep in episodes:
        T = len(next(iter(ep.values())))
        for key, value in ep.items():
            if key not in arrays:
                arrays[key] = data.create_array(key, shape=(0, *value.shape[1:]), dtype=value.dtype,
                                                chunks=(chunk_rows, *value.shape[1:]),
                                                compressors=codec if codec is not None else None)
            arrays[key].resize((n + T, *value.shape[1:]))
            arrays[key][n:n + T] = value
        n += T
        count = ends.shape[0]
        ends.resize((count + 1,))
        ends[count] = n
    if zip_file:
        import os
        import zipfile

        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
            for d, _, files in os.walk(folder):
                for f in files:
                    full = Path(d) / f
                    z.write(full, str(full.relative_to(folder)))
    return path


def minari_episodes(n_episodes=3, seed=0, image=None, dict_obs=True):
    """Per-episode Minari buffers: observations with T + 1 rows (a Dict: ``pos`` (3,), ``goal/xy`` (2,) and,
    with ``image``, ``cam``), actions (T, 2), rewards, terminations, truncations (T,)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_episodes):
        T = int(rng.integers(5, 10))
        obs = {"pos": rng.normal(size=(T + 1, 3)).astype(np.float32),
               "goal": {"xy": rng.normal(size=(T + 1, 2)).astype(np.float32)}}
        if image:
            # smooth frames: JPEG keeps them close
            yy, xx = np.mgrid[:image[0], :image[1]]
            obs["cam"] = np.stack([np.stack([(xx * 4 + t * 7 + c * 40) % 256 for c in range(3)], -1)
                                   for t in range(T + 1)]).astype(np.uint8)
        if not dict_obs:
            obs = obs["pos"]
        out.append({"observations": obs, "actions": rng.uniform(-1, 1, size=(T, 2)).astype(np.float32),
                    "rewards": rng.normal(size=T), "terminations": np.eye(1, T, T - 1, dtype=bool)[0] if i % 2 == 0
                    else np.zeros(T, dtype=bool), "truncations": np.zeros(T, dtype=bool)})
    return out


def _spaces(ep, image):
    import gymnasium as gym

    def box(shape):
        return gym.spaces.Box(-np.inf, np.inf, shape, np.float32)

    obs = ep["observations"]
    if isinstance(obs, dict):
        space = {"pos": box((3,)), "goal": gym.spaces.Dict({"xy": box((2,))})}
        if image:
            space["cam"] = gym.spaces.Box(0, 255, (*image,), np.uint8)
        obs_space = gym.spaces.Dict(space)
    else:
        obs_space = box(obs.shape[1:])
    return obs_space, gym.spaces.Box(-1, 1, (2,), np.float32)


def write_minari_with_library(root, dataset_id, episodes, env_id="Pendulum-v1", image=None, monkeypatch=None):
    """A Minari dataset written by minari itself (``create_dataset_from_buffers``) under ``root``; its folder."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    obs_space, act_space = _spaces(episodes[0], image)
    buffers = [EpisodeBuffer(id=i, observations=ep["observations"], actions=ep["actions"], rewards=ep["rewards"],
                             terminations=ep["terminations"], truncations=ep["truncations"], infos={})
               for i, ep in enumerate(episodes)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, buffers, env=gym.spec(env_id) if env_id else None,
                                           observation_space=obs_space, action_space=act_space,
                                           algorithm_name="scripted", author="imitate tests",
                                           author_email="tests@example.org", code_permalink="https://example.org",
                                           description="test data")
    namespace, name = dataset_id.split("/")
    return Path(root) / namespace / name


def write_minari_h5(folder, episodes, env_spec=None):
    """A Minari dataset folder written with h5py following Minari's layout (no JPEG encoding)."""
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "data" / "main_data.hdf5", "w") as f:
        for i, ep in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g.attrs["id"], g.attrs["total_steps"] = i, len(ep["rewards"])

            def put(group, key, value):
                if isinstance(value, dict):
                    sub = group.create_group(key)
                    for k, v in value.items():
                        put(sub, k, v)
                else:
                    group.create_dataset(key, data=value)

            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                put(g, key, ep[key])
            g.create_group("infos")
    meta = {"total_episodes": len(episodes), "total_steps": int(sum(len(e["rewards"]) for e in episodes)),
            "data_format": "hdf5", "jpeg_encoding": False, "dataset_id": "test/h5-v0", "minari_version": "0.5.4"}
    if env_spec is not None:
        meta["env_spec"] = json.dumps(env_spec)
    (folder / "data" / "metadata.json").write_text(json.dumps(meta))
    return folder
