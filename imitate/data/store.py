"""EpisodeStore: every episode's steps in contiguous arrays per key, plus episode ends.

    key "actions":   [ a0 a1 a2 | a0 a1 | a0 a1 a2 a3 ]      rows of all episodes, back to back
    episode_ends:              3       5             9       (exclusive row ends)

Like a replay buffer, a row index addresses one transition of one episode, and the windowed sampler
(`imitate.data.sampler`) gathers rows with one indexing operation per key.

A file without ``next_obs`` gives a store whose ``next_obs/<k>`` is derived: row t's value is row
t + 1 of ``obs/<k>`` within the same episode, and at each episode's last step it is unknown. Reading
it there is an ImitateError (an algorithm that needs the last step's successor needs a file with
``next_obs``); `EpisodeStore.next_obs_known` says which rows have it.

Two backings answer `get(key, rows)` identically:
- `EpisodeStore`: arrays in memory.
- `LazyEpisodeStore`: the file stays on disk; rows are read in blocks of whole episodes and a few
  blocks are cached, so peak memory stays bounded for files larger than memory. Both partition their
  episodes into the same blocks, which the sampler uses to keep its reads local.

A block holds about `block_rows` rows (16384), fewer when its rows would exceed `block_bytes`
(32 MiB) counted over every key read from the file: a low-dimensional row of up to 2 KiB keeps
16384-row blocks, a row of two 84x84x3 cameras in obs and next_obs (85 KB) gets blocks of about 400
rows. Image keys are uint8 (H, W, C) and stay so: `get` and `get_windows` return them unconverted.
"""
from __future__ import annotations

import os
import threading
import zlib
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import h5py
import numpy as np

from imitate.data.checks import Problems, check_exact, is_image
from imitate.data.episode import Episode
from imitate.data.scan import H5_ERRORS, DemoFileLayout
from imitate.errors import DemoFileError, ImitateError

DEFAULT_BLOCK_ROWS = 16384
#: Upper bound of one block's bytes over every stored key (images make rows large).
DEFAULT_BLOCK_BYTES = 32 << 20
#: Lazy store: the cached blocks' bytes are kept below this (besides `cache_blocks`).
DEFAULT_CACHE_BYTES = 768 << 20
#: Datasets (demo x key) the lazy store keeps open per reading thread, least recently used first out. HDF5 holds about
#: 17 KiB per open dataset, so this bounds that memory (~70 MiB) whatever the number of demos; the
#: file is opened without HDF5's sieve buffer, which would hold up to 64 KiB more per dataset read.
MAX_OPEN_DATASETS = 4096


def row_nbytes(shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype]) -> int:
    """Bytes of one row (step) over the given keys: the sum of each key's per-step size."""
    return int(sum(int(np.prod(shapes[k], dtype=np.int64)) * np.dtype(dtypes[k]).itemsize for k in shapes))


def partition_blocks(episode_ends: np.ndarray, block_rows: int, row_bytes: int = 0,
                     block_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
    """Group consecutive episodes into blocks of about ``block_rows`` rows, fewer where ``block_rows``
    rows of ``row_bytes`` each would exceed ``block_bytes``; return block row starts.

    Blocks begin on episode boundaries, so a window (which never leaves its episode) never crosses a
    block; a block closes at the first episode end at or past the target, so it may exceed it by
    less than one episode. Returns (n_blocks + 1,) row offsets, the last one the total row count.
    """
    if row_bytes > 0 and block_rows * row_bytes > block_bytes:
        block_rows = max(1, block_bytes // row_bytes)
    starts = [0]
    for end in episode_ends:
        if end - starts[-1] >= block_rows:
            starts.append(int(end))
    if starts[-1] != int(episode_ends[-1]):
        starts.append(int(episode_ends[-1]))
    return np.asarray(starts, dtype=np.int64)


class EpisodeStore:
    """Demonstrations held in memory as one array per key.

    Attributes:
        keys: per-step keys, e.g. ``obs/agent_pos``, ``next_obs/agent_pos``, ``actions``, ``rewards``, ``dones``.
        obs_keys: observation keys (without the ``obs/`` prefix).
        episode_ends: (E,) exclusive row end of each episode.
        demo_names: (E,) names of the episodes in their file.
        env_args: robomimic ``env_args`` (env_name, type, env_kwargs), or None.
        filter_keys: mask name -> demo names.
        demo_attrs: per-episode attributes (e.g. ``route``, ``is_success``).
        source: the file the data came from.
        block_starts: (n_blocks + 1,) row offsets of the episode blocks (see `partition_blocks`), sized
            by ``block_rows`` and ``block_bytes`` over the stored arrays (not derived ``next_obs``).
        next_obs_derived: ``next_obs/<k>`` is derived from ``obs/<k>`` (the file has no next_obs).
    """

    def __init__(self, arrays: dict[str, np.ndarray], episode_ends: np.ndarray, demo_names: Sequence[str],
                 env_args: dict[str, Any] | None = None, filter_keys: dict[str, list[str]] | None = None,
                 demo_attrs: Sequence[dict[str, Any]] | None = None, source: str = "<memory>",
                 block_rows: int = DEFAULT_BLOCK_ROWS, next_obs_derived: bool = False,
                 block_bytes: int = DEFAULT_BLOCK_BYTES):
        self._arrays = arrays
        self.obs_keys = [k[4:] for k in arrays if k.startswith("obs/")]
        self._derive(next_obs_derived)
        self.keys = list(arrays) + [k for k in self._derived if k not in arrays]
        self.episode_ends = np.asarray(episode_ends, dtype=np.int64)
        self.demo_names = list(demo_names)
        self.env_args = env_args
        self.filter_keys = dict(filter_keys or {})
        self.demo_attrs = list(demo_attrs) if demo_attrs is not None else [{} for _ in self.demo_names]
        self.source = source
        self.block_rows, self.block_bytes = block_rows, block_bytes
        self.block_starts = partition_blocks(
            self.episode_ends, block_rows,
            row_nbytes({k: a.shape[1:] for k, a in arrays.items()}, {k: a.dtype for k, a in arrays.items()}),
            block_bytes)

    # -- shape of the data ------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of transitions."""
        return int(self.episode_ends[-1])

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.concatenate([[0], self.episode_ends]))

    def shape(self, key: str) -> tuple[int, ...]:
        """Per-step shape of a key (``actions`` -> (A,))."""
        self._check_key(key)
        return tuple(self._arrays[self._derived.get(key, key)].shape[1:])

    def dtype(self, key: str) -> np.dtype:
        """The dtype a key is delivered as (images: uint8)."""
        self._check_key(key)
        return self._arrays[self._derived.get(key, key)].dtype

    def is_image(self, key: str) -> bool:
        """Whether a key holds images (uint8 (H, W, C), C in {1, 3}); ``obs/<k>`` or ``next_obs/<k>``."""
        return is_image(self.shape(key), self.dtype(key))

    @property
    def action_dim(self) -> int:
        return self.shape("actions")[0]

    def _check_key(self, key: str) -> None:
        if key not in self.keys:
            raise KeyError(f"{self.source}: no key {key!r}; the store holds {self.keys}")

    def episodes_in(self, filter_key: str | None, allow_empty: bool | None = None) -> np.ndarray:
        """Indices of the episodes a filter key names (all episodes for None).

        A filter key that names no demo is an ImitateError naming it, unless ``allow_empty`` (default:
        only for ``valid``, which is empty in a file of one demo split by `write_demo_file`).
        """
        if filter_key is None:
            return np.arange(self.n_episodes)
        if filter_key not in self.filter_keys:
            raise ImitateError(f"{self.source}: no filter key {filter_key!r} "
                               f"(the file has {sorted(self.filter_keys) or 'none'})")
        index = {name: i for i, name in enumerate(self.demo_names)}
        episodes = np.sort(np.asarray([index[n] for n in self.filter_keys[filter_key]], dtype=np.int64))
        if not len(episodes) and not (filter_key == "valid" if allow_empty is None else allow_empty):
            raise ImitateError(f"{self.source}: the filter key mask/{filter_key} names no demos; add demos to it "
                               f"or remove it from the file")
        return episodes

    # -- data access ------------------------------------------------------------------------------
    def get(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Rows of one key: ``rows`` of any shape (...) -> (..., *shape(key))."""
        self._check_key(key)
        if key in self._derived:
            return self._take(self._derived[key], self._successors(key, rows))
        return self._take(key, rows)

    def get_windows(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Like `get` for windows: rows (B, T) where each window's T rows lie in one episode."""
        self._check_key(key)
        if key in self._derived:
            return self._take_windows(self._derived[key], self._successors(key, rows))
        return self._take_windows(key, rows)

    def _take(self, key: str, rows: np.ndarray) -> np.ndarray:
        return np.take(self._arrays[key], rows, axis=0)

    def _take_windows(self, key: str, rows: np.ndarray) -> np.ndarray:
        return self._take(key, rows)

    # -- next_obs derived from obs ----------------------------------------------------------------
    def _derive(self, derived: bool) -> None:
        self.next_obs_derived = derived
        self._derived = {f"next_obs/{k}": f"obs/{k}" for k in self.obs_keys} if derived else {}

    def next_obs_known(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Whether ``next_obs`` holds the true successor at each of ``rows`` (default: every row): True
        everywhere when the file stores next_obs; else False at each episode's last step."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        if not self.next_obs_derived:
            return np.ones(rows.shape, dtype=bool)
        episode = np.minimum(np.searchsorted(self.episode_ends, rows, side="right"), self.n_episodes - 1)
        return rows != self.episode_ends[episode] - 1

    def _successors(self, key: str, rows: np.ndarray) -> np.ndarray:
        """The obs rows that hold derived ``next_obs`` at ``rows``; an episode's last step is an error."""
        rows = np.asarray(rows, dtype=np.int64)
        unknown = ~self.next_obs_known(rows)
        if unknown.any():
            demo = self.demo_names[int(np.searchsorted(self.episode_ends, rows[unknown].flat[0], side="right"))]
            raise ImitateError(
                f"{demo} in {self.source}: {key} at the demo's last step is unknown: the file has no next_obs, so "
                f"imitate derives it from the next row of obs, and a demo's last step has none. What reads it "
                f"needs a file with next_obs (or to skip each demo's last step: store.next_obs_known(rows))")
        return rows + 1

    def iter_chunks(self, key: str, episodes: np.ndarray | None = None, chunk_rows: int = 1 << 20,
                    chunk_bytes: int = 64 << 20):
        """Yield the rows of ``key`` for the chosen episodes in chunks of ``chunk_rows`` rows, fewer
        where they would exceed ``chunk_bytes`` (images) (the last one shorter), for statistics;
        memory stays bounded by a chunk, whatever the store's size."""
        step_bytes = row_nbytes({key: self.shape(key)}, {key: self.dtype(key)})
        chunk_rows = max(1, min(chunk_rows, chunk_bytes // max(1, step_bytes)))
        starts, ends = self.episode_starts, self.episode_ends
        sel = np.arange(self.n_episodes) if episodes is None else np.asarray(episodes)
        pending, n = [], 0
        for i in sel:
            pending.append(np.arange(starts[i], ends[i]))
            n += len(pending[-1])
            while n >= chunk_rows:
                rows = np.concatenate(pending)
                yield self.get(key, rows[:chunk_rows])
                pending, n = [rows[chunk_rows:]], len(rows) - chunk_rows
        if n:
            yield self.get(key, np.concatenate(pending))

    def episode(self, i: int) -> Episode:
        """Episode ``i`` as a validated `Episode`."""
        rows = np.arange(self.episode_starts[i], self.episode_ends[i])
        arrays = {k: self.get(k, rows) for k in self.keys}
        return Episode(obs={k: arrays[f"obs/{k}"] for k in self.obs_keys},
                       next_obs={k: arrays[f"next_obs/{k}"] for k in self.obs_keys},
                       actions=arrays["actions"], rewards=arrays["rewards"], dones=arrays["dones"],
                       attrs=self.demo_attrs[i], name=self.demo_names[i], source=self.source)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, episodes={self.n_episodes}, transitions={len(self)}, "
                f"obs_keys={self.obs_keys}, action_dim={self.action_dim})")


class LazyEpisodeStore(EpisodeStore):
    """The same interface as `EpisodeStore`, reading episode blocks from the file on demand.

    At most ``cache_blocks`` blocks, of at most ``cache_bytes`` together, are held in memory (least
    recently used evicted first; the block being read is always kept). Peak memory is about
    ``min(cache_blocks * block_bytes, cache_bytes)`` for the keys read, plus the blocks read ahead
    (`prefetch`: the sampler's next group, at most ``prefetch_limit`` block reads), whatever the
    file's size.
    A batch at the seam between two groups of the sampler's ``shuffle_blocks`` blocks touches both
    groups, so ``cache_blocks`` of at least twice ``shuffle_blocks`` reads every block once per epoch;
    fewer re-read blocks at the seams. Compressed image datasets are decompressed once per block read
    (HDF5's own chunk cache is turned off: every read covers whole datasets).
    """

    def __init__(self, layout: DemoFileLayout, block_rows: int = DEFAULT_BLOCK_ROWS, cache_blocks: int = 16,
                 block_bytes: int = DEFAULT_BLOCK_BYTES, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self._layout = layout
        self._shapes = {k: layout.shapes[k] for k in layout.store_keys}
        self._dtypes = {k: layout.dtypes[k] for k in layout.store_keys}
        self._readers: dict[int, _BlockReader] | None = None  # thread id -> its reader
        self._pid = None
        self._pending: dict[tuple[int, str], Future] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.prefetch_limit = 64  # (block, key) reads queued at most
        self.cache_blocks = max(1, int(cache_blocks))
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._cached_bytes = 0
        self.keys = list(layout.store_keys)
        self.obs_keys = list(layout.obs_keys)
        self._derive(layout.next_obs_derived)
        self.episode_ends = np.cumsum(layout.lengths).astype(np.int64)
        self.demo_names = list(layout.demo_names)
        self.env_args = layout.env_args
        self.filter_keys = dict(layout.filter_keys)
        self.demo_attrs = list(layout.demo_attrs)
        self.source = layout.path
        self.block_rows, self.block_bytes = block_rows, block_bytes
        stored = layout.file_keys
        self.block_starts = partition_blocks(
            self.episode_ends, block_rows,
            row_nbytes({k: layout.shapes[k] for k in stored}, {k: layout.dtypes[k] for k in stored}), block_bytes)
        self._block_first_episode = np.searchsorted(self.episode_ends, self.block_starts[:-1], side="right")

    def shape(self, key: str) -> tuple[int, ...]:
        self._check_key(key)
        return self._shapes[key]

    def dtype(self, key: str) -> np.dtype:
        self._check_key(key)
        return self._dtypes[key]

    def _load_block(self, b: int, key: str) -> np.ndarray:
        """Rows of block ``b`` for one key: from the cache, from a prefetch under way, or read now."""
        block = self._cache.get(b)
        if block is not None:
            self._cache.move_to_end(b)
            if key in block:
                return block[key]
        else:
            block = self._cache[b] = {}
        reader = self._reader()  # first: a forked process drops its parent's prefetches
        pending = self._pending.pop((b, key), None)
        out = pending.result() if pending is not None else reader.read(self, b, key)
        block[key] = out
        self._cached_bytes += out.nbytes
        self._evict()
        return out

    def _reader(self) -> "_BlockReader":
        """This process's reader of the calling thread (a forked worker opens its own file)."""
        if self._readers is None or self._pid != os.getpid():
            self._readers, self._pid, self._pending, self._executor = {}, os.getpid(), {}, None
        ident = threading.get_ident()
        reader = self._readers.get(ident)
        if reader is None:
            reader = self._readers[ident] = _BlockReader(self._layout.path)
        return reader

    @property
    def _file(self) -> h5py.File | None:
        """The calling thread's open file (None before its first read)."""
        reader = (self._readers or {}).get(threading.get_ident()) if self._pid == os.getpid() else None
        return reader.file if reader is not None else None

    def prefetch(self, blocks: Sequence[int], keys: Sequence[str]) -> None:
        """Start reading ``keys`` of ``blocks`` in a background thread (the sampler calls it with the
        next group of blocks of its order). A later read of such a block waits for it instead of
        reading it again. gzip-compressed images are decompressed by zlib, which lets the main thread
        run meanwhile; nothing is prefetched for blocks already cached."""
        self._reader()  # resets the state in a forked process
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imitate-prefetch")
        for b in blocks:
            for key in keys:
                cached = self._cache.get(b)
                if (cached is not None and key in cached) or (b, key) in self._pending:
                    continue
                if len(self._pending) >= self.prefetch_limit:
                    return
                self._pending[b, key] = self._executor.submit(self._prefetch_read, int(b), key)

    def _prefetch_read(self, b: int, key: str) -> np.ndarray:
        return self._reader().read(self, b, key)

    def _evict(self) -> None:
        """Drop least recently used blocks beyond ``cache_blocks`` or ``cache_bytes`` (never the newest)."""
        while len(self._cache) > 1 and (len(self._cache) > self.cache_blocks or self._cached_bytes > self.cache_bytes):
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= sum(a.nbytes for a in dropped.values())

    def _take(self, key: str, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        flat = rows.reshape(-1)
        block_of = np.searchsorted(self.block_starts, flat, side="right") - 1
        out = np.empty((flat.size, *self._shapes[key]), dtype=self._dtypes[key])
        first = block_of[0] if flat.size else 0
        if flat.size and (block_of == first).all():  # the common case: one block serves the batch
            out[:] = np.take(self._load_block(first, key), flat - self.block_starts[first], axis=0)
        else:
            for b in np.unique(block_of):
                sel = block_of == b
                out[sel] = np.take(self._load_block(b, key), flat[sel] - self.block_starts[b], axis=0)
        return out.reshape(*rows.shape, *self._shapes[key])

    def _take_windows(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Rows (B, T), each window within one episode, hence within one block.

        Windows sorted by their first row (as the sampler delivers them) are served one slice per
        block; any other order falls back to per-window grouping.
        """
        rows = np.asarray(rows, dtype=np.int64)
        first, starts = rows[:, 0], self.block_starts
        if len(first) > 1 and (first[1:] < first[:-1]).any():
            order = np.argsort(first, kind="stable")
            out = np.empty((*rows.shape, *self._shapes[key]), dtype=self._dtypes[key])
            out[order] = self._take_windows(key, rows[order])
            return out
        lo, hi = np.searchsorted(starts, [first[0], first[-1]], side="right") - 1
        if lo == hi:  # the common case: one block serves the whole batch
            return np.take(self._load_block(lo, key), rows - starts[lo], axis=0)
        out = np.empty((*rows.shape, *self._shapes[key]), dtype=self._dtypes[key])
        cuts = np.searchsorted(first, starts[lo + 1:hi + 2])  # end of each block's run of windows
        begin = 0
        for b, end in zip(range(lo, hi + 1), cuts.tolist()):
            if end > begin:
                np.take(self._load_block(b, key), rows[begin:end] - starts[b], axis=0, out=out[begin:end])
            begin = end
        return out

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for reader in (self._readers or {}).values():
            reader.close()
        self._readers, self._pending, self._executor = None, {}, None
        self._cache.clear()
        self._cached_bytes = 0

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_readers=None, _pid=None, _pending={}, _executor=None, _cache=OrderedDict(), _cached_bytes=0)
        return state


class _BlockReader:
    """One thread's open file and its bounded set of open datasets, reading a store's blocks."""

    def __init__(self, path: str):
        self.file = _open_without_sieve(path)
        self.open: OrderedDict[tuple[int, str], tuple[h5py.Dataset, bool, bool]] = OrderedDict()

    def dataset(self, store: "LazyEpisodeStore", i: int, key: str) -> tuple[h5py.Dataset, bool, bool]:
        """Demo ``i``'s dataset of one key, whether its shape is the store's (rewards may be stored
        (T, 1)), and whether its chunks can be decompressed with zlib here (see `_zlib_chunks`)."""
        entry = self.open.get((i, key))
        if entry is not None:
            self.open.move_to_end((i, key))
            return entry
        handle = self.file["data"][store.demo_names[i]][key]
        entry = self.open[i, key] = (handle, handle.shape[1:] == store._shapes[key], _zlib_chunks(handle))
        if len(self.open) > MAX_OPEN_DATASETS:
            self.open.popitem(last=False)
        return entry

    def read(self, store: "LazyEpisodeStore", b: int, key: str) -> np.ndarray:
        """Rows of block ``b`` for one key, read from the file (one read per demo)."""
        start, stop = store.block_starts[b], store.block_starts[b + 1]
        shape, dtype = store._shapes[key], store._dtypes[key]
        try:
            out = np.empty((stop - start, *shape), dtype=dtype)
        except MemoryError as e:
            raise DemoFileError(f"{store.source}: a block of {stop - start} rows of {key} does not fit in memory "
                                f"({e}); its demos are too long to read") from None
        ends, lengths = store.episode_ends, store._layout.lengths
        for i in range(store._block_first_episode[b], np.searchsorted(ends, stop, side="left") + 1):
            lo, hi = ends[i] - lengths[i] - start, ends[i] - start
            try:
                dataset, direct, zlib_chunks = self.dataset(store, i, key)
                if zlib_chunks and direct:
                    _read_zlib_chunks(dataset, out[lo:hi])
                    continue
                values = dataset[()]  # a whole-dataset read takes h5py's fast path
            except H5_ERRORS as e:
                raise DemoFileError(f"{store.demo_names[i]} in {store.source}: cannot read {key} ({e})") from None
            except zlib.error as e:
                raise DemoFileError(f"{store.demo_names[i]} in {store.source}: cannot decompress {key} ({e}); "
                                    f"the file may be damaged") from None
            if values.dtype != out.dtype:  # read as a dtype promoted across demos: values must survive
                problems = Problems(store.source)
                check_exact(problems, store.demo_names[i], key, values, out.dtype)
                problems.raise_if_any()
            out[lo:hi] = values if direct else values.reshape(hi - lo, *shape)
        return out

    def close(self) -> None:
        self.open.clear()
        self.file.close()


def _zlib_chunks(ds: h5py.Dataset) -> bool:
    """Whether a dataset is uint8 in chunks of one step compressed by deflate alone (how the writer
    stores images): its chunks can then be read raw and inflated by zlib, which releases the GIL."""
    try:
        return (ds.dtype == np.uint8 and ds.chunks is not None and ds.chunks[0] == 1
                and tuple(ds.chunks[1:]) == tuple(ds.shape[1:]) and ds.compression == "gzip"
                and not ds.shuffle and not ds.fletcher32 and ds.scaleoffset is None
                and ds.id.get_create_plist().get_nfilters() == 1)
    except H5_ERRORS:
        return False


def _read_zlib_chunks(ds: h5py.Dataset, out: np.ndarray) -> None:
    """Read a `_zlib_chunks` dataset into ``out`` chunk by chunk: raw bytes, inflated by zlib."""
    zeros = (0,) * (out.ndim - 1)
    flat = out.reshape(len(out), -1)
    size = flat.shape[1]
    for t in range(len(out)):
        mask, raw = ds.id.read_direct_chunk((t, *zeros))
        flat[t] = np.frombuffer(raw if mask & 1 else zlib.decompress(raw, bufsize=size), dtype=np.uint8)


def _open_without_sieve(path: str) -> h5py.File:
    """The file, read-only, without HDF5's data sieve buffer and chunk cache (whole-dataset reads, all
    the lazy store makes, need neither; a chunk cache of 1 MiB per open dataset would otherwise hold
    decompressed image chunks of thousands of datasets)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_sieve_buf_size(0)
    fapl.set_cache(0, 0, 0, 0.75)
    try:
        return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=fapl))
    except OSError as e:
        raise DemoFileError(f"{path}: cannot open ({e})") from None
