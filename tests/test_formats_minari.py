"""Minari datasets: written by minari's own storage writer (its DataCollector needs jax, which is not
installed here) and by h5py following its layout, read back through `load_demo_file` with every value
equal (JPEG frames as minari itself decodes them), and malformed datasets refused by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from imitate.data import load_demo_file
from imitate.data.sources import detect_format
from imitate.errors import ImitateError
from tests.formats_data import minari_episodes, write_minari_h5, write_minari_with_library


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))


def _all(store, key):
    return store.get(key, np.arange(len(store)))


def _check(store, eps, images=None):
    cat = lambda f: np.concatenate([f(e) for e in eps])  # noqa: E731
    np.testing.assert_array_equal(_all(store, "obs/pos"), cat(lambda e: e["observations"]["pos"][:-1]))
    np.testing.assert_array_equal(_all(store, "next_obs/pos"), cat(lambda e: e["observations"]["pos"][1:]))
    np.testing.assert_array_equal(_all(store, "obs/goal_xy"), cat(lambda e: e["observations"]["goal"]["xy"][:-1]))
    np.testing.assert_array_equal(_all(store, "next_obs/goal_xy"), cat(lambda e: e["observations"]["goal"]["xy"][1:]))
    np.testing.assert_array_equal(_all(store, "actions"), cat(lambda e: e["actions"]))
    np.testing.assert_array_equal(_all(store, "rewards"), cat(lambda e: e["rewards"]))
    np.testing.assert_array_equal(_all(store, "dones"), cat(lambda e: e["terminations"]).astype(np.float32))
    assert not store.next_obs_derived and store.format == "minari"
    if images is not None:
        np.testing.assert_array_equal(_all(store, "obs/cam"), np.concatenate([f[:-1] for f in images]))
        np.testing.assert_array_equal(_all(store, "next_obs/cam"), np.concatenate([f[1:] for f in images]))


def test_a_dataset_written_by_minari_reads_back_exactly_with_jpeg_frames(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari", reason="minari is not installed (pip install minari)")
    eps = minari_episodes(3, seed=0, image=(32, 32, 3))  # >= 32x32 uint8: minari stores JPEG
    folder = write_minari_with_library(tmp_path / "datasets", "test/cam-v0", eps, image=(32, 32, 3),
                                       monkeypatch=monkeypatch)
    assert detect_format(folder) == "minari"
    # minari's own reader decodes the frames: imitate's must give the same pixels
    theirs = [ep.observations["cam"] for ep in minari.load_dataset("test/cam-v0").iterate_episodes()]
    diff = np.abs(theirs[0].astype(int) - eps[0]["observations"]["cam"].astype(int))
    assert 0 < diff.max() and diff.mean() < 8  # JPEG: lossy, close
    for lazy in (False, True):
        store = load_demo_file(folder, lazy=lazy)
        assert store.obs_keys == ["cam", "goal_xy", "pos"] and store.is_image("obs/cam")
        _check(store, eps, images=theirs)
        assert store.env_args["env_name"] == "Pendulum-v1"
        assert any("JPEG" in n for n in store.notes)
        assert store.source == str(folder)
    # the hdf5 file itself and its data folder name the same dataset
    assert load_demo_file(folder / "data" / "main_data.hdf5").n_episodes == 3
    assert detect_format(folder / "data") == "minari"


def test_a_box_observation_is_the_state_key_and_gymnasium_unknown_ids_give_no_env(tmp_path):
    eps = minari_episodes(2, seed=1, dict_obs=False)
    folder = write_minari_h5(tmp_path / "box", eps, env_spec={"id": "NoSuchEnv-v9", "kwargs": {}})
    store = load_demo_file(folder)
    assert store.obs_keys == ["state"] and store.env_args is None
    assert any("NoSuchEnv-v9 is not registered" in n for n in store.notes)
    np.testing.assert_array_equal(_all(store, "next_obs/state"),
                                  np.concatenate([e["observations"][1:] for e in eps]))
    named = write_minari_h5(tmp_path / "fp", eps, env_spec={"id": "imitate/ForkedPath-v0", "kwargs": {"gap_width": 0.2}})
    assert load_demo_file(named).env_args == {"env_name": "imitate/ForkedPath-v0", "type": 2,
                                              "env_kwargs": {"gap_width": 0.2}}


def test_lazy_and_in_memory_agree_and_obs_keys_select(tmp_path):
    eps = minari_episodes(4, seed=2)
    folder = write_minari_h5(tmp_path / "d", eps)
    mem, lazy = load_demo_file(folder), load_demo_file(folder, lazy=True)
    for store in (mem, lazy):
        _check(store, eps)
    only = load_demo_file(folder, obs_keys=["pos"], lazy=True)
    assert only.obs_keys == ["pos"]
    with pytest.raises(ImitateError, match=r"no observation key\(s\) \['cam'\]"):
        load_demo_file(folder, obs_keys=["cam"])


@pytest.mark.parametrize("lazy", [False, True])
def test_malformed_datasets_are_refused_naming_path_demo_and_key(tmp_path, lazy):
    import h5py

    eps = minari_episodes(3, seed=3)
    extra = [dict(e) for e in eps]
    extra[1] = {**extra[1], "actions": np.concatenate([extra[1]["actions"], extra[1]["actions"][-1:]])}
    path = write_minari_h5(tmp_path / "extra", extra)
    with pytest.raises(ImitateError, match=r"demo_1 \(episode_1\) in .*extra: actions has (\d+) rows but rewards has"):
        load_demo_file(path, lazy=lazy)

    path = write_minari_h5(tmp_path / "short", eps)
    with h5py.File(path / "data" / "main_data.hdf5", "a") as f:
        pos = f["episode_2/observations/pos"][()]
        del f["episode_2/observations/pos"]
        f["episode_2/observations/pos"] = pos[:-1]
    with pytest.raises(ImitateError, match=r"demo_2 \(episode_2\) in .*short: observations/pos has \d+ rows; "
                                           r"expected T \+ 1"):
        load_demo_file(path, lazy=lazy)

    path = write_minari_h5(tmp_path / "nometa", eps)
    (path / "data" / "metadata.json").unlink()
    with pytest.raises(ImitateError, match=r"nometa: no data/metadata.json"):
        load_demo_file(path, lazy=lazy, format="minari")

    path = write_minari_h5(tmp_path / "badjson", eps)
    (path / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(ImitateError, match=r"badjson: data/metadata.json is not valid JSON"):
        load_demo_file(path, lazy=lazy)

    path = write_minari_h5(tmp_path / "inf", eps)
    with h5py.File(path / "data" / "main_data.hdf5", "a") as f:
        f["episode_0/rewards"][2] = np.inf
    with pytest.raises(ImitateError, match=r"demo_0 in .*inf: rewards holds NaN or inf at step 2"):
        load_demo_file(path, lazy=lazy)


def test_metadata_json_written_by_the_helper_is_minaris_shape(tmp_path):
    folder = write_minari_h5(tmp_path / "d", minari_episodes(2, seed=4), env_spec={"id": "Pendulum-v1"})
    meta = json.loads((folder / "data" / "metadata.json").read_text())
    assert meta["total_episodes"] == 2 and json.loads(meta["env_spec"])["id"] == "Pendulum-v1"
