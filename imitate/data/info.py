"""A full check and a summary of a demonstration file (``imitate data info``).

Image keys (uint8 (H, W, C)) are listed with their resolution and the bytes their datasets take on
disk (compressed) against their raw size, over ``obs`` and ``next_obs`` of every demo.

Datasets in other formats (LeRobot, zarr, Minari: `imitate.data.sources`) are checked by reading every
episode through their source into the decoded cache (`imitate.data.reader.load_source`), and their
summary adds the format, the notes on derived or filled fields and the cache file.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from typing import Any

import numpy as np

from imitate.data.checks import is_image
from imitate.data.scan import H5_ERRORS, open_demo_file, scan_demo_file
from imitate.data.reader import _format_of, load_demo_file
from imitate.data.sources import dataset_fingerprint


def content_digest(store) -> str:
    """SHA-256 of every per-step array of a store, in a fixed key order (independent of file layout);
    a derived ``next_obs`` is left out (its ``obs`` is in)."""
    h = hashlib.sha256()
    h.update(np.asarray(store.episode_ends).tobytes())
    for key in sorted(store.keys):
        if store.next_obs_derived and key.startswith("next_obs/"):
            continue
        h.update(key.encode())
        for chunk in store.iter_chunks(key):
            h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()


def demo_file_info(path: str | os.PathLike, format: str | None = None) -> dict[str, Any]:
    """Validate a file fully (structure and every value) and describe it as a JSON-able dict.

    ``format``: as `load_demo_file`'s (None or ``auto``: detected)."""
    fmt = _format_of(path, format)
    if fmt == "robomimic":
        layout = scan_demo_file(path)
        store = load_demo_file(path, lazy=True, cache_blocks=2, format=fmt)
    else:
        store = load_demo_file(path, lazy=True, cache_blocks=2, format=fmt)
        layout = scan_demo_file(store.decoded_cache)
    lengths = layout.lengths
    lo = np.full(store.shape("actions"), np.inf)
    hi = -lo
    for chunk in store.iter_chunks("actions"):
        lo, hi = np.minimum(lo, chunk.min(0)), np.maximum(hi, chunk.max(0))
    attrs: dict[str, Any] = {}
    for name in sorted({k for a in layout.demo_attrs for k in a} - {"seed", "model_file"}):  # model_file: MuJoCo XML
        values = [a[name] for a in layout.demo_attrs if name in a]
        if all(isinstance(v, str) for v in values):
            attrs[name] = dict(sorted(Counter(values).items()))
        elif all(isinstance(v, (bool, np.bool_)) for v in values):
            attrs[name] = {"true": int(sum(values)), "of": len(values)}
        elif all(isinstance(v, (int, float)) for v in values):
            attrs[name] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
    info = {
        "file": str(path),
        "format": store.format if fmt != "robomimic" else fmt,
        "bytes": (os.path.getsize(path) if fmt == "robomimic" else sum(n for _, n, _ in dataset_fingerprint(path))),
        "demos": len(layout.demo_names),
        "transitions": int(lengths.sum()),
        "length": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
        "env_args": layout.env_args,
        "obs": {k: {"shape": list(layout.shapes[f"obs/{k}"]), "dtype": _dtype(layout, f"obs/{k}")}
                for k in layout.obs_keys},
        "images": (image_storage(layout) if fmt == "robomimic" else
                   {k: {"resolution": "x".join(str(n) for n in layout.shapes[f"obs/{k}"])} for k in layout.obs_keys
                    if is_image(layout.shapes[f"obs/{k}"], layout.dtypes[f"obs/{k}"])}),
        "next_obs": "derived from obs" if layout.next_obs_derived else "stored",
        "actions": {"dim": int(store.action_dim), "dtype": _dtype(layout, "actions"),
                    "min": lo.round(6).tolist(), "max": hi.round(6).tolist()},
        "filter_keys": {k: len(v) for k, v in layout.filter_keys.items()},
        "has_states": layout.has_states,
        "demo_attrs": attrs,
        "content_sha256": content_digest(store),
    }
    if fmt != "robomimic":
        info["notes"] = list(store.notes)
        info["decoded_cache"] = store.decoded_cache
    store.close()
    return info


def image_storage(layout) -> dict[str, dict[str, Any]]:
    """Per image key: resolution ``HxWxC``, bytes on disk (``obs`` and ``next_obs`` of every demo, as
    stored: compressed), raw bytes (uncompressed) and the compression filters used."""
    images = [k for k in layout.obs_keys if is_image(layout.shapes[f"obs/{k}"], layout.dtypes[f"obs/{k}"])]
    out = {}
    if not images:
        return out
    with open_demo_file(layout.path) as f:
        for k in images:
            h, w, c = layout.shapes[f"obs/{k}"]
            disk = raw = 0
            filters = set()
            for demo in layout.demo_names:
                for prefix in ("obs", "next_obs"):
                    ds = f["data"][demo].get(f"{prefix}/{k}")
                    if ds is None:
                        continue
                    try:
                        disk += int(ds.id.get_storage_size())
                        raw += int(ds.size) * ds.dtype.itemsize
                        filters.add(ds.compression or "none")
                    except H5_ERRORS:  # the value pass has read it already; be safe all the same
                        continue
            out[k] = {"resolution": f"{h}x{w}x{c}", "bytes_on_disk": disk, "bytes_raw": raw,
                      "compression": ", ".join(sorted(filters))}
    return out


def _dtype(layout, key: str) -> str:
    """The dtype a key is read as, and the dtypes its demos store when they differ."""
    stored = layout.stored_dtypes.get(key)
    return str(layout.dtypes[key]) + (f" (promoted from {', '.join(stored)})" if stored else "")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def format_info(info: dict[str, Any]) -> str:
    """The human-readable form of `demo_file_info`."""
    ln = info["length"]
    lines = [
        f"file         {info['file']} ({info['bytes'] / 1e6:.2f} MB)",
        f"format       {info.get('format', 'robomimic')}",
        f"demos        {info['demos']}   transitions {info['transitions']}   "
        f"length min/mean/max {ln['min']}/{ln['mean']:.1f}/{ln['max']}",
    ]
    env = info["env_args"]
    lines.append(f"env          {env['env_name']} (type {env.get('type')}) kwargs {env.get('env_kwargs', {})}"
                 if env else "env          none (env_args absent: no rollouts)")
    lines.append("obs keys")
    width = max(len(k) for k in info["obs"])
    images = info.get("images", {})
    for k, v in info["obs"].items():
        if k in images and "bytes_on_disk" not in images[k]:
            lines.append(f"  {k:<{width}}  image {images[k]['resolution']} {v['dtype']}")
        elif k in images:
            im = images[k]
            ratio = im["bytes_raw"] / im["bytes_on_disk"] if im["bytes_on_disk"] else float("inf")
            lines.append(f"  {k:<{width}}  image {im['resolution']} {v['dtype']}   on disk "
                         f"{_mb(im['bytes_on_disk'])} of {_mb(im['bytes_raw'])} raw ({im['compression']}, {ratio:.1f}x)")
        else:
            lines.append(f"  {k:<{width}}  {tuple(v['shape'])} {v['dtype']}")
    if info["next_obs"] != "stored":
        lines.append("next_obs     derived from obs (row t + 1 of the same demo; unknown at each demo's last step)")
    a = info["actions"]
    lines.append(f"actions      dim {a['dim']} {a['dtype']}   min {a['min']}   max {a['max']}")
    fk = ", ".join(f"{k} ({n})" for k, n in info["filter_keys"].items()) or "none"
    lines.append(f"filter keys  {fk}")
    for name, v in info["demo_attrs"].items():
        if "of" in v:
            lines.append(f"{name:<12} {v['true']}/{v['of']}")
        elif "mean" in v:
            lines.append(f"{name:<12} mean {v['mean']:.3f} (min {v['min']:.3f}, max {v['max']:.3f})")
        else:
            lines.append(f"{name:<12} " + ", ".join(f"{k} {n}" for k, n in v.items()))
    for note in info.get("notes", []):
        lines.append(f"note         {note}")
    if info.get("decoded_cache"):
        lines.append(f"decoded      {info['decoded_cache']} (the episodes as a robomimic file, read by --lazy true)")
    lines.append(f"content      sha256 {info['content_sha256'][:16]}...   valid: yes")
    return "\n".join(lines)
