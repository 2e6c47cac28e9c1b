"""LeRobot datasets (v3): read as a source of episodes (`LeRobotSource`), written from episodes
(`write_lerobot_dataset`).

A LeRobot v3 dataset is a folder:

    meta/info.json                        codebase_version "v3.x", fps, features (dtype, shape, names),
                                          data_path and video_path templates, chunks_size, totals
    meta/stats.json                       per-feature min, max, mean, std, count
    meta/tasks.parquet                    task strings and their task_index
    meta/episodes/chunk-*/file-*.parquet  one row per episode: episode_index, length, tasks,
                                          dataset_from_index / dataset_to_index, data/chunk_index,
                                          data/file_index, videos/<key>/{chunk_index, file_index,
                                          from_timestamp, to_timestamp}
    data/chunk-*/file-*.parquet           one row per frame, many episodes per file: timestamp,
                                          frame_index, episode_index, index, task_index + the features
    videos/<key>/chunk-*/file-*.mp4       many episodes per file; frame time = from_timestamp + timestamp

Key mapping (LeRobot feature -> imitate):

    observation.state            obs key "state"
    observation.images.<cam>     obs key "<cam>_image", uint8 (H, W, 3) (video or image features)
    observation.<k>              obs key "<k>"
    action                       actions
    next.reward                  rewards   (absent: filled with 0, flagged in `notes`)
    next.done                    dones     (absent: filled with 0, flagged)
    next.success                 the episode attribute is_success (its last step)
    tasks (episode metadata)     the episode attribute task (its first task)

LeRobot keeps no next observation: ``next_obs`` is derived from the next row of the episode, and at
an episode's last step it is the episode's final observation where the dataset has one (datasets
written by `write_lerobot_dataset` do) or else a repeat of the last observation, flagged in ``notes``
and by ``next_obs_derived``.

Datasets written by imitate carry ``meta/imitate.json`` (format ``imitate-lerobot/1``): imitate's
observation key names, env_args, filter keys, demo attributes; the final observation of each episode
(unless written with ``final_observation=False``) is one more frame after the episode's range in each
video (never inside a range LeRobot reads) and ``final/<feature>`` columns of the episode table. LeRobot's own readers ignore all of that.

LeRobot v2.x datasets (meta/episodes.jsonl, one parquet and one mp4 per episode, paths templated by
``episode_chunk`` and ``episode_index``) are read too; other versions are refused with a message
naming the version found. pyarrow and PyAV are optional dependencies (the ``formats``
extra); a missing one is an `ImitateError` naming the extra.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from imitate.data.checks import is_image
from imitate.data.episode import Episode
from imitate.data.video import EXTRA, VideoReader, VideoWriter
from imitate.errors import DemoFileError, ImitateError
from imitate.formats import read_tagged_json

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
IMITATE_PATH = "meta/imitate.json"
IMITATE_FORMAT = "imitate-lerobot/1"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CODEBASE_VERSION = "v3.0"
#: Columns every LeRobot data file has besides the features.
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CHUNKS_SIZE = 1000
#: Frames per second written when neither the caller nor env_args gives a rate.
DEFAULT_FPS = 10


def import_pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or an ImitateError naming the extra that installs them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImitateError(f"LeRobot datasets need pyarrow, which is not installed ({e}); {EXTRA}") from None
    return pa, pq


# -- key mapping -----------------------------------------------------------------------------------
def obs_key_of(feature: str) -> str:
    """imitate's observation key for a LeRobot ``observation.*`` feature (see the module docstring)."""
    rest = feature[len("observation."):]
    if rest.startswith("images."):
        return f"{rest[len('images.'):]}_image"
    return rest


def feature_of(obs_key: str, image: bool) -> str:
    """The LeRobot feature an imitate observation key is written as: ``state`` -> observation.state,
    an image key ``<cam>_image`` (or ``<cam>``) -> observation.images.<cam>, else observation.<key>."""
    if image:
        return f"observation.images.{obs_key[:-len('_image')] if obs_key.endswith('_image') else obs_key}"
    return f"observation.{obs_key}"


# -- reading ---------------------------------------------------------------------------------------
def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json of a LeRobot dataset, checked to be v3.x or v2.x (``_major`` set to 3 or 2); a
    DemoFileError naming the file otherwise."""
    path = root / INFO_PATH
    if not path.is_file():
        raise DemoFileError(f"{root}: not a LeRobot dataset: missing {INFO_PATH}")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DemoFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise DemoFileError(f"{path}: expected a JSON object, found {type(info).__name__}")
    version = str(info.get("codebase_version", ""))
    match = re.fullmatch(r"v?(\d+)(?:\.(\d+))?.*", version)
    if match is None:
        raise DemoFileError(f"{path}: codebase_version is {version or 'missing'!r}; expected a LeRobot version such as 'v3.0'")
    if int(match.group(1)) not in (2, 3):
        raise DemoFileError(
            f"{path}: LeRobot dataset version {version} found; imitate reads LeRobot v3.x and v2.x datasets. "
            f"Convert it with LeRobot's conversion scripts (to v3.0), then read the result.")
    info["_major"] = int(match.group(1))
    for key, kind in (("fps", (int, float)), ("features", dict), ("data_path", str)):
        if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            raise DemoFileError(f"{path}: {key!r} is {'missing' if key not in info else repr(info[key])[:60]}")
    if info["fps"] <= 0:
        raise DemoFileError(f"{path}: fps is {info['fps']}; expected a positive number")
    return info


def _shape_of(feature: str, spec: Any, where: str) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) of a features entry; (H, W, C) for image and video features."""
    if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
        raise DemoFileError(f"{where}: features[{feature!r}] needs 'dtype' and 'shape', found {spec!r:.80}")
    try:
        shape = tuple(int(n) for n in spec["shape"])
    except (TypeError, ValueError):
        raise DemoFileError(f"{where}: features[{feature!r}] shape {spec['shape']!r} is not a list of integers") from None
    dtype = str(spec["dtype"])
    if dtype in ("video", "image"):
        names = list(spec.get("names") or [])
        if len(shape) != 3:
            raise DemoFileError(f"{where}: features[{feature!r}] is a {dtype} of shape {shape}; expected (H, W, C)")
        if names and str(names[0]).startswith("channel"):  # (C, H, W) in a few ported datasets
            shape = (shape[1], shape[2], shape[0])
    return shape, dtype


class LeRobotSource:
    """A LeRobot dataset folder (v3, or v2.x) as a source of imitate episodes (see the module docstring).

    Construction reads and checks the metadata only (meta/info.json, the episode table); `episodes`
    reads the data files and decodes the videos, one episode at a time, in episode order, each a
    validated `Episode` named ``demo_<i>``.

    Attributes:
        format: ``"lerobot-v3"`` (``"lerobot-v2"`` for v2.x datasets).
        path: the dataset folder.
        n_episodes, lengths: episodes and their steps, from the episode table.
        env_args: robomimic env_args from meta/imitate.json (datasets imitate wrote), else None.
        filter_keys: mask name -> demo names, from meta/imitate.json, else {}.
        notes: one line per field derived or filled.
        fps: frames per second.
        obs_features: imitate observation key -> LeRobot feature.
        video_keys: the features stored as videos.
        next_obs_derived: True where the last step's next observation is a filled repeat.
    """

    format = "lerobot-v3"  # "lerobot-v2" for a v2.x dataset

    def __init__(self, path: str | os.PathLike, obs_keys: Sequence[str] | None = None):
        self.root = Path(path)
        self.path = str(path)
        if not self.root.is_dir():
            raise DemoFileError(f"{path}: no such dataset folder")
        info = read_info(self.root)
        self.info = info
        self.fps = float(info["fps"])
        where = str(self.root / INFO_PATH)
        self.specs = {f: _shape_of(f, spec, where) for f, spec in info["features"].items()}
        self.video_keys = [f for f, (_, d) in self.specs.items() if d == "video"]
        if self.video_keys and not isinstance(info.get("video_path"), str):
            raise DemoFileError(f"{where}: features {self.video_keys} are videos but 'video_path' is missing")
        self.meta = (read_tagged_json(self.root / IMITATE_PATH, (IMITATE_FORMAT,), "imitate's LeRobot metadata")
                     if (self.root / IMITATE_PATH).exists() else {})
        names = dict(self.meta.get("obs_keys") or {})
        available = {names.get(f, obs_key_of(f)): f for f, (_, d) in self.specs.items()
                     if f.startswith("observation.") and d != "string"}
        if "action" not in self.specs:
            raise DemoFileError(f"{where}: no 'action' feature (features: {sorted(self.specs)})")
        if not available:
            raise DemoFileError(f"{where}: no observation.* feature (features: {sorted(self.specs)})")
        if obs_keys is not None:
            unknown = [k for k in obs_keys if k not in available]
            if unknown:
                raise DemoFileError(f"{self.path}: no observation key {unknown} (--obs-keys); the dataset has "
                                    f"{sorted(available)} (LeRobot features {sorted(available.values())})")
            available = {k: available[k] for k in obs_keys}
        self.obs_features = available
        for key, feature in available.items():
            shape, dtype = self.specs[feature]
            if dtype in ("video", "image") and shape[-1] not in (1, 3):
                raise DemoFileError(f"{where}: {feature} has {shape[-1]} channels; expected 1 or 3")
        self.format = f"lerobot-v{info['_major']}"
        self._table = self._read_episode_table() if info["_major"] == 3 else self._read_v2_episode_table()
        self._check_table(self._table)
        self.n_episodes = len(self._table["episode_index"])
        self.lengths = [int(n) for n in self._table["length"]]
        self.env_args = self.meta.get("env_args")
        self.filter_keys = {k: list(v) for k, v in (self.meta.get("filter_keys") or {}).items()}
        names = {f"demo_{i}" for i in range(self.n_episodes)}
        for mask, members in self.filter_keys.items():
            unknown = [m for m in members if m not in names]
            if unknown:
                raise DemoFileError(f"{self.root / IMITATE_PATH}: filter key {mask!r} names demos the dataset does "
                                    f"not have: {unknown[:5]} (it has demo_0 .. demo_{self.n_episodes - 1})")
        self.final_frame = bool(self.meta.get("final_observation"))
        self.has_final = self.final_frame and all(
            self.specs[f][1] == "video" or f"final/{f}" in self._table for f in available.values())
        attrs = self.meta.get("attrs")
        if attrs is not None and (not isinstance(attrs, list) or len(attrs) != self.n_episodes
                                  or not all(isinstance(a, dict) for a in attrs)):
            raise DemoFileError(f"{self.root / IMITATE_PATH}: 'attrs' must be a list of {self.n_episodes} objects, one per episode")
        self.next_obs_derived = not self.has_final
        self.notes = []
        if self.has_final:
            self.notes.append("next_obs: the next row of the episode; at the last step the episode's final "
                              "observation (stored by imitate)")
        else:
            self.notes.append("next_obs: absent in LeRobot, derived from the next row of the episode; at the "
                              "last step the last observation repeated (flagged)")
        if "next.reward" not in self.specs:
            self.notes.append("rewards: absent in LeRobot, filled with 0 (flagged)")
        if "next.done" not in self.specs:
            self.notes.append("dones: absent in LeRobot, filled with 0 (flagged)")

    # -- the episode table ---------------------------------------------------------------------
    def _read_episode_table(self) -> dict[str, np.ndarray | list]:
        pa, pq = import_pyarrow()
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DemoFileError(f"{self.root}: missing the episode table meta/episodes/chunk-*/file-*.parquet")
        required = ["episode_index", "length", "dataset_from_index", "dataset_to_index",
                    "data/chunk_index", "data/file_index"]
        for f in self.video_keys:
            required += [f"videos/{f}/chunk_index", f"videos/{f}/file_index", f"videos/{f}/from_timestamp"]
        columns: dict[str, list] = {}
        for file in files:
            try:
                schema = pq.read_schema(file)
                wanted = [c for c in schema.names if not c.startswith("stats/")]
                table = pq.read_table(file, columns=wanted)
            except (pa.ArrowException, OSError) as e:
                raise DemoFileError(f"{file}: not a readable parquet file ({type(e).__name__}: {e})") from None
            missing = [c for c in required if c not in table.column_names]
            if missing:
                raise DemoFileError(f"{file}: the episode table lacks the columns {missing}")
            for c in table.column_names:
                if c == "tasks" or c.startswith("final/"):
                    columns.setdefault(c, []).extend(table.column(c).to_pylist())
                elif c in required:
                    col = table.column(c)
                    kind = "floating" if c.endswith("timestamp") else "integer"
                    if not getattr(pa.types, f"is_{kind}")(col.type):
                        raise DemoFileError(f"{file}: column {c!r} is {col.type}; expected {kind} numbers")
                    if col.null_count:
                        raise DemoFileError(f"{file}: column {c!r} has {col.null_count} missing values")
                    columns.setdefault(c, []).append(col.to_numpy())
        out: dict[str, Any] = {c: np.concatenate(v) if c in required else v for c, v in columns.items()}
        order = np.argsort(out["episode_index"], kind="stable")
        return {c: (v[order] if isinstance(v, np.ndarray) else [v[i] for i in order]) for c, v in out.items()}

    def _read_v2_episode_table(self) -> dict[str, np.ndarray | list]:
        """LeRobot v2.x: meta/episodes.jsonl (episode_index, tasks, length), one data file and one video
        per episode (``episode_chunk`` = episode_index // chunks_size), each video from time 0."""
        path = self.root / "meta" / "episodes.jsonl"
        if not path.is_file():
            raise DemoFileError(f"{self.root}: missing the episode list meta/episodes.jsonl (LeRobot v2.x)")
        rows = []
        try:
            for n, line in enumerate(path.read_text().splitlines()):
                if line.strip():
                    rows.append(json.loads(line))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DemoFileError(f"{path}: not JSON lines ({e})") from None
        for n, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("episode_index"), int) or not isinstance(row.get("length"), int):
                raise DemoFileError(f"{path}: line {n + 1} needs integer 'episode_index' and 'length', found {row!r:.80}")
        rows.sort(key=lambda r: r["episode_index"])
        chunks = int(self.info.get("chunks_size") or CHUNKS_SIZE)
        index = np.array([r["episode_index"] for r in rows], np.int64)
        length = np.array([r["length"] for r in rows], np.int64)
        ends = np.cumsum(length)
        out: dict[str, Any] = {"episode_index": index, "length": length, "dataset_from_index": ends - length,
                               "dataset_to_index": ends, "data/chunk_index": index // chunks, "data/file_index": index,
                               "tasks": [r.get("tasks") or [] for r in rows]}
        for f in self.video_keys:
            out.update({f"videos/{f}/chunk_index": index // chunks, f"videos/{f}/file_index": index,
                        f"videos/{f}/from_timestamp": np.zeros(len(rows))})
        return out

    def _check_table(self, out: dict[str, Any]) -> None:
        """The episode table numbers its episodes 0 .. E-1, as meta/info.json counts them, with lengths
        that agree with their row ranges."""
        index = out["episode_index"]
        total = self.info.get("total_episodes")
        n = len(index)
        where = f"{self.root}/meta/{'episodes' if self.info['_major'] == 3 else 'episodes.jsonl'}"
        if n == 0:
            raise DemoFileError(f"{where}: the episode table has no rows")
        bad = [int(e) for e in index if e < 0 or (isinstance(total, int) and e >= total)]
        if bad:
            raise DemoFileError(f"{where}: episode_index {bad[0]} is out of range: meta/info.json has "
                                f"total_episodes {total} (episodes are numbered 0 .. {total - 1 if isinstance(total, int) else '?'})")
        if not np.array_equal(index, np.arange(n)):
            dup = np.flatnonzero(np.diff(index) == 0)
            what = (f"episode {int(index[dup[0]])} appears twice" if len(dup) else
                    f"episode {int(np.setdiff1d(np.arange(n), index)[0])} is missing")
            raise DemoFileError(f"{where}: episodes must be numbered 0 .. {n - 1}: {what}")
        if isinstance(total, int) and total != n:
            raise DemoFileError(f"{where}: {n} episodes, but meta/info.json has total_episodes {total}")
        for i in range(n):
            length = int(out["length"][i])
            span = int(out["dataset_to_index"][i] - out["dataset_from_index"][i])
            if length <= 0 or span != length:
                raise DemoFileError(f"{where}: episode {i} has length {length} but dataset_from_index .. "
                                    f"dataset_to_index spans {span} frames")

    # -- reading episodes ------------------------------------------------------------------------
    def _episode_file(self, template: str, chunk: int, file: int, **kw) -> Path:
        try:
            return self.root / template.format(chunk_index=chunk, file_index=file, episode_chunk=chunk,
                                               episode_index=file, **kw)
        except (KeyError, IndexError, ValueError) as e:
            raise DemoFileError(f"{self.root / INFO_PATH}: cannot fill the path template {template!r} ({e})") from None

    def episodes(self) -> Iterator[Episode]:
        """Every episode, in order, as a validated `Episode` (``demo_<i>``, source the dataset path)."""
        pa, pq = import_pyarrow()
        table = self._table
        data_keys = [f for f in [*self.obs_features.values(), "action", "next.reward", "next.done", "next.success",
                                 "states"] if f in self.specs and self.specs[f][1] != "video"]
        data_keys = list(dict.fromkeys(data_keys))
        current: tuple[Path, Any, dict[int, np.ndarray]] | None = None
        readers: dict[str, tuple[Path, VideoReader]] = {}
        try:
            for i in range(self.n_episodes):
                path = self._episode_file(self.info["data_path"], int(table["data/chunk_index"][i]),
                                          int(table["data/file_index"][i]))
                if current is None or current[0] != path:
                    current = (path, *self._read_data_file(path, data_keys))
                _, data, rows_of = current
                rows = rows_of.get(i)
                length = self.lengths[i]
                name = f"demo_{i}"
                where = f"{name} (episode {i}) in {self.path}"
                if rows is None or len(rows) != length:
                    raise DemoFileError(f"{where}: {path.relative_to(self.root)} holds "
                                        f"{0 if rows is None else len(rows)} rows of episode {i}; the episode "
                                        f"table says length {length}")
                frame_index = data["frame_index"][rows]
                order = np.argsort(frame_index, kind="stable")
                rows = rows[order]
                if not np.array_equal(frame_index[order], np.arange(length)):
                    raise DemoFileError(f"{where}: frame_index of episode {i} is not 0 .. {length - 1}")
                timestamps = data["timestamp"][rows].astype(np.float64)
                values = {f: self._column(data, f, rows, path, i) for f in data_keys}
                obs, next_obs = {}, {}
                for key, feature in self.obs_features.items():
                    if self.specs[feature][1] == "video":
                        frames = self._frames(readers, feature, i, timestamps, extra=self.final_frame)
                        obs[key] = frames[:length]
                        if self.final_frame:  # obs and next_obs: two views of the frames, no copy
                            next_obs[key] = frames[1:]
                            continue
                        last = frames[-1:]
                    else:
                        obs[key] = values[feature]
                        final = table.get(f"final/{feature}")
                        last = (self._final(final[i], obs[key], feature, i) if self.has_final and final is not None
                                else obs[key][-1:])
                    next_obs[key] = np.concatenate([obs[key][1:], last])
                actions = values["action"]
                rewards, dones = (self._per_step(values, f, length, where) for f in ("next.reward", "next.done"))
                attrs = dict(self.meta["attrs"][i]) if self.meta.get("attrs") is not None else {}
                if self.meta.get("attrs") is None and "tasks" in table and table["tasks"][i]:
                    tasks = table["tasks"][i]
                    attrs["task"] = str(tasks[0] if isinstance(tasks, list) else tasks)
                if "next.success" in values and self.meta.get("attrs") is None:
                    attrs["is_success"] = bool(values["next.success"].reshape(-1)[-1])
                yield Episode(obs=obs, next_obs=next_obs, actions=actions, rewards=rewards, dones=dones,
                              states=values.get("states"), attrs=attrs, name=name, source=self.path)
        finally:
            for _, reader in readers.values():
                reader.close()

    def _per_step(self, values: dict[str, np.ndarray], feature: str, length: int, where: str) -> np.ndarray:
        """Rewards or dones (T,) from ``next.reward`` / ``next.done``, zeros where the dataset lacks them."""
        if feature not in values:
            return np.zeros(length, np.float32)
        if values[feature][0].size != 1:
            raise DemoFileError(f"{where}: {feature} has shape {values[feature].shape[1:]}; expected one value a step")
        return values[feature].reshape(length)

    def _read_data_file(self, path: Path, keys: list[str]) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
        """The columns of one data file and, per episode it holds, its row numbers."""
        pa, pq = import_pyarrow()
        rel = path.relative_to(self.root)
        if not path.is_file():
            raise DemoFileError(f"{self.root}: missing data file {rel}")
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as e:
            raise DemoFileError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
        missing = [c for c in ("timestamp", "frame_index", "episode_index", *keys) if c not in names]
        if missing:
            raise DemoFileError(f"{path}: missing the columns {missing} (meta/info.json lists them as features)")
        try:
            table = pq.read_table(path, columns=["timestamp", "frame_index", "episode_index", *keys])
        except (pa.ArrowException, OSError) as e:
            raise DemoFileError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
        data: dict[str, Any] = {}
        for c, kind in (("timestamp", "floating"), ("frame_index", "integer"), ("episode_index", "integer")):
            col = table.column(c)
            if not getattr(pa.types, f"is_{kind}")(col.type) or col.null_count:
                raise DemoFileError(f"{path}: column {c!r} is {col.type}{' with missing values' if col.null_count else ''}; "
                                    f"expected {kind} numbers")
            data[c] = col.to_numpy()
        for k in keys:
            data[k] = table.column(k)
        episode = data["episode_index"]
        order = np.argsort(episode, kind="stable")
        ids, starts = np.unique(episode[order], return_index=True)
        bad = [int(e) for e in ids if e < 0 or e >= self.n_episodes]
        if bad:
            raise DemoFileError(f"{path}: rows of episode_index {bad[0]}, out of range: the dataset has "
                                f"{self.n_episodes} episodes (0 .. {self.n_episodes - 1})")
        bounds = [*starts[1:], len(order)]
        return data, {int(e): order[s:t] for e, s, t in zip(ids, starts, bounds)}

    def _column(self, data: dict[str, Any], feature: str, rows: np.ndarray, path: Path, episode: int) -> np.ndarray:
        """One feature's values at ``rows`` as (T, *shape), checked against meta/info.json."""
        pa, _ = import_pyarrow()
        shape, dtype = self.specs[feature]
        where = f"demo_{episode} (episode {episode}) in {self.path}: {path.relative_to(self.root)} column {feature!r}"
        col = data[feature].take(pa.array(rows))
        if hasattr(col, "combine_chunks"):
            col = col.combine_chunks()
        if dtype == "image":
            return self._images(col, shape, where)
        arr, depth = col, 0
        while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
            if arr.null_count:
                raise DemoFileError(f"{where}: {arr.null_count} missing values")
            arr, depth = arr.flatten(), depth + 1
        leaf = arr.type
        if not (pa.types.is_integer(leaf) or pa.types.is_floating(leaf) or pa.types.is_boolean(leaf)):
            raise DemoFileError(f"{where} holds {col.type} values; meta/info.json declares {dtype} {list(shape)}")
        if arr.null_count:
            raise DemoFileError(f"{where}: {arr.null_count} missing values")
        values = arr.to_numpy(zero_copy_only=False)
        try:
            declared = np.dtype(dtype)
        except TypeError:
            raise DemoFileError(f"{self.root / INFO_PATH}: features[{feature!r}] has dtype {dtype!r}, not a number type") from None
        if (declared.kind == "b") != (values.dtype.kind == "b") or (declared.kind == "f") != (values.dtype.kind == "f"):
            raise DemoFileError(f"{where} holds {col.type} values; meta/info.json declares {dtype} {list(shape)}")
        size = int(np.prod(shape, dtype=np.int64))
        if values.size != len(rows) * size:
            raise DemoFileError(f"{where} holds {values.size} values for {len(rows)} rows; meta/info.json declares "
                                f"shape {list(shape)} ({size} a row)")
        return values.reshape(len(rows), *shape)

    def _images(self, col, shape: tuple[int, ...], where: str) -> np.ndarray:
        """Image features stored in the parquet file (structs of encoded bytes), decoded with Pillow."""
        try:
            from PIL import Image
        except ImportError:
            raise ImitateError(f"{where}: image features stored as PNG/JPEG bytes need Pillow (pip install pillow)") from None
        out = []
        for item in col.to_pylist():
            data = item.get("bytes") if isinstance(item, dict) else item
            if not isinstance(data, (bytes, bytearray)):
                raise DemoFileError(f"{where}: an image cell holds no encoded bytes ({type(data).__name__})")
            try:
                image = Image.open(io.BytesIO(data))
                image = np.asarray(image.convert("L" if shape[-1] == 1 else "RGB"))
            except OSError as e:
                raise DemoFileError(f"{where}: an image cannot be decoded ({e})") from None
            out.append(image[..., None] if image.ndim == 2 else image)
        frames = np.stack(out)
        if frames.shape[1:] != shape:
            raise DemoFileError(f"{where}: images of shape {frames.shape[1:]}; meta/info.json declares {list(shape)}")
        return frames

    def _frames(self, readers: dict, feature: str, i: int, timestamps: np.ndarray, extra: bool) -> np.ndarray:
        """Episode ``i``'s frames of a video feature (and the final frame after it, with ``extra``)."""
        table = self._table
        path = self._episode_file(self.info["video_path"], int(table[f"videos/{feature}/chunk_index"][i]),
                                  int(table[f"videos/{feature}/file_index"][i]), video_key=feature)
        shape = self.specs[feature][0]
        if feature not in readers or readers[feature][0] != path:
            if feature in readers:
                readers[feature][1].close()
            if not path.is_file():
                raise DemoFileError(f"demo_{i} (episode {i}) in {self.path}: missing video file "
                                    f"{path.relative_to(self.root)} of {feature}")
            readers[feature] = (path, VideoReader(path, channels=shape[-1]))
        start = float(table[f"videos/{feature}/from_timestamp"][i])
        times = start + timestamps
        if extra:
            times = np.append(times, times[-1] + 1.0 / self.fps)
        try:
            frames = readers[feature][1].read(times, self.fps)
        except DemoFileError as e:
            raise DemoFileError(f"demo_{i} (episode {i}) in {self.path}: {feature}: {e}") from None
        if frames.shape[1:] != shape:
            raise DemoFileError(f"demo_{i} (episode {i}) in {self.path}: {path.relative_to(self.root)} has frames "
                                f"of shape {frames.shape[1:]}; meta/info.json declares {feature} {list(shape)}")
        return frames

    def _final(self, value: Any, obs: np.ndarray, feature: str, i: int) -> np.ndarray:
        final = np.asarray(value, dtype=obs.dtype)
        if final.size != int(np.prod(obs.shape[1:])):
            raise DemoFileError(f"demo_{i} (episode {i}) in {self.path}: meta/episodes column final/{feature} "
                                f"has {final.size} values; expected {obs.shape[1:]}")
        return final.reshape(1, *obs.shape[1:])


# -- writing ---------------------------------------------------------------------------------------
#: Frames an episode contributes to the statistics of an image feature (evenly spaced), as LeRobot samples them.
IMAGE_STAT_FRAMES = 16


class _Stats:
    """Running min, max, mean, std and count of one feature (per element; per channel for images,
    from `IMAGE_STAT_FRAMES` frames an episode)."""

    def __init__(self, image: bool):
        self.image, self.n, self.sum, self.sq, self.min, self.max = image, 0, 0.0, 0.0, None, None

    def add(self, x: np.ndarray) -> None:
        if self.image:  # (T, H, W, C) uint8 -> per channel in [0, 1], from up to IMAGE_STAT_FRAMES frames
            x = x[np.unique(np.linspace(0, len(x) - 1, IMAGE_STAT_FRAMES).round().astype(int))]
            x = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
        else:
            x = x.reshape(len(x), -1).astype(np.float64)
        self.n += len(x)
        self.sum = self.sum + x.sum(0)
        self.sq = self.sq + (x * x).sum(0)
        self.min = x.min(0) if self.min is None else np.minimum(self.min, x.min(0))
        self.max = x.max(0) if self.max is None else np.maximum(self.max, x.max(0))

    def json(self, shape: tuple[int, ...], frames: int) -> dict[str, Any]:
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sq / self.n - mean * mean, 0.0))
        out_shape = (shape[-1], 1, 1) if self.image else shape
        as_list = lambda v: np.asarray(v).reshape(out_shape).tolist()  # noqa: E731
        return {"min": as_list(self.min), "max": as_list(self.max), "mean": as_list(mean), "std": as_list(std),
                "count": [int(frames)]}


def _arrow_array(pa, values: np.ndarray):
    """(T, *shape) values as an arrow column: scalars for shape (1,) or (), fixed-size lists otherwise."""
    t = len(values)
    shape = values.shape[1:]
    if int(np.prod(shape, dtype=np.int64)) == 1 and len(shape) <= 1:
        return pa.array(values.reshape(t))
    arr = pa.array(values.reshape(-1))
    for n in reversed(shape):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(n))
    return arr


def _pandas_index_metadata(index: str, columns: list[tuple[str, str, str]]) -> dict[bytes, bytes]:
    """Schema metadata that makes pandas read column ``index`` as the frame's index (meta/tasks.parquet)."""
    entries = [{"name": n, "field_name": n, "pandas_type": p, "numpy_type": t, "metadata": None} for n, p, t in columns]
    meta = {"index_columns": [index], "column_indexes": [], "columns": entries,
            "creator": {"library": "pyarrow", "version": "0"}, "pandas_version": "2.2.0"}
    return {b"pandas": json.dumps(meta).encode()}


def write_lerobot_dataset(dst: str | os.PathLike, episodes: Iterable[Episode], env_args: dict[str, Any] | None = None,
                          *, fps: float | None = None, video_codec: str = "h264", crf: int | None = None, gop: int = 2,
                          filter_keys: dict[str, Sequence[str]] | None = None, robot_type: str | None = None,
                          data_file_mb: float = 100.0, final_observation: bool = True,
                          progress: Callable[[int, int], None] | None = None) -> Path:
    """Write episodes as a LeRobot v3 dataset folder, atomically.

    The dataset is written into a temporary folder beside ``dst`` and renamed into place when
    complete; an existing ``dst`` is refused. Episodes are streamed one at a time. Low-dimensional
    observations, actions, rewards (``next.reward``), dones (``next.done``) and states (``states``)
    go to parquet with their dtypes (values read back bit-identical); image keys (uint8 (H, W, C))
    become videos (`imitate.data.video.VideoWriter`). LeRobot holds no next observation: each
    episode's ``next_obs`` must be its ``obs`` one step later (an ImitateError naming the demo and key
    otherwise), and the final observation (``next_obs`` at the last step) is kept in
    meta/imitate.json's layout (see the module docstring), with the observation key names, env_args,
    filter keys and demo attributes. Episode extras are not written.

    Args:
        dst: the dataset folder to create.
        episodes: the demonstrations (any iterable; `Episode` objects).
        env_args: robomimic env_args, kept in meta/imitate.json.
        fps: frames per second of the dataset (LeRobot times frames by it); default: env_args'
            ``env_kwargs.control_freq`` (robosuite's control rate) where it is a number, else `DEFAULT_FPS`.
        video_codec: ``h264`` (default: fastest to write and read) or ``av1`` (smaller).
        crf, gop: the encoder's quality and keyframe interval (`VideoWriter`).
        filter_keys: mask name -> demo names, kept in meta/imitate.json.
        robot_type: LeRobot's robot_type entry.
        data_file_mb: a new data (and video) file is begun past this many MB of frame data.
        final_observation: keep each episode's final observation (``next_obs`` at its last step);
            False where it is unknown (episodes read from a file without next_obs), so that readers
            derive and flag it rather than take a filled value for a real one.
        progress: called with (episodes written, frames written) after each episode.
    """
    pa, pq = import_pyarrow()
    dst = Path(dst)
    if dst.exists():
        raise ImitateError(f"{dst} already exists; a LeRobot dataset is written only to a new folder")
    if fps is None:
        freq = ((env_args or {}).get("env_kwargs") or {}).get("control_freq")
        fps = freq if isinstance(freq, (int, float)) and not isinstance(freq, bool) and freq > 0 else DEFAULT_FPS
    if fps <= 0:
        raise ImitateError(f"fps (--fps) is {fps}; expected a positive number")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        _write(tmp, dst, episodes, env_args, fps, video_codec, crf, gop, filter_keys, robot_type, data_file_mb,
               final_observation, progress, pa, pq)
        if dst.exists():
            raise ImitateError(f"{dst} already exists; a LeRobot dataset is written only to a new folder")
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(root: Path, dst: Path, episodes: Iterable[Episode], env_args, fps, video_codec, crf, gop, filter_keys,
           robot_type, data_file_mb, final_observation, progress, pa, pq) -> None:
    layout = None            # set from the first episode
    features: dict[str, dict[str, Any]] = {}
    stats: dict[str, _Stats] = {}
    episode_rows: list[dict[str, Any]] = []
    attrs: list[dict[str, Any]] = []
    names: list[str] = []
    tasks: dict[str, int] = {}
    data_writer = None
    video_writers: dict[str, VideoWriter] = {}
    video_info: dict[str, dict[str, Any]] = {}
    chunk = file = 0
    file_bytes = 0.0
    total = 0
    try:
        for i, ep in enumerate(episodes):
            where = f"{ep.name} in {ep.source}"
            if layout is None:
                layout = {}
                for key, value in ep.obs.items():
                    image = is_image(value.shape[1:], value.dtype)
                    layout[key] = (feature_of(key, image), image, value.shape[1:], value.dtype)
                clash = [f for f in {v[0] for v in layout.values()} if sum(v[0] == f for v in layout.values()) > 1]
                if clash:
                    raise ImitateError(f"{where}: observation keys map to the same LeRobot feature {clash}")
                arrays0 = {"action": ep.actions, "next.reward": ep.rewards, "next.done": ep.dones}
                if ep.states is not None:
                    arrays0["states"] = ep.states
                step_layout = {f: (v.shape[1:], v.dtype) for f, v in arrays0.items()}
            if set(ep.obs) != set(layout):
                raise ImitateError(f"{where}: observation keys {sorted(ep.obs)} differ from the first episode's {sorted(layout)}")
            if (ep.states is None) != ("states" not in step_layout):
                raise ImitateError(f"{where}: states {'missing' if ep.states is None else 'present'}, unlike the first episode")
            length = len(ep)
            columns: dict[str, np.ndarray] = {}
            for key, (feature, image, shape, dtype) in layout.items():
                value = ep.obs[key]
                if value.shape[1:] != shape or value.dtype != dtype:
                    raise ImitateError(f"{where}: obs/{key} is {value.dtype} {value.shape[1:]}; the first episode's is {dtype} {shape}")
                if not np.array_equal(ep.next_obs[key][:-1], value[1:]):
                    step = int(np.flatnonzero([not np.array_equal(a, b) for a, b in zip(ep.next_obs[key][:-1], value[1:])])[0])
                    raise ImitateError(f"{where}: next_obs/{key} at step {step} is not obs/{key} at step {step + 1}; "
                                       f"a LeRobot dataset holds no next observations, so this demo cannot be written")
                if not image:
                    columns[feature] = value
            for feature, value in (("action", ep.actions), ("next.reward", ep.rewards), ("next.done", ep.dones),
                                   ("states", ep.states)):
                if value is None:
                    continue
                if value.shape[1:] != step_layout[feature][0] or value.dtype != step_layout[feature][1]:
                    raise ImitateError(f"{where}: {feature} is {value.dtype} {value.shape[1:]}; the first episode's "
                                       f"is {step_layout[feature][1]} {step_layout[feature][0]}")
                columns[feature] = value
            # a new data file (and video files) past the size limit
            row_bytes = sum(v.nbytes for v in columns.values()) + 40 * length
            if data_writer is not None and file_bytes + row_bytes > data_file_mb * 1e6:
                data_writer.close()
                data_writer = None
                for w in video_writers.values():
                    w.close()
                video_writers = {}
                file += 1
                if file == CHUNKS_SIZE:
                    chunk, file = chunk + 1, 0
                file_bytes = 0.0
            task = ep.attrs.get("task") if isinstance(ep.attrs.get("task"), str) else (
                (env_args or {}).get("env_name") or "demonstration")
            task_index = tasks.setdefault(str(task), len(tasks))
            frame_index = np.arange(length, dtype=np.int64)
            base = {"timestamp": (frame_index / fps).astype(np.float32), "frame_index": frame_index,
                    "episode_index": np.full(length, i, np.int64), "index": total + frame_index,
                    "task_index": np.full(length, task_index, np.int64)}
            batch = pa.table({**{k: pa.array(v) for k, v in base.items()},
                              **{f: _arrow_array(pa, v) for f, v in columns.items()}})
            if data_writer is None:
                path = root / DATA_PATH.format(chunk_index=chunk, file_index=file)
                path.parent.mkdir(parents=True, exist_ok=True)
                data_writer = pq.ParquetWriter(path, batch.schema)
            elif batch.schema != data_writer.schema:
                raise ImitateError(f"{where}: its columns {batch.schema} differ from the first episode's")
            data_writer.write_table(batch)
            file_bytes += row_bytes
            row = {"episode_index": i, "tasks": [str(task)], "length": length,
                   "data/chunk_index": chunk, "data/file_index": file,
                   "dataset_from_index": total, "dataset_to_index": total + length,
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for key, (feature, image, shape, dtype) in layout.items():
                value = ep.obs[key]
                if image:
                    if feature not in video_writers:
                        video_writers[feature] = VideoWriter(root / VIDEO_PATH.format(
                            video_key=feature, chunk_index=chunk, file_index=file), fps, *shape,
                            codec=video_codec, crf=crf, gop=gop)
                    w = video_writers[feature]
                    start = w.n_frames / fps
                    w.write(value)
                    if final_observation:
                        w.write(ep.next_obs[key][-1:])  # the final observation, after the episode's range
                    video_info[feature] = w.info()
                    row.update({f"videos/{feature}/chunk_index": chunk, f"videos/{feature}/file_index": file,
                                f"videos/{feature}/from_timestamp": start,
                                f"videos/{feature}/to_timestamp": start + length / fps})
                    stats.setdefault(feature, _Stats(True)).add(value)
                elif final_observation:
                    row[f"final/{feature}"] = ep.next_obs[key][-1].reshape(-1).tolist()
            for f, v in {**base, **columns}.items():
                stats.setdefault(f, _Stats(False)).add(v)
            episode_rows.append(row)
            attrs.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in ep.attrs.items()})
            names.append(f"demo_{i}")
            total += length
            if progress is not None:
                progress(i + 1, total)
    finally:
        if data_writer is not None:
            data_writer.close()
        for w in video_writers.values():
            w.close()
    if layout is None:
        raise ImitateError(f"{dst}: no episodes to write")

    # meta/episodes, meta/tasks
    path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    episode_table = pa.table({k: [r[k] for r in episode_rows] for k in episode_rows[0]})
    pq.write_table(episode_table, path)
    task_table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "task": pa.array(list(tasks))})
    task_table = task_table.replace_schema_metadata(_pandas_index_metadata(
        "task", [("task_index", "int64", "int64"), ("task", "unicode", "object")]))
    pq.write_table(task_table, root / TASKS_PATH)

    # meta/info.json, meta/stats.json, meta/imitate.json
    for f, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                     ("index", "int64"), ("task_index", "int64")):
        features[f] = {"dtype": dtype, "shape": [1], "names": None}
    for key, (feature, image, shape, dtype) in layout.items():
        if image:
            features[feature] = {"dtype": "video", "shape": list(shape), "names": ["height", "width", "channels"],
                                 "info": video_info[feature]}
        else:
            features[feature] = {"dtype": np.dtype(dtype).name, "shape": list(shape) or [1], "names": None}
    for feature, (shape, dtype) in step_layout.items():
        features[feature] = {"dtype": np.dtype(dtype).name, "shape": list(shape) or [1], "names": None}
    has_video = any(image for _, image, _, _ in layout.values())
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": len(names),
            "total_frames": total, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": data_file_mb, "video_files_size_in_mb": 500, "fps": int(fps) if float(fps).is_integer() else fps,
            "splits": {"train": f"0:{len(names)}"}, "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if has_video else None, "features": features}
    (root / INFO_PATH).write_text(json.dumps(info, indent=4))
    shapes = {f: tuple(spec["shape"]) for f, spec in features.items()}
    (root / STATS_PATH).write_text(json.dumps({f: s.json(shapes[f], total) for f, s in stats.items()}, indent=4))
    masks = {}
    for mask, members in (filter_keys or {}).items():
        unknown = sorted(set(members) - set(names))
        if unknown:
            raise ImitateError(f"{dst}: filter key {mask!r} names unknown demos {unknown[:5]}")
        masks[mask] = list(members)
    meta = {"format": IMITATE_FORMAT, "obs_keys": {feature: key for key, (feature, _, _, _) in layout.items()},
            "env_args": env_args, "filter_keys": masks, "attrs": attrs, "final_observation": bool(final_observation)}
    try:
        (root / IMITATE_PATH).write_text(json.dumps(meta, indent=1))
    except TypeError as e:
        raise ImitateError(f"{dst}: env_args or a demo attribute is not JSON ({e})") from None
