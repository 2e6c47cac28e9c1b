"""Property-based: generated demonstration files, valid and malformed, against the reader and `imitate data info`.

Each case writes a small valid file in robomimic's layout (1-3 demos of 1-4 steps, various dtypes,
shapes and optional parts), applies mutations that keep it valid (big-endian arrays, a dtype that
differs in one demo, a dotted key, per-step shapes (d, 1), no next_obs, gaps in the demo numbers,
compression, ...), then mutations that break it (a key dropped, retyped or resized, NaN, wrong
attributes, a group where an array belongs and the reverse, width 0, image-shaped keys that are not
uint8 images, truncated or
altered bytes, ...). For every case:

- nothing but an ImitateError escapes `load_demo_file` (in memory and lazy) or ``imitate data info``;
- an error names the file;
- a file broken by a mutation that must be refused is refused, in both modes and by ``data info``;
- a valid file loads in both modes with the values written, dtype for dtype: a key's dtype is the
  one its demos store, or NumPy's promotion of theirs where demos differ (``np.result_type``:
  int64 and float32 -> float64; see `imitate.data.checks.promoted_dtype`), in native byte order;
  without next_obs, ``next_obs`` at step t is ``obs`` at t + 1 of the same demo.

Altered bytes (``flip``) may leave a file readable with other values (HDF5 keeps no checksums):
those cases are held only to the first two points. Cases with altered or truncated bytes are read in
a forked process: libhdf5 itself can spin forever on some damaged files (HDFGroup/hdf5#1707, met
here on a damaged global heap behind a string attribute), which no reader above it can prevent; such
a case counts as "hang" instead of stopping the run.

The run is seeded (the same cases every run); ``IMITATE_FUZZ_RANDOM=1`` draws fresh ones and
``IMITATE_FUZZ_EXAMPLES=N`` sets their number.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import time
from collections import Counter

import h5py
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from imitate.cli import main  # noqa: E402
from imitate.data import WindowSampler, load_demo_file  # noqa: E402
from imitate.errors import ImitateError  # noqa: E402

EXAMPLES = int(os.environ.get("IMITATE_FUZZ_EXAMPLES", "500"))
RANDOM = bool(os.environ.get("IMITATE_FUZZ_RANDOM"))


# -- the valid base file --------------------------------------------------------------------------
@st.composite
def base_specs(draw):
    n = draw(st.integers(1, 3))
    keys = draw(st.lists(st.sampled_from(["pos", "goal", "vel"]), min_size=1, max_size=2, unique=True))
    return {
        "seed": draw(st.integers(0, 2**31 - 1)),
        "lengths": draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)),
        "shapes": {k: draw(st.sampled_from([(1,), (2,), (3,), (2, 2)])) for k in keys},
        "obs_dtypes": {k: draw(st.sampled_from(["float32", "float64", "float16", "int32", "int64", "uint8"]))
                       for k in keys},
        "action_dim": draw(st.integers(1, 3)),
        "action_dtype": draw(st.sampled_from(["float32", "float64"])),
        "dones_dtype": draw(st.sampled_from(["uint8", "bool", "int64", "float32"])),
        "rewards_column": draw(st.booleans()),   # rewards stored (T, 1)
        "num_samples": draw(st.booleans()),
        "env_args": draw(st.booleans()),
        "masks": draw(st.booleans()),
        "states": draw(st.booleans()),
        "compression": draw(st.sampled_from([None, "gzip"])),
    }


def _values(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    low = 0 if dtype.kind == "u" else -50
    return rng.integers(low, 200 if dtype.kind == "u" else 50, size=shape).astype(dtype)


def write_base(path, spec) -> None:
    rng = np.random.default_rng(spec["seed"])
    kw = {"compression": spec["compression"]}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        names = [f"demo_{i}" for i in range(len(spec["lengths"]))]
        for name, n in zip(names, spec["lengths"]):
            g = data.create_group(name)
            for k, shape in spec["shapes"].items():
                seq = _values(rng, (n + 1, *shape), spec["obs_dtypes"][k])
                g.create_dataset(f"obs/{k}", data=seq[:-1], **kw)
                g.create_dataset(f"next_obs/{k}", data=seq[1:], **kw)
            g.create_dataset("actions", data=_values(rng, (n, spec["action_dim"]), spec["action_dtype"]), **kw)
            rewards = rng.normal(size=(n, 1) if spec["rewards_column"] else n)
            g.create_dataset("rewards", data=rewards, **kw)
            g.create_dataset("dones", data=np.r_[np.zeros(n - 1), 1].astype(spec["dones_dtype"]), **kw)
            if spec["states"]:
                g.create_dataset("states", data=rng.normal(size=(n, 3)), **kw)
            if spec["num_samples"]:
                g.attrs["num_samples"] = n
        data.attrs["total"] = sum(spec["lengths"])
        if spec["env_args"]:
            data.attrs["env_args"] = json.dumps({"env_name": "imitate/ForkedPath-v0", "type": 2, "env_kwargs": {}})
        if spec["masks"]:
            f.create_dataset("mask/train", data=np.array(names[:max(1, len(names) - 1)], dtype="S"))
            f.create_dataset("mask/valid", data=np.array(names[len(names) - 1:] if len(names) > 1 else [], dtype="S"))


# -- mutations: each takes (file, rng) and returns whether it applied ------------------------------
def _demos(f) -> list[str]:
    data = f.get("data")
    return [d for d in data if isinstance(data[d], h5py.Group)] if isinstance(data, h5py.Group) else []


def _datasets(f, where=lambda key: True) -> list[str]:
    """Paths of the per-step arrays of every demo (obs, next_obs, actions, rewards, dones, states)."""
    out = []
    for d in _demos(f):
        def visit(name, item):
            if isinstance(item, h5py.Dataset) and where(name):
                out.append(f"data/{d}/{name}")
        f[f"data/{d}"].visititems(visit)
    return out


def _replace(f, path, value) -> None:
    if path in f:
        del f[path]
    f[path] = value


def _pick(rng, items):
    return items[int(rng.integers(len(items)))] if items else None


def _obs_keys(f, d, sub="obs") -> list[str]:
    g = f[f"data/{d}"].get(sub)
    return list(g) if isinstance(g, h5py.Group) else []


def _rows(f, d) -> int:
    return f[f"data/{d}/actions"].shape[0]


def v_big_endian(f, rng):
    path = _pick(rng, _datasets(f))
    if path is None:
        return False
    v = f[path][()]
    _replace(f, path, v.astype(v.dtype.newbyteorder(">")))
    return True


def v_dtype_in_one_demo(f, rng):
    """One demo stores an observation key with another dtype that holds its values exactly."""
    path = _pick(rng, _datasets(f, lambda k: k.startswith(("obs/", "next_obs/"))))
    v = f[path][()]
    exact = [t for t in ("float64", "int64", "float32") if np.array_equal(v.astype(t).astype(v.dtype), v)
             and np.dtype(t) != v.dtype and (np.dtype(t).kind == "f" or np.all(np.isfinite(v)))]
    if not exact:
        return False
    _replace(f, path, v.astype(_pick(rng, exact)))
    return True


def _rename_key(f, rng, rename) -> bool:
    """Rename one observation key that every demo has, in obs and next_obs, to ``rename(key)``."""
    demos = _demos(f)
    key = _pick(rng, _obs_keys(f, demos[0]))
    if any(key not in _obs_keys(f, d) for d in demos):
        return False
    for d in demos:
        for sub in ("obs", "next_obs"):
            if f"data/{d}/{sub}/{key}" in f:
                f.move(f"data/{d}/{sub}/{key}", f"data/{d}/{sub}/{rename(key)}")
    return True


def v_dotted_key(f, rng):
    """An observation key with a dot in its name."""
    return _rename_key(f, rng, lambda key: f"{key}.x")


def v_trailing_one(f, rng):
    """A key's per-step shape (d,) becomes (d, 1) in every demo."""
    demos = _demos(f)
    key = _pick(rng, _obs_keys(f, demos[0]))
    paths = [f"data/{d}/{s}/{key}" for d in demos for s in ("obs", "next_obs") if f"data/{d}/{s}/{key}" in f]
    if any(f[p].ndim != 2 for p in paths):
        return False
    for p in paths:
        v = f[p][()]
        _replace(f, p, v[..., None])
    return True


def v_no_next_obs(f, rng):
    for d in _demos(f):
        if "next_obs" in f[f"data/{d}"]:
            del f[f"data/{d}/next_obs"]
    return True


def v_extras(f, rng):
    """Per-step extras, scalar and string attributes, a wrong ``total``: all ignored by readers."""
    for d in _demos(f):
        _replace(f, f"data/{d}/expert_in_control", np.ones(_rows(f, d), dtype=bool))
        f[f"data/{d}"].attrs["route"] = "left"
        f[f"data/{d}"].attrs["is_success"] = True
    f["data"].attrs["total"] = 12345
    return True


def v_renumber(f, rng):
    """Gaps in the demo numbers (demo_0, demo_7, ...); masks follow."""
    demos = sorted(_demos(f), key=lambda d: int(d[5:]))
    new = {d: f"demo_{int(d[5:]) * 7 + 3}" for d in demos}
    for d in reversed(demos):
        f.move(f"data/{d}", f"data/{new[d]}")
    mask = f.get("mask")
    if isinstance(mask, h5py.Group):
        for name in list(mask):
            members = [new.get(m.decode(), m.decode()) for m in mask[name][()]]
            _replace(f, f"mask/{name}", np.array(members, dtype="S"))
    return True


def v_drop_optional(f, rng):
    for d in _demos(f):
        f[f"data/{d}"].attrs.pop("num_samples", None)
    f["data"].attrs.pop("env_args", None)
    if "mask" in f:
        del f["mask"]
    return True


def v_rechunk(f, rng):
    path = _pick(rng, _datasets(f))
    v = f[path][()]
    del f[path]
    f.create_dataset(path, data=v, chunks=True, compression="gzip", shuffle=True, fletcher32=True)
    return True


def v_env_args_bytes(f, rng):
    f["data"].attrs["env_args"] = np.bytes_(json.dumps({"env_name": "imitate/ForkedPath-v0", "env_kwargs": None}))
    return True


def v_duplicate_mask_entries(f, rng):
    demos = _demos(f)
    _replace(f, "mask/train", np.array(demos + demos[:1], dtype="S"))
    return True


def v_drop_a_key_everywhere(f, rng):
    demos = _demos(f)
    keys = _obs_keys(f, demos[0])
    if len(keys) < 2:
        return False
    key = _pick(rng, keys)
    for d in demos:
        for s in ("obs", "next_obs"):
            if f"data/{d}/{s}/{key}" in f:
                del f[f"data/{d}/{s}/{key}"]
    return True


def v_unicode_key(f, rng):
    """An observation key named with spaces and non-ASCII letters."""
    return _rename_key(f, rng, lambda key: f"größe {key}")


def v_one_value_per_step(f, rng):
    """A key of per-step shape (1,) stored as (T,)."""
    paths = [p for p in _datasets(f, lambda k: k.startswith(("obs/", "next_obs/"))) if f[p].shape[1:] == (1,)]
    key = _pick(rng, sorted({p.split("/", 3)[3] for p in paths}))
    if key is None or any(f[p].shape[1:] != (1,) for p in _datasets(f, lambda k: k.endswith("/" + key))):
        return False
    for p in _datasets(f, lambda k: k.split("/", 1)[-1] == key and k.startswith(("obs/", "next_obs/"))):
        _replace(f, p, f[p][()].reshape(-1))
    return True


def v_hard_link(f, rng):
    """Two demos share one actions array (a hard link), as files deduplicated by some tools do."""
    demos = _demos(f)
    same = [(a, b) for a in demos for b in demos if a < b and _rows(f, a) == _rows(f, b)]
    if not same:
        return False
    a, b = same[0]
    del f[f"data/{b}/actions"]
    f[f"data/{b}/actions"] = f[f"data/{a}/actions"]
    return True


VALID = [v_unicode_key, v_one_value_per_step, v_hard_link, v_big_endian, v_dtype_in_one_demo, v_dotted_key, v_trailing_one, v_no_next_obs, v_extras, v_renumber,
         v_drop_optional, v_rechunk, v_env_args_bytes, v_duplicate_mask_entries, v_drop_a_key_everywhere]


def i_drop_key(f, rng):
    """A required array or group of one demo is missing (an observation key only where another demo has it)."""
    demos = _demos(f)
    d = _pick(rng, demos)
    options = ["actions", "rewards", "dones", "obs"] + [f"next_obs/{k}" for k in _obs_keys(f, d, "next_obs")]
    options += [f"obs/{k}" for k in _obs_keys(f, d) if any(k in _obs_keys(f, o) for o in demos if o != d)]
    if "next_obs" in f[f"data/{d}"] and any("next_obs" in f[f"data/{o}"] for o in demos if o != d):
        options.append("next_obs")
    path = f"data/{d}/{_pick(rng, options)}"
    if path not in f:
        return False
    del f[path]
    return True


def i_retype(f, rng):
    """An array holds strings, complex numbers or records instead of numbers."""
    path = _pick(rng, _datasets(f, lambda k: not k.startswith("states") and "expert" not in k))
    n = f[path].shape[0] if f[path].shape else 1
    kind = int(rng.integers(4))
    value = [np.array([b"x"] * n), np.zeros(n, np.complex64), np.zeros(n, dtype=[("a", "f4"), ("b", "i4")]),
             np.array(["y"] * n, dtype=h5py.string_dtype())][kind]
    del f[path]
    f.create_dataset(path, data=value)
    return True


def i_resize(f, rng):
    """One array of one demo gets another number of rows than its actions."""
    path = _pick(rng, _datasets(f, lambda k: k.split("/")[0] in ("obs", "next_obs", "rewards", "dones", "states")))
    if path is None:
        return False
    t = _rows(f, path.split("/")[1])
    v = f[path][()]
    rows = max(0, t + int(rng.choice([-1, 1, 2])))
    _replace(f, path, np.resize(v, (rows, *v.shape[1:])))
    return True


def i_nan(f, rng):
    path = _pick(rng, _datasets(f, lambda k: k.split("/")[0] in ("obs", "next_obs", "actions", "rewards", "dones")))
    if path is None or f[path].dtype.kind != "f" or not f[path].size:
        return False
    v = f[path][()]
    v.reshape(-1)[int(rng.integers(v.size))] = rng.choice([np.nan, np.inf, -np.inf])
    _replace(f, path, v)
    return True


def i_attrs(f, rng):
    """num_samples or env_args of the wrong type or value."""
    d = _pick(rng, _demos(f))
    choice = int(rng.integers(8))
    t = _rows(f, d) if "actions" in f[f"data/{d}"] and isinstance(f[f"data/{d}/actions"], h5py.Dataset) else 1
    attrs, data = f[f"data/{d}"].attrs, f["data"].attrs
    [lambda: attrs.__setitem__("num_samples", t + 1), lambda: attrs.__setitem__("num_samples", "many"),
     lambda: attrs.__setitem__("num_samples", np.array([t, t])), lambda: attrs.__setitem__("num_samples", t + 0.5),
     lambda: data.__setitem__("env_args", "{not json"), lambda: data.__setitem__("env_args", json.dumps([1, 2])),
     lambda: data.__setitem__("env_args", json.dumps({"env_name": "x", "env_kwargs": [1]})),
     lambda: data.__setitem__("env_args", json.dumps({"env_name": 7}))][choice]()
    return True


def i_swap(f, rng):
    """A group where an array belongs, or an array where a group belongs."""
    d = _pick(rng, _demos(f))
    options = [f"data/{d}", f"data/{d}/obs", f"data/{d}/actions", "data"] + (["mask"] if "mask" in f else [])
    options += [f"data/{d}/obs/{k}" for k in _obs_keys(f, d)]
    options += ["mask/train"] if isinstance(f.get("mask"), h5py.Group) and "train" in f["mask"] else []
    options += [f"data/{d}/next_obs"] if "next_obs" in f[f"data/{d}"] else []
    path = _pick(rng, options)
    if isinstance(f.get(path), h5py.Group):
        _replace(f, path, np.zeros((2, 2)))
    else:
        if path in f:
            del f[path]
        f.create_group(path).create_dataset("x", data=np.zeros(2))  # not empty: an empty mask group is valid
    return True


def i_width_zero(f, rng):
    demos = _demos(f)
    if rng.integers(2):
        for d in demos:
            _replace(f, f"data/{d}/actions", np.zeros((_rows(f, d), 0)))
        return True
    key = _pick(rng, _obs_keys(f, demos[0]))
    for d in demos:
        for s in ("obs", "next_obs"):
            if s in f[f"data/{d}"]:
                _replace(f, f"data/{d}/{s}/{key}", np.zeros((_rows(f, d), 0)))
    return True


def i_inexact_promotion(f, rng):
    """One demo stores integers a float64 cannot hold while another demo stores floats."""
    demos = _demos(f)
    key = _pick(rng, _obs_keys(f, demos[0]))
    if len(demos) < 2 or any(key not in _obs_keys(f, d) for d in demos):
        return False
    _replace(f, f"data/{demos[1]}/obs/{key}", f[f"data/{demos[1]}/obs/{key}"][()].astype(np.float32))
    v = np.full(f[f"data/{demos[0]}/obs/{key}"].shape, 2**60 + 1, dtype=np.int64)
    _replace(f, f"data/{demos[0]}/obs/{key}", v)
    return True


def i_image_key(f, rng):
    """An image-shaped key that is no image: 2 or 4 channels, or float pixels (uint8 C in {1, 3} is valid)."""
    dtype, c = [(np.uint8, 2), (np.uint8, 4), (np.float32, 3), (np.float32, 1)][int(rng.integers(4))]
    for d in _demos(f):
        for s in ("obs", "next_obs"):
            if s in f[f"data/{d}"]:
                _replace(f, f"data/{d}/{s}/camera", np.zeros((_rows(f, d), 4, 4, c), dtype))
    return True


def i_foreign_entry(f, rng):
    f.create_group("data/trajectory_0")
    return True


def i_mask_names_missing_demo(f, rng):
    _replace(f, f"mask/{_pick(rng, ['train', 'valid', 'extra'])}", np.array([b"demo_99"]))
    return True


def i_shape_across_demos(f, rng):
    demos = _demos(f)
    if len(demos) < 2:
        return False
    d, key = demos[-1], _pick(rng, _obs_keys(f, demos[-1]))
    for s in ("obs", "next_obs"):
        if f"data/{d}/{s}/{key}" in f:
            v = f[f"data/{d}/{s}/{key}"][()]
            _replace(f, f"data/{d}/{s}/{key}", np.concatenate([v.reshape(len(v), -1)] * 2, axis=1))
    return True


def i_next_obs_width(f, rng):
    d = _pick(rng, _demos(f))
    key = _pick(rng, _obs_keys(f, d, "next_obs"))
    if key is None:
        return False
    v = f[f"data/{d}/next_obs/{key}"][()]
    _replace(f, f"data/{d}/next_obs/{key}", np.concatenate([v.reshape(len(v), -1)] * 2, axis=1))
    return True


def i_no_demos(f, rng):
    for d in list(f["data"]):
        del f[f"data/{d}"]
    return True


def i_odd_dataspace(f, rng):
    """An array with no dataspace, a scalar, or rewards of two columns."""
    d = _pick(rng, _demos(f))
    key = _pick(rng, ["actions", "rewards", "dones"])
    choice = int(rng.integers(3))
    if choice == 0:
        del f[f"data/{d}/{key}"]
        f.create_dataset(f"data/{d}/{key}", data=h5py.Empty("f4"))
    elif choice == 1:
        _replace(f, f"data/{d}/{key}", np.float32(1.0))
    else:
        _replace(f, f"data/{d}/rewards", np.zeros((_rows(f, d), 2)))
    return True


def i_empty_demo(f, rng):
    d = _pick(rng, _demos(f))
    for path in _datasets(f, lambda k: True):
        if path.startswith(f"data/{d}/"):
            v = f[path][()]
            _replace(f, path, v[:0])
    return True


def i_dangling_link(f, rng):
    d = _pick(rng, _demos(f))
    key = _pick(rng, ["actions", *[f"obs/{k}" for k in _obs_keys(f, d)]])
    del f[f"data/{d}/{key}"]
    f[f"data/{d}/{key}"] = h5py.SoftLink("/nowhere/at/all") if rng.integers(2) else \
        h5py.ExternalLink("missing-file.hdf5", "/x")
    return True


def i_same_number(f, rng):
    """demo_00 beside demo_0: two demos with one number."""
    d = _pick(rng, _demos(f))
    f.copy(f[f"data/{d}"], f"data/demo_0{d[5:]}")
    return True


def i_nested_obs(f, rng):
    d = _pick(rng, _demos(f))
    f[f"data/{d}/obs/arm/joints"] = np.zeros((_rows(f, d), 2))
    return True


def i_mask_bytes(f, rng):
    """A mask entry that is not UTF-8, or names nothing."""
    _replace(f, "mask/train", np.array([b"\xff\xfe", b""]))
    return True


def i_huge(f, rng):
    """A demo that claims 2**50 steps (chunked arrays never written: the file stays small)."""
    d = _pick(rng, _demos(f))
    for path in _datasets(f, lambda k: k.split("/")[0] in ("obs", "next_obs", "actions", "rewards", "dones")):
        if path.startswith(f"data/{d}/"):
            shape, dtype = f[path].shape, f[path].dtype
            del f[path]
            f.create_dataset(path, shape=(2**50, *shape[1:]), dtype=dtype, chunks=True)
    return True


def i_name_not_utf8(f, rng):
    """A name that is not UTF-8 (h5py gives it as bytes): an observation key, a data entry or a mask."""
    d = _pick(rng, _demos(f))
    path = _pick(rng, [f"data/{d}/obs/".encode() + b"\xfepos", b"data/\xfd", b"mask/\xfd"])
    f[path] = np.zeros((_rows(f, d), 1))
    return True


INVALID = [i_name_not_utf8, i_huge, i_same_number, i_nested_obs, i_mask_bytes, i_drop_key, i_retype, i_resize, i_nan, i_attrs, i_swap, i_width_zero, i_inexact_promotion, i_image_key,
           i_foreign_entry, i_mask_names_missing_demo, i_shape_across_demos, i_next_obs_width, i_no_demos,
           i_odd_dataspace, i_empty_demo, i_dangling_link]


def truncate(path, rng):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:int(len(data) * rng.uniform(0.0, 0.97))])


def flip(path, rng):
    data = bytearray(open(path, "rb").read())
    for i in rng.integers(0, len(data), size=int(rng.integers(1, 9))):
        data[i] ^= int(rng.integers(1, 256))
    open(path, "wb").write(bytes(data))


# -- what a reader must do ------------------------------------------------------------------------
def expected_arrays(path) -> dict[str, dict[str, np.ndarray]]:
    """The values written, read back with h5py alone: demo -> store key -> (T, ...) array."""
    with h5py.File(path, "r") as f:
        demos = sorted(f["data"], key=lambda d: int(d[5:]))
        keys = list(f[f"data/{demos[0]}/obs"])
        derived = "next_obs" not in f[f"data/{demos[0]}"]
        out = {}
        for d in demos:
            g = f[f"data/{d}"]
            arrays = {f"obs/{k}": g[f"obs/{k}"][()] for k in keys}
            arrays.update({k: g[k][()] for k in ("actions", "rewards", "dones")})
            arrays["rewards"], arrays["dones"] = arrays["rewards"].reshape(-1), arrays["dones"].reshape(-1)
            arrays.update({f"next_obs/{k}": g[f"next_obs/{k}"][()] for k in keys} if not derived else {})
            out[d] = arrays
    return out


def check_valid_store(store, written) -> None:
    assert store.demo_names == list(written)
    dtypes = {key: np.result_type(*{a[key].dtype.newbyteorder("=") for a in written.values()})
              for key in written[store.demo_names[0]]}
    for i, demo in enumerate(store.demo_names):
        rows = np.arange(store.episode_starts[i], store.episode_ends[i])
        for key in store.keys:
            if store.next_obs_derived and key.startswith("next_obs/"):
                obs = written[demo]["obs/" + key[9:]]
                got = store.get(key, rows[:-1])
                assert got.dtype == dtypes["obs/" + key[9:]] and np.array_equal(got, obs[1:]), (demo, key)
                assert not store.next_obs_known(rows[-1:])[0]
                continue
            got = store.get(key, rows)
            assert got.dtype == dtypes[key] and got.dtype.isnative, (demo, key, got.dtype, dtypes[key])
            assert np.array_equal(got, written[demo][key].reshape(got.shape)), (demo, key)
    WindowSampler(store, obs_horizon=2, action_horizon=3, batch_size=4).sample().to_torch()


def run_info(path, as_json: bool) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["data", "info", str(path)] + (["--json"] if as_json else []))
    return code, err.getvalue()


def read_all_ways(path, as_json: bool, written=None) -> list[tuple[str, str, str]]:
    """(reader, outcome, message) for the in-memory and lazy readers and ``imitate data info``:
    outcome "loaded", "refused" (an ImitateError) or "traceback" (any other exception)."""
    out = []
    for lazy in (False, True):
        reader = "lazy" if lazy else "memory"
        try:
            store = load_demo_file(path, lazy=lazy)
        except ImitateError as e:
            out.append((reader, "refused", str(e)))
            continue
        except Exception as e:  # noqa: BLE001  (what the test is looking for)
            out.append((reader, "traceback", f"{type(e).__name__}: {e}"))
            continue
        if written is not None:
            check_valid_store(store, written)
        if lazy:
            store.close()
        out.append((reader, "loaded", ""))
    try:
        code, err = run_info(path, as_json)
        out.append(("data info", "loaded" if code == 0 else "refused" if code == 1 else f"exit {code}", err))
    except Exception as e:  # noqa: BLE001
        out.append(("data info", "traceback", f"{type(e).__name__}: {e}"))
    return out


def read_all_ways_isolated(path, as_json: bool, timeout: float = 10) -> list[tuple[str, str, str]]:
    """`read_all_ways` in a forked process: HDF5 itself can loop forever or crash on altered bytes (its
    global heap decoder spins on some damaged files, HDFGroup/hdf5#1707); such a case is one outcome
    ("hang" or "crash"), not the end of the test run."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=lambda: send.send(read_all_ways(path, as_json)), daemon=True)
    child.start()
    send.close()
    try:
        if receive.poll(timeout):
            return receive.recv()
        return [("process", "hang", f"no answer in {timeout:.0f} s")]
    except EOFError:
        return [("process", "crash", f"exit code {child.exitcode}")]
    finally:
        child.kill()
        child.join()
        receive.close()


@st.composite
def cases(draw):
    valid = draw(st.lists(st.sampled_from(VALID), max_size=3))
    n_broken = draw(st.sampled_from([0, 1, 1, 1, 1, 2, 2]))
    broken = draw(st.lists(st.sampled_from(INVALID), min_size=n_broken, max_size=n_broken))
    byte = draw(st.sampled_from([None] * 6 + [truncate, flip]))
    return draw(base_specs()), valid, broken, byte, draw(st.integers(0, 2**31 - 1)), draw(st.booleans())


def test_generated_files_never_give_a_traceback_and_valid_ones_read_exactly(tmp_path):
    record = {"cases": 0, "files": set(), "malformed": set(), "refused": set(), "valid": set(), "classes": Counter(),
              "half_done": Counter(), "outcomes": Counter()}
    start = time.perf_counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def one(case):
        spec, valid, broken, byte, seed, as_json = case
        rng = np.random.default_rng(seed)
        path = tmp_path / f"case_{record['cases']}.hdf5"
        record["cases"] += 1
        write_base(path, spec)
        applied, unsure = [], byte is flip  # unsure: held only to "no traceback, the error names the file"
        with h5py.File(path, "a") as f:
            for mutation in valid:
                if mutation(f, rng):
                    applied.append(mutation.__name__)
            for mutation in broken:
                try:
                    if mutation(f, rng):
                        applied.append(mutation.__name__)
                except Exception:  # noqa: BLE001
                    unsure = True  # an earlier mutation took away what this one changes: it may be half done
                    record["half_done"][mutation.__name__] += 1
        must_refuse = any(m.startswith("i_") for m in applied) and not unsure
        if byte is not None:
            byte(path, rng)
            applied.append(byte.__name__)
            must_refuse = must_refuse or byte is truncate
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        record["files"].add(digest)
        record["classes"].update(applied)
        written = expected_arrays(path) if not (must_refuse or unsure) else None
        outcomes = read_all_ways_isolated(path, as_json) if byte else read_all_ways(path, as_json, written)
        for reader, outcome, message in outcomes:
            record["outcomes"][outcome] += 1
            assert outcome in ("loaded", "refused", "hang", "crash"), f"{reader}: {message} ({applied})"
            assert outcome != "refused" or str(path) in message, f"{reader}: the error does not name the file: {message}"
            assert outcome != "refused" or must_refuse or unsure, f"{reader}: a valid file {applied} was refused: {message}"
            assert outcome != "loaded" or not must_refuse, f"{reader}: a malformed file {applied} was accepted"
        if must_refuse or unsure:
            record["malformed"].add(digest)
        if must_refuse:
            record["refused"].add(digest)
        if written is not None:
            record["valid"].add(digest)
        path.unlink()

    one()
    seconds = time.perf_counter() - start
    print(f"\n{record['cases']} generated cases in {seconds:.1f} s: {len(record['files'])} distinct files, "
          f"{len(record['malformed'])} malformed ({len(record['refused'])} that must be refused), "
          f"{len(record['valid'])} valid; mutations: {dict(sorted(record['classes'].items()))}; "
          f"mutations that met an earlier one's change: {dict(record['half_done'])}; "
          f"outcomes (3 readers a case): {dict(record['outcomes'])}")
    if EXAMPLES >= 500:
        assert len(record["malformed"]) >= 200 and len(record["valid"]) >= 40
        unused = {m.__name__ for m in VALID + INVALID + [truncate, flip]} - set(record["classes"])
        assert len(unused) <= 3, f"mutations that never applied: {sorted(unused)}"
