"""Reading a demonstration file into a store: `load_demo_file`.

    scan_demo_file (structure, from metadata)  ->  one pass over every value  ->  EpisodeStore
                                                   (NaN, inf, promoted integers)   or LazyEpisodeStore

Datasets in other formats (LeRobot, zarr, Minari: `imitate.data.sources`) are read through their
source, episode by episode (`load_source`): into memory, or lazily through a decoded cache file.

Both passes report every problem they find at once, in one `DemoFileError` (`imitate.data.checks`).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from imitate.data.checks import Problems, check_exact, check_finite
from imitate.data.scan import H5_ERRORS, DemoFileLayout, open_demo_file, scan_demo_file
from imitate.data.store import DEFAULT_BLOCK_BYTES, DEFAULT_BLOCK_ROWS, DEFAULT_CACHE_BYTES, EpisodeStore, LazyEpisodeStore
from imitate.errors import DemoFileError


def load_demo_file(path: str | os.PathLike, obs_keys: Sequence[str] | None = None, lazy: bool = False,
                   block_rows: int = DEFAULT_BLOCK_ROWS, cache_blocks: int = 16,
                   check_values: bool = True, block_bytes: int = DEFAULT_BLOCK_BYTES,
                   cache_bytes: int = DEFAULT_CACHE_BYTES, format: str | None = None) -> EpisodeStore:
    """Read and validate a robomimic-layout demonstration file, or a dataset in another format.

    Structure is checked from metadata first (`scan_demo_file`); then every value is read once and
    float values are checked for NaN and inf, and integers read as a promoted float dtype (a key whose
    dtype differs across demos) are checked to keep their values. In lazy mode that pass only checks
    (the data stay on disk) and reads only float keys, and ``check_values=False`` skips the NaN/inf
    check. Image keys (uint8 (H, W, C)) are kept as stored: never converted, never scanned.

    Args:
        path: the file.
        obs_keys: observation keys to load (default: all).
        lazy: keep the data on disk (`LazyEpisodeStore`).
        block_rows: rows per episode block (shared by both modes so their batches agree).
        cache_blocks: lazy mode: blocks kept in memory.
        check_values: check every value for NaN and inf.
        block_bytes: fewer rows per block where ``block_rows`` rows of every stored key would take
            more bytes (image files); shared by both modes like ``block_rows``.
        cache_bytes: lazy mode: the cached blocks' bytes are kept below this.
        format: ``robomimic``, ``lerobot``, ``zarr``, ``minari``, or None / ``auto``: a folder or a
            ``.zarr.zip`` or a Minari ``main_data.hdf5`` is detected (`imitate.data.sources.detect_format`),
            any other file is read as robomimic's HDF5. Other formats go through their source (`load_source`).

    Raises:
        DemoFileError: listing every problem found, each naming the demo and the key.
    """
    fmt = _format_of(path, format)
    if fmt != "robomimic":
        return load_source(path, fmt, obs_keys, lazy=lazy, block_rows=block_rows, cache_blocks=cache_blocks,
                           check_values=check_values, block_bytes=block_bytes, cache_bytes=cache_bytes)
    layout = scan_demo_file(path, obs_keys)
    if lazy:
        if check_values:
            _read_values(layout, check_values)
        return LazyEpisodeStore(layout, block_rows=block_rows, cache_blocks=cache_blocks, block_bytes=block_bytes,
                                cache_bytes=cache_bytes)
    total = int(sum(int(n) for n in layout.lengths))
    try:
        arrays = {k: np.empty((total, *layout.shapes[k]), dtype=layout.dtypes[k]) for k in layout.file_keys}
    except (MemoryError, ValueError) as e:
        raise DemoFileError(f"{layout.path}: its {total} transitions do not fit in memory ({e}); "
                            f"read it lazily (--lazy true, lazy=True)") from None
    ends = np.cumsum(layout.lengths)

    def keep(i: int, key: str, ds) -> np.ndarray:
        target = arrays[key][ends[i] - layout.lengths[i]:ends[i]]
        if ds.dtype == target.dtype and ds.shape == target.shape:  # straight into place: no second copy
            ds.read_direct(target)
            return target
        values = ds[()]
        target[...] = values.reshape(len(values), *layout.shapes[key])
        return values

    _read_values(layout, check_values, keep)
    return EpisodeStore(arrays, ends, layout.demo_names, layout.env_args, layout.filter_keys, layout.demo_attrs,
                        source=layout.path, block_rows=block_rows, next_obs_derived=layout.next_obs_derived,
                        block_bytes=block_bytes)


def _needs_check(layout: DemoFileLayout, key: str) -> bool:
    """Whether a key's values need checking: only float values (as read) can hold NaN or inf, or be
    integers promoted to float; integer keys and images (uint8) have nothing to check."""
    return layout.dtypes[key].kind == "f"


def _read_values(layout: DemoFileLayout, check_values: bool, keep=None) -> None:
    """Read every per-step array of the file once and check it; with ``keep(demo_index, key, dataset)``
    (which stores the values and returns them) every key is read, without it only the keys that
    need checking (`_needs_check`). Every problem found is reported at the end, at once."""
    problems = Problems(layout.path)
    keys = layout.file_keys if keep is not None else [k for k in layout.file_keys if _needs_check(layout, k)]
    with open_demo_file(layout.path) as f:
        for i, demo in enumerate(layout.demo_names):
            for key in keys:
                try:
                    ds = f["data"][demo][key]
                    values = keep(i, key, ds) if keep is not None and not problems else ds[()]
                except MemoryError as e:
                    problems.add(demo, f"{key} does not fit in memory ({e})")
                    continue
                except H5_ERRORS as e:
                    problems.add(demo, f"cannot read {key} ({type(e).__name__}: {e})")
                    continue
                if not _needs_check(layout, key):
                    continue
                if check_values:
                    check_finite(problems, demo, key, values)
                check_exact(problems, demo, key, values, layout.dtypes[key])
    problems.raise_if_any()


def _format_of(path: str | os.PathLike, format: str | None) -> str:
    """The format to read: the one given, else ``robomimic`` for anything but a folder, a ``.zarr.zip`` or a
    Minari ``main_data.hdf5`` (so that a robomimic file, or a missing one, takes the HDF5 path unchanged)."""
    from imitate.data.sources import detect_format, normalize_format

    given = normalize_format(format)
    if given is not None:
        return given
    p = str(path)
    if os.path.isdir(p) or p.lower().endswith(".zarr.zip") or (
            os.path.basename(p) == "main_data.hdf5" and os.path.isfile(os.path.join(os.path.dirname(p), "metadata.json"))):
        return detect_format(p)
    return "robomimic"


def load_source(path: str | os.PathLike, format: str | None = None, obs_keys: Sequence[str] | None = None,
                lazy: bool = False, block_rows: int = DEFAULT_BLOCK_ROWS, cache_blocks: int = 16,
                check_values: bool = True, block_bytes: int = DEFAULT_BLOCK_BYTES,
                cache_bytes: int = DEFAULT_CACHE_BYTES) -> EpisodeStore:
    """A dataset in another format (LeRobot, zarr, Minari) as a store, its episodes validated as they are read.

    In memory: the episodes are copied into one array per key (`EpisodeStore`). Lazy: they are written
    once into a decoded cache (a robomimic file, `imitate.data.sources.decoded_cache_path`; images
    compressed with `CACHE_IMAGE_COMPRESSION`) which a `LazyEpisodeStore` then reads; later loads of the
    unchanged dataset reuse it. Either way the store's ``source`` is the dataset, and it carries
    ``format``, ``notes`` (fields derived or filled) and, lazily, ``decoded_cache`` (the cache file).
    Where the format has no next observation (``source.next_obs_derived``), ``next_obs`` is derived
    from ``obs`` as for a robomimic file without it.
    """
    from imitate.data.sources import open_source

    source = open_source(path, format, obs_keys)
    fmt = getattr(source, "format", format)
    derived = bool(getattr(source, "next_obs_derived", False))
    if lazy:
        cache = _decoded_cache(source, path, fmt, obs_keys, derived)
        store = load_demo_file(cache, obs_keys=obs_keys, lazy=True, block_rows=block_rows, cache_blocks=cache_blocks,
                               check_values=check_values, block_bytes=block_bytes, cache_bytes=cache_bytes,
                               format="robomimic")
        store.decoded_cache = str(cache)
    else:
        store = _source_in_memory(source, derived, obs_keys, block_rows, block_bytes)
    store.source = str(path)
    store.format = fmt
    store.notes = list(getattr(source, "notes", []))
    return store


def _checked_episodes(source, path, progress: bool = True):
    """The source's episodes, each checked against the episode count and lengths of its metadata, with
    a progress bar on a terminal (unless not ``progress``)."""
    from tqdm import tqdm

    lengths = [int(n) for n in source.lengths]
    n = 0
    bar = tqdm(total=int(sum(lengths)), unit="step", desc=f"reading {os.path.basename(str(path).rstrip('/'))}",
               disable=None if progress else True, leave=False)
    try:
        for ep in source.episodes():
            if n >= len(lengths):
                raise DemoFileError(f"{path}: more episodes than the {len(lengths)} its metadata lists")
            if len(ep) != lengths[n]:
                raise DemoFileError(f"{ep.name} in {path}: {len(ep)} steps, but the metadata says {lengths[n]}")
            n += 1
            bar.update(len(ep))
            yield ep
    finally:
        bar.close()
    if n != len(lengths):
        raise DemoFileError(f"{path}: {n} episodes read, but the metadata lists {len(lengths)}")


def _source_in_memory(source, derived: bool, obs_keys, block_rows: int, block_bytes: int) -> EpisodeStore:
    path = source.path
    lengths = np.asarray([int(n) for n in source.lengths], dtype=np.int64)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    arrays: dict[str, np.ndarray] | None = None
    names, attrs = [], []
    for i, ep in enumerate(_checked_episodes(source, path)):
        values = {k: v for k, v in ep.arrays().items() if not (derived and k.startswith("next_obs/"))}
        if arrays is None:
            keys = list(obs_keys) if obs_keys else sorted(ep.obs)
            order = [f"obs/{k}" for k in keys] + [f"next_obs/{k}" for k in keys] + ["actions", "rewards", "dones"]
            try:
                arrays = {k: np.empty((total, *values[k].shape[1:]), dtype=values[k].dtype)
                          for k in order if k in values}
            except (MemoryError, ValueError) as e:
                raise DemoFileError(f"{path}: its {total} transitions do not fit in memory ({e}); "
                                    f"read it lazily (--lazy true, lazy=True)") from None
        problems = Problems(path)
        for k, target in arrays.items():
            v = values.get(k)
            if v is None:
                problems.add(ep.name, f"missing key {k}")
            elif v.shape[1:] != target.shape[1:]:
                problems.add(ep.name, f"{k} has per-step shape {v.shape[1:]}, demo_0 has {target.shape[1:]}")
            elif v.dtype != target.dtype and not np.can_cast(v.dtype, target.dtype, "safe"):
                problems.add(ep.name, f"{k} has dtype {v.dtype}, demo_0 has {target.dtype}")
        problems.raise_if_any()
        for k, target in arrays.items():
            target[ends[i] - lengths[i]:ends[i]] = values[k]
        names.append(ep.name)
        attrs.append(dict(ep.attrs))
    return EpisodeStore(arrays, ends, names, source.env_args, source.filter_keys, attrs, source=str(path),
                        block_rows=block_rows, next_obs_derived=derived, block_bytes=block_bytes)


def _decoded_cache(source, path, fmt: str, obs_keys, derived: bool):
    """The decoded cache file of a dataset, written now (atomically) if it is not there yet."""
    from imitate.data.hdf5 import write_demo_file
    from imitate.data.sources import CACHE_IMAGE_COMPRESSION, decoded_cache_path
    from imitate.errors import ImitateError

    cache = decoded_cache_path(path, fmt, obs_keys)
    if cache.exists():
        return cache
    try:
        write_demo_file(cache, _checked_episodes(source, path), source.env_args, valid_fraction=0.0,
                        filter_keys=source.filter_keys, image_compression=CACHE_IMAGE_COMPRESSION,
                        store_next_obs=not derived)
    except DemoFileError:
        raise
    except ImitateError:
        if not cache.exists():  # "already exists": another process wrote it meanwhile
            raise
    except OSError as e:
        raise DemoFileError(f"{path}: cannot write its decoded cache {cache} ({e.strerror or e}); set "
                            f"IMITATE_CACHE to a writable folder") from None
    return cache
