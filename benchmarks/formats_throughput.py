"""LeRobot v3 datasets in imitate: window throughput, time to the first batch, video decoding (once
into memory or a cache vs on the fly), and conversion robomimic HDF5 -> LeRobot -> robomimic HDF5.

Datasets are made here with imitate's writer (`imitate.data.lerobot_writer.write_lerobot_dataset`): one 96x96
camera (``front_image``, H.264 yuv420p, a keyframe every 2 frames as LeRobot writes them), a 5-D
state, 2-D actions, episodes of 250 steps. Frames look rendered (a shaded floor, a moving disc, a
little sensor noise), so they compress like camera images, not like flat test patterns.

    python benchmarks/formats_throughput.py throughput   # windows/s, B=64 To=2 Ta=16, 25k frames (Push-T size)
    python benchmarks/formats_throughput.py first-batch  # 100k frames: decode frames/s, start -> first batch
    python benchmarks/formats_throughput.py on-the-fly   # random windows decoded from the mp4 per batch
    python benchmarks/formats_throughput.py convert      # 200-demo image file: HDF5 -> LeRobot -> HDF5, sizes, PSNR

``throughput``: `LeRobotSource` episodes concatenated into an in-memory `EpisodeStore` (decoded once),
then `WindowSampler` batches (B=64, To=2, Ta=16) as NumPy and as torch tensors: median batches/s of
``--passes`` passes. ``first-batch``: wall time from opening the dataset to the first batch, with its
parts (metadata, decode, store, batch); decode frames/s is frames / decode seconds. ``on-the-fly``:
the alternative to decoding once: each batch's windows are decoded from the video when asked for
(`VideoReader` seeks to the keyframe before each window and decodes to it; windows sorted by time).

LeRobot's own ``LeRobotDataset`` + ``DataLoader`` with ``delta_timestamps`` is not measured here:
``pip install --dry-run lerobot`` (lerobot 0.4.4) would install torch 2.10.0 with the CUDA 12
libraries and torchvision over this CPU torch 2.13, and numpy 2.2.6 over numpy 2.4.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imitate.data import Episode, EpisodeStore, WindowSampler, load_demo_file, make_env_args, write_demo_file  # noqa: E402
from imitate.data.lerobot import LeRobotSource
from imitate.data.lerobot_writer import write_lerobot_dataset  # noqa: E402
from imitate.data.video import VideoReader, psnr  # noqa: E402

B, TO, TA = 64, 2, 16


def frames(rng: np.random.Generator, n: int, size: int = 96, noise: int = 2) -> np.ndarray:
    """(n, size, size, 3) uint8: a shaded floor, a disc moving along a smooth path, noise of +-noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    floor = np.stack([120 + 60 * x, 110 + 50 * y, 90 + 40 * x * y], -1)
    t = np.arange(n, dtype=np.float32)[:, None, None]
    p = rng.uniform(0.2, 0.8, 4)
    cx, cy = p[0] + 0.2 * np.sin(t / 17 + p[1]), p[2] + 0.2 * np.cos(t / 23 + p[3])
    img = np.where((((x - cx) ** 2 + (y - cy) ** 2) < 0.01)[..., None], np.float32([200, 40, 40]), floor[None])
    if noise:
        img += rng.integers(-noise, noise + 1, size=img.shape, dtype=np.int8)
    return np.clip(img, 0, 255).astype(np.uint8)


def episodes(steps: int, length: int, cameras: dict[str, int], seed: int = 0, state_dim: int = 5, action_dim: int = 2):
    """Episodes of ``length`` steps (the last one shorter) until ``steps``, made one at a time."""
    rng = np.random.default_rng(seed)
    done, i = 0, 0
    while done < steps:
        n = min(length, steps - done)
        obs = {c: frames(rng, n + 1, size) for c, size in cameras.items()}
        obs["state"] = np.cumsum(rng.normal(scale=0.01, size=(n + 1, state_dim)), 0).astype(np.float32)
        yield Episode(obs={k: v[:-1] for k, v in obs.items()}, next_obs={k: v[1:] for k, v in obs.items()},
                      actions=rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
                      rewards=rng.normal(size=n).astype(np.float32), dones=np.r_[np.zeros(n - 1), 1].astype(np.uint8),
                      attrs={"is_success": True}, name=f"demo_{i}")
        done, i = done + n, i + 1


def make_dataset(path: Path, steps: int, codec: str = "h264") -> Path:
    """A LeRobot dataset of ``steps`` frames with one 96x96 camera, kept between runs."""
    if (path / "meta/info.json").exists():
        return path
    start = time.perf_counter()
    print(f"writing {path} ({steps} frames, {codec}) ...", flush=True)
    write_lerobot_dataset(path, episodes(steps, 250, {"front_image": 96}), make_env_args("imitate/Bench-v0"),
                          fps=10, video_codec=codec,
                          progress=lambda e, n: print(f"  {n}/{steps} frames", flush=True) if e % 100 == 0 else None)
    print(f"  written in {time.perf_counter() - start:.1f} s, {du(path) / 1e6:.1f} MB", flush=True)
    return path


def du(path: Path) -> int:
    """Bytes of a file or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def store_from_source(source: LeRobotSource, timing: dict | None = None) -> EpisodeStore:
    """The source's episodes in one in-memory EpisodeStore (obs, actions, rewards, dones; next_obs
    derived from obs), arrays allocated once from the episode lengths."""
    total = int(sum(source.lengths))
    ends = np.cumsum(source.lengths)
    arrays: dict[str, np.ndarray] = {}
    decode = 0.0
    it = source.episodes()
    for i in range(source.n_episodes):
        t0 = time.perf_counter()
        ep = next(it)
        decode += time.perf_counter() - t0
        fields = {**{f"obs/{k}": v for k, v in ep.obs.items()}, "actions": ep.actions, "rewards": ep.rewards,
                  "dones": ep.dones}
        if not arrays:
            arrays = {k: np.empty((total, *v.shape[1:]), v.dtype) for k, v in fields.items()}
        for k, v in fields.items():
            arrays[k][ends[i] - len(ep):ends[i]] = v
    if timing is not None:
        timing["read+decode"] = decode
    return EpisodeStore(arrays, ends, [f"demo_{i}" for i in range(source.n_episodes)], source.env_args,
                        source.filter_keys, source=source.path, next_obs_derived=True)


def batches_per_second(sampler: WindowSampler, n: int, torch_out: bool) -> float:
    start = time.perf_counter()
    for _ in range(n):
        batch = sampler.sample()
        if torch_out:
            batch.to_torch()
    return n / (time.perf_counter() - start)


def cmd_throughput(args) -> None:
    path = make_dataset(Path(args.dir) / f"lerobot-{args.steps}", args.steps)
    timing: dict = {}
    t0 = time.perf_counter()
    store = store_from_source(LeRobotSource(path), timing)
    load = time.perf_counter() - t0
    print(f"load (decode once into memory): {load:.1f} s ({args.steps / timing['read+decode']:.0f} frames/s read+decode)")
    sampler = WindowSampler(store, TO, TA, B, seed=0)
    for torch_out in (False, True):
        batches_per_second(sampler, 20, torch_out)  # warm-up
        runs = [batches_per_second(sampler, args.batches, torch_out) for _ in range(args.passes)]
        med = statistics.median(runs)
        print(f"imitate WindowSampler in memory ({'torch' if torch_out else 'numpy'}): {med:.0f} batches/s "
              f"= {med * B:.0f} windows/s (median of {args.passes}: {', '.join(f'{r:.0f}' for r in runs)})")


def cmd_first_batch(args) -> None:
    path = make_dataset(Path(args.dir) / f"lerobot-{args.steps}", args.steps)
    for run in range(args.passes):
        timing: dict = {}
        t0 = time.perf_counter()
        source = LeRobotSource(path)
        t_meta = time.perf_counter() - t0
        store = store_from_source(source, timing)
        t_store = time.perf_counter() - t0
        batch = WindowSampler(store, TO, TA, B, seed=0).sample()
        t_first = time.perf_counter() - t0
        assert batch.obs["front_image"].shape == (B, TO, 96, 96, 3)
        print(f"run {run}: first batch at {t_first:.1f} s: metadata {t_meta:.2f} s, read+decode "
              f"{timing['read+decode']:.1f} s ({args.steps / timing['read+decode']:.0f} frames/s), store "
              f"{t_store - t_meta - timing['read+decode']:.2f} s, batch {t_first - t_store:.3f} s", flush=True)
        del store
    # the decode alone, one file front to back (no parquet, no Episode checks)
    video = next((path / "videos").rglob("*.mp4"))
    for run in range(args.passes):
        with VideoReader(video) as r:
            t0 = time.perf_counter()
            n = 0
            r._seek(0.0)
            while r._next() is not None:
                n += 1
            dt = time.perf_counter() - t0
        print(f"decode only, {video.name}: {n} frames in {dt:.1f} s = {n / dt:.0f} frames/s", flush=True)


def cmd_on_the_fly(args) -> None:
    """Random windows decoded from the video for every batch, vs gathered from decoded frames."""
    path = make_dataset(Path(args.dir) / f"lerobot-{args.steps}", args.steps)
    source = LeRobotSource(path)
    table = source._table
    feature = "observation.images.front"
    starts = np.concatenate([[0], np.cumsum(source.lengths)[:-1]])
    rng = np.random.default_rng(0)
    readers: dict = {}
    runs = []
    t_first = None
    t0 = time.perf_counter()
    for b in range(args.batches):
        start = time.perf_counter()
        eps = rng.integers(0, source.n_episodes, B)
        steps = np.array([rng.integers(0, source.lengths[e]) for e in eps])
        order = np.lexsort((steps, eps))
        out = np.empty((B, TO, 96, 96, 3), np.uint8)
        for j in order:
            e, t = int(eps[j]), int(steps[j])
            rows = np.clip(np.arange(t - TO + 1, t + 1), 0, None)
            file = source._episode_file(source.info["video_path"], int(table[f"videos/{feature}/chunk_index"][e]),
                                        int(table[f"videos/{feature}/file_index"][e]), video_key=feature)
            if file not in readers:
                readers[file] = VideoReader(file)
            times = float(table[f"videos/{feature}/from_timestamp"][e]) + np.unique(rows) / source.fps
            got = readers[file].read(times, source.fps)
            out[j] = got[np.searchsorted(np.unique(rows), rows)]
        runs.append(time.perf_counter() - start)
        if t_first is None:
            t_first = time.perf_counter() - t0
    decoded = sum(r.frames_decoded for r in readers.values())
    per = statistics.median(runs)
    print(f"on the fly: {1 / per:.1f} batches/s = {B / per:.0f} windows/s (median of {len(runs)} batches), "
          f"{decoded / (args.batches * B):.1f} frames decoded a window, first batch {t_first:.2f} s after opening")


def cmd_convert(args) -> None:
    root = Path(args.dir) / "convert"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    src = Path(args.dir) / f"convert-src-{args.demos}x{args.length}.hdf5"  # kept between runs
    cameras = {"agentview_image": 84, "robot0_eye_in_hand_image": 84}
    frames_total = args.demos * args.length
    if not src.exists():
        t0 = time.perf_counter()
        write_demo_file(src, episodes(frames_total, args.length, cameras, action_dim=7), make_env_args("Lift", {}))
        print(f"source written in {time.perf_counter() - t0:.1f} s")
    print(f"source: {args.demos} demos x {args.length} steps, 2 cameras 84x84 + 5-D state, 7-D actions; robomimic "
          f"HDF5 (gzip images, next_obs stored) {du(src) / 1e6:.1f} MB", flush=True)
    for codec in args.codecs:
        for run in range(args.passes):
            dst, back = root / f"lerobot-{codec}-{run}", root / f"back-{codec}-{run}.hdf5"
            t = {}
            t0 = time.perf_counter()
            store = load_demo_file(src)
            t["hdf5 read"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            write_lerobot_dataset(dst, (store.episode(i) for i in range(store.n_episodes)), store.env_args, fps=20,
                                  video_codec=codec, filter_keys=store.filter_keys)
            t["lerobot write"] = time.perf_counter() - t0
            del store
            t0 = time.perf_counter()
            for _ in LeRobotSource(dst).episodes():
                pass
            t["lerobot read"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            source = LeRobotSource(dst)
            write_demo_file(back, source.episodes(), source.env_args, filter_keys=source.filter_keys, valid_fraction=0)
            t["lerobot read + hdf5 write"] = time.perf_counter() - t0
            a, b = load_demo_file(src), load_demo_file(back)
            rows = np.arange(len(a))
            exact = all(np.array_equal(a.get(k, rows), b.get(k, rows)) for k in a.keys
                        if not (k.startswith(("obs/", "next_obs/")) and a.is_image(k)))
            values = {k: psnr(a.get(f"obs/{k}", rows), b.get(f"obs/{k}", rows)) for k in cameras}
            videos = du(dst / "videos")
            print(f"{codec} run {run}: " + ", ".join(f"{k} {v:.1f} s ({frames_total / v:.0f} steps/s)" for k, v in t.items())
                  + f"; LeRobot {du(dst) / 1e6:.1f} MB (videos {videos / 1e6:.1f} MB), back {du(back) / 1e6:.1f} MB; "
                  f"low-dim bit-identical: {exact}; PSNR " + ", ".join(f"{k} {v:.1f} dB" for k, v in values.items()),
                  flush=True)
            del a, b
            shutil.rmtree(dst)
            back.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["throughput", "first-batch", "on-the-fly", "convert"])
    p.add_argument("--dir", default="/tmp/imitate-formats-bench", help="where datasets are written (kept)")
    p.add_argument("--steps", type=int, default=None, help="frames of the dataset (25000; first-batch: 100000)")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--length", type=int, default=60)
    p.add_argument("--codecs", nargs="+", default=["h264", "av1"])
    args = p.parse_args()
    if args.steps is None:
        args.steps = 100_000 if args.what == "first-batch" else 25_000
    os.makedirs(args.dir, exist_ok=True)
    {"throughput": cmd_throughput, "first-batch": cmd_first_batch, "on-the-fly": cmd_on_the_fly,
     "convert": cmd_convert}[args.what](args)


if __name__ == "__main__":
    main()
