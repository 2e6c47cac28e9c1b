"""Diffusion Policy's zarr ReplayBuffer: written with the zarr package as its ReplayBuffer grows one,
read back through `load_demo_file` (in memory and lazily through the decoded cache) with every value
equal, and malformed buffers refused with messages naming the path, the demo and the key."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from imitate.data import load_demo_file
from imitate.data.sources import decoded_cache_path, detect_format, open_source
from imitate.errors import ImitateError

zarr = pytest.importorskip("zarr", reason="the zarr package is not installed (pip install 'imitate-policies[formats]')")
from tests.formats_data import episodes_arrays, write_replay_buffer  # noqa: E402


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rows(store):
    return np.arange(len(store))


def _check_values(store, episodes):
    cat = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    assert store.obs_keys == sorted(k for k in cat if k != "action")
    np.testing.assert_array_equal(store.episode_ends, np.cumsum([len(e["action"]) for e in episodes]))
    for k in store.obs_keys:
        got = store.get(f"obs/{k}", _rows(store))
        assert got.dtype == cat[k].dtype
        np.testing.assert_array_equal(got, cat[k])
    np.testing.assert_array_equal(store.get("actions", _rows(store)), cat["action"])
    # next_obs: the next row within the episode, unknown at each episode's last step
    known = np.flatnonzero(store.next_obs_known())
    assert len(known) == len(store) - len(episodes)
    np.testing.assert_array_equal(store.get("next_obs/state", known), cat["state"][known + 1])
    with pytest.raises(ImitateError, match="last step"):
        store.get("next_obs/state", store.episode_ends[:1] - 1)


@pytest.mark.parametrize("compressor", ["blosc", "zstd", "gzip", "none"])
def test_a_replay_buffer_reads_back_every_value_in_memory_and_lazily(tmp_path, compressor):
    eps = episodes_arrays(4, seed=1)
    path = write_replay_buffer(tmp_path / "pusht.zarr", eps, compressor=compressor)
    assert detect_format(path) == "zarr"
    mem = load_demo_file(path)
    lazy = load_demo_file(path, lazy=True)
    for store in (mem, lazy):
        _check_values(store, eps)
        assert store.source == str(path) and store.format == "zarr" and store.next_obs_derived
        assert store.is_image("obs/img") and store.dtype("obs/img") == np.uint8
        assert any(n.startswith("rewards: absent") for n in store.notes)
        np.testing.assert_array_equal(store.get("rewards", _rows(store)), 0)
    assert lazy.decoded_cache.startswith(str(tmp_path / "cache"))
    lazy.close()


def test_a_zipped_replay_buffer_and_selected_keys(tmp_path):
    eps = episodes_arrays(3, seed=2)
    path = write_replay_buffer(tmp_path / "pusht.zarr.zip", eps, zip_file=True)
    assert path.is_file() and detect_format(path) == "zarr"
    store = load_demo_file(path, obs_keys=["state"])
    assert store.obs_keys == ["state"] and "obs/img" not in store.keys
    np.testing.assert_array_equal(store.get("obs/state", _rows(store)), np.concatenate([e["state"] for e in eps]))
    with pytest.raises(ImitateError, match=r"no observation key\(s\) \['depth'\].*\['img', 'state'\]"):
        load_demo_file(path, obs_keys=["depth"])


def test_rewards_and_dones_are_read_where_present(tmp_path):
    eps = episodes_arrays(2, image=None, seed=3)
    for i, e in enumerate(eps):
        e["reward"] = np.linspace(0, 1, len(e["action"])).astype(np.float32)
        e["done"] = (np.arange(len(e["action"])) == len(e["action"]) - 1).astype(np.uint8)
    path = write_replay_buffer(tmp_path / "r.zarr", eps)
    store = load_demo_file(path)
    assert store.obs_keys == ["state"]
    np.testing.assert_array_equal(store.get("rewards", _rows(store)), np.concatenate([e["reward"] for e in eps]))
    assert store.get("dones", _rows(store)).sum() == 2
    assert not any(n.startswith(("rewards", "dones")) for n in store.notes)


def test_a_float_image_of_whole_numbers_is_read_as_uint8_and_other_floats_refused(tmp_path):
    eps = episodes_arrays(2, seed=4)
    for e in eps:
        e["img"] = e["img"].astype(np.float32)  # as some Push-T releases store it
    path = write_replay_buffer(tmp_path / "f.zarr", eps)
    store = load_demo_file(path)
    assert store.dtype("obs/img") == np.uint8
    np.testing.assert_array_equal(store.get("obs/img", _rows(store)), np.concatenate([e["img"] for e in eps]))
    assert any("read as uint8" in n for n in store.notes)
    eps[1]["img"][2, 0, 0, 0] = 0.5
    bad = write_replay_buffer(tmp_path / "g.zarr", eps)
    with pytest.raises(ImitateError, match=r"demo_1 in .*g\.zarr: data/img .*not whole numbers"):
        load_demo_file(bad)


def test_the_dataset_is_never_written_and_the_cache_is_reused_until_it_changes(tmp_path, cache_dir):
    from imitate.data.sources import dataset_fingerprint

    eps = episodes_arrays(3, seed=5)
    path = write_replay_buffer(tmp_path / "c.zarr", eps)
    before = dataset_fingerprint(path)
    first = load_demo_file(path, lazy=True)
    cache = first.decoded_cache
    mtime = (cache_dir / cache.split("/")[-1]).stat().st_mtime_ns
    second = load_demo_file(path, lazy=True)
    assert second.decoded_cache == cache and (cache_dir / cache.split("/")[-1]).stat().st_mtime_ns == mtime
    assert dataset_fingerprint(path) == before  # nothing in the dataset was written or touched
    assert decoded_cache_path(path, "zarr", ["state"]) != decoded_cache_path(path, "zarr")
    eps[0]["action"][0, 0] += 1.0
    write_replay_buffer(path, eps)
    third = load_demo_file(path, lazy=True)
    assert third.decoded_cache != cache
    assert third.get("actions", np.array([0]))[0, 0] == eps[0]["action"][0, 0]
    for s in (first, second, third):
        s.close()


def _edit_meta(path, key, edit):
    meta_file = path / key / ".zarray"
    meta = json.loads(meta_file.read_text())
    edit(meta)
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize("lazy", [False, True])
def test_malformed_buffers_are_refused_naming_path_demo_and_key(tmp_path, lazy):
    eps = episodes_arrays(3, seed=6)
    ok = write_replay_buffer(tmp_path / "ok.zarr", eps)

    ends = write_replay_buffer(tmp_path / "ends.zarr", eps)
    arr = zarr.open_group(str(ends), mode="r+")["meta/episode_ends"]
    values = arr[:]
    arr[:] = [values[1], values[0], values[2]]
    with pytest.raises(ImitateError, match=r"demo_1 in .*ends\.zarr: meta/episode_ends is not increasing"):
        load_demo_file(ends, lazy=lazy)

    short = write_replay_buffer(tmp_path / "short.zarr", eps)
    arr = zarr.open_group(str(short), mode="r+")["meta/episode_ends"]
    arr[-1] = arr[-1] - 1
    with pytest.raises(ImitateError, match=r"short\.zarr: data/\w+ has \d+ rows but meta/episode_ends ends at row"):
        load_demo_file(short, lazy=lazy)

    nan = [dict(e) for e in eps]
    nan[2] = {**nan[2], "state": nan[2]["state"].copy()}
    nan[2]["state"][1, 3] = np.nan
    path = write_replay_buffer(tmp_path / "nan.zarr", nan)
    with pytest.raises(ImitateError, match=r"nan\.zarr: .*\n\s*demo_2: obs/state holds NaN or inf at step 1"):
        load_demo_file(path, lazy=lazy)

    import shutil

    no_meta = tmp_path / "nometa.zarr"
    shutil.copytree(ok, no_meta)
    shutil.rmtree(no_meta / "meta" / "episode_ends")
    with pytest.raises(ImitateError, match=r"nometa\.zarr: no meta/episode_ends"):
        load_demo_file(no_meta, lazy=lazy)

    codec = tmp_path / "codec.zarr"
    shutil.copytree(ok, codec)
    _edit_meta(codec, "data/img", lambda m: m.update(compressor={"id": "imagecodecs_jpeg2k", "level": 50}))
    with pytest.raises(ImitateError, match=r"codec\.zarr: data/img is compressed with codec .*imagecodecs_jpeg2k"):
        load_demo_file(codec, lazy=lazy)


def test_a_missing_zarr_package_names_the_extra(tmp_path, monkeypatch):
    path = write_replay_buffer(tmp_path / "x.zarr", episodes_arrays(2, seed=7))
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImitateError, match=r"needs the Python package 'zarr'.*imitate-policies\[formats\]"):
        open_source(path)


def test_detect_format_says_what_it_looked_for(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(ImitateError, match=r"plain: is a directory, but not a dataset imitate knows.*meta/info.json.*\.zarr.*main_data"):
        detect_format(tmp_path / "plain")
    with pytest.raises(ImitateError, match="no such file or folder"):
        detect_format(tmp_path / "missing.zarr")
    with pytest.raises(ImitateError, match="--format 'parquet'"):
        load_demo_file(tmp_path / "plain", format="parquet")


def test_train_from_pixels_on_a_zarr_gives_the_same_run_in_memory_and_lazily(tmp_path, capsys):
    from imitate.cli import main

    path = write_replay_buffer(tmp_path / "imgs.zarr", episodes_arrays(3, image=(24, 24, 3), seed=8))
    losses = []
    for lazy in ("false", "true"):
        assert main(["train", "--data", str(path), "--out", str(tmp_path / f"run_{lazy}"), "--head", "deterministic",
                     "--steps", "2", "--batch-size", "4", "--eval-episodes", "0", "--val-every", "0",
                     "--action-horizon", "4", "--n-act", "2", "--quiet", "--lazy", lazy, "--set", "hidden_dims=8",
                     "--set", "encoder.feature_dim=8", "--set", "encoder.conv_channels=4",
                     "--set", "encoder.image_feature_dim=4"]) == 0
        losses.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train_loss"])
        spec = json.loads((tmp_path / f"run_{lazy}" / "config.json").read_text())["policy"]
        assert "img" in json.dumps(spec)
    assert losses[0] == losses[1]


def test_an_unknown_format_flag_is_refused_before_a_run_directory_is_made(tmp_path, capsys):
    from imitate.cli import main

    path = write_replay_buffer(tmp_path / "x.zarr", episodes_arrays(2, image=None, seed=9))
    for command in (["train", "--data"], ["offline", "--data"], ["gail", "--data"], ["airl", "--data"],
                    ["compare", "--data"], ["dagger", "--initial-data"]):
        assert main([*command, str(path), "--format", "parquet", "--head" if command[0] != "compare" else "--heads",
                     "gaussian", "--out", str(tmp_path / "run"), "--quiet"]) == 1
        assert "--format 'parquet': choose auto, robomimic, lerobot, zarr, minari" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
