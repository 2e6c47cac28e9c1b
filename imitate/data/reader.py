"""Reading a demonstration file into a store: `load_demo_file`.

    scan_demo_file (structure, from metadata)  ->  one pass over every value  ->  EpisodeStore
                                                   (NaN, inf, promoted integers)   or LazyEpisodeStore

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
                   cache_bytes: int = DEFAULT_CACHE_BYTES) -> EpisodeStore:
    """Read and validate a robomimic-layout demonstration file.

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

    Raises:
        DemoFileError: listing every problem found, each naming the demo and the key.
    """
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
