"""WindowSampler: training windows of observation history and action chunks, vectorized.

A window anchored at step t of an episode [s, e) holds To observations and Ta actions
(To = 2, Ta = 8 below). Rows before s repeat the first observation; rows after e-1 repeat the last
action and are marked False in ``action_mask``:

    t:        -1   0   1   2   3   4   5   6
    obs:       o   o                                  rows t-To+1 .. t, clamped to >= s
    action:        a   a   a   a   a   a   a   a      rows t .. t+Ta-1, clamped to <= e-1

Every step of every chosen episode anchors one window. The anchors (4 bytes a window) are
computed once; each batch is one vectorized index computation and one gather per key.

Order: each epoch shuffles the episode blocks of the store (see `imitate.data.store.partition_blocks`)
and then the windows within groups of ``shuffle_blocks`` consecutive (shuffled) blocks. A store that
fits in one group (by default up to 8 * 16384 transitions) is fully shuffled; larger ones are
shuffled block-locally, so the lazy reader loads every block once per epoch. The order depends only
on the seed, the epoch and the block layout, so in-memory and lazy stores give identical batches.

Image keys (uint8 (H, W, C)) are gathered like any other key, one `np.take` per key, and stay
uint8: windows are (B, To, H, W, C). From a lazy store, the image keys of the next group of blocks
are read ahead in a background thread (`LazyEpisodeStore.prefetch`) while the current group is
sampled.
"""
from __future__ import annotations

from dataclasses import dataclass, fields as dc_fields, replace
from typing import Iterator, Sequence

import numpy as np

from imitate.data.store import EpisodeStore
from imitate.errors import ImitateError


@dataclass
class Batch:
    """One batch of windows (NumPy arrays, or torch tensors after `to_torch`).

    Attributes:
        obs: observation key -> (B, To, *shape).
        action: (B, Ta, A).
        action_mask: (B, Ta) bool, False where the window ran past its episode's end.
        next_obs: observation key -> (B, To, *shape), the observations after the obs rows; optional.
        reward: (B, Ta), aligned with ``action``; optional.
        done: (B, Ta), aligned with ``action``; optional.
    """

    obs: dict
    action: object
    action_mask: object
    next_obs: dict | None = None
    reward: object | None = None
    done: object | None = None

    def to_torch(self, device=None, non_blocking: bool = False) -> "Batch":
        """The same batch as torch tensors (zero-copy on CPU). To a GPU with ``non_blocking``, the
        arrays go through pinned (page-locked) memory and the copies do not wait for the GPU."""
        import torch

        pin = non_blocking and device is not None and torch.device(device).type == "cuda"

        def conv(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            t = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
            if pin and not t.is_cuda:
                t = t.pin_memory()
            return t.to(device, non_blocking=non_blocking) if device is not None else t

        return replace(self, **{f.name: conv(getattr(self, f.name)) for f in dc_fields(self)})


class WindowSampler:
    """Seeded batches of windows from an `EpisodeStore` (in memory or lazy).

    Args:
        store: the demonstrations.
        obs_horizon: To, observation steps per window (the current one and To-1 before it).
        action_horizon: Ta, actions per window (the current one and Ta-1 after it).
        batch_size: B.
        episodes: episode indices to draw from, or a filter key name such as ``"train"``; default all.
        obs_keys: observation keys to gather (default: all the store holds).
        with_next: also gather ``next_obs``, ``reward`` and ``done``.
        seed: seed of the order; epoch k's order is a function of (seed, k) alone.
        shuffle_blocks: how many episode blocks are shuffled together.
        drop_last: `__iter__` leaves out the last, smaller batch of an epoch.
        rank, world_size: for several processes: each rank draws a disjoint share of every epoch.
    """

    def __init__(self, store: EpisodeStore, obs_horizon: int = 2, action_horizon: int = 16, batch_size: int = 256,
                 episodes: Sequence[int] | str | None = None, obs_keys: Sequence[str] | None = None,
                 with_next: bool = False, seed: int = 0, shuffle_blocks: int = 8, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        if obs_horizon < 1 or action_horizon < 1 or batch_size < 1:
            raise ImitateError(f"obs_horizon, action_horizon and batch_size must be >= 1 "
                               f"(got {obs_horizon}, {action_horizon}, {batch_size})")
        if not 0 <= rank < world_size:
            raise ImitateError(f"rank {rank} is outside world_size {world_size}")
        self.store = store
        self.obs_horizon, self.action_horizon, self.batch_size = obs_horizon, action_horizon, batch_size
        self.obs_keys = list(obs_keys) if obs_keys is not None else list(store.obs_keys)
        for k in self.obs_keys:
            store.shape(f"obs/{k}")  # unknown key: KeyError naming the store's keys
        self.with_next = with_next
        self.seed, self.shuffle_blocks, self.drop_last = seed, max(1, shuffle_blocks), drop_last
        self.rank, self.world_size = rank, world_size
        if isinstance(episodes, str):
            episodes = store.episodes_in(episodes)
        self.episodes = np.arange(store.n_episodes) if episodes is None else np.unique(np.asarray(episodes))
        if len(self.episodes) == 0:
            raise ImitateError(f"{store.source}: no episodes selected for sampling")
        # One window per step: its anchor row t, ascending. That index is all that grows with the file
        # (4 bytes a window, 8 past 2**31 rows); a window's episode bounds are looked up per batch, and
        # block b's windows are the range _block_windows[b] .. _block_windows[b + 1].
        self._starts, self._ends = store.episode_starts, store.episode_ends
        row_type = np.int32 if len(store) < 2**31 else np.int64
        self._anchor = np.concatenate([np.arange(s, e, dtype=row_type)
                                       for s, e in zip(self._starts[self.episodes], self._ends[self.episodes])])
        self._block_windows = np.searchsorted(self._anchor, store.block_starts)
        self._obs_offsets = np.arange(-obs_horizon + 1, 1, dtype=np.int64)
        self._act_offsets = np.arange(action_horizon, dtype=np.int64)
        self.epoch, self._cursor, self._order, self._plan = 0, 0, None, None
        # image keys of a lazy store are read ahead, a group of blocks at a time, in a background thread
        wanted = [f"obs/{k}" for k in self.obs_keys] + ([f"next_obs/{k}" for k in self.obs_keys] if with_next else [])
        self._image_keys = ([k for k in wanted if store.is_image(k) and k not in getattr(store, "_derived", {})]
                            if hasattr(store, "prefetch") else [])
        self._hinted = None

    def __len__(self) -> int:
        """Batches in one epoch (of this rank's share)."""
        n = self.windows_per_epoch
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def n_windows(self) -> int:
        return len(self._anchor)

    @property
    def windows_per_epoch(self) -> int:
        return len(range(self.rank, self.n_windows, self.world_size))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Window indices of one epoch, this rank's share, in sampling order."""
        return self._epoch_plan(epoch)[0]

    def _epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The epoch's order, the position in it where each group of blocks begins, and each group's blocks."""
        rng = np.random.default_rng([self.seed, epoch])
        bounds = self._block_windows
        blocks = np.flatnonzero(np.diff(bounds))  # blocks holding windows
        shuffled = blocks[rng.permutation(len(blocks))]
        keys = rng.random(self.n_windows)
        order, pos = np.empty(self.n_windows, dtype=np.int64), 0
        group_starts, groups = [], []
        for g in range(0, len(shuffled), self.shuffle_blocks):  # a group: its windows by their random keys
            members = np.sort(shuffled[g:g + self.shuffle_blocks])
            idx = np.concatenate([np.arange(bounds[b], bounds[b + 1]) for b in members])
            order[pos:pos + len(idx)] = idx[np.argsort(keys[idx], kind="stable")]
            group_starts.append(pos)
            groups.append(members)
            pos += len(idx)
        starts = np.asarray(group_starts, dtype=np.int64)
        if self.world_size == 1:
            return order, starts, groups
        return order[self.rank::self.world_size].copy(), -(-(starts - self.rank) // self.world_size), groups

    def _prefetch(self, plan, position: int) -> None:
        """Ask a store that reads from disk (`LazyEpisodeStore.prefetch`) for the image keys of the group
        of blocks after the one ``position`` (in the epoch's order) is in, once per group of an epoch."""
        if not self._image_keys or plan is None:
            return
        _, starts, groups = plan
        g = int(np.searchsorted(starts, position, side="right"))  # the group after position's group
        if g < len(groups) and self._hinted != g:
            self._hinted = g
            self.store.prefetch(groups[g], self._image_keys)

    def gather(self, windows: np.ndarray) -> Batch:
        """The batch for given window indices (B,), delivered in row order (the loss ignores order;
        a lazy store then reads one slice per block)."""
        windows = np.sort(windows)
        t = self._anchor[windows].astype(np.int64)
        episode = np.searchsorted(self._ends, t, side="right")
        t = t[:, None]
        obs_rows = np.maximum(t + self._obs_offsets, self._starts[episode][:, None])         # (B, To)
        act_steps = t + self._act_offsets                                                   # (B, Ta)
        last = self._ends[episode][:, None] - 1
        act_rows = np.minimum(act_steps, last)
        store = self.store
        batch = Batch(obs={k: store.get_windows(f"obs/{k}", obs_rows) for k in self.obs_keys},
                      action=store.get_windows("actions", act_rows), action_mask=act_steps <= last)
        if self.with_next:
            batch.next_obs = {k: store.get_windows(f"next_obs/{k}", obs_rows) for k in self.obs_keys}
            batch.reward = store.get_windows("rewards", act_rows)
            batch.done = store.get_windows("dones", act_rows)
        return batch

    def __iter__(self) -> Iterator[Batch]:
        """One epoch of batches; each call starts the next epoch."""
        plan = self._epoch_plan(self.epoch)
        order, self._hinted = plan[0], None
        self.epoch += 1
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        for i in range(0, stop, self.batch_size):
            self._prefetch(plan, i)
            yield self.gather(order[i:i + self.batch_size])

    def sample(self) -> Batch:
        """The next batch of an endless stream that runs through epoch after epoch (for step-based training)."""
        parts, need = [], self.batch_size
        while need:
            if self._order is None or self._cursor >= len(self._order):
                self._plan, self._cursor = self._epoch_plan(self.epoch), 0
                self._order, self._hinted = self._plan[0], None
                self.epoch += 1
            self._prefetch(self._plan, self._cursor)
            take = self._order[self._cursor:self._cursor + need]
            parts.append(take)
            self._cursor += len(take)
            need -= len(take)
        return self.gather(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def state_dict(self) -> dict:
        """Position of the stream, to resume exactly."""
        started = self._order is not None
        return {"epoch": self.epoch - 1 if started else self.epoch, "cursor": self._cursor if started else 0}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._plan = self._epoch_plan(self.epoch)
        self._order, self._hinted = self._plan[0], None
        self._cursor = int(state["cursor"])
        self.epoch += 1
