"""Demonstration datasets in other formats than robomimic's HDF5: which format a path is, and its source.

A **source** describes a dataset from its metadata and yields its episodes one at a time as validated
`imitate.data.episode.Episode` objects (``demo_0 .. demo_{E-1}`` in dataset order, ``source=`` the
dataset path, so every error names path, demo and key). Sources are duck-typed:

    format: str            "lerobot-v3", "zarr", "minari"
    path: str
    n_episodes: int
    lengths: list[int]     steps per episode, from metadata
    env_args: dict | None  robomimic env_args, or None
    filter_keys: dict      mask name -> demo names
    notes: list[str]       one line per derived or filled field
    next_obs_derived: bool (optional, default False) the format has no next observation: the
                           episodes' ``next_obs`` is obs row t + 1, the last row repeated, and the
                           store derives it instead (unknown at each episode's last step)
    episodes() -> Iterator[Episode]

Formats (`detect_format`):

    robomimic  an HDF5 file                                          (imitate.data.scan, reader)
    lerobot    a folder with meta/info.json (LeRobot v3)             (imitate.data.lerobot)
    zarr       a .zarr folder or .zarr.zip (Diffusion Policy's ReplayBuffer) (imitate.data.zarr_source)
    minari     a folder with data/main_data.hdf5 + data/metadata.json (imitate.data.minari_source)

`imitate.data.reader.load_demo_file` reads any of them into an `EpisodeStore`: in memory, or lazily
through a decoded cache (`decoded_cache_path`): the episodes written once as a robomimic file under
``$IMITATE_CACHE`` (default ``~/.cache/imitate/decoded``), never into the dataset itself.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from imitate.errors import ConfigError, DemoFileError, ImitateError

#: The formats `detect_format` names and ``--format`` accepts (besides ``auto``).
FORMATS = ("robomimic", "lerobot", "zarr", "minari")
#: Other spellings ``--format`` accepts.
FORMAT_ALIASES = {"hdf5": "robomimic", "lerobot-v3": "lerobot", "lerobot_v3": "lerobot", "zarr-zip": "zarr"}
#: The extra that installs the optional readers' packages.
FORMATS_EXTRA = "pip install 'imitate-policies[formats]'"
#: Bump when the decoded cache's content changes for the same dataset (old caches are then unused).
CACHE_VERSION = 1
#: Image compression of the decoded cache: lzf read as fast as no compression (within the noise of
#: benchmarks/zarr_throughput.py) at a 36th of its size on rendered 96x96 frames, and faster than gzip.
CACHE_IMAGE_COMPRESSION = "lzf"


def select_obs_keys(path: str, obs_keys: Sequence[str] | None, available: list[str]) -> list[str]:
    """The observation keys asked for (``--obs-keys``; all of ``available`` when none), each checked to be in
    the dataset: a DemoFileError naming the dataset and what it has otherwise."""
    if not obs_keys:
        return list(available)
    unknown = [k for k in obs_keys if k not in available]
    if unknown:
        raise DemoFileError(f"{path}: no observation key(s) {unknown}; the dataset has {available}")
    return list(dict.fromkeys(obs_keys))


def optional_import(module: str, what: str):
    """Import an optional package, or raise an ImitateError naming it and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImitateError(f"{what} needs the Python package '{module.split('.')[0]}', which is not installed "
                           f"({e}); install the formats extra: {FORMATS_EXTRA}") from None


def normalize_format(format: str | None) -> str | None:
    """A ``--format`` value as one of `FORMATS`, or None for ``auto`` / empty; anything else is a ConfigError."""
    if format is None:
        return None
    key = str(format).strip().lower()
    if key in ("", "auto"):
        return None
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose auto, {', '.join(FORMATS)}")
    return key


def _is_zarr_path(p: Path) -> bool:
    name = p.name.lower()
    if p.is_file():
        return name.endswith(".zarr.zip")
    return p.is_dir() and (name.endswith(".zarr") or (p / ".zgroup").exists() or (p / "zarr.json").exists())


def _is_minari_dir(p: Path) -> bool:
    return p.is_dir() and (p / "data" / "main_data.hdf5").is_file() and (p / "data" / "metadata.json").is_file()


def detect_format(path: str | os.PathLike) -> str:
    """Which format a path holds: ``robomimic`` (an HDF5 file), ``lerobot`` (a folder with
    meta/info.json), ``zarr`` (a ``.zarr`` folder or ``.zarr.zip`` file), ``minari`` (a folder with
    data/main_data.hdf5 and data/metadata.json; also that main_data.hdf5 itself, or its data folder).

    Raises:
        DemoFileError: the path is missing or none of these, with what was looked for.
    """
    p = Path(path)
    if not p.exists():
        raise DemoFileError(f"{p}: no such file or folder")
    if p.is_file():
        if _is_zarr_path(p):
            return "zarr"
        if p.name == "main_data.hdf5" and (p.parent / "metadata.json").is_file():
            return "minari"
        import h5py

        try:
            if h5py.is_hdf5(p):
                return "robomimic"
        except OSError as e:
            raise DemoFileError(f"{p}: cannot be read ({e})") from None
    else:
        if (p / "meta" / "info.json").is_file():
            return "lerobot"
        if _is_minari_dir(p):
            return "minari"
        if p.name == "data" and (p / "main_data.hdf5").is_file() and (p / "metadata.json").is_file():
            return "minari"
        if _is_zarr_path(p):
            return "zarr"
    what = "is a directory, but not a dataset imitate knows" if p.is_dir() else "is not a dataset imitate knows"
    raise DemoFileError(
        f"{p}: {what}. Looked for: an HDF5 file (robomimic layout), a "
        f"LeRobot folder (meta/info.json), a Diffusion Policy zarr (a .zarr folder or .zarr.zip file with "
        f"data/ and meta/episode_ends), a Minari folder (data/main_data.hdf5 + data/metadata.json); "
        f"--format forces one")


def resolve_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format to read ``path`` as: ``format`` (a ``--format`` value) unless it is auto, else detected."""
    return normalize_format(format) or detect_format(path)


def open_source(path: str | os.PathLike, format: str | None = None, obs_keys: Sequence[str] | None = None):
    """The source of a dataset in a format other than robomimic (see the module docstring).

    Args:
        path: the dataset (folder or file).
        format: ``lerobot``, ``zarr``, ``minari`` or None/``auto`` (detected).
        obs_keys: observation keys to read (default: all the dataset has).

    Raises:
        DemoFileError: missing or malformed metadata, naming the path and key; ImitateError: an
            optional package is missing (naming the extra), or the path is a robomimic file (read it with
            `imitate.data.load_demo_file`).
    """
    fmt = resolve_format(path, format)
    keys = list(obs_keys) if obs_keys else None
    if fmt == "zarr":
        from imitate.data.zarr_source import ZarrSource

        return ZarrSource(path, obs_keys=keys)
    if fmt == "minari":
        from imitate.data.minari_source import MinariSource

        return MinariSource(path, obs_keys=keys)
    if fmt == "lerobot":
        try:
            lerobot = importlib.import_module("imitate.data.lerobot")
        except ModuleNotFoundError as e:
            if e.name in ("imitate.data.lerobot", "imitate.data.lerobot_writer", "imitate.data.video"):
                raise ImitateError(f"{path}: reading LeRobot datasets needs imitate.data.lerobot, which this "
                                   f"installation of imitate does not have") from None
            raise ImitateError(f"{path}: reading LeRobot datasets needs the Python package '{e.name}', which is "
                               f"not installed; install the formats extra: {FORMATS_EXTRA}") from None
        return lerobot.LeRobotSource(path, obs_keys=keys)
    raise ImitateError(f"{path}: a robomimic HDF5 file is read by imitate.data.load_demo_file, not as a source")


# -- the decoded cache -------------------------------------------------------------------------------
def cache_root() -> Path:
    """Where decoded caches are written: ``$IMITATE_CACHE`` or ``~/.cache/imitate/decoded``."""
    env = os.environ.get("IMITATE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "imitate" / "decoded"


def dataset_fingerprint(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file of a dataset (a folder's files, sorted; or the file)."""
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [(p.name, st.st_size, st.st_mtime_ns)]
    out = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            f = Path(root) / name
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f.relative_to(p)), st.st_size, st.st_mtime_ns))
    return out


def decoded_cache_path(path: str | os.PathLike, format: str, obs_keys: Sequence[str] | None = None) -> Path:
    """The decoded cache file of a dataset: named by a hash of its absolute path, the size and mtime of
    every file in it, the observation keys read and `CACHE_VERSION`; a changed dataset gets a new one."""
    key: dict[str, Any] = {"path": str(Path(path).resolve()), "format": format, "version": CACHE_VERSION,
                           "obs_keys": list(obs_keys) if obs_keys else None,
                           "files": dataset_fingerprint(path)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    name = Path(path).name.replace(".", "_") or "dataset"
    return cache_root() / f"{name}-{format}-{digest}.hdf5"


# -- conversion ------------------------------------------------------------------------------------
def store_episode(store, i: int):
    """Episode ``i`` of a store as an `Episode`; where the store derives ``next_obs`` (its source had
    none) the episode's last ``next_obs`` row repeats its last observation, as the sources fill it
    (`EpisodeStore.episode` refuses to read that unknown row)."""
    import numpy as np

    from imitate.data.episode import Episode

    if not store.next_obs_derived:
        return store.episode(i)
    rows = np.arange(store.episode_starts[i], store.episode_ends[i])
    obs = {k: store.get(f"obs/{k}", rows) for k in store.obs_keys}
    return Episode(obs=obs, next_obs={k: np.concatenate([v[1:], v[-1:]]) for k, v in obs.items()},
                   actions=store.get("actions", rows), rewards=store.get("rewards", rows),
                   dones=store.get("dones", rows), attrs=store.demo_attrs[i], name=store.demo_names[i],
                   source=store.source)


def _robomimic_episodes(path: str, obs_keys: Sequence[str] | None):
    """A robomimic file as a source-like object: its episodes read one at a time from a lazy store."""
    from imitate.data.reader import load_demo_file

    store = load_demo_file(path, obs_keys=obs_keys, lazy=True, cache_blocks=2, format="robomimic")

    def episodes():
        try:
            for i in range(store.n_episodes):
                yield store_episode(store, i)
        finally:
            store.close()

    return store, episodes


def convert_dataset(src: str | os.PathLike, dst: str | os.PathLike, format_out: str = "robomimic",
                    format: str | None = None, obs_keys: Sequence[str] | None = None, overwrite: bool = False,
                    image_compression: str = "gzip", fps: float = 0.0, video_codec: str = "h264",
                    valid_fraction: float = 0.1, progress: bool = True) -> dict[str, Any]:
    """Write a dataset of any readable format as a robomimic HDF5 file, or as a LeRobot v3 dataset.

    Every episode is read through its source and validated on the way (`imitate.data.episode.Episode`);
    the output is written atomically (a temporary name moved into place) and an existing ``dst`` is
    refused unless ``overwrite``. robomimic output: where the source has no next observation
    (``next_obs_derived``) none is stored, so readers derive it as from the source; a seeded
    ``valid_fraction`` of the episodes forms the ``valid`` filter key (``train`` the rest) unless the
    source has filter keys of its own. LeRobot output: `imitate.data.lerobot_writer.write_lerobot_dataset`
    (videos in ``video_codec``; ``fps`` frames per second, 0 for the writer's default).

    Returns:
        a summary: src, dst, formats, episodes, transitions, notes.
    """
    from imitate.data.reader import _checked_episodes, _format_of

    fmt_in = _format_of(src, format)
    if format_out not in ("robomimic", "lerobot"):
        raise ConfigError(f"--format-out {format_out!r}: choose robomimic or lerobot")
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise ImitateError(f"{dst} already exists; pass --overwrite to replace it")
    if Path(src).resolve() == dst.resolve():
        raise ImitateError(f"{dst}: the output would replace its own input")
    if fmt_in == "robomimic":
        store, make = _robomimic_episodes(str(src), obs_keys)
        meta = {"env_args": store.env_args, "filter_keys": store.filter_keys, "derived": store.next_obs_derived,
                "lengths": [int(n) for n in store.episode_lengths], "notes": []}
        episodes = make()
    else:
        source = open_source(src, fmt_in, obs_keys)
        meta = {"env_args": source.env_args, "filter_keys": source.filter_keys,
                "derived": bool(getattr(source, "next_obs_derived", False)),
                "lengths": [int(n) for n in source.lengths], "notes": list(source.notes)}
        episodes = _checked_episodes(source, src, progress)
    if format_out == "robomimic":
        from imitate.data.hdf5 import write_demo_file
        from imitate.data.scan import scan_demo_file

        own = dict(meta["filter_keys"] or {})
        write_demo_file(dst, episodes, meta["env_args"], overwrite=overwrite,
                        valid_fraction=0.0 if own else valid_fraction, filter_keys=own,
                        image_compression=image_compression, store_next_obs=not meta["derived"])
        scan_demo_file(dst)  # the written file read back from its metadata
    else:
        try:
            from imitate.data.lerobot_writer import write_lerobot_dataset
        except ModuleNotFoundError as e:
            if e.name in ("imitate.data.lerobot", "imitate.data.lerobot_writer", "imitate.data.video"):
                raise ImitateError("writing LeRobot datasets needs imitate.data.lerobot, which this installation "
                                   "of imitate does not have") from None
            raise ImitateError(f"writing LeRobot datasets needs the Python package '{e.name}', which is not "
                               f"installed; install the formats extra: {FORMATS_EXTRA}") from None
        _replace_folder(dst, overwrite, lambda target: write_lerobot_dataset(
            target, episodes, meta["env_args"], fps=float(fps) or None, video_codec=video_codec,
            filter_keys=meta["filter_keys"] or None, final_observation=not meta["derived"]))
    return {"src": str(src), "dst": str(dst), "format_in": fmt_in, "format_out": format_out,
            "episodes": len(meta["lengths"]), "transitions": int(sum(meta["lengths"])), "notes": meta["notes"]}


def _replace_folder(dst: Path, overwrite: bool, write) -> None:
    """``write(target)`` a new folder at ``dst``; with ``overwrite`` an existing ``dst`` is swapped out only
    once the new one is complete (written beside it under a temporary name)."""
    import shutil

    if not dst.exists():
        write(dst)
        return
    if not overwrite:
        raise ImitateError(f"{dst} already exists; pass --overwrite to replace it")
    fresh = dst.parent / f".{dst.name}.new-{os.getpid()}"
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    write(fresh)
    os.replace(dst, old)
    os.replace(fresh, dst)
    shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
