"""Windows from a Push-T-sized Diffusion Policy zarr: throughput and the time to the first batch, in
memory and lazily (through the decoded cache), and the decoded cache's image compression.

    python benchmarks/zarr_throughput.py                    # about 4 minutes on 2 cores
    python benchmarks/zarr_throughput.py --frames 5000 --batches 50 --repeats 2    # a quick look

The dataset: a ReplayBuffer written with zarr as Diffusion Policy writes one (zarr format 2, Blosc lz4,
128-row chunks): ``--frames`` frames (25k: Push-T's size) in episodes of 100..150 steps, ``img``
(96, 96, 3) uint8 rendered frames (a light background, a moving T-shaped block and a disc: they
compress as rendered frames do), ``state`` (5,) float32, ``action`` (2,) float32.

Measured, each ``--repeats`` times (medians):
- in memory: `load_demo_file` (every episode read, validated and copied into one array per key),
  then a `WindowSampler` (B = 64, To = 2, Ta = 16) and its first batch: the time to the first batch;
  then ``--batches`` batches: windows per second.
- lazy, cold: the decoded cache written (once per dataset) + the first batch; warm: the cache
  already there, the time to the first batch (and of that, `load_demo_file` alone); then windows per
  second. For each cache image
  compression (lzf: imitate's choice; none; gzip as `imitate collect` writes): cache write time, its
  size, the first batch and windows per second.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import imitate.data.sources as sources  # noqa: E402
from imitate.data import WindowSampler, load_demo_file  # noqa: E402

B, TO, TA = 64, 2, 16


def frames(T: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """T rendered-looking frames: a light background, a T-shaped block and a disc moving smoothly."""
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((T, size, size, 3), dtype=np.uint8)
    out[:] = (235, 235, 225)
    start, goal = rng.uniform(20, 76, size=2), rng.uniform(20, 76, size=2)
    agent = rng.uniform(10, 86, size=2)
    for t in range(T):
        a = t / max(1, T - 1)
        cx, cy = start * (1 - a) + goal * a
        bar = (np.abs(xx - cx) < 14) & (np.abs(yy - cy + 8) < 4)
        stem = (np.abs(xx - cx) < 4) & (yy - cy + 4 > 0) & (yy - cy < 16)
        out[t][bar | stem] = (120, 140, 160)
        agent = np.clip(agent + rng.normal(0, 1.5, size=2), 5, 90)
        disc = (xx - agent[0]) ** 2 + (yy - agent[1]) ** 2 < 16
        out[t][disc] = (60, 90, 200)
    return out


def write_pusht_zarr(path: Path, n_frames: int, seed: int = 0) -> int:
    import numcodecs
    import zarr

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    data, meta = root.require_group("data"), root.require_group("meta")
    comp = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    lengths = []
    while sum(lengths) < n_frames:
        lengths.append(int(min(rng.integers(100, 151), n_frames - sum(lengths))))
    img = data.create_array("img", shape=(n_frames, 96, 96, 3), chunks=(128, 96, 96, 3), dtype="uint8", compressors=comp)
    state = data.create_array("state", shape=(n_frames, 5), chunks=(1024, 5), dtype="float32", compressors=comp)
    action = data.create_array("action", shape=(n_frames, 2), chunks=(1024, 2), dtype="float32", compressors=comp)
    n, buf = 0, []
    for T in lengths:
        buf.append(frames(T, rng))
        if sum(len(b) for b in buf) >= 2048 or n + sum(len(b) for b in buf) == n_frames:
            block = np.concatenate(buf)
            img[n:n + len(block)] = block
            n += len(block)
            buf = []
    state[:] = rng.normal(size=(n_frames, 5)).astype(np.float32)
    action[:] = rng.uniform(0, 512, size=(n_frames, 2)).astype(np.float32)
    meta.create_array("episode_ends", shape=(len(lengths),), dtype="int64", compressors=None)[:] = np.cumsum(lengths)
    return len(lengths)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).is_dir() else Path(path).stat().st_size


def throughput(store, batches: int) -> tuple[float, float]:
    """(seconds to build the sampler and draw its first batch, windows per second over ``batches`` more)."""
    t0 = time.perf_counter()
    sampler = WindowSampler(store, TO, TA, batch_size=B, seed=0)
    sampler.sample()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(batches):
        sampler.sample()
    return first, batches * B / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=25_000)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compressions", default="lzf,none,gzip")
    ap.add_argument("--dir", default="", help="work folder (default: a temporary one, removed after)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="zarr-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "pusht.zarr"
    t0 = time.perf_counter()
    episodes = write_pusht_zarr(path, args.frames)
    print(f"dataset: {path}  {args.frames} frames, {episodes} episodes, {du(path) / 1e6:.1f} MB on disk "
          f"(img raw {args.frames * 96 * 96 * 3 / 1e6:.0f} MB); written in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    mem_first, mem_rate, mem_load = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        store = load_demo_file(path)
        load = time.perf_counter() - t0
        first, rate = throughput(store, args.batches)
        mem_load.append(load)
        mem_first.append(load + first)
        mem_rate.append(rate)
        del store
    rows.append(("in memory", f"{statistics.median(mem_load):.1f} s load", statistics.median(mem_first),
                 statistics.median(mem_rate), "-"))
    print(f"in memory: load {statistics.median(mem_load):.1f} s, first batch {statistics.median(mem_first):.1f} s, "
          f"{statistics.median(mem_rate):.0f} windows/s", flush=True)
    for comp in [c for c in args.compressions.split(",") if c]:
        sources.CACHE_IMAGE_COMPRESSION = comp
        cache = work / f"cache-{comp}"
        os.environ["IMITATE_CACHE"] = str(cache)
        cold, warm, rates, writes, opens = [], [], [], [], []
        for _ in range(args.repeats):
            shutil.rmtree(cache, ignore_errors=True)
            t0 = time.perf_counter()
            store = load_demo_file(path, lazy=True)
            writes.append(time.perf_counter() - t0)
            first, _ = throughput(store, 0)
            cold.append(writes[-1] + first)
            size = Path(store.decoded_cache).stat().st_size
            store.close()
            t0 = time.perf_counter()
            store = load_demo_file(path, lazy=True)
            opens.append(time.perf_counter() - t0)
            first, rate = throughput(store, args.batches)
            warm.append(opens[-1] + first)
            rates.append(rate)
            store.close()
        print(f"lazy, cache {comp}: cache written in {statistics.median(writes):.1f} s ({size / 1e6:.0f} MB), "
              f"first batch cold {statistics.median(cold):.1f} s, warm {statistics.median(warm):.2f} s (load "
              f"{statistics.median(opens):.2f} s), "
              f"{statistics.median(rates):.0f} windows/s", flush=True)
        rows.append((f"lazy, decoded cache {comp}", f"{statistics.median(writes):.1f} s write, {size / 1e6:.0f} MB",
                     statistics.median(cold), statistics.median(rates),
                     f"{statistics.median(warm):.2f} s (load {statistics.median(opens):.2f} s)"))
    print("\n| mode | set-up | first batch (cold) | first batch (warm) | windows/s |")
    print("|---|---|---|---|---|")
    for name, setup, first, rate, warm_first in rows:
        print(f"| {name} | {setup} | {first:.1f} s | {warm_first} | {rate:.0f} |")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
