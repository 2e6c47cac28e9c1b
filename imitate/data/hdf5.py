"""Demonstration files in robomimic's HDF5 layout: the layout, writing, and reading extras.

    data/                       attrs: total (int), env_args (JSON: env_name, type=2, env_kwargs)
      demo_0/                   attrs: num_samples (int) [+ scalars such as is_success, route]
        obs/<key>               (T, *shape)
        next_obs/<key>          (T, *shape)
        actions                 (T, A)
        rewards                 (T,)
        dones                   (T,)
        states                  (T, S)   optional
        <extra>                 (T, ...) optional per-step arrays readers ignore (Episode.extras)
      demo_1/ ...               ordered by their number, as robomimic orders them
    mask/<name>                 byte strings naming demos (filter keys; "train" and "valid" by default)

Reading: `imitate.data.scan.scan_demo_file` checks every group, key, attribute, shape and dtype
from metadata alone; the reader (`imitate.data.reader`) then checks values (NaN, inf) as it
reads them. Every problem found is reported at once, in one `DemoFileError` naming the file, and for each
problem the demo and the key (`imitate.data.checks`). Writing: `write_demo_file`, atomically; image
keys (obs/<camera> (T, H, W, C) uint8) chunked one step per chunk and compressed (gzip by default).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np

from imitate.data.checks import Problems, is_image
from imitate.data.episode import Episode
from imitate.data.scan import H5_ERRORS, open_demo_file, scan_demo_file
from imitate.errors import ImitateError

GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE


def read_extra(path: str | os.PathLike, key: str) -> list[np.ndarray]:
    """The per-step array ``key`` stored beside ``actions`` (an `Episode` extra) of every demo, in
    demo order; a demo without it is a DemoFileError naming the demo."""
    layout = scan_demo_file(path)
    problems, out = Problems(layout.path), []
    with open_demo_file(path) as f:
        for demo in layout.demo_names:
            ds = f["data"][demo].get(key)
            if not isinstance(ds, h5py.Dataset):
                problems.add(demo, f"missing key '{key}'" if ds is None else f"'{key}' is not an array")
                continue
            try:
                out.append(ds[()])
            except H5_ERRORS as e:
                problems.add(demo, f"cannot read {key} ({e})")
    problems.raise_if_any()
    return out


def make_env_args(env_name: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``env_args`` robomimic expects for a gymnasium environment."""
    return {"env_name": env_name, "type": GYM_ENV_TYPE, "env_kwargs": dict(env_kwargs or {})}


def split_train_valid(names: Sequence[str], valid_fraction: float, seed: int = 0) -> dict[str, list[str]]:
    """A seeded split of demo names into ``train`` and ``valid`` filter keys.

    ``valid`` gets round(fraction * n) demos, at least one when there are two or more demos and the
    fraction is positive.
    """
    n = len(names)
    n_valid = int(round(valid_fraction * n))
    if valid_fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    valid = {names[i] for i in order[:n_valid]}
    return {"train": [m for m in names if m not in valid], "valid": [m for m in names if m in valid]}


#: Image compressions `write_demo_file` accepts: name -> (h5py filter, options).
IMAGE_COMPRESSIONS = {"gzip": ("gzip", 4), "lzf": ("lzf", None), "none": (None, None),
                      **{f"gzip-{n}": ("gzip", n) for n in range(1, 10)}}


def image_compression_filter(name: str | None) -> tuple[str | None, int | None]:
    """The h5py filter and its option for an ``image_compression`` name: ``gzip`` (level 4),
    ``gzip-1`` .. ``gzip-9``, ``lzf`` or ``none`` (None is ``none``)."""
    key = "none" if name is None else str(name).lower()
    if key not in IMAGE_COMPRESSIONS:
        raise ImitateError(f"image_compression (--image-compression) is {name!r}; expected one of "
                           f"gzip, lzf, none, gzip-1 .. gzip-9")
    return IMAGE_COMPRESSIONS[key]


def write_demo_file(path: str | os.PathLike, episodes: Iterable[Episode], env_args: dict[str, Any] | None = None,
                    *, overwrite: bool = False, valid_fraction: float = 0.1, seed: int = 0,
                    filter_keys: dict[str, Sequence[str]] | None = None, compression: str | None = None,
                    image_compression: str | None = "gzip", store_next_obs: bool = True) -> Path:
    """Write episodes as ``demo_0 .. demo_{E-1}`` in robomimic's layout, atomically.

    The file is written under a temporary name in the same folder and moved into place only when
    complete, so a killed write never leaves a partial file under ``path``. An existing ``path`` is
    kept unless ``overwrite``. Episodes are written one at a time as they come (any iterable, e.g. a
    generator), so a file larger than memory can be written.

    Image keys (uint8 (H, W, C), C in {1, 3}) are stored uint8, chunked one step per chunk (a reader
    decompresses only the steps it reads) and compressed with ``image_compression``; every other
    array as before (``compression``, contiguous by default).

    Args:
        path: the output file.
        episodes: the demonstrations, written in order.
        env_args: e.g. ``make_env_args("imitate/ForkedPath-v0", {...})``; stored as JSON.
        overwrite: replace an existing file.
        valid_fraction: share of demos in the ``valid`` filter key (the rest in ``train``); 0 for none.
        seed: seed of the train/valid split.
        filter_keys: further masks, name -> demo names.
        compression: an h5py compression filter (e.g. "gzip") for the arrays that are not images, or None.
        image_compression: ``gzip`` (level 4, the default; robomimic's readers read it), ``gzip-1`` ..
            ``gzip-9``, ``lzf`` (h5py's own filter: faster to read, larger, readable only through h5py)
            or ``none``.
        store_next_obs: False leaves ``next_obs`` out (readers derive it from ``obs``, unknown at each
            demo's last step), which halves an image file.
    """
    path = Path(path)
    image_filter, image_level = image_compression_filter(image_compression)
    if path.exists() and not overwrite:
        raise ImitateError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions of an ordinary new file, not mkstemp's 0600
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            if env_args is not None:
                data.attrs["env_args"] = json.dumps(env_args)
            names, total, keys = [], 0, None
            for i, ep in enumerate(episodes):
                if keys is None:
                    keys = set(ep.obs)
                elif set(ep.obs) != keys:
                    raise ImitateError(f"{path}: episode {i} has observation keys {sorted(ep.obs)}, "
                                       f"episode 0 has {sorted(keys)}")
                names.append(f"demo_{i}")
                total += len(ep)
                group = data.create_group(names[-1])
                group.attrs["num_samples"] = len(ep)
                for k, v in ep.attrs.items():
                    group.attrs[k] = v
                arrays = {**ep.arrays(), **ep.extras}
                if not store_next_obs:
                    arrays = {k: v for k, v in arrays.items() if not k.startswith("next_obs/")}
                for key, value in arrays.items():
                    if key.startswith(("obs/", "next_obs/")) and is_image(value.shape[1:], value.dtype):
                        group.create_dataset(key, data=value, chunks=(1, *value.shape[1:]),
                                             compression=image_filter, compression_opts=image_level)
                    else:
                        group.create_dataset(key, data=value, compression=compression)
            if not names:
                raise ImitateError(f"{path}: no episodes to write")
            data.attrs["total"] = int(total)
            masks = split_train_valid(names, valid_fraction, seed) if valid_fraction > 0 else {}
            for mask_name, members in (filter_keys or {}).items():
                unknown = sorted(set(members) - set(names))
                if unknown:
                    raise ImitateError(f"{path}: filter key {mask_name!r} names unknown demos {unknown[:5]}")
                masks[mask_name] = list(members)
            for mask_name, members in masks.items():
                f.create_dataset(f"mask/{mask_name}", data=np.array(members, dtype="S"))
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile: never clobbers
            except FileExistsError:
                raise ImitateError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it") from None
            except OSError:  # a file system without hard links
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
