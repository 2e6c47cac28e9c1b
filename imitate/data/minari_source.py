"""A Minari dataset (Farama) as a source of episodes (`MinariSource`), read with h5py.

    <dataset>/data/metadata.json     total_episodes, total_steps, env_spec (JSON), observation_space,
                                     action_space, jpeg_encoding, ...
    <dataset>/data/main_data.hdf5
      episode_<i>/                   attrs: id, total_steps [, seed]
        observations                 (T + 1, ...) or a group (Dict space: one entry per key, nested)
        actions                      (T, ...)
        rewards, terminations, truncations   (T,)
        infos/                       ignored

Key mapping: a Box observation -> obs key ``state`` (as `imitate collect` names it); a Dict
observation -> one key per entry, nested entries joined with ``_`` (``observations/a/b`` -> ``a_b``);
``actions`` -> actions ((T,) becomes (T, 1)); ``rewards`` -> rewards; ``terminations`` -> dones.
``obs`` is observation rows 0..T-1 and ``next_obs`` rows 1..T: exact, the last step's included.
Images stored JPEG-encoded (Minari's default for uint8 image spaces of at least 32x32) are decoded
with Pillow. The ``env_spec`` of the metadata becomes the file's environment when gymnasium knows
its id.
"""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from imitate.data.episode import Episode
from imitate.data.sources import select_obs_keys
from imitate.errors import DemoFileError

_EPISODE_RE = re.compile(r"^episode_(\d+)$")
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _dataset_folder(path: Path) -> Path:
    """The dataset folder of a path that names it, its data/ folder or its main_data.hdf5."""
    if path.is_file() and path.name == "main_data.hdf5":
        return path.parent.parent
    if path.is_dir() and path.name == "data" and (path / "main_data.hdf5").exists():
        return path.parent
    return path


class MinariSource:
    """A Minari dataset folder read episode by episode (see the module docstring)."""

    format = "minari"
    next_obs_derived = False

    def __init__(self, path: str | os.PathLike, obs_keys: Sequence[str] | None = None):
        self.path = str(path)
        folder = _dataset_folder(Path(path))
        self._h5 = folder / "data" / "main_data.hdf5"
        meta_path = folder / "data" / "metadata.json"
        if not folder.exists():
            raise DemoFileError(f"{self.path}: no such file or folder")
        if not meta_path.is_file():
            raise DemoFileError(f"{self.path}: no data/metadata.json (a Minari dataset has data/metadata.json "
                                f"and data/main_data.hdf5)")
        if not self._h5.is_file():
            raise DemoFileError(f"{self.path}: no data/main_data.hdf5 (a Minari dataset has data/metadata.json "
                                f"and data/main_data.hdf5)")
        try:
            self.metadata = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise DemoFileError(f"{self.path}: data/metadata.json is not valid JSON ({e})") from None
        if not isinstance(self.metadata, dict):
            raise DemoFileError(f"{self.path}: data/metadata.json is not a JSON object")
        try:
            with h5py.File(self._h5, "r") as f:
                self._scan(f, obs_keys)
        except DemoFileError:
            raise
        except H5_ERRORS as e:
            raise DemoFileError(f"{self.path}: data/main_data.hdf5 cannot be read ({type(e).__name__}: {e})") from None
        self.n_episodes = len(self._groups)
        self.filter_keys: dict[str, list[str]] = {}
        self.env_args, env_note = _env_args(self.metadata)
        self.notes = ["next_obs: observations rows 1..T of each episode (exact, the last step's included)",
                      "dones: from terminations (truncations are not terminations)"]
        self.notes += [f"{k}: JPEG-decoded images (lossy as stored)" for k in self.obs_keys if k in self._jpeg_keys]
        if env_note:
            self.notes.append(env_note)

    # -- metadata ---------------------------------------------------------------------------------
    def _scan(self, f: h5py.File, obs_keys: Sequence[str] | None) -> None:
        numbered = []
        for name in f.keys():
            m = _EPISODE_RE.match(name)
            if m:
                numbered.append((int(m.group(1)), name))
        if not numbered:
            raise DemoFileError(f"{self.path}: data/main_data.hdf5 has no episode_<i> groups")
        numbered.sort()
        self._groups = [name for _, name in numbered]
        first = f[self._groups[0]]
        obs = first.get("observations")
        if obs is None:
            raise DemoFileError(f"demo_0 in {self.path}: {self._groups[0]} has no observations")
        self._leaves = _leaves(obs, "") if isinstance(obs, h5py.Group) else {"state": ""}
        available = list(self._leaves)
        self.obs_keys = select_obs_keys(self.path, obs_keys, available)
        self._jpeg_keys = {k for k in self.obs_keys if _is_encoded(_dataset(first, self._leaves[k]))}
        self.lengths = []
        for i, g in enumerate(self._groups):
            group = f[g]
            rewards = group.get("rewards")
            if not isinstance(rewards, h5py.Dataset):
                raise DemoFileError(f"demo_{i} in {self.path}: {g} has no rewards dataset")
            self.lengths.append(int(rewards.shape[0]) if rewards.shape else 0)

    # -- episodes ---------------------------------------------------------------------------------
    def episodes(self) -> Iterator[Episode]:
        """Every episode, in order (JPEG frames decoded)."""
        with h5py.File(self._h5, "r") as f:
            for i, g in enumerate(self._groups):
                try:
                    yield self._episode(i, f[g])
                except DemoFileError:
                    raise
                except H5_ERRORS as e:
                    raise DemoFileError(f"demo_{i} in {self.path}: {g} cannot be read ({type(e).__name__}: {e})") from None

    def _episode(self, i: int, group: h5py.Group) -> Episode:
        name, where = f"demo_{i}", f"demo_{i} ({group.name.lstrip('/')}) in {self.path}"
        rewards = self._field(group, "rewards", where)
        T = len(rewards)
        actions = self._field(group, "actions", where)
        if actions.ndim == 1:
            actions = actions[:, None]
        if len(actions) != T:
            raise DemoFileError(f"{where}: actions has {len(actions)} rows but rewards has {T} (Minari stores T "
                                f"actions, rewards, terminations and T + 1 observations)")
        terminations = self._field(group, "terminations", where)
        if len(terminations) != T:
            raise DemoFileError(f"{where}: terminations has {len(terminations)} rows but rewards has {T}")
        obs, next_obs = {}, {}
        for k in self.obs_keys:
            leaf = self._leaves[k]
            ds = _dataset(group, leaf)
            key = "observations" + (f"/{leaf}" if leaf else "")
            if ds is None:
                raise DemoFileError(f"{where}: no {key}")
            values = _decode_jpeg(ds[()], where, key) if k in self._jpeg_keys else ds[()]
            if len(values) != T + 1:
                raise DemoFileError(f"{where}: {key} has {len(values)} rows; expected T + 1 = {T + 1} "
                                    f"(one more than the {T} actions)")
            obs[k], next_obs[k] = values[:-1], values[1:]
        attrs = {"seed": int(group.attrs["seed"])} if "seed" in group.attrs else {}
        return Episode(obs=obs, next_obs=next_obs, actions=actions, rewards=rewards,
                       dones=terminations.astype(np.float32), attrs=attrs, name=name, source=self.path)

    def _field(self, group: h5py.Group, key: str, where: str) -> np.ndarray:
        ds = group.get(key)
        if not isinstance(ds, h5py.Dataset):
            raise DemoFileError(f"{where}: no {key} dataset" + (" (Dict actions are not supported)"
                                                                  if isinstance(ds, h5py.Group) else ""))
        return ds[()]


def _leaves(group: h5py.Group, prefix: str) -> dict[str, str]:
    """Obs key -> path under ``observations`` of every dataset of a (nested) Dict observation."""
    out = {}
    for name, item in group.items():
        path = f"{prefix}/{name}" if prefix else name
        if isinstance(item, h5py.Group):
            out.update(_leaves(item, path))
        else:
            out[path.replace("/", "_")] = path
    return out


def _dataset(group: h5py.Group, leaf: str) -> h5py.Dataset | None:
    item = group.get("observations" + (f"/{leaf}" if leaf else ""))
    return item if isinstance(item, h5py.Dataset) else None


def _is_encoded(ds: h5py.Dataset | None) -> bool:
    """Whether a dataset holds encoded frames: variable-length bytes, or fixed-length uint8 rows that
    start with JPEG's marker (FF D8)."""
    if ds is None:
        return False
    if h5py.check_vlen_dtype(ds.dtype) is not None:
        return True
    if ds.dtype == np.uint8 and ds.ndim == 2 and ds.shape[0] > 0 and ds.shape[1] > 2:
        head = ds[0, :2]
        return bool(head[0] == 0xFF and head[1] == 0xD8)
    return False


def _decode_jpeg(rows: np.ndarray, where: str, key: str) -> np.ndarray:
    from PIL import Image

    frames = []
    for t, row in enumerate(rows):
        try:
            with Image.open(io.BytesIO(np.asarray(row, dtype=np.uint8).tobytes())) as im:
                frames.append(np.asarray(im, dtype=np.uint8))
        except Exception as e:  # Pillow raises several kinds for a damaged image
            raise DemoFileError(f"{where}: {key} row {t} is not a readable JPEG image ({e})") from None
    if any(f.shape != frames[0].shape for f in frames):
        raise DemoFileError(f"{where}: {key} holds frames of different sizes")
    out = np.stack(frames)
    return out[..., None] if out.ndim == 3 else out


def _env_args(metadata: dict) -> tuple[dict[str, Any] | None, str]:
    """robomimic env_args from the metadata's env_spec when gymnasium knows its id, and a note."""
    from imitate.data.hdf5 import make_env_args

    spec = metadata.get("env_spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            spec = None
    env_id = spec.get("id") if isinstance(spec, dict) else None
    if not env_id:
        return None, "env: the metadata has no env_spec (rollouts need --env)"
    import gymnasium as gym

    import imitate.envs  # noqa: F401  (registers imitate's own ids)

    try:
        gym.spec(env_id)
    except Exception:  # gymnasium's NameNotFound, NamespaceNotFound, VersionNotFound ...
        return None, f"env: {env_id} is not registered with gymnasium here (rollouts need --env)"
    kwargs = spec.get("kwargs") or {}
    try:
        json.dumps(kwargs)
    except TypeError:
        kwargs = {}
    return make_env_args(env_id, kwargs), ""
