"""WindowSampler vs robomimic's SequenceDataset + torch DataLoader: batches per second, side by side.

Same file, same window (frame_stack = To, seq_length = Ta), same batch size, shuffled, delivered as
torch tensors. Rounds alternate between the loaders; the table reports medians over rounds.

    python benchmarks/sampler_throughput.py                      # a generated robomimic-style low-dim file
    python benchmarks/sampler_throughput.py --data FILE --rounds 7

Needs robomimic (`pip install --no-deps robomimic==0.3.0 termcolor`), as `make test` installs it.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from imitate.data import WindowSampler, load_demo_file


def write_low_dim_file(path: Path, demos: int, length: int, seed: int = 0) -> None:
    """A robomimic-style file: 4 low-dim observation keys (19 dims in all), 7-D actions."""
    rng = np.random.default_rng(seed)
    shapes = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i in range(demos):
            n = int(length + rng.integers(-length // 4, length // 4 + 1))
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = n
            for k, d in shapes.items():
                seq = rng.normal(size=(n + 1, d)).astype(np.float32)
                g["obs/" + k], g["next_obs/" + k] = seq[:-1], seq[1:]
            g["actions"] = rng.uniform(-1, 1, (n, 7)).astype(np.float32)
            g["rewards"] = np.zeros(n, np.float32)
            g["dones"] = np.zeros(n, np.uint8)
        data.attrs["total"] = sum(data[d].attrs["num_samples"] for d in data)
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})


def batches_per_second(next_batch, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        next_batch()
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a robomimic-layout file (default: generate one)")
    p.add_argument("--demos", type=int, default=400)
    p.add_argument("--length", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--obs-horizon", type=int, default=2)
    p.add_argument("--action-horizon", type=int, default=16)
    p.add_argument("--batches", type=int, default=0, help="batches per measurement (default: one epoch)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block-rows", type=int, default=4096, help="lazy mode: rows per episode block")
    p.add_argument("--cache-blocks", type=int, default=4, help="lazy mode: blocks held in memory")
    p.add_argument("--shuffle-blocks", type=int, default=2, help="blocks shuffled together (both modes)")
    p.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="DataLoader worker counts to compare")
    args = p.parse_args()
    torch.set_num_threads(1)

    from robomimic.utils import obs_utils
    from robomimic.utils.dataset import SequenceDataset

    tmp = tempfile.TemporaryDirectory()
    path = Path(args.data) if args.data else Path(tmp.name) / "low_dim.hdf5"
    if not args.data:
        write_low_dim_file(path, args.demos, args.length)
    B, To, Ta = args.batch_size, args.obs_horizon, args.action_horizon

    mem = load_demo_file(path, block_rows=args.block_rows)
    lazy = load_demo_file(path, lazy=True, block_rows=args.block_rows, cache_blocks=args.cache_blocks)
    keys = mem.obs_keys
    n_blocks = len(mem.block_starts) - 1
    kw = dict(obs_horizon=To, action_horizon=Ta, batch_size=B, shuffle_blocks=args.shuffle_blocks)
    ours_mem, ours_lazy = WindowSampler(mem, **kw), WindowSampler(lazy, **kw)

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": keys}})
    t0 = time.perf_counter()
    rm = SequenceDataset(hdf5_path=str(path), obs_keys=keys, dataset_keys=("actions", "rewards", "dones"),
                         frame_stack=To, seq_length=Ta, pad_frame_stack=True, pad_seq_length=True,
                         hdf5_cache_mode="all", hdf5_use_swmr=False, load_next_obs=False)
    rm_init = time.perf_counter() - t0

    def loader(workers):
        dl = torch.utils.data.DataLoader(rm, batch_size=B, shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
        state = {"it": iter(dl)}

        def nxt():
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = iter(dl)
                return next(state["it"])
        return nxt

    candidates = {"imitate WindowSampler (in memory)": lambda: ours_mem.sample().to_torch(),
                  "imitate WindowSampler (lazy)": lambda: ours_lazy.sample().to_torch()}
    for w in args.workers:
        candidates[f"robomimic SequenceDataset + DataLoader ({w} workers)"] = loader(w)
    n = args.batches or len(ours_mem)  # one epoch: every block is read once per measurement
    for fn in candidates.values():  # warm-up epoch: file handles, worker start-up, first reads
        batches_per_second(fn, n)
    results = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, fn in candidates.items():
            results[name].append(batches_per_second(fn, n))
    med = {name: statistics.median(v) for name, v in results.items()}
    base = med[f"robomimic SequenceDataset + DataLoader ({args.workers[0]} workers)"]
    best_rm = max(v for k, v in med.items() if k.startswith("robomimic"))
    print(f"file: {path.name if args.data else 'generated'}  demos {mem.n_episodes}  transitions {len(mem)}  "
          f"obs keys {len(keys)}  action dim {mem.action_dim}")
    print(f"B={B} To={To} Ta={Ta}; lazy: {n_blocks} blocks of ~{args.block_rows} rows, "
          f"{args.cache_blocks} cached, shuffled in groups of {args.shuffle_blocks}; median of {args.rounds} rounds x {n} batches (one epoch) after a warm-up epoch; "
          f"robomimic cache 'all' built in {rm_init:.1f} s")
    print(f"{'loader':<58} {'batches/s':>10} {'vs robomimic (0 w)':>19} {'vs best robomimic':>18}")
    for name, v in med.items():
        print(f"{name:<58} {v:>10.1f} {v / base:>18.1f}x {v / best_rm:>17.1f}x")
    print(f"lazy / in-memory throughput: {med['imitate WindowSampler (lazy)'] / med['imitate WindowSampler (in memory)']:.2f}")
    print(json.dumps({"machine": platform.processor() or platform.machine(), "medians": med,
                      "rounds": results}, default=float))


if __name__ == "__main__":
    main()
