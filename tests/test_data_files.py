"""Demonstration files: round trip, robomimic compatibility, validation errors, safe writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from imitate.data import Episode, load_demo_file, make_env_args, scan_demo_file, write_demo_file
from imitate.errors import DemoFileError, ImitateError
from tests.conftest import make_episode


def test_round_trip_keeps_every_array_and_the_layout(demo_file, episodes):
    store = load_demo_file(demo_file)
    assert store.n_episodes == len(episodes) and len(store) == sum(len(e) for e in episodes)
    for i, ep in enumerate(episodes):
        back = store.episode(i)
        for key, value in ep.arrays().items():
            np.testing.assert_array_equal(back.arrays()[key], value, err_msg=key)
    with h5py.File(demo_file, "r") as f:
        assert f["data"].attrs["total"] == len(store)
        env_args = json.loads(f["data"].attrs["env_args"])
        assert env_args == {"env_name": "imitate/ForkedPath-v0", "type": 2, "env_kwargs": {}}
        assert [f["data"][d].attrs["num_samples"] for d in store.demo_names] == [len(e) for e in episodes]
        train = {m.decode() for m in f["mask/train"][()]}
        valid = {m.decode() for m in f["mask/valid"][()]}
    assert train | valid == set(store.demo_names) and not train & valid and len(valid) == 2


def test_demos_are_ordered_by_number_not_by_name(tmp_path, rng):
    eps = [make_episode(rng, 3 + i) for i in range(12)]
    path = write_demo_file(tmp_path / "d.hdf5", eps)
    layout = scan_demo_file(path)
    assert layout.demo_names[:3] == ["demo_0", "demo_1", "demo_2"] and layout.demo_names[-1] == "demo_11"
    np.testing.assert_array_equal(layout.lengths, [3 + i for i in range(12)])


def test_lazy_and_in_memory_stores_hold_the_same_rows(demo_file):
    mem, lazy = load_demo_file(demo_file), load_demo_file(demo_file, lazy=True, block_rows=10, cache_blocks=1)
    rows = np.random.default_rng(1).integers(0, len(mem), size=(40, 3))
    for key in mem.keys:
        np.testing.assert_array_equal(lazy.get(key, rows), mem.get(key, rows), err_msg=key)
    # windows (rows within one episode), in sorted and in shuffled order
    starts, ends = mem.episode_starts, mem.episode_ends
    anchors = np.random.default_rng(2).integers(0, len(mem), size=50)
    episode = np.searchsorted(ends, anchors, side="right")
    windows = np.clip(anchors[:, None] + np.arange(-2, 3), starts[episode][:, None], ends[episode][:, None] - 1)
    for order in (np.argsort(anchors), np.arange(50)):
        np.testing.assert_array_equal(lazy.get_windows("actions", windows[order]), mem.get("actions", windows[order]))


def _write_robomimic_style(path, rng, n_demos=4):
    """A file laid out as robomimic's dataset scripts write it (robosuite env, states, extra attrs)."""
    shapes = {"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,), "object": (10,)}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(n_demos):
            n = int(rng.integers(20, 40))
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = n
            g.attrs["model_file"] = "<mujoco model='x'/>"
            for k, s in shapes.items():
                seq = rng.normal(size=(n + 1, *s))
                g.create_dataset(f"obs/{k}", data=seq[:-1])
                g.create_dataset(f"next_obs/{k}", data=seq[1:])
            g.create_dataset("actions", data=rng.uniform(-1, 1, size=(n, 7)))
            g.create_dataset("rewards", data=np.zeros(n))
            g.create_dataset("dones", data=np.r_[np.zeros(n - 1), 1].astype(np.int64))
            g.create_dataset("states", data=rng.normal(size=(n, 45)))
            total += n
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"robots": ["Panda"]}})
        f.create_dataset("mask/train", data=np.array([f"demo_{i}" for i in range(n_demos - 1)], dtype="S"))
        f.create_dataset("mask/valid", data=np.array([f"demo_{n_demos - 1}"], dtype="S"))
    return shapes


def test_robomimic_style_file_with_several_low_dim_keys_loads(tmp_path, rng):
    from imitate.data import WindowSampler

    path = tmp_path / "lift_low_dim.hdf5"
    shapes = _write_robomimic_style(path, rng)
    store = load_demo_file(path)
    assert sorted(store.obs_keys) == sorted(shapes) and store.action_dim == 7
    assert store.env_args["env_name"] == "Lift" and len(store.episodes_in("valid")) == 1
    batch = WindowSampler(store, obs_horizon=2, action_horizon=4, batch_size=8, episodes="train").sample()
    assert batch.obs["object"].shape == (8, 2, 10) and batch.action.shape == (8, 4, 7)
    assert scan_demo_file(path).has_states


def _robomimic():
    try:
        from robomimic.utils import obs_utils
        from robomimic.utils.dataset import SequenceDataset
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("robomimic is not installed here (`make test` installs it)")
    return obs_utils, SequenceDataset


def test_robomimic_sequence_dataset_reads_our_file_with_the_same_windows(demo_file):
    from imitate.data import WindowSampler

    obs_utils, SequenceDataset = _robomimic()
    keys = ["pos", "goal"]
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": keys}})
    To, Ta = 3, 4
    ds = SequenceDataset(hdf5_path=str(demo_file), obs_keys=keys, dataset_keys=("actions", "rewards", "dones"),
                         frame_stack=To, seq_length=Ta, pad_frame_stack=True, pad_seq_length=True,
                         hdf5_cache_mode="all", hdf5_use_swmr=False, filter_by_attribute="train")
    store = load_demo_file(demo_file)
    sampler = WindowSampler(store, obs_horizon=To, action_horizon=Ta, episodes="train", with_next=True)
    assert len(ds) == sampler.n_windows  # one window per step of the train demos, in the same order
    ours = sampler.gather(np.arange(sampler.n_windows))
    for i in range(len(ds)):
        item = ds[i]
        for k in keys:
            np.testing.assert_allclose(item["obs"][k][:To], ours.obs[k][i], err_msg=f"window {i} obs/{k}")
            np.testing.assert_allclose(item["next_obs"][k][:To], ours.next_obs[k][i])
        np.testing.assert_allclose(item["actions"][To - 1:], ours.action[i], err_msg=f"window {i} actions")


# -- malformed files: every case names the file, the demo and the key ------------------------------

def _corrupt(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _replace(f, key, value):
    del f[key]
    f[key] = value


CASES = {
    "missing actions": (lambda f: f.__delitem__("data/demo_2/actions"), ["demo_2", "actions"]),
    "missing obs key": (lambda f: f.__delitem__("data/demo_3/obs/goal"), ["demo_3", "obs/goal"]),
    "missing next_obs group": (lambda f: f.__delitem__("data/demo_4/next_obs"), ["demo_4", "next_obs"]),
    "missing rewards": (lambda f: f.__delitem__("data/demo_0/rewards"), ["demo_0", "rewards"]),
    "obs length": (lambda f: _replace(f, "data/demo_2/obs/pos", np.zeros((11, 2))), ["demo_2", "obs/pos", "11", "12"]),
    "next_obs length": (lambda f: _replace(f, "data/demo_4/next_obs/goal", np.zeros((29, 2))), ["demo_4", "next_obs/goal"]),
    "dones length": (lambda f: _replace(f, "data/demo_0/dones", np.zeros(4)), ["demo_0", "dones"]),
    "nan obs": (lambda f: _replace(f, "data/demo_5/obs/pos", np.full((7, 2), np.nan)), ["demo_5", "obs/pos", "NaN"]),
    "inf action": (lambda f: _replace(f, "data/demo_7/actions", np.r_[np.zeros((15, 2)), [[np.inf, 0]]]),
                   ["demo_7", "actions", "step 15"]),
    "empty demo": (lambda f: [_replace(f, f"data/demo_6/{k}", np.zeros((0, 2))) for k in
                              ("obs/pos", "obs/goal", "next_obs/pos", "next_obs/goal", "actions")]
                   + [_replace(f, f"data/demo_6/{k}", np.zeros(0)) for k in ("rewards", "dones")], ["demo_6", "empty"]),
    "string dtype": (lambda f: _replace(f, "data/demo_1/actions", np.array([[b"a", b"b"]])), ["demo_1", "actions", "dtype"]),
    "1-D actions": (lambda f: _replace(f, "data/demo_2/actions", np.zeros(12)), ["demo_2", "actions", "shape"]),
    "num_samples": (lambda f: f["data/demo_3"].attrs.__setitem__("num_samples", 4), ["demo_3", "num_samples"]),
    "shape across demos": (lambda f: _replace(f, "data/demo_5/obs/goal", np.zeros((7, 3))), ["demo_5", "obs/goal", "(3,)"]),
    "no data group": (lambda f: f.__delitem__("data"), ["data"]),
    "foreign group": (lambda f: f.create_group("data/trajectory_9"), ["trajectory_9"]),
    "bad env_args": (lambda f: f["data"].attrs.__setitem__("env_args", "{not json"), ["env_args", "JSON"]),
    "mask names missing demo": (lambda f: _replace(f, "mask/valid", np.array([b"demo_99"])), ["mask/valid", "demo_99"]),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_file_gets_a_clear_error(demo_file, case, lazy):
    corrupt, words = CASES[case]
    _corrupt(demo_file, corrupt)
    with pytest.raises(DemoFileError) as err:
        load_demo_file(demo_file, lazy=lazy)
    message = str(err.value)
    assert str(demo_file) in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_not_hdf5_missing_and_directory_are_clear_errors(tmp_path):
    text = tmp_path / "notes.hdf5"
    text.write_text("these are not demonstrations\n")
    for path, words in ((text, "not an HDF5 file"), (tmp_path / "absent.hdf5", "no such file"), (tmp_path, "directory")):
        with pytest.raises(DemoFileError, match=words):
            load_demo_file(path)


def test_episode_validates_itself(rng):
    good = make_episode(rng, 4)
    with pytest.raises(DemoFileError, match="actions has 4 rows but obs/pos has 3"):
        Episode(obs={"pos": good.obs["pos"][:3]}, next_obs={"pos": good.next_obs["pos"]}, actions=good.actions,
                rewards=good.rewards, dones=good.dones, name="demo_7", source="lift.hdf5")
    with pytest.raises(DemoFileError, match="obs keys"):
        Episode(obs=good.obs, next_obs={"pos": good.next_obs["pos"]}, actions=good.actions,
                rewards=good.rewards, dones=good.dones)


def test_existing_file_is_kept_unless_overwrite(tmp_path, episodes):
    path = tmp_path / "d.hdf5"
    path.write_bytes(b"precious")
    with pytest.raises(ImitateError, match="already exists"):
        write_demo_file(path, episodes)
    assert path.read_bytes() == b"precious"
    write_demo_file(path, episodes, overwrite=True)
    assert load_demo_file(path).n_episodes == len(episodes)


def test_failed_write_leaves_no_file(tmp_path, episodes, monkeypatch):
    path = tmp_path / "d.hdf5"
    bad = episodes[:3] + [type("Broken", (), {"__len__": lambda s: 1, "attrs": {}, "obs": episodes[0].obs,
                                              "arrays": lambda s: 1 / 0})()]
    with pytest.raises(ZeroDivisionError):
        write_demo_file(path, bad)
    assert list(tmp_path.iterdir()) == []


def test_killed_write_leaves_no_file_under_the_final_name(tmp_path):
    path = tmp_path / "big.hdf5"
    script = f"""
import time, numpy as np
from imitate.data import Episode, write_demo_file
from imitate.data import episode as episode_module
from tests.conftest import make_episode
eps = [make_episode(np.random.default_rng(i), 50) for i in range(40)]
original = episode_module.Episode.arrays
def slow(self):
    time.sleep(0.05)
    return original(self)
episode_module.Episode.arrays = slow
write_demo_file({str(path)!r}, eps)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        time.sleep(0.02)
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), "the writer never started"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not path.exists()
