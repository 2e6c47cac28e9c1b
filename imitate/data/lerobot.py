"""LeRobot datasets (v3): read as a source of episodes (`LeRobotSource`); written from episodes by
`imitate.data.lerobot_writer.write_lerobot_dataset`.

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
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from imitate.data.episode import Episode
from imitate.data.video import EXTRA, VideoReader
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
