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
from imitate.data.checks import SHOWN
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
    _assert_refused_naming(demo_file, *CASES[case], lazy)


def _assert_refused_naming(demo_file, corrupt, words, lazy):
    """After ``corrupt``, loading is a DemoFileError whose message names the file and every word."""
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


# -- issue 14: every class of bad input is refused in one message, every valid file reads exactly ----

def _both(f, key, value):
    """Set ``obs/<key>`` and ``next_obs/<key>`` of every demo to ``value(T)``."""
    for d in f["data"]:
        n = len(f[f"data/{d}/actions"])
        for sub in ("obs", "next_obs"):
            if key in f[f"data/{d}/{sub}"]:
                del f[f"data/{d}/{sub}/{key}"]
            f[f"data/{d}/{sub}/{key}"] = value(n)


def _all_demos(f, key, value):
    for d in f["data"]:
        _replace(f, f"data/{d}/{key}", value(len(f[f"data/{d}/actions"])))


REFUSED = {  # each raised a traceback or was accepted before
    "demo is a dataset": (lambda f: _replace(f, "data/demo_0", np.zeros(3)), ["demo_0", "is an array", "group"]),
    "obs is a dataset": (lambda f: _replace(f, "data/demo_0/obs", np.zeros((5, 2))), ["demo_0", "'obs'", "group"]),
    "next_obs is a dataset": (lambda f: _replace(f, "data/demo_6/next_obs", np.zeros((2, 2))),
                              ["demo_6", "'next_obs'", "group"]),
    "mask is a dataset": (lambda f: _replace(f, "mask", np.array([b"demo_0"])), ["'mask'", "group"]),
    "mask entry is a group": (lambda f: (f.__delitem__("mask/valid"), f.create_group("mask/valid")),
                              ["mask/valid", "group"]),
    "mask of numbers": (lambda f: _replace(f, "mask/valid", np.array([1, 2])), ["mask/valid", "demo names"]),
    "num_samples is a string": (lambda f: f["data/demo_3"].attrs.__setitem__("num_samples", "three"),
                                ["demo_3", "num_samples", "three", "integer"]),
    "num_samples is an array": (lambda f: f["data/demo_3"].attrs.__setitem__("num_samples", np.array([3, 3])),
                                ["demo_3", "num_samples", "integer"]),
    "num_samples is a fraction": (lambda f: f["data/demo_3"].attrs.__setitem__("num_samples", 2.5),
                                  ["demo_3", "num_samples", "integer"]),
    "first demo lacks an obs key": (lambda f: f.__delitem__("data/demo_0/obs/goal"),
                                    ["demo_0", "obs/goal", "demo_1 has it"]),
    "next_obs width": (lambda f: _replace(f, "data/demo_2/next_obs/pos", np.zeros((12, 3))),
                       ["demo_2", "next_obs/pos", "(3,)", "obs/pos has (2,)"]),
    "states shorter than actions": (lambda f: f["data/demo_2"].create_dataset("states", data=np.zeros((11, 4))),
                                    ["demo_2", "states", "11", "12"]),
    "actions of width 0": (lambda f: _all_demos(f, "actions", lambda n: np.zeros((n, 0))),
                           ["demo_0", "actions", "width 0"]),
    "observations of width 0": (lambda f: _both(f, "pos", lambda n: np.zeros((n, 0))),
                                ["demo_0", "obs/pos", "(0,)", "no values"]),
    "env_kwargs a list": (lambda f: f["data"].attrs.__setitem__(
        "env_args", json.dumps({"env_name": "imitate/ForkedPath-v0", "type": 2, "env_kwargs": [1, 2]})),
        ["env_args", "env_kwargs", "list"]),
    "env_args an array": (lambda f: f["data"].attrs.__setitem__("env_args", np.arange(3)), ["env_args", "JSON string"]),
    "float image": (lambda f: _both(f, "agentview_image", lambda n: np.zeros((n, 8, 8, 3), np.float32)),
                    ["demo_0", "obs/agentview_image", "(8, 8, 3)", "must be uint8"]),
    "integers a float64 cannot hold": (lambda f: _replace(f, "data/demo_4/obs/pos", np.full((30, 2), 2**60 + 1)),
                                       ["demo_4", "obs/pos", "int64", "float64", "exactly"]),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_issue_14_bad_input_is_refused_by_name(demo_file, case, lazy):
    _assert_refused_naming(demo_file, *REFUSED[case], lazy)


def test_every_problem_is_reported_at_once(demo_file):
    def corrupt(f):
        for i in range(8):
            f[f"data/demo_{i}"].attrs["num_samples"] = 99
        f.__delitem__("data/demo_2/obs/goal")
        f.__delitem__("data/demo_3/rewards")
        f["data"].attrs["env_args"] = "{"
    _corrupt(demo_file, corrupt)
    with pytest.raises(DemoFileError) as err:
        load_demo_file(demo_file)
    message, problems = str(err.value), err.value.problems
    assert len(problems) == 11 and message.startswith(f"{demo_file}: 11 problems")
    assert any(line.startswith("data.attrs['env_args'] is not valid JSON") for line in problems)
    for line in ("demo_2: missing key 'obs/goal' (demo_0 has it)",
                 "demo_3: missing key 'rewards'", "demo_7: attrs['num_samples'] is 99 but actions has 16 rows"):
        assert line in problems
    assert len(message.splitlines()) == 1 + SHOWN + 1 and message.endswith("... and 1 more")

    def mend(f):
        for i in range(8):
            f[f"data/demo_{i}"].attrs["num_samples"] = len(f[f"data/demo_{i}/actions"])
        f.create_dataset("data/demo_2/obs/goal", data=np.full((12, 2), np.inf))
        f.create_dataset("data/demo_3/rewards", data=np.zeros(3))
        f["data"].attrs["env_args"] = json.dumps(make_env_args("imitate/ForkedPath-v0"))
        _replace(f, "data/demo_5/obs/pos", np.full((7, 2), np.nan))
    _corrupt(demo_file, mend)
    for lazy in (False, True):  # the values of every demo, once the structure is whole
        with pytest.raises(DemoFileError) as err:
            load_demo_file(demo_file, lazy=lazy)
        assert err.value.problems == ["demo_2: obs/goal holds NaN or inf at step 0",
                                      "demo_5: obs/pos holds NaN or inf at step 0"]


def _rewrite_all(f, fn):
    """Replace every per-step array ``v`` of every demo with ``fn(key, v)``."""
    for d in f["data"]:
        for key in [k for k in ("actions", "rewards", "dones")] + [f"{s}/{k}" for s in ("obs", "next_obs")
                                                                  for k in f[f"data/{d}/{s}"]]:
            value = f[f"data/{d}/{key}"][()]
            _replace(f, f"data/{d}/{key}", fn(key, value))


def _assert_reads_as_written(path, written, lazy, dtype=None):
    """Every demo's arrays read back equal to ``written`` {demo: {key: array}} (and of ``dtype`` if given)."""
    store = load_demo_file(path, lazy=lazy)
    for i, demo in enumerate(store.demo_names):
        rows = np.arange(store.episode_starts[i], store.episode_ends[i])
        for key, value in written[demo].items():
            got = store.get(key, rows)
            assert got.dtype.isnative and (dtype is None or got.dtype == dtype(key, value)), (demo, key, got.dtype)
            np.testing.assert_array_equal(got, value.reshape(got.shape), err_msg=f"{demo} {key}")
    return store


def _written(path):
    with h5py.File(path, "r") as f:
        return {d: {k: f[f"data/{d}/{k}"][()] for k in ("actions", "rewards", "dones")
                    + tuple(f"{s}/{o}" for s in ("obs", "next_obs") for o in f[f"data/{d}/obs"])} for d in f["data"]}


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
def test_big_endian_arrays_are_read_exactly_in_native_order(demo_file, lazy):
    _corrupt(demo_file, lambda f: _rewrite_all(f, lambda k, v: v.astype(v.dtype.newbyteorder(">"))))
    store = _assert_reads_as_written(demo_file, _written(demo_file), lazy, dtype=lambda k, v: v.dtype.newbyteorder("="))
    from imitate.data import WindowSampler
    from imitate.data.normalizer import Normalizer

    WindowSampler(store, 2, 4, 8, with_next=True).sample().to_torch()  # torch refused big-endian arrays
    Normalizer.from_store(store)


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
def test_a_key_stored_as_int64_in_one_demo_is_promoted_never_narrowed(demo_file, lazy):
    def corrupt(f):
        for sub in ("obs", "next_obs"):
            _replace(f, f"data/demo_0/{sub}/pos", np.arange(10).reshape(5, 2) * 1000 + 2**40)
    _corrupt(demo_file, corrupt)
    written = _written(demo_file)
    assert written["demo_1"]["obs/pos"].dtype == np.float32 and np.any(written["demo_1"]["obs/pos"] % 1)
    _assert_reads_as_written(demo_file, written, lazy,
                             dtype=lambda k, v: np.float64 if k.endswith("/pos") else v.dtype)
    assert scan_demo_file(demo_file).stored_dtypes == {"obs/pos": ("float32", "int64"),
                                                       "next_obs/pos": ("float32", "int64")}


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
def test_per_step_observations_of_shape_2_1_and_dotted_keys_load(tmp_path, rng, lazy):
    eps = [make_episode(rng, n, obs_shapes={"pos": (2, 1), "goal.pos": (2,)}, name=f"demo_{i}")
           for i, n in enumerate([5, 1, 9])]
    path = write_demo_file(tmp_path / "d.hdf5", eps)
    store = _assert_reads_as_written(path, {f"demo_{i}": ep.arrays() for i, ep in enumerate(eps)}, lazy,
                                     dtype=lambda k, v: v.dtype)
    assert store.shape("obs/pos") == (2, 1) and store.obs_keys == ["goal.pos", "pos"]


def test_a_dotted_observation_key_trains_saves_loads_and_exports_through_the_runtime_check(tmp_path, rng):
    """goal.pos is a legal HDF5 name; the normalizer refused it (torch module names cannot hold dots)."""
    import torch

    from imitate.checkpoint import load_policy
    from imitate.data.normalizer import Normalizer
    from imitate.train import train
    from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

    eps = [make_episode(rng, n, obs_shapes={"goal.pos": (2,), "pos": (2, 1)}, name=f"demo_{i}")
           for i, n in enumerate([12, 9, 15])]
    path = write_demo_file(tmp_path / "d.hdf5", eps, valid_fraction=0.34)
    norm = Normalizer.from_store(load_demo_file(path))
    fresh = Normalizer.from_config(norm.config())
    fresh.load_state_dict(norm.state_dict())
    x = torch.randn(3, 2)
    assert torch.equal(fresh.normalize("obs/goal.pos", x), norm.normalize("obs/goal.pos", x))
    assert any("goal%2Epos" in k for k in norm.state_dict())
    train(tiny_config(path, tmp_path / "run", "deterministic", steps=2, val_every=1, log_every=1, ckpt_every=2),
          dict(TINY_HEADS["deterministic"]), dict(TINY_ENCODER), progress=False)
    policy = load_policy(tmp_path / "run")
    assert policy.obs_keys == ["goal.pos", "pos"]
    assert policy.act({"goal.pos": np.zeros(2), "pos": np.zeros((2, 1))}).shape == (2,)


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
def test_a_file_without_next_obs_derives_it_within_each_demo(demo_file, lazy):
    from imitate.data import WindowSampler
    from imitate.data.info import demo_file_info, format_info

    full = load_demo_file(demo_file)
    _corrupt(demo_file, lambda f: [f.__delitem__(f"data/{d}/next_obs") for d in list(f["data"])])
    store = load_demo_file(demo_file, lazy=lazy)
    assert store.next_obs_derived and "next_obs/pos" in store.keys and store.shape("next_obs/pos") == (2,)
    known = store.next_obs_known()
    np.testing.assert_array_equal(np.flatnonzero(~known), store.episode_ends - 1)  # each demo's last step
    rows = np.flatnonzero(known)
    for k in store.obs_keys:  # exact where derived: the next row of the same demo
        np.testing.assert_array_equal(store.get(f"next_obs/{k}", rows), full.get(f"next_obs/{k}", rows))
    with pytest.raises(ImitateError, match=r"demo_0 in .*: next_obs/pos at the demo's last step is unknown"):
        store.get("next_obs/pos", np.array([0, 4]))
    with pytest.raises(ImitateError, match="demo_0 .*last step is unknown"):  # windows that reach a last step
        WindowSampler(store, 2, 4, 64, with_next=True).gather(np.arange(10))
    WindowSampler(store, 2, 4, 64).gather(np.arange(10))  # what does not read next_obs works
    info = demo_file_info(demo_file)
    assert info["next_obs"] == "derived from obs" and "next_obs     derived from obs" in format_info(info)
    assert not full.next_obs_derived and full.next_obs_known().all()
    if lazy:
        store.close()
    _corrupt(demo_file, lambda f: f.create_group("data/demo_3/next_obs"))  # some demos with next_obs: refused
    with pytest.raises(DemoFileError, match="demo_0.*missing group 'next_obs'"):
        load_demo_file(demo_file, lazy=lazy)


def test_an_empty_train_mask_is_refused_by_name_and_an_empty_valid_mask_is_none(demo_file):
    _corrupt(demo_file, lambda f: _replace(f, "mask/train", np.array([], dtype="S8")))
    store = load_demo_file(demo_file)
    with pytest.raises(ImitateError, match=r"mask/train names no demos"):
        store.episodes_in("train")
    _corrupt(demo_file, lambda f: (_replace(f, "mask/valid", np.array([], dtype="S8")),
                                   _replace(f, "mask/train", np.array([b"demo_0", b"demo_0", b"demo_1"]))))
    store = load_demo_file(demo_file)
    assert len(store.episodes_in("valid")) == 0 and store.filter_keys["train"] == ["demo_0", "demo_1"]
    np.testing.assert_array_equal(store.episodes_in("train"), [0, 1])


def test_an_image_key_loads_and_can_be_left_out_with_obs_keys(demo_file):
    _corrupt(demo_file, lambda f: _both(f, "agentview_image", lambda n: np.zeros((n, 8, 8, 3), np.uint8)))
    assert load_demo_file(demo_file, obs_keys=["pos", "goal"]).obs_keys == ["pos", "goal"]
    assert load_demo_file(demo_file).get("obs/agentview_image", np.arange(2)).dtype == np.uint8
    with pytest.raises(ImitateError, match=r"obs/depth .*C=2"):  # image-shaped, but 2 channels
        make_episode(np.random.default_rng(0), 4, obs_shapes={"depth": (4, 4, 2)})
