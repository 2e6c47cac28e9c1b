"""Writing a LeRobot v3 dataset from episodes: `write_lerobot_dataset` (the layout and the key mapping are
described in `imitate.data.lerobot`, which reads it back).

    first episode   the layout: each obs key's feature, image or not, shape, dtype (`_first_layout`)
    every episode   columns checked against it (`_columns`) -> one parquet row group; camera keys -> video
                    frames (the final observation one frame after the episode's range); statistics
    files           a new data file (and video files) past ``data_file_mb`` (`_Files`)
    at the end      meta/episodes, meta/tasks.parquet, meta/info.json, meta/stats.json, meta/imitate.json
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from imitate.data.checks import is_image
from imitate.data.episode import Episode
from imitate.data.lerobot import (CHUNKS_SIZE, CODEBASE_VERSION, DATA_PATH, DEFAULT_FPS, EPISODES_PATH, IMITATE_FORMAT,
                                  IMITATE_PATH, INFO_PATH, STATS_PATH, TASKS_PATH, VIDEO_PATH, feature_of,
                                  import_pyarrow)
from imitate.data.video import VideoWriter
from imitate.errors import ImitateError

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


def _first_layout(ep: Episode, where: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """From the first episode: obs key -> (feature, is image, shape, dtype), and the per-step feature ->
    (shape, dtype) of action, next.reward, next.done (and states where it has them)."""
    layout = {}
    for key, value in ep.obs.items():
        image = is_image(value.shape[1:], value.dtype)
        layout[key] = (feature_of(key, image), image, value.shape[1:], value.dtype)
    clash = [f for f in {v[0] for v in layout.values()} if sum(v[0] == f for v in layout.values()) > 1]
    if clash:
        raise ImitateError(f"{where}: observation keys map to the same LeRobot feature {clash}")
    steps = {"action": ep.actions, "next.reward": ep.rewards, "next.done": ep.dones}
    if ep.states is not None:
        steps["states"] = ep.states
    return layout, {f: (v.shape[1:], v.dtype) for f, v in steps.items()}


def _columns(ep: Episode, where: str, layout: dict[str, tuple], step_layout: dict[str, tuple]) -> dict[str, np.ndarray]:
    """The episode's parquet columns (low-dim observations and per-step features), each checked against
    the first episode's layout, and its next_obs checked to be obs one step later."""
    if set(ep.obs) != set(layout):
        raise ImitateError(f"{where}: observation keys {sorted(ep.obs)} differ from the first episode's {sorted(layout)}")
    if (ep.states is None) != ("states" not in step_layout):
        raise ImitateError(f"{where}: states {'missing' if ep.states is None else 'present'}, unlike the first episode")
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
    return columns


class _Files:
    """The open data file and video files, begun anew (next file index, next chunk after `CHUNKS_SIZE`)
    once the data file passes ``data_file_mb``."""

    def __init__(self, root: Path, data_file_mb: float, fps: float, video_codec: str, crf, gop: int, pq):
        self.root, self.limit, self.fps, self.pq = root, data_file_mb * 1e6, fps, pq
        self.video_args = dict(codec=video_codec, crf=crf, gop=gop)
        self.chunk = self.file = 0
        self.bytes = 0.0
        self.data = None
        self.videos: dict[str, VideoWriter] = {}

    def start_episode(self, row_bytes: float) -> None:
        if self.data is not None and self.bytes + row_bytes > self.limit:
            self.close()
            self.file += 1
            if self.file == CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
            self.bytes = 0.0
        self.bytes += row_bytes

    def write_rows(self, batch, where: str) -> None:
        if self.data is None:
            path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.data = self.pq.ParquetWriter(path, batch.schema)
        elif batch.schema != self.data.schema:
            raise ImitateError(f"{where}: its columns {batch.schema} differ from the first episode's")
        self.data.write_table(batch)

    def video(self, feature: str, shape: tuple[int, ...]) -> VideoWriter:
        if feature not in self.videos:
            self.videos[feature] = VideoWriter(self.root / VIDEO_PATH.format(
                video_key=feature, chunk_index=self.chunk, file_index=self.file), self.fps, *shape, **self.video_args)
        return self.videos[feature]

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
            self.data = None
        for w in self.videos.values():
            w.close()
        self.videos = {}


def _write(root: Path, dst: Path, episodes: Iterable[Episode], env_args, fps, video_codec, crf, gop, filter_keys,
           robot_type, data_file_mb, final_observation, progress, pa, pq) -> None:
    layout = step_layout = None            # set from the first episode
    stats: dict[str, _Stats] = {}
    episode_rows: list[dict[str, Any]] = []
    attrs: list[dict[str, Any]] = []
    tasks: dict[str, int] = {}
    video_info: dict[str, dict[str, Any]] = {}
    files = _Files(root, data_file_mb, fps, video_codec, crf, gop, pq)
    total = 0
    try:
        for i, ep in enumerate(episodes):
            where = f"{ep.name} in {ep.source}"
            if layout is None:
                layout, step_layout = _first_layout(ep, where)
            columns = _columns(ep, where, layout, step_layout)
            length = len(ep)
            files.start_episode(sum(v.nbytes for v in columns.values()) + 40 * length)
            task = ep.attrs.get("task") if isinstance(ep.attrs.get("task"), str) else (
                (env_args or {}).get("env_name") or "demonstration")
            task_index = tasks.setdefault(str(task), len(tasks))
            frame_index = np.arange(length, dtype=np.int64)
            base = {"timestamp": (frame_index / fps).astype(np.float32), "frame_index": frame_index,
                    "episode_index": np.full(length, i, np.int64), "index": total + frame_index,
                    "task_index": np.full(length, task_index, np.int64)}
            files.write_rows(pa.table({**{k: pa.array(v) for k, v in base.items()},
                                       **{f: _arrow_array(pa, v) for f, v in columns.items()}}), where)
            row = {"episode_index": i, "tasks": [str(task)], "length": length,
                   "data/chunk_index": files.chunk, "data/file_index": files.file,
                   "dataset_from_index": total, "dataset_to_index": total + length,
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for key, (feature, image, shape, dtype) in layout.items():
                value = ep.obs[key]
                if image:
                    w = files.video(feature, shape)
                    start = w.n_frames / fps
                    w.write(value)
                    if final_observation:
                        w.write(ep.next_obs[key][-1:])  # the final observation, after the episode's range
                    video_info[feature] = w.info()
                    row.update({f"videos/{feature}/chunk_index": files.chunk, f"videos/{feature}/file_index": files.file,
                                f"videos/{feature}/from_timestamp": start,
                                f"videos/{feature}/to_timestamp": start + length / fps})
                    stats.setdefault(feature, _Stats(True)).add(value)
                elif final_observation:
                    row[f"final/{feature}"] = ep.next_obs[key][-1].reshape(-1).tolist()
            for f, v in {**base, **columns}.items():
                stats.setdefault(f, _Stats(False)).add(v)
            episode_rows.append(row)
            attrs.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in ep.attrs.items()})
            total += length
            if progress is not None:
                progress(i + 1, total)
    finally:
        files.close()
    if layout is None:
        raise ImitateError(f"{dst}: no episodes to write")
    _write_meta(root, dst, pa, pq, layout, step_layout, episode_rows, tasks, stats, video_info, attrs, total, fps,
                robot_type, data_file_mb, env_args, filter_keys, final_observation)


def _write_meta(root, dst, pa, pq, layout, step_layout, episode_rows, tasks, stats, video_info, attrs, total, fps,
                robot_type, data_file_mb, env_args, filter_keys, final_observation) -> None:
    """meta/episodes, meta/tasks.parquet, meta/info.json, meta/stats.json and meta/imitate.json."""
    names = [f"demo_{i}" for i in range(len(episode_rows))]
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
    features: dict[str, dict[str, Any]] = {}
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
