"""Reading a demonstration file's structure: open, validate from metadata, describe (`DemoFileLayout`).

The layout is robomimic's (see `imitate.data.hdf5`). `scan_demo_file` checks every group, key,
attribute, shape and dtype from metadata alone and reports every problem it finds at once (see
`imitate.data.checks`); the reader (`imitate.data.reader`) then checks values (NaN, inf, integers
a promoted dtype would change) as it reads them.

Beyond robomimic's minimum: a key whose dtype differs across demos is read as the dtype that holds
them all (`imitate.data.checks.promoted_dtype`), never a narrower one; either byte order is read in
the native one; without ``next_obs`` in any demo, ``next_obs/<k>`` is derived from ``obs/<k>`` (row
t + 1 of the same demo; unknown at a demo's last step, see `EpisodeStore.next_obs_known`).

Image keys ((H, W, C), C in {1, 3}, uint8: `imitate.data.checks.is_image`) are read as they are
stored, uint8, channel last; an image-shaped key that is not one (a float (H, W, 3), C = 2 or 4, a
channel-first array, depth) is a problem naming demo and key (`imitate.data.checks.image_problem`),
and so is a resolution that changes between demos.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from imitate.data.checks import NUMERIC_KINDS, Problems, check_fields, promoted_dtype
from imitate.data.episode import STEP_FIELDS
from imitate.errors import DemoFileError

_DEMO_RE = re.compile(r"^demo_(\d+)$")
#: What h5py raises for a damaged file or object (besides its own KeyError for a missing one).
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


@dataclass(frozen=True)
class DemoFileLayout:
    """What a demonstration file holds, read from metadata without loading any step data.

    Attributes:
        path: the file.
        demo_names: demos ordered by their number.
        lengths: (E,) number of transitions per demo.
        obs_keys: observation keys (the ones selected, or all the file has).
        shapes: store key (``obs/<k>``, ``next_obs/<k>``, ``actions``, ``rewards``, ``dones``) -> per-step shape.
        dtypes: store key -> the dtype it is read as: native byte order, promoted where demos differ
            (see `imitate.data.checks.promoted_dtype`).
        env_args: the parsed ``env_args`` attribute, or None when the file has none.
        filter_keys: mask name -> demo names (each once).
        demo_attrs: per-demo attributes besides ``num_samples``.
        has_states: whether every demo stores simulator ``states``.
        next_obs_derived: the file has no ``next_obs``: it is derived from ``obs`` (row t + 1 of the
            same demo), and unknown at each demo's last step.
        stored_dtypes: store key -> the distinct dtypes its demos store, for keys read as a promoted dtype.
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
    next_obs_derived: bool = False
    stored_dtypes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def store_keys(self) -> list[str]:
        """The per-step keys an EpisodeStore holds, in a fixed order."""
        return ([f"obs/{k}" for k in self.obs_keys] + [f"next_obs/{k}" for k in self.obs_keys]
                + list(STEP_FIELDS))

    @property
    def file_keys(self) -> list[str]:
        """The store keys read from the file (derived ``next_obs`` is not)."""
        return [k for k in self.store_keys if not (self.next_obs_derived and k.startswith("next_obs/"))]


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
    except H5_ERRORS as e:
        raise DemoFileError(f"{path}: cannot be opened as HDF5 ({e})") from None
    try:
        yield f
    finally:
        f.close()


def scan_demo_file(path: str | os.PathLike, obs_keys: Sequence[str] | None = None) -> DemoFileLayout:
    """Validate a file's structure from metadata and describe it.

    Every problem found is reported at once (`imitate.data.checks.Problems`): groups and arrays in
    the wrong place, missing or unreadable keys, attributes of the wrong type (``num_samples``,
    ``env_args``, masks), row counts that disagree within a demo (``states`` included), per-step
    shapes that disagree across demos or between ``obs/<k>`` and ``next_obs/<k>``, an observation
    key that some demos lack, width-0 actions or observations, non-numeric dtypes, image-shaped keys
    that are not uint8 (H, W, 1 or 3) images.

    Args:
        path: the demonstration file.
        obs_keys: the observation keys to use; default: every key the demos hold.

    Raises:
        DemoFileError: listing every problem, each naming the demo and the key.
    """
    name = str(path)
    with open_demo_file(path) as f:
        try:
            return _scan(f, name, obs_keys)
        except DemoFileError:
            raise
        except H5_ERRORS as e:  # damage that the checks did not meet on their way
            raise DemoFileError(f"{name}: cannot be read ({type(e).__name__}: {e}); "
                                f"the file may be truncated or damaged") from None


def _scan(f: h5py.File, name: str, obs_keys: Sequence[str] | None) -> DemoFileLayout:
    problems = Problems(name)
    data, groups, named = _demo_groups(f, name, problems)
    env_args = _env_args(data, problems)
    filter_keys = _masks(f, named, problems)
    obs_groups = {d: _entry(problems, g, "obs", d, h5py.Group) for d, g in groups.items()}
    keys_of = {d: _names(problems, o, d, "obs/") for d, o in obs_groups.items() if o is not None}
    all_keys = list(dict.fromkeys(k for keys in keys_of.values() for k in keys))
    selected = _select_obs_keys(problems, obs_keys, all_keys, keys_of, next(iter(groups)))
    derived = not any("next_obs" in g for g in groups.values())
    lengths, demo_attrs, has_states, per_demo = [], [], True, {}
    for d, g in groups.items():
        fields = per_demo[d] = _demo_fields(problems, d, g, selected, keys_of, derived)
        n = check_fields(problems, d, fields)
        _check_num_samples(problems, d, g, n)
        for k in selected:
            a, b = fields.get(f"obs/{k}"), fields.get(f"next_obs/{k}")
            if a is not None and b is not None and a[0][1:] != b[0][1:]:
                problems.add(d, f"next_obs/{k} has per-step shape {b[0][1:]} but obs/{k} has {a[0][1:]}")
        has_states = has_states and "states" in fields
        lengths.append(n)
        demo_attrs.append(_scalar_attrs(problems, d, g.attrs))
    shapes, dtypes, stored = _across_demos(problems, per_demo)
    if derived:
        for k in selected:
            if f"obs/{k}" in shapes:
                shapes[f"next_obs/{k}"], dtypes[f"next_obs/{k}"] = shapes[f"obs/{k}"], dtypes[f"obs/{k}"]
    problems.raise_if_any()
    return DemoFileLayout(name, list(groups), np.asarray(lengths, dtype=np.int64), selected, shapes, dtypes, env_args,
                          filter_keys, demo_attrs, has_states, derived, stored)


# -- the pieces of the scan: each adds what it finds to `problems` and carries on --------------------
_DEMO_HINT = "a group holding obs/, actions, rewards, dones"


def _describe(item: Any) -> str:
    return "a group" if isinstance(item, h5py.Group) else "an array" if isinstance(item, h5py.Dataset) else \
        f"a {type(item).__name__}"


def _entry(problems: Problems, group: h5py.Group, key: str, where: str | None, kind: type) -> Any:
    """``group[key]`` when it is a ``kind`` (h5py.Group or h5py.Dataset); else None, with a problem."""
    try:
        item = group.get(key)
    except H5_ERRORS as e:
        problems.add(where, f"cannot read '{key}' ({e})")
        return None
    if item is None:
        problems.add(where, f"missing {'group' if kind is h5py.Group else 'key'} '{key}'")
    elif not isinstance(item, kind):
        problems.add(where, f"'{key}' is {_describe(item)}; expected {'a group' if kind is h5py.Group else 'an array'}")
    else:
        return item
    return None


def _names(problems: Problems, group: h5py.Group, where: str | None, prefix: str) -> list[str]:
    """The names in a group; one that is not UTF-8 (h5py gives it as bytes) is a problem, and left out."""
    names = list(group.keys())
    for name in names:
        if not isinstance(name, str):
            problems.add(where, f"{prefix}{name!r} has a name that is not UTF-8 text")
    return [name for name in names if isinstance(name, str)]


def _demo_groups(f: h5py.File, name: str, problems: Problems) -> tuple[h5py.Group, dict[str, h5py.Group], set[str]]:
    """The group ``data``, its demo groups ordered by number, and every demo name it holds (usable or not)."""
    data = f.get("data")
    if not isinstance(data, h5py.Group):
        what = "missing group 'data'" if data is None else f"'data' is {_describe(data)}, not a group"
        raise DemoFileError(f"{name}: {what} (expected robomimic's layout: data/demo_<n>/...)")
    numbered: dict[int, str] = {}
    named = set()
    for key in _names(problems, data, None, "data/"):
        m = _DEMO_RE.match(key)
        if m is None:
            problems.add(None, f"unexpected entry data/{key} (demo groups are named demo_<n>)")
            continue
        named.add(key)
        number = int(m.group(1))
        item = data.get(key)
        if not isinstance(item, h5py.Group):
            problems.add(key, f"is {_describe(item)}; expected {_DEMO_HINT}")
        elif number in numbered:
            problems.add(key, f"has the same number as {numbered[number]}")
        else:
            numbered[number] = key
    if not numbered:
        problems.add(None, "group 'data' holds no demos")
        raise problems.error()
    return data, {numbered[n]: data[numbered[n]] for n in sorted(numbered)}, named


def _env_args(data: h5py.Group, problems: Problems) -> dict[str, Any] | None:
    """The parsed ``data.attrs['env_args']`` (None when absent or unusable)."""
    what = "data.attrs['env_args']"
    try:
        raw = data.attrs.get("env_args")
    except H5_ERRORS as e:
        problems.add(None, f"{what} cannot be read ({e})")
        return None
    if raw is None:
        return None
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).decode("utf-8", "replace")
    if not isinstance(raw, str):
        problems.add(None, f"{what} is {_short(raw)}; expected a JSON string")
        return None
    try:
        env_args = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        problems.add(None, f"{what} is not valid JSON ({e})")
        return None
    if not isinstance(env_args, dict) or "env_name" not in env_args:
        problems.add(None, f"{what} must be a JSON object with 'env_name'")
        return None
    if not isinstance(env_args["env_name"], str) or not env_args["env_name"]:
        problems.add(None, f"{what}: env_name is {env_args['env_name']!r}; expected an environment id")
    kwargs = env_args.get("env_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        problems.add(None, f"{what}: env_kwargs is a JSON {type(kwargs).__name__}; expected an object "
                           f"(keyword arguments of the environment)")
    kind = env_args.get("type")
    if kind is not None and (not isinstance(kind, int) or isinstance(kind, bool)):
        problems.add(None, f"{what}: type is {kind!r}; expected robomimic's integer env type (2: gymnasium)")
    return env_args


def _masks(f: h5py.File, demos: set[str], problems: Problems) -> dict[str, list[str]]:
    """``mask/<name>`` -> demo names (duplicates dropped, order kept)."""
    if "mask" not in f:
        return {}
    mask = _entry(problems, f, "mask", None, h5py.Group)
    out: dict[str, list[str]] = {}
    for mask_name in _names(problems, mask, None, "mask/") if mask is not None else ():
        what = f"mask/{mask_name}"
        ds = _entry(problems, f, what, None, h5py.Dataset)
        if ds is None:
            continue
        try:
            values = np.asarray(ds[()])
        except H5_ERRORS as e:
            problems.add(None, f"{what} cannot be read ({e})")
            continue
        if values.ndim != 1 or not all(isinstance(m, (bytes, str)) for m in values.tolist()):
            problems.add(None, f"{what} holds {values.dtype} of shape {values.shape}; expected a list of demo names")
            continue
        members = [m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in values.tolist()]
        missing = sorted(set(members) - demos)
        if missing:
            problems.add(None, f"{what} names demos the file lacks: {missing[:5]}"
                               + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        out[mask_name] = list(dict.fromkeys(members))
    return out


def _select_obs_keys(problems: Problems, obs_keys: Sequence[str] | None, all_keys: list[str],
                     keys_of: dict[str, list[str]], first: str) -> list[str]:
    if obs_keys is None:
        if not all_keys and keys_of:
            problems.add(first, "group 'obs' is empty")
        return all_keys
    obs_keys = list(dict.fromkeys(obs_keys))
    unknown = [k for k in obs_keys if k not in all_keys]
    if unknown:
        problems.add(None, f"no observation key(s) {unknown}; the file has {all_keys}")
    if not obs_keys:
        problems.add(None, "no observation keys selected")
    return [k for k in obs_keys if k in all_keys]


def _demo_fields(problems: Problems, d: str, g: h5py.Group, selected: list[str], keys_of: dict[str, list[str]],
                 derived: bool) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every per-step array of one demo that exists as an array."""
    keys = []
    if d in keys_of:
        for k in selected:
            if k in keys_of[d]:
                keys.append(f"obs/{k}")
            else:
                other = next(o for o, ks in keys_of.items() if k in ks)
                problems.add(d, f"missing key 'obs/{k}' ({other} has it)")
    if not derived and _entry(problems, g, "next_obs", d, h5py.Group) is not None:
        keys += [f"next_obs/{k}" for k in selected]
    keys += [*STEP_FIELDS, *(["states"] if "states" in g else [])]
    fields = {}
    for key in keys:
        ds = _entry(problems, g, key, d, h5py.Dataset)
        if ds is None:
            continue
        try:
            shape, dtype = ds.shape, ds.dtype
        except H5_ERRORS as e:
            problems.add(d, f"cannot read the shape of {key} ({e})")
            continue
        if shape is None:
            problems.add(d, f"{key} holds no data (an empty dataspace)")
        else:
            fields[key] = (tuple(shape), dtype)
    return fields


def _check_num_samples(problems: Problems, d: str, g: h5py.Group, n: int | None) -> None:
    try:
        raw = g.attrs.get("num_samples")
    except H5_ERRORS as e:
        problems.add(d, f"attrs['num_samples'] cannot be read ({e})")
        return
    if raw is None:
        return
    value = np.asarray(raw)
    if value.size != 1 or value.dtype.kind not in "iuf" or not float(value.reshape(-1)[0]).is_integer():
        problems.add(d, f"attrs['num_samples'] is {_short(raw)}; expected an integer (the demo's number of steps)")
    elif n is not None and int(value.reshape(-1)[0]) != n:
        problems.add(d, f"attrs['num_samples'] is {int(value.reshape(-1)[0])} but actions has {n} rows")


def _across_demos(problems: Problems, per_demo: dict[str, dict[str, tuple[tuple[int, ...], np.dtype]]]):
    """Per-step shapes (which must agree across demos) and dtypes (promoted where demos differ) of each key."""
    shapes: dict[str, tuple[int, ...]] = {}
    first: dict[str, str] = {}
    stored: dict[str, set[np.dtype]] = {}
    for d, fields in per_demo.items():
        for key, (shape, dtype) in fields.items():
            if key == "states" or np.dtype(dtype).kind not in NUMERIC_KINDS or not shape:
                continue
            step = () if key in ("rewards", "dones") else shape[1:]
            if key not in shapes:
                shapes[key], first[key] = step, d
            elif shapes[key] != step and not key.startswith("next_obs/"):  # next_obs/<k> is checked against obs/<k>
                problems.add(d, f"{key} has per-step shape {step} but {first[key]} has {shapes[key]}")
            stored.setdefault(key, set()).add(np.dtype(dtype).newbyteorder("="))
    dtypes = {key: promoted_dtype(s) for key, s in stored.items()}
    promoted = {key: tuple(sorted(str(t) for t in s)) for key, s in stored.items() if len(s) > 1}
    return shapes, dtypes, promoted


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return f"{type(value).__name__} {text if len(text) <= limit else text[:limit] + '...'}"


def _scalar_attrs(problems: Problems, d: str, attrs: h5py.AttributeManager) -> dict[str, Any]:
    """A demo's scalar attributes besides ``num_samples`` (others are skipped)."""
    out = {}
    try:
        items = list(attrs.items())
    except H5_ERRORS as e:
        problems.add(d, f"attributes cannot be read ({e})")
        return out
    for k, v in items:
        if k == "num_samples" or not isinstance(k, str):  # h5py gives a name that is not UTF-8 as bytes
            continue
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (str, int, float, bool)):
            out[k] = v
    return out
