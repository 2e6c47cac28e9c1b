"""Image windows: imitate's WindowSampler (in memory, lazy) vs robomimic's SequenceDataset + DataLoader.

One robomimic-style file: two 84x84x3 uint8 cameras (``agentview_image``, ``robot0_eye_in_hand_image``)
and low-dim keys (``robot0_eef_pos`` 3, ``robot0_eef_quat`` 4, ``robot0_gripper_qpos`` 2), 7-D
actions, written by imitate's writer (images chunked per step, compressed). Frames look rendered: a
shaded floor, a moving disc, a little sensor noise (``--noise``), so they compress like camera
images, not like flat test patterns.

Every loader delivers shuffled batches of B windows (To frames of every key, Ta actions) as torch
tensors; each runs in its own process, which reports its batches per second (median of ``--passes``
passes of ``--batches`` batches after a warm-up pass) and its peak resident memory (getrusage).
robomimic reads with ``hdf5_cache_mode="low_dim"`` (its setting for image training: images are read
from the file per item; "all" would hold every item's frames in memory) and, as its image configs do,
``frame_stack=To, seq_length=Ta``, which reads To - 1 + Ta frames a key per item; a second robomimic
row with ``seq_length=1`` reads only To frames (its cheapest possible case).

    python benchmarks/image_windows.py                          # 100k steps, gzip, in /tmp (kept)
    python benchmarks/image_windows.py --steps 20000 --passes 3 # a quicker run
    python benchmarks/image_windows.py --decompression          # block read cost: gzip vs lzf vs none

The lazy rows: ``lazy`` reads the image keys of the next group of blocks ahead in a background thread
(`LazyEpisodeStore.prefetch`), ``lazy-noprefetch`` reads each block when the sampler first needs it.

Needs robomimic (`pip install --no-deps robomimic==0.3.0 termcolor`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")
LOW_DIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2}


def frames(rng: np.random.Generator, n: int, size: int = 84, noise: int = 2) -> np.ndarray:
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


def episodes(steps: int, length: int, size: int, noise: int, seed: int = 0):
    """Episodes of ``length`` steps (the last one shorter) until ``steps``, made one at a time."""
    from imitate.data import Episode

    rng = np.random.default_rng(seed)
    done, i = 0, 0
    while done < steps:
        n = min(length, steps - done)
        obs = {c: frames(rng, n + 1, size, noise) for c in CAMERAS}
        obs.update({k: np.cumsum(rng.normal(scale=0.01, size=(n + 1, d)), 0).astype(np.float32)
                    for k, d in LOW_DIM.items()})
        yield Episode(obs={k: v[:-1] for k, v in obs.items()}, next_obs={k: v[1:] for k, v in obs.items()},
                      actions=rng.uniform(-1, 1, (n, 7)).astype(np.float32), rewards=np.zeros(n, np.float32),
                      dones=np.r_[np.zeros(n - 1), 1].astype(np.uint8), name=f"demo_{i}")
        done, i = done + n, i + 1


def write(path: Path, steps: int, length: int, size: int, noise: int, compression: str, next_obs: bool) -> float:
    from imitate.data import make_env_args, write_demo_file

    start = time.perf_counter()
    write_demo_file(path, episodes(steps, length, size, noise), make_env_args("Lift", {}), overwrite=True,
                    image_compression=compression, store_next_obs=next_obs)
    return time.perf_counter() - start


# -- one loader in one process ---------------------------------------------------------------------
def child(args) -> None:
    import torch

    torch.set_num_threads(1)
    B, To, Ta = args.batch_size, args.obs_horizon, args.action_horizon
    t0 = time.perf_counter()
    if args.child in ("memory", "lazy", "lazy-noprefetch"):
        from imitate.data import WindowSampler, load_demo_file

        store = load_demo_file(args.file, lazy=args.child != "memory")
        if args.child == "lazy-noprefetch":
            store.prefetch_limit = 0  # every block read when first needed, in the sampling thread
        sampler = WindowSampler(store, obs_horizon=To, action_horizon=Ta, batch_size=B)
        next_batch = lambda: sampler.sample().to_torch()  # noqa: E731
        extra = {"blocks": len(store.block_starts) - 1}
    else:
        from robomimic.utils import obs_utils
        from robomimic.utils.dataset import SequenceDataset

        workers, seq = (int(v) for v in args.child.split(":")[1:])
        obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": list(LOW_DIM), "rgb": list(CAMERAS)}})
        ds = SequenceDataset(hdf5_path=args.file, obs_keys=(*LOW_DIM, *CAMERAS), dataset_keys=("actions",),
                             frame_stack=To, seq_length=seq, pad_frame_stack=True, pad_seq_length=True,
                             hdf5_cache_mode="low_dim", hdf5_use_swmr=False, load_next_obs=False)
        dl = torch.utils.data.DataLoader(ds, batch_size=B, shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
        state = {"it": iter(dl)}

        def next_batch():
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = iter(dl)
                return next(state["it"])
        extra = {}
    ready = time.perf_counter() - t0
    batch = next_batch()
    obs = batch.obs if hasattr(batch, "obs") else batch["obs"]
    extra["image_batch"] = [list(obs[CAMERAS[0]].shape), str(obs[CAMERAS[0]].dtype)]
    rates = []
    for _ in range(args.passes + 1):  # the first pass warms up (file handles, workers, first blocks)
        start = time.perf_counter()
        for _ in range(args.batches):
            next_batch()
        rates.append(args.batches / (time.perf_counter() - start))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"loader": args.child, "ready_s": ready, "rates": rates[1:], "median": statistics.median(rates[1:]),
                      "peak_rss": rss, "peak_rss_workers": rss_children, **extra}))


def run_child(args, which: str) -> dict:
    batches = args.robomimic_batches if which.startswith("robomimic") else args.batches
    cmd = [sys.executable, __file__, "--child", which, "--file", str(args.file), "--batches", str(batches),
           "--passes", str(args.passes), "--batch-size", str(args.batch_size), "--obs-horizon", str(args.obs_horizon),
           "--action-horizon", str(args.action_horizon)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{which} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def decompression(args) -> None:
    """Seconds to read every block of a file lazily (as the sampler's first epoch does; gzip chunks
    inflated by zlib), the same data read by plain h5py (``ds[()]`` per demo, HDF5's filter pipeline),
    and batches per second, lazily (a fresh store each pass: its first epoch, every block read from the
    file) and in memory, per image compression, on files of ``--decompression-steps`` steps."""
    import h5py

    from imitate.data import WindowSampler, load_demo_file

    print(f"block reads: {args.decompression_steps} steps, two {args.size}x{args.size}x3 cameras (obs only), "
          f"B={args.batch_size} To={args.obs_horizon} Ta={args.action_horizon}")
    print(f"{'compression':<12} {'file MB':>8} {'ratio':>6} {'write s':>8} {'read all blocks s':>18} "
          f"{'MB/s raw':>9} {'us/frame':>9} {'h5py ds[()] s':>14} {'lazy batches/s':>15} {'in memory':>10}")
    for comp in ("gzip", "lzf", "none"):
        path = Path(args.dir) / f"decomp_{comp}.hdf5"
        tw = write(path, args.decompression_steps, args.length, args.size, args.noise, comp, next_obs=False)
        raw = args.decompression_steps * len(CAMERAS) * args.size * args.size * 3
        reads = []
        for _ in range(3):
            store = load_demo_file(path, lazy=True, check_values=False)
            start = time.perf_counter()
            for b in range(len(store.block_starts) - 1):
                for c in CAMERAS:
                    store._load_block(b, f"obs/{c}")
            reads.append(time.perf_counter() - start)
            store.close()
        rates = []
        for _ in range(3):  # a fresh store each time: the first epoch, every block read from the file
            store = load_demo_file(path, lazy=True, check_values=False)
            sampler = WindowSampler(store, obs_horizon=args.obs_horizon, action_horizon=args.action_horizon,
                                    batch_size=args.batch_size)
            n = max(1, sampler.n_windows // args.batch_size)
            start = time.perf_counter()
            for _ in range(n):
                sampler.sample()
            rates.append(n / (time.perf_counter() - start))
            store.close()
        sampler = WindowSampler(load_demo_file(path), obs_horizon=args.obs_horizon,
                                action_horizon=args.action_horizon, batch_size=args.batch_size)
        sampler.sample()
        in_memory = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(n):
                sampler.sample()
            in_memory.append(n / (time.perf_counter() - start))
        del sampler
        plain = []
        for _ in range(3):
            start = time.perf_counter()
            with h5py.File(path, "r", rdcc_nbytes=0) as f:
                for d in f["data"]:
                    for c in CAMERAS:
                        f[f"data/{d}/obs/{c}"][()]
            plain.append(time.perf_counter() - start)
        r = statistics.median(reads)
        size = os.path.getsize(path)
        print(f"{comp:<12} {size / 1e6:>8.1f} {raw / size:>6.2f} {tw:>8.1f} {r:>18.2f} {raw / r / 1e6:>9.0f} "
              f"{r / (args.decompression_steps * len(CAMERAS)) * 1e6:>9.1f} {statistics.median(plain):>14.2f} "
              f"{statistics.median(rates):>15.1f} {statistics.median(in_memory):>10.1f}")
        path.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", help="an image file written before (default: <dir>/image_windows_<steps>.hdf5, "
                                  "written when missing)")
    p.add_argument("--dir", default="/tmp")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--length", type=int, default=200, help="steps per demo")
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--noise", type=int, default=2)
    p.add_argument("--compression", default="gzip")
    p.add_argument("--next-obs", action="store_true", help="store next_obs too (doubles the file)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--obs-horizon", type=int, default=2)
    p.add_argument("--action-horizon", type=int, default=8)
    p.add_argument("--batches", type=int, default=200, help="batches per pass")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--loaders", nargs="*", default=["memory", "lazy", "lazy-noprefetch", "robomimic:0:8", "robomimic:2:8",
                                                       "robomimic:0:1", "robomimic:2:1"],
                   help="memory, lazy, lazy-noprefetch, robomimic:<workers>:<seq_length>")
    p.add_argument("--robomimic-batches", type=int, default=20, help="batches per pass for robomimic (slow)")
    p.add_argument("--decompression", action="store_true", help="only the block read cost per compression")
    p.add_argument("--decompression-steps", type=int, default=10_000)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.decompression:
        return decompression(args)
    if args.file is None:
        args.file = Path(args.dir) / f"image_windows_{args.steps}_{args.compression}{'_next' if args.next_obs else ''}.hdf5"
        if not args.file.exists():
            print(f"writing {args.file} ({args.steps} steps) ...", flush=True)
            tw = write(args.file, args.steps, args.length, args.size, args.noise, args.compression, args.next_obs)
            print(f"written in {tw:.0f} s", flush=True)
    from imitate.data.info import image_storage
    from imitate.data.scan import scan_demo_file

    layout = scan_demo_file(args.file)
    images = image_storage(layout)
    info = {"bytes": os.path.getsize(args.file), "transitions": int(layout.lengths.sum()), "demos": len(layout.lengths)}
    disk = sum(v["bytes_on_disk"] for v in images.values())
    raw = sum(v["bytes_raw"] for v in images.values())
    print(f"file {args.file}: {info['bytes'] / 1e9:.2f} GB, {info['transitions']} steps, {info['demos']} demos; "
          f"images {disk / 1e9:.2f} GB on disk of {raw / 1e9:.2f} GB raw ({raw / disk:.2f}x)")
    print(f"B={args.batch_size} To={args.obs_horizon} Ta={args.action_horizon}; median of {args.passes} passes of "
          f"{args.batches} batches after a warm-up pass; each loader in its own process", flush=True)
    results = {}
    for which in args.loaders:
        results[which] = run_child(args, which)
        r = results[which]
        print(f"  {which:<16} {r['median']:8.1f} batches/s  ready in {r['ready_s']:6.1f} s  peak RSS "
              f"{r['peak_rss'] / 2**30:5.2f} GiB (workers {r['peak_rss_workers'] / 2**30:.2f} GiB)  "
              f"batch {r['image_batch']}", flush=True)
    mem = results.get("memory", {}).get("median")
    rm = {k: v["median"] for k, v in results.items() if k.startswith("robomimic")}
    if mem and rm:
        best = max(rm, key=rm.get)
        print(f"in memory / best robomimic ({best}): {mem / rm[best]:.1f}x")
    if mem and "lazy" in results:
        print(f"lazy / in memory: {results['lazy']['median'] / mem:.2f}")
    print(json.dumps({"file_bytes": info["bytes"], "steps": info["transitions"], "results": results}))


if __name__ == "__main__":
    main()
