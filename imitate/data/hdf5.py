"""Demonstration files in robomimic's HDF5 layout: scan (validate), read, write.

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

`scan_demo_file` checks every group, key, shape and dtype from metadata alone; the readers in
`imitate.data.store` then check values (NaN, inf) as they read. Every problem is a `DemoFileError`
naming the file, the demo and the key.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from imitate.data.episode import STEP_FIELDS, Episode, check_fields
from imitate.errors import DemoFileError, ImitateError

_DEMO_RE = re.compile(r"^demo_(\d+)$")
GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE


@dataclass(frozen=True)
class DemoFileLayout:
    """What a demonstration file holds, read from metadata without loading any step data.

    Attributes:
        path: the file.
        demo_names: demos ordered by their number.
        lengths: (E,) number of transitions per demo.
        obs_keys: observation keys (the ones selected, or all the file has).
        shapes: file key (``obs/<k>``, ``next_obs/<k>``, ``actions``, ``rewards``, ``dones``) -> per-step shape.
        dtypes: file key -> dtype.
        env_args: the parsed ``env_args`` attribute, or None when the file has none.
        filter_keys: mask name -> demo names.
        demo_attrs: per-demo attributes besides ``num_samples``.
        has_states: whether every demo stores simulator ``states``.
    """

    path: str
    demo_names: list[str]
    lengths: np.ndarray
    obs_keys: list[str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    env_args: dict[str, Any] | None
    filter_keys: dict[str, list[str]]
    demo_attrs: list[dict[str, Any]]
    has_states: bool

    @property
    def store_keys(self) -> list[str]:
        """The per-step keys an EpisodeStore holds, in a fixed order."""
        return ([f"obs/{k}" for k in self.obs_keys] + [f"next_obs/{k}" for k in self.obs_keys]
                + list(STEP_FIELDS))


@contextlib.contextmanager
def open_demo_file(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a demonstration file for reading; a missing or non-HDF5 file is a DemoFileError."""
    path = Path(path)
    if not path.exists():
        raise DemoFileError(f"{path}: no such file")
    if path.is_dir():
        raise DemoFileError(f"{path}: is a directory, not a demonstration file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise DemoFileError(f"{path}: cannot be read ({e})") from None
    if not is_hdf5:
        raise DemoFileError(f"{path}: not an HDF5 file (expected robomimic's layout: data/demo_<n>/...)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DemoFileError(f"{path}: cannot be opened as HDF5 ({e})") from None
    try:
        yield f
    finally:
        f.close()


def _demo_names(f: h5py.File, name: str) -> list[str]:
    if "data" not in f or not isinstance(f["data"], h5py.Group):
        raise DemoFileError(f"{name}: missing group 'data' (expected robomimic's layout: data/demo_<n>/...)")
    numbered = []
    for key in f["data"].keys():
        m = _DEMO_RE.match(key)
        if m is None:
            raise DemoFileError(f"{name}: unexpected entry data/{key} (demo groups are named demo_<n>)")
        numbered.append((int(m.group(1)), key))
    if not numbered:
        raise DemoFileError(f"{name}: group 'data' holds no demos")
    return [key for _, key in sorted(numbered)]


def _dataset(group: h5py.Group, key: str, where: str) -> h5py.Dataset:
    item = group.get(key)
    if item is None:
        raise DemoFileError(f"{where}: missing key '{key}'")
    if not isinstance(item, h5py.Dataset):
        raise DemoFileError(f"{where}: '{key}' is a group; expected an array")
    return item


def _scalar_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if k == "num_samples":
            continue
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (str, int, float, bool)):
            out[k] = v
    return out


def scan_demo_file(path: str | os.PathLike, obs_keys: Sequence[str] | None = None) -> DemoFileLayout:
    """Validate a file's structure from metadata and describe it.

    Args:
        path: the demonstration file.
        obs_keys: the observation keys to use; default: every key of the first demo.

    Raises:
        DemoFileError: naming the file, demo and key, for any missing group or key, length mismatch,
            inconsistent shape or dtype across demos, empty demo, or non-numeric dtype.
    """
    name = str(path)
    with open_demo_file(path) as f:
        demos = _demo_names(f, name)
        data = f["data"]
        env_args = None
        if "env_args" in data.attrs:
            raw = data.attrs["env_args"]
            try:
                env_args = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
                raise DemoFileError(f"{name}: data.attrs['env_args'] is not valid JSON ({e})") from None
            if not isinstance(env_args, dict) or "env_name" not in env_args:
                raise DemoFileError(f"{name}: data.attrs['env_args'] must be a JSON object with 'env_name'")
        first = f"{demos[0]} in {name}"
        if "obs" not in data[demos[0]]:
            raise DemoFileError(f"{first}: missing group 'obs'")
        all_keys = list(data[demos[0]]["obs"].keys())
        if obs_keys is None:
            obs_keys = all_keys
        else:
            unknown = [k for k in obs_keys if k not in all_keys]
            if unknown:
                raise DemoFileError(f"{first}: no observation key(s) {unknown}; the file has {all_keys}")
        obs_keys = list(obs_keys)
        if not obs_keys:
            raise DemoFileError(f"{first}: group 'obs' is empty")
        keys = [f"obs/{k}" for k in obs_keys] + [f"next_obs/{k}" for k in obs_keys] + list(STEP_FIELDS)
        shapes: dict[str, tuple[int, ...]] = {}
        dtypes: dict[str, np.dtype] = {}
        lengths, demo_attrs, has_states = [], [], True
        for demo in demos:
            where = f"{demo} in {name}"
            group = data[demo]
            if not isinstance(group, h5py.Group):
                raise DemoFileError(f"{where}: expected a group")
            for sub in ("obs", "next_obs"):
                if sub not in group:
                    raise DemoFileError(f"{where}: missing group '{sub}'")
            fields = {}
            for key in keys:
                ds = _dataset(group, key, where)
                fields[key] = (ds.shape, ds.dtype)
            n = check_fields(where, fields)
            if "num_samples" in group.attrs and int(group.attrs["num_samples"]) != n:
                raise DemoFileError(
                    f"{where}: attrs['num_samples'] is {int(group.attrs['num_samples'])} but actions has {n} rows")
            for key, (shape, dtype) in fields.items():
                step_shape = tuple(shape[1:]) if key not in ("rewards", "dones") else ()
                if key not in shapes:
                    shapes[key], dtypes[key] = step_shape, np.dtype(dtype)
                elif shapes[key] != step_shape:
                    raise DemoFileError(
                        f"{where}: {key} has per-step shape {step_shape} but {demos[0]} has {shapes[key]}")
            has_states = has_states and "states" in group
            lengths.append(n)
            demo_attrs.append(_scalar_attrs(group.attrs))
        filter_keys = {}
        if "mask" in f:
            for mask_name, ds in f["mask"].items():
                try:
                    members = [m.decode("utf-8") if isinstance(m, bytes) else str(m) for m in ds[()]]
                except (TypeError, OSError, AttributeError) as e:
                    raise DemoFileError(f"{name}: mask/{mask_name} is not a list of demo names ({e})") from None
                missing = sorted(set(members) - set(demos))
                if missing:
                    raise DemoFileError(f"{name}: mask/{mask_name} names demos the file lacks: {missing[:5]}")
                filter_keys[mask_name] = members
    return DemoFileLayout(name, demos, np.asarray(lengths, dtype=np.int64), obs_keys, shapes, dtypes,
                          env_args, filter_keys, demo_attrs, has_states)


def read_demo(f: h5py.File, layout: DemoFileLayout, index: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read some per-step keys of one demo; an I/O failure is a DemoFileError naming the demo and key."""
    demo = layout.demo_names[index]
    out = {}
    for key in keys:
        try:
            out[key] = f["data"][demo][key][()]
        except (OSError, KeyError) as e:
            raise DemoFileError(f"{demo} in {layout.path}: cannot read {key} ({e})") from None
    return out


def read_extra(path: str | os.PathLike, key: str) -> list[np.ndarray]:
    """The per-step array ``key`` stored beside ``actions`` (an `Episode` extra) of every demo, in
    demo order; a demo without it is a DemoFileError naming the demo."""
    layout = scan_demo_file(path)
    with open_demo_file(path) as f:
        return [_dataset(f["data"][demo], key, f"{demo} in {layout.path}")[()] for demo in layout.demo_names]


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


def write_demo_file(path: str | os.PathLike, episodes: Sequence[Episode], env_args: dict[str, Any] | None = None,
                    *, overwrite: bool = False, valid_fraction: float = 0.1, seed: int = 0,
                    filter_keys: dict[str, Sequence[str]] | None = None, compression: str | None = None) -> Path:
    """Write episodes as ``demo_0 .. demo_{E-1}`` in robomimic's layout, atomically.

    The file is written under a temporary name in the same folder and moved into place only when
    complete, so a killed write never leaves a partial file under ``path``. An existing ``path`` is
    kept unless ``overwrite``.

    Args:
        path: the output file.
        episodes: the demonstrations, written in order.
        env_args: e.g. ``make_env_args("imitate/ForkedPath-v0", {...})``; stored as JSON.
        overwrite: replace an existing file.
        valid_fraction: share of demos in the ``valid`` filter key (the rest in ``train``); 0 for none.
        seed: seed of the train/valid split.
        filter_keys: further masks, name -> demo names.
        compression: an h5py compression filter (e.g. "gzip"), or None.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ImitateError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    if not episodes:
        raise ImitateError(f"{path}: no episodes to write")
    keys = set(episodes[0].obs)
    for i, ep in enumerate(episodes):
        if set(ep.obs) != keys:
            raise ImitateError(f"{path}: episode {i} has observation keys {sorted(ep.obs)}, "
                               f"episode 0 has {sorted(keys)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"demo_{i}" for i in range(len(episodes))]
    masks = split_train_valid(names, valid_fraction, seed) if valid_fraction > 0 else {}
    for mask_name, members in (filter_keys or {}).items():
        unknown = sorted(set(members) - set(names))
        if unknown:
            raise ImitateError(f"{path}: filter key {mask_name!r} names unknown demos {unknown[:5]}")
        masks[mask_name] = list(members)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions of an ordinary new file, not mkstemp's 0600
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            data.attrs["total"] = int(sum(len(ep) for ep in episodes))
            if env_args is not None:
                data.attrs["env_args"] = json.dumps(env_args)
            for demo, ep in zip(names, episodes):
                group = data.create_group(demo)
                group.attrs["num_samples"] = len(ep)
                for k, v in ep.attrs.items():
                    group.attrs[k] = v
                for key, value in {**ep.arrays(), **ep.extras}.items():
                    group.create_dataset(key, data=value, compression=compression)
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
