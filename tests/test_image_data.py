"""Image observations in demo files: validation, uint8 all the way, compression, identical batches in
memory and lazily, ``imitate data info``, and robomimic's own reader agreeing window for window."""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from imitate.data import Episode, WindowSampler, load_demo_file, make_env_args, write_demo_file
from imitate.data.info import demo_file_info, format_info
from imitate.data.store import partition_blocks, row_nbytes
from imitate.errors import DemoFileError, ImitateError

CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")


def smooth_frames(rng, n: int, size: int = 32, channels: int = 3) -> np.ndarray:
    """(n, size, size, C) uint8 frames: a flat floor and a square that moves, all exact integers, so
    each frame differs and compresses well."""
    frames = np.full((n, size, size, channels), 90, dtype=np.uint8)
    frames[..., 0] = 140
    pos = rng.integers(0, size - 8, size=2)
    for t in range(n):
        y, x = (pos + t) % (size - 8)
        frames[t, y:y + 8, x:x + 8] = (220, 30, 30)[:channels]
    return frames


def image_episode(rng, n: int, name: str = "demo", size: int = 32, cameras=CAMERAS) -> Episode:
    obs = {c: smooth_frames(rng, n + 1, size) for c in cameras}
    obs["robot0_eef_pos"] = rng.normal(size=(n + 1, 3)).astype(np.float32)
    obs["robot0_gripper_qpos"] = rng.normal(size=(n + 1, 2)).astype(np.float32)
    return Episode(obs={k: v[:-1] for k, v in obs.items()}, next_obs={k: v[1:] for k, v in obs.items()},
                   actions=rng.uniform(-1, 1, size=(n, 7)).astype(np.float32),
                   rewards=np.zeros(n, np.float32), dones=np.r_[np.zeros(n - 1), 1].astype(np.uint8), name=name)


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    eps = [image_episode(rng, n, f"demo_{i}") for i, n in enumerate([20, 7, 20, 13, 20])]
    return write_demo_file(tmp_path / "images.hdf5", eps, make_env_args("imitate/ForkedPath-v0", {}),
                           valid_fraction=0.2)


def _set_all(path, key, make):
    """Replace ``obs/<key>`` and ``next_obs/<key>`` of every demo by ``make(demo_index, T)``."""
    with h5py.File(path, "a") as f:
        for i, d in enumerate(sorted(f["data"], key=lambda d: int(d[5:]))):
            n = len(f[f"data/{d}/actions"])
            for sub in ("obs", "next_obs"):
                del f[f"data/{d}/{sub}/{key}"]
                f[f"data/{d}/{sub}/{key}"] = make(i, n)


# -- validation: every refusal names file, demo and key ---------------------------------------------
REFUSED = {
    "float pixels": (lambda i, n: np.zeros((n, 32, 32, 3), np.float32), ["demo_0", "must be uint8", "(32, 32, 3)"]),
    "two channels": (lambda i, n: np.zeros((n, 32, 32, 2), np.uint8), ["demo_0", "C=2", "1 or 3 channels"]),
    "four channels": (lambda i, n: np.zeros((n, 32, 32, 4), np.uint8), ["demo_0", "C=4"]),
    "channel first": (lambda i, n: np.zeros((n, 3, 32, 32), np.uint8), ["demo_0", "channel-first", "(32, 32, 3)"]),
    "depth": (lambda i, n: np.zeros((n, 32, 32, 1), np.float32), ["demo_0", "depth", "not supported yet"]),
    "resolution changes": (lambda i, n: np.zeros((n, 32 if i != 2 else 24, 32, 3), np.uint8),
                           ["demo_2", "(24, 32, 3)", "demo_0 has (32, 32, 3)"]),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_image_key_is_refused_naming_file_demo_and_key(image_file, case, lazy):
    make, words = REFUSED[case]
    _set_all(image_file, "agentview_image", make)
    with pytest.raises(DemoFileError) as err:
        load_demo_file(image_file, lazy=lazy)
    message = str(err.value)
    for word in [str(image_file), "obs/agentview_image", *words]:
        assert word in message, f"{word!r} not in {message!r}"


def test_an_episode_with_float_pixels_is_refused_before_writing(tmp_path):
    rng = np.random.default_rng(1)
    ep = image_episode(rng, 5)
    obs = {**ep.obs, "agentview_image": ep.obs["agentview_image"].astype(np.float32)}
    with pytest.raises(ImitateError, match=r"obs/agentview_image .*must be uint8"):
        Episode(obs=obs, next_obs={**ep.next_obs, "agentview_image": obs["agentview_image"]},
                actions=ep.actions, rewards=ep.rewards, dones=ep.dones)


def test_an_unknown_image_compression_is_refused_by_name(tmp_path):
    ep = image_episode(np.random.default_rng(0), 4)
    with pytest.raises(ImitateError, match=r"image_compression .*'zstd'.*gzip, lzf, none"):
        write_demo_file(tmp_path / "x.hdf5", [ep], image_compression="zstd")
    assert not (tmp_path / "x.hdf5").exists()


# -- uint8 from file to batch ----------------------------------------------------------------------
@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
def test_images_stay_uint8_through_reader_store_and_sampler(image_file, lazy):
    store = load_demo_file(image_file, lazy=lazy)
    with h5py.File(image_file, "r") as f:
        written = f["data/demo_3/obs/agentview_image"][()]
    assert store.is_image("obs/agentview_image") and not store.is_image("obs/robot0_eef_pos")
    assert store.dtype("obs/agentview_image") == np.uint8 and store.shape("obs/agentview_image") == (32, 32, 3)
    rows = np.arange(store.episode_starts[3], store.episode_ends[3])
    got = store.get("obs/agentview_image", rows)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, written)
    sampler = WindowSampler(store, obs_horizon=2, action_horizon=4, batch_size=8, with_next=True)
    batch = sampler.sample()
    for k in CAMERAS:
        assert batch.obs[k].dtype == np.uint8 and batch.obs[k].shape == (8, 2, 32, 32, 3)
        assert batch.next_obs[k].dtype == np.uint8
    assert batch.obs["robot0_eef_pos"].dtype == np.float32


def test_a_window_repeats_the_first_frame_before_an_episode_start_and_next_obs_is_derived(tmp_path):
    rng = np.random.default_rng(2)
    eps = [image_episode(rng, n, f"demo_{i}") for i, n in enumerate([6, 9])]
    path = write_demo_file(tmp_path / "d.hdf5", eps, store_next_obs=False)
    with h5py.File(path, "r") as f:
        assert "next_obs" not in f["data/demo_0"]
    for lazy in (False, True):
        store = load_demo_file(path, lazy=lazy)
        assert store.next_obs_derived
        sampler = WindowSampler(store, obs_horizon=3, action_horizon=2, batch_size=4)
        batch = sampler.gather(np.array([6, 7, 8]))  # demo_1 steps 0, 1, 2
        frames = eps[1].obs["agentview_image"]
        np.testing.assert_array_equal(batch.obs["agentview_image"][0], frames[[0, 0, 0]])
        np.testing.assert_array_equal(batch.obs["agentview_image"][2], frames[[0, 1, 2]])
        nxt = store.get("next_obs/agentview_image", np.arange(6, 14))
        assert nxt.dtype == np.uint8
        np.testing.assert_array_equal(nxt, eps[1].next_obs["agentview_image"][:8])
        with pytest.raises(ImitateError, match="last step"):
            store.get("next_obs/agentview_image", np.array([14]))


@pytest.mark.parametrize("block_rows,cache_blocks,shuffle_blocks", [(10, 1, 1), (16384, 2, 2), (16384, 16, 8)])
def test_in_memory_and_lazy_batches_are_identical_with_images(image_file, block_rows, cache_blocks, shuffle_blocks):
    # rows of 4 x 3 KB images + low-dim against 64 KB blocks: with 16384 rows the byte bound sizes the blocks
    kw = dict(block_rows=block_rows, block_bytes=64 << 10)
    mem, lazy = load_demo_file(image_file, **kw), load_demo_file(image_file, lazy=True, cache_blocks=cache_blocks, **kw)
    np.testing.assert_array_equal(mem.block_starts, lazy.block_starts)
    assert len(mem.block_starts) - 1 == 5
    kw = dict(obs_horizon=2, action_horizon=5, batch_size=6, seed=3, with_next=True, shuffle_blocks=shuffle_blocks)
    a, b = WindowSampler(mem, **kw), WindowSampler(lazy, **kw)
    for _ in range(2 * len(a)):
        x, y = a.sample(), b.sample()
        for k in x.obs:
            assert x.obs[k].dtype == y.obs[k].dtype
            np.testing.assert_array_equal(x.obs[k], y.obs[k])
            np.testing.assert_array_equal(x.next_obs[k], y.next_obs[k])
        np.testing.assert_array_equal(x.action, y.action)
        np.testing.assert_array_equal(x.action_mask, y.action_mask)


def test_blocks_are_sized_by_bytes_and_low_dim_blocks_are_unchanged():
    ends = np.array([5, 6, 18, 21, 51, 58, 60, 76])
    row = row_nbytes({"obs/cam": (84, 84, 3), "actions": (7,)}, {"obs/cam": np.uint8, "actions": np.float32})
    assert row == 84 * 84 * 3 + 28
    np.testing.assert_array_equal(partition_blocks(ends, 16384, row, block_bytes=10 * row), [0, 18, 51, 76])
    # low-dim rows are far below the bound: the row count alone decides, as before images
    np.testing.assert_array_equal(partition_blocks(ends, 10, row_bytes=64), partition_blocks(ends, 10))
    np.testing.assert_array_equal(partition_blocks(ends * 1000, 16384, 16), partition_blocks(ends * 1000, 16384))


def test_the_lazy_cache_stays_below_its_byte_bound(image_file):
    bound = 40 * 32 * 32 * 3  # 40 rows of one camera; the demos have 20, 7, 20, 13 and 20 rows
    lazy = load_demo_file(image_file, lazy=True, block_rows=1, cache_blocks=100, cache_bytes=bound)
    assert len(lazy.block_starts) - 1 == 5  # one demo a block
    for b in range(5):
        lazy._load_block(b, "obs/agentview_image")
        assert lazy._cached_bytes == sum(a.nbytes for blk in lazy._cache.values() for a in blk.values())
        assert lazy._cached_bytes <= bound and b in lazy._cache
    assert len(lazy._cache) == 2  # demo_3 (13 rows) and demo_4 (20 rows)


def test_a_lazy_store_reads_the_next_group_of_image_blocks_ahead(image_file):
    from imitate.data.store import _zlib_chunks

    mem, lazy = load_demo_file(image_file, block_rows=1), load_demo_file(image_file, lazy=True, block_rows=1)
    hints = []
    prefetch = lazy.prefetch
    lazy.prefetch = lambda blocks, keys: (hints.append((list(blocks), list(keys))), prefetch(blocks, keys))
    kw = dict(obs_horizon=2, action_horizon=3, batch_size=4, seed=1, shuffle_blocks=2)
    a, b = WindowSampler(mem, **kw), WindowSampler(lazy, **kw)
    plan = b._epoch_plan(0)
    for _ in range(len(a)):
        x, y = a.sample(), b.sample()
        for k in x.obs:
            np.testing.assert_array_equal(x.obs[k], y.obs[k])
    assert hints[0] == ([int(v) for v in plan[2][1]], [f"obs/{c}" for c in CAMERAS])  # the second group, images only
    assert [h[0] for h in hints] == [[int(v) for v in g] for g in plan[2][1:]]
    assert lazy._executor is not None and not lazy._pending  # every read ahead was used
    with h5py.File(image_file, "r") as f:
        assert _zlib_chunks(f["data/demo_0/obs/agentview_image"]) and not _zlib_chunks(f["data/demo_0/actions"])
    lazy.close()


def test_a_damaged_image_chunk_is_a_clear_error(image_file):
    with h5py.File(image_file, "r") as f:
        ds = f["data/demo_1/obs/agentview_image"]
        offset = ds.id.get_chunk_info(3).byte_offset
    with open(image_file, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 16)
    lazy = load_demo_file(image_file, lazy=True, check_values=False)
    with pytest.raises(DemoFileError, match=r"demo_1 in .*images.hdf5: cannot (decompress|read) obs/agentview_image"):
        lazy.get("obs/agentview_image", np.arange(len(lazy)))


# -- the writer compresses images; data info shows them ---------------------------------------------
def test_the_writer_stores_images_chunked_per_step_and_compressed(tmp_path):
    rng = np.random.default_rng(0)
    eps = [image_episode(rng, 20, f"demo_{i}", size=84) for i in range(3)]
    sizes = {}
    for comp in ("gzip", "lzf", "none"):
        path = write_demo_file(tmp_path / f"{comp}.hdf5", eps, image_compression=comp)
        with h5py.File(path, "r") as f:
            ds = f["data/demo_0/obs/agentview_image"]
            assert ds.dtype == np.uint8 and ds.chunks == (1, 84, 84, 3)
            assert ds.compression == (None if comp == "none" else comp)
            assert f["data/demo_0/obs/robot0_eef_pos"].compression is None  # low-dim as before
        sizes[comp] = os.path.getsize(path)
        np.testing.assert_array_equal(load_demo_file(path).get("obs/agentview_image", np.arange(20)),
                                      eps[0].obs["agentview_image"])
    raw = 3 * 20 * 2 * 2 * 84 * 84 * 3  # demos x steps x cameras x (obs, next_obs) x pixels
    assert sizes["none"] > raw
    assert sizes["gzip"] < raw / 10 and sizes["lzf"] < raw / 3
    with h5py.File(tmp_path / "gzip.hdf5", "r") as f:
        assert f["data/demo_0/obs/agentview_image"].compression_opts == 4


def test_data_info_shows_image_keys_with_resolution_and_size_on_disk(image_file):
    info = demo_file_info(image_file)
    im = info["images"]["agentview_image"]
    assert set(info["images"]) == set(CAMERAS)
    assert im["resolution"] == "32x32x3" and im["compression"] == "gzip"
    assert im["bytes_raw"] == 80 * 2 * 32 * 32 * 3  # 80 steps, obs and next_obs
    assert 0 < im["bytes_on_disk"] < im["bytes_raw"] / 5
    text = format_info(info)
    line = next(ln for ln in text.splitlines() if "agentview_image" in ln)
    assert "image 32x32x3 uint8" in line and "on disk" in line and "raw (gzip" in line
    assert "robot0_eef_pos" in text and "images" not in next(ln for ln in text.splitlines() if "robot0_eef_pos" in ln)
    out = subprocess.run([sys.executable, "-m", "imitate", "data", "info", str(image_file)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert "image 32x32x3 uint8" in out.stdout


# -- robomimic's own reader agrees ------------------------------------------------------------------
def test_robomimic_sequence_dataset_gives_the_same_windows(tmp_path):
    try:
        import robomimic.utils.obs_utils as ObsUtils
        from robomimic.utils.dataset import SequenceDataset
    except ImportError as e:
        pytest.skip(f"robomimic is not importable ({e}); pip install --no-deps robomimic==0.3.0 termcolor")
    rng = np.random.default_rng(5)
    eps = [image_episode(rng, n, f"demo_{i}", size=84) for i, n in enumerate([20, 9, 20])]
    path = write_demo_file(tmp_path / "robomimic_style.hdf5", eps, make_env_args("imitate/ForkedPath-v0", {}))
    low_dim = ["robot0_eef_pos", "robot0_gripper_qpos"]
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": low_dim, "rgb": list(CAMERAS)}})
    to, ta = 2, 3
    theirs = SequenceDataset(hdf5_path=str(path), obs_keys=(*low_dim, *CAMERAS), dataset_keys=("actions",),
                             frame_stack=to, seq_length=ta, pad_frame_stack=True, pad_seq_length=True,
                             hdf5_cache_mode="low_dim", hdf5_use_swmr=False, load_next_obs=True)
    store = load_demo_file(path)
    sampler = WindowSampler(store, obs_horizon=to, action_horizon=ta, batch_size=64, with_next=True)
    assert len(theirs) == sampler.n_windows == 49
    index = np.arange(sampler.n_windows)  # robomimic's index i is the window anchored at row i
    ours = sampler.gather(index)
    for i in index:
        item = theirs[int(i)]
        for k in CAMERAS:
            frames = item["obs"][k]
            # robomimic's dataset hands images on as stored, uint8 (T, H, W, C); its models convert
            # them to float CHW later (ObsUtils.process_obs), which is checked here as well
            assert frames.dtype == np.uint8 and frames.shape == (to - 1 + ta, 84, 84, 3)
            np.testing.assert_array_equal(frames[:to], ours.obs[k][i])
            np.testing.assert_array_equal(item["next_obs"][k][:to], ours.next_obs[k][i])
            processed = ObsUtils.process_obs(frames[:to], obs_key=k)
            np.testing.assert_allclose(processed, np.moveaxis(ours.obs[k][i], -1, -3).astype(np.float32) / 255.0)
        for k in low_dim:
            np.testing.assert_array_equal(item["obs"][k][:to], ours.obs[k][i])
        np.testing.assert_array_equal(item["actions"][to - 1:], ours.action[i])
