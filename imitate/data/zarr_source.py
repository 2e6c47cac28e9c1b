"""Diffusion Policy's zarr ReplayBuffer as a source of episodes (`ZarrSource`).

    dataset.zarr/ (a folder) or dataset.zarr.zip
      data/<key>            (N, *shape)  every episode's rows back to back (Push-T: img (N, 96, 96, 3)
                                         uint8, state (N, 5), action (N, 2), keypoint, n_contacts)
      meta/episode_ends     (E,)         cumulative exclusive ends: episode i is rows [ends[i-1], ends[i])

Key mapping: ``data/action`` (or ``actions``) -> actions; ``data/reward``/``rewards`` -> rewards and
``data/done``/``dones`` -> dones when present (else filled with 0, flagged in ``notes``); every other
``data/<key>`` is an observation key of the same name. A float key shaped like an image (H, W, 3 or 1)
whose values are whole numbers in 0..255 (Push-T's ``img`` in some releases) is read as a uint8 image.
The format has no next observation: ``next_obs`` is derived from the next row of the same episode
(`next_obs_derived`), unknown at each episode's last step.

Any compressor zarr opens by default works (Blosc, Zstd, gzip, ...); one it does not know (e.g. an
imagecodecs codec that was not registered) is a DemoFileError naming it.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from imitate.data.checks import is_image
from imitate.data.episode import Episode
from imitate.data.sources import optional_import, select_obs_keys
from imitate.errors import DemoFileError

#: Rows read at once span whole episodes up to about this many bytes (a zarr chunk shared by two
#: episodes is then decompressed once).
READ_BYTES = 64 << 20
ACTION_KEYS = ("action", "actions")
REWARD_KEYS = ("reward", "rewards")
DONE_KEYS = ("done", "dones")


class ZarrSource:
    """A Diffusion Policy ReplayBuffer (``.zarr`` folder or ``.zarr.zip``), read episode by episode.

    Attributes: see `imitate.data.sources`. ``image_from_float``: float keys read as uint8 images.
    """

    format = "zarr"
    next_obs_derived = True

    def __init__(self, path: str | os.PathLike, obs_keys: Sequence[str] | None = None):
        self.path = str(path)
        zarr = optional_import("zarr", f"{path}: reading a zarr ReplayBuffer")
        self._zarr = zarr
        root = self._open_root()
        data = self._group(root, "data")
        meta = self._group(root, "meta")
        names = self._member_names(data, "data")
        if "episode_ends" not in self._member_names(meta, "meta"):
            raise DemoFileError(f"{self.path}: no meta/episode_ends (a ReplayBuffer stores each episode's "
                                f"cumulative end row there)")
        ends = self._read(meta, "episode_ends", "meta")
        ends = np.asarray(ends)
        if ends.ndim != 1 or ends.dtype.kind not in "iu":
            raise DemoFileError(f"{self.path}: meta/episode_ends has shape {ends.shape} and dtype {ends.dtype}; "
                                f"expected (E,) integers")
        if len(ends) == 0:
            raise DemoFileError(f"{self.path}: meta/episode_ends is empty: no episodes")
        ends = ends.astype(np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        bad = np.flatnonzero(ends <= starts)
        if len(bad):
            i = int(bad[0])
            raise DemoFileError(f"demo_{i} in {self.path}: meta/episode_ends is not increasing (episode {i} ends "
                                f"at row {ends[i]}, after row {starts[i]}): episodes must have at least one step")
        self._arrays: dict[str, Any] = {}
        for name in names:
            self._arrays[name] = self._array(data, name)
        action = next((k for k in ACTION_KEYS if k in self._arrays), None)
        if action is None:
            raise DemoFileError(f"{self.path}: no data/action (the keys are {sorted(self._arrays)})")
        n_rows = int(ends[-1])
        for name, arr in self._arrays.items():
            if len(arr.shape) == 0 or arr.shape[0] != n_rows:
                raise DemoFileError(f"{self.path}: data/{name} has {arr.shape[0] if arr.shape else 0} rows but "
                                    f"meta/episode_ends ends at row {n_rows}")
        self._action, self._reward = action, next((k for k in REWARD_KEYS if k in self._arrays), None)
        self._done = next((k for k in DONE_KEYS if k in self._arrays), None)
        reserved = {action, self._reward, self._done}
        available = [k for k in sorted(self._arrays) if k not in reserved]
        self.obs_keys = select_obs_keys(self.path, obs_keys, available)
        if not self.obs_keys:
            raise DemoFileError(f"{self.path}: no observation keys in data/ (only {sorted(self._arrays)})")
        self.image_from_float = [k for k in self.obs_keys if self._arrays[k].dtype.kind == "f"
                                 and is_image(tuple(self._arrays[k].shape[1:]), np.dtype(np.uint8))]
        self._ends = ends
        self.lengths = [int(n) for n in np.diff(np.concatenate([[0], ends]))]
        self.n_episodes = len(self.lengths)
        self.env_args = None
        self.filter_keys: dict[str, list[str]] = {}
        self.notes = ["next_obs: absent in zarr, derived from the next row of obs within each episode "
                      "(unknown at each episode's last step)"]
        if self._reward is None:
            self.notes.append("rewards: absent in this zarr, filled with 0 (flagged)")
        if self._done is None:
            self.notes.append("dones: absent in this zarr, filled with 0 (flagged)")
        for k in self.image_from_float:
            self.notes.append(f"{k}: stored {self._arrays[k].dtype} (H, W, C); read as uint8 images (values checked "
                              f"to be whole numbers in 0..255)")
        self.notes.append("env: a zarr ReplayBuffer names no environment (rollouts need --env)")

    # -- opening ----------------------------------------------------------------------------------
    def _open_root(self):
        p = Path(self.path)
        if not p.exists():
            raise DemoFileError(f"{p}: no such file or folder")
        try:
            if p.is_file():
                store = self._zarr.storage.ZipStore(str(p), mode="r")
                return self._zarr.open_group(store=store, mode="r")
            return self._zarr.open_group(str(p), mode="r")
        except (zipfile.BadZipFile, OSError) as e:
            raise DemoFileError(f"{p}: cannot be opened as zarr ({type(e).__name__}: {e})") from None
        except Exception as e:  # zarr's own errors (no group, bad metadata) have no common base class
            raise DemoFileError(f"{p}: not a zarr group ({type(e).__name__}: {e}); a ReplayBuffer has "
                                f"data/<key> arrays and meta/episode_ends") from None

    def _group(self, root, name: str):
        try:
            group = root[name]
        except KeyError:
            raise DemoFileError(f"{self.path}: no group {name}/ (a ReplayBuffer has data/<key> arrays and "
                                f"meta/episode_ends)") from None
        except Exception as e:
            raise self._error(e, name) from None
        if not hasattr(group, "array_keys"):
            raise DemoFileError(f"{self.path}: {name} is an array, not a group")
        return group

    def _member_names(self, group, where: str) -> list[str]:
        try:
            return sorted(group.array_keys())
        except Exception as e:  # an unknown codec fails the listing itself: find the array by name
            names = self._stored_names(where)
            for name in names:
                try:
                    group[name]
                except Exception as e2:
                    raise self._error(e2, f"{where}/{name}") from None
            raise self._error(e, where) from None

    def _array(self, group, name: str):
        try:
            arr = group[name]
        except Exception as e:
            raise self._error(e, f"data/{name}") from None
        if not hasattr(arr, "shape") or hasattr(arr, "array_keys"):
            raise DemoFileError(f"{self.path}: data/{name} is a group, not an array")
        if np.dtype(arr.dtype).kind not in "biuf":
            raise DemoFileError(f"{self.path}: data/{name} has non-numeric dtype {arr.dtype} (expected numbers)")
        return arr

    def _read(self, group, name: str, where: str, sel=slice(None)) -> np.ndarray:
        try:
            return np.asarray(group[name][sel])
        except Exception as e:
            raise self._error(e, f"{where}/{name}") from None

    def _error(self, e: Exception, key: str) -> DemoFileError:
        codec = getattr(e, "codec_id", None)
        if codec is None and "codec" in str(e).lower():
            found = re.search(r"codec not available:\s*'+([^']+)'", str(e))
            codec = found.group(1) if found else str(e)
        if codec is not None:
            codec = str(codec).strip("'\"")
            return DemoFileError(f"{self.path}: {key} is compressed with codec {codec!r}, which zarr cannot "
                                 f"open here (a package that registers it, e.g. imagecodecs, is needed; "
                                 f"the codecs zarr opens by default work)")
        return DemoFileError(f"{self.path}: cannot read {key} ({type(e).__name__}: {e})")

    def _stored_names(self, where: str) -> list[str]:
        """Member names of ``where`` from the store's listing itself (folder or zip)."""
        p = Path(self.path)
        if p.is_dir():
            d = p / where
            return sorted(n for n in os.listdir(d) if not n.startswith(".") and (d / n).is_dir()) if d.is_dir() else []
        try:
            with zipfile.ZipFile(p) as z:
                parts = {n.split("/")[1] for n in z.namelist() if n.startswith(where + "/") and n.count("/") >= 2}
        except (zipfile.BadZipFile, OSError):
            return []
        return sorted(parts)

    # -- episodes ---------------------------------------------------------------------------------
    def _rows(self, key: str, lo: int, hi: int) -> np.ndarray:
        try:
            return np.asarray(self._arrays[key][lo:hi])
        except Exception as e:
            raise self._error(e, f"data/{key}") from None

    def episodes(self) -> Iterator[Episode]:
        """Every episode, in order; rows are read for groups of whole episodes of about `READ_BYTES`."""
        keys = [*self.obs_keys, self._action, *(k for k in (self._reward, self._done) if k)]
        row_bytes = sum(int(np.prod(self._arrays[k].shape[1:], dtype=np.int64)) * np.dtype(self._arrays[k].dtype).itemsize
                        for k in keys)
        starts = np.concatenate([[0], self._ends[:-1]])
        i = 0
        while i < self.n_episodes:
            j = i + 1
            while j < self.n_episodes and (self._ends[j] - starts[i]) * row_bytes <= READ_BYTES:
                j += 1
            lo, hi = int(starts[i]), int(self._ends[j - 1])
            rows = {k: self._rows(k, lo, hi) for k in keys}
            for e in range(i, j):
                a, b = int(starts[e]) - lo, int(self._ends[e]) - lo
                yield self._episode(e, {k: v[a:b] for k, v in rows.items()})
            i = j

    def _episode(self, i: int, rows: dict[str, np.ndarray]) -> Episode:
        name = f"demo_{i}"
        obs = {}
        for k in self.obs_keys:
            v = rows[k]
            if k in self.image_from_float:
                v = self._as_uint8(name, k, v)
            obs[k] = v
        next_obs = {k: np.concatenate([v[1:], v[-1:]]) for k, v in obs.items()}  # the last row: repeated
        actions = rows[self._action]
        if actions.ndim == 1:
            actions = actions[:, None]
        n = len(actions)
        rewards = rows[self._reward].reshape(n, -1)[:, 0] if self._reward else np.zeros(n, dtype=np.float32)
        dones = rows[self._done].reshape(n, -1)[:, 0] if self._done else np.zeros(n, dtype=np.float32)
        return Episode(obs=obs, next_obs=next_obs, actions=actions, rewards=rewards, dones=dones, name=name,
                       source=self.path)

    def _as_uint8(self, name: str, key: str, v: np.ndarray) -> np.ndarray:
        out = v.astype(np.uint8)
        if not np.array_equal(out, v):
            bad = ~(out == v)
            raise DemoFileError(f"{name} in {self.path}: data/{key} is an image stored as {v.dtype} but holds "
                                f"values that are not whole numbers in 0..255 (e.g. {v[bad].flat[0]!r}); "
                                f"images must be uint8 (H, W, C)")
        return out
