"""Every command that reads demonstrations, on a dataset of each format made here: zarr (Diffusion
Policy's ReplayBuffer, written with zarr), Minari (h5py in Minari's layout) and LeRobot (imitate's
writer) where imitate.data.lerobot is present: data info, data convert, train (in memory and lazy),
compare, offline, gail, airl, dagger --initial-data; lazy and in-memory batches agree; a missing
package or module is a clear error."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imitate.cli import main
from imitate.data import WindowSampler, load_demo_file
from imitate.errors import ImitateError
from tests.formats_data import write_minari_h5, write_replay_buffer

ROOT = Path(__file__).resolve().parent.parent
TINY_TRAIN = ["--head", "deterministic", "--steps", "2", "--batch-size", "8", "--eval-episodes", "0",
              "--val-every", "0", "--action-horizon", "4", "--n-act", "2", "--quiet",
              "--set", "hidden_dims=8", "--set", "encoder.hidden_dims=8", "--set", "encoder.feature_dim=8"]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMITATE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def robomimic_files(tmp_path_factory):
    from imitate.collect import collect

    root = tmp_path_factory.mktemp("robomimic")
    collect("imitate/ForkedPath-v0", 4, root / "fp.hdf5", seed=0, progress=False)
    collect("Pendulum-v1", 2, root / "pend.hdf5", seed=0, progress=False)
    return {"fp": root / "fp.hdf5", "pend": root / "pend.hdf5"}


def as_zarr(src, path):
    """A robomimic file as a ReplayBuffer: its obs keys, ``action`` and ``reward``."""
    store = load_demo_file(src)
    eps = []
    for s, e in zip(store.episode_starts, store.episode_ends):
        rows = np.arange(s, e)
        ep = {k: store.get(f"obs/{k}", rows) for k in store.obs_keys}
        ep.update(action=store.get("actions", rows), reward=store.get("rewards", rows))
        eps.append(ep)
    return write_replay_buffer(path, eps)


def as_minari(src, folder):
    """A robomimic file (with next_obs) as a Minari dataset: observations T + 1 rows (a Box for one key
    named ``state``, else a Dict), env_spec from its env_args."""
    store = load_demo_file(src)
    eps = []
    for s, e in zip(store.episode_starts, store.episode_ends):
        rows = np.arange(s, e)
        obs = {k: np.concatenate([store.get(f"obs/{k}", rows), store.get(f"next_obs/{k}", rows[-1:])])
               for k in store.obs_keys}
        eps.append({"observations": obs["state"] if list(obs) == ["state"] else obs,
                    "actions": store.get("actions", rows), "rewards": store.get("rewards", rows).astype(np.float64),
                    "terminations": store.get("dones", rows).astype(bool),
                    "truncations": np.zeros(len(rows), dtype=bool)})
    env = store.env_args
    return write_minari_h5(folder, eps, env_spec={"id": env["env_name"], "kwargs": env["env_kwargs"]})


def as_lerobot(src, folder):
    lerobot = pytest.importorskip("imitate.data.lerobot_writer", reason="imitate.data.lerobot_writer (LeRobot writer) "
                                                                 "is not in this tree")
    store = load_demo_file(src)
    lerobot.write_lerobot_dataset(folder, (store.episode(i) for i in range(store.n_episodes)), store.env_args, fps=10)
    return folder


MAKERS = {"zarr": lambda src, d: as_zarr(src, d / "data.zarr"), "minari": lambda src, d: as_minari(src, d / "minari"),
          "lerobot": lambda src, d: as_lerobot(src, d / "lerobot")}


@pytest.fixture(scope="module", params=list(MAKERS))
def datasets(request, robomimic_files, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    return request.param, {name: MAKERS[request.param](path, d / name) for name, path in robomimic_files.items()}


def test_info_and_convert_give_the_values_of_the_original(datasets, robomimic_files, tmp_path, capsys):
    fmt, paths = datasets
    assert main(["data", "info", str(paths["fp"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"].startswith(fmt) and info["demos"] == 4 and info["notes"]
    assert (info["env_args"] is None) if fmt == "zarr" else info["env_args"]["env_name"] == "imitate/ForkedPath-v0"
    assert main(["data", "info", str(paths["fp"])]) == 0
    assert f"format       {info['format']}" in capsys.readouterr().out
    out = tmp_path / "back.hdf5"
    assert main(["data", "convert", str(paths["fp"]), str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 4 and summary["format_out"] == "robomimic"
    back, original = load_demo_file(out), load_demo_file(robomimic_files["fp"])
    rows = np.arange(len(original))
    for key in [f"obs/{k}" for k in original.obs_keys] + ["actions"]:
        np.testing.assert_array_equal(back.get(key, rows), original.get(key, rows))
    assert main(["data", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["content_sha256"] == info["content_sha256"]
    assert main(["data", "convert", str(paths["fp"]), str(out), "--quiet"]) == 1  # no clobber
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("lazy", ["false", "true"])
def test_train_reads_every_format(datasets, tmp_path, lazy, capsys):
    fmt, paths = datasets
    run = tmp_path / "run"
    assert main(["train", "--data", str(paths["fp"]), "--out", str(run), "--lazy", lazy, *TINY_TRAIN]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["data_format"] == "auto"
    forced = {"zarr": "zarr", "minari": "minari", "lerobot": "lerobot"}[fmt]
    assert main(["train", "--data", str(paths["fp"]), "--format", forced, "--out", str(tmp_path / "forced"),
                 *TINY_TRAIN]) == 0
    wrong = "minari" if fmt != "minari" else "zarr"
    assert main(["train", "--data", str(paths["fp"]), "--format", wrong, "--out", str(tmp_path / "wrong"),
                 *TINY_TRAIN]) == 1
    assert str(paths["fp"]) in capsys.readouterr().err


def test_lazy_and_in_memory_batches_are_the_same(datasets):
    _, paths = datasets
    mem, lazy = load_demo_file(paths["fp"]), load_demo_file(paths["fp"], lazy=True)
    assert mem.obs_keys == lazy.obs_keys and mem.next_obs_derived == lazy.next_obs_derived
    a = WindowSampler(mem, 2, 8, batch_size=16, seed=3)
    b = WindowSampler(lazy, 2, 8, batch_size=16, seed=3)
    for _ in range(5):
        x, y = a.sample(), b.sample()
        for k in mem.obs_keys:
            np.testing.assert_array_equal(x.obs[k], y.obs[k])
        np.testing.assert_array_equal(x.action, y.action)
        np.testing.assert_array_equal(x.action_mask, y.action_mask)
    lazy.close()


def test_compare_offline_gail_airl_and_dagger_read_every_format(datasets, tmp_path, capsys):
    fmt, paths = datasets
    assert main(["compare", "--data", str(paths["fp"]), "--out", str(tmp_path / "cmp"), "--heads", "deterministic",
                 "--steps", "2", "--seeds", "1", "--episodes", "0", "--jobs", "1", "--batch-size", "8",
                 "--queries", "4", "--samples", "2", "--quiet"]) == 0
    assert (tmp_path / "cmp" / "results.json").is_file()
    # offline RL needs the state after each last step: a format without next_obs (zarr) is refused by name
    derived = load_demo_file(paths["pend"]).next_obs_derived
    assert derived == (fmt == "zarr")
    capsys.readouterr()
    assert main(["offline", "--algo", "iql", "--data", str(paths["pend"]), "--head", "gaussian",
                 "--out", str(tmp_path / "off"), "--steps", "2", "--batch-size", "8", "--eval-episodes", "0",
                 "--quiet", "--set", "algo.critic_hidden=8", "--set", "head.hidden_dims=8",
                 "--set", "encoder.feature_dim=8"]) == (1 if derived else 0)
    if derived:
        assert f"{paths['pend']}: the file has no next_obs" in capsys.readouterr().err
    for algo in ("gail", "airl"):
        assert main([algo, "--data", str(paths["pend"]), "--env", "Pendulum-v1", "--head", "gaussian",
                     "--out", str(tmp_path / algo), "--steps", "32", "--log-every", "32", "--eval-episodes", "0",
                     "--quiet", "--disc-hidden", "8", "--set", "ppo.n_envs=1", "--set", "ppo.n_steps=32",
                     "--set", "ppo.epochs=1", "--set", "ppo.batch_size=32", "--set", "head.hidden_dims=8"]) == 0
    capsys.readouterr()
    assert main(["dagger", "--head", "deterministic", "--rounds", "1", "--episodes-per-round", "1",
                 "--initial-demos", "2", "--initial-data", str(paths["fp"]), "--steps", "2", "--steps-per-round", "2",
                 "--batch-size", "8", "--action-horizon", "4", "--n-act", "2", "--eval-episodes", "1",
                 "--out", str(tmp_path / "dagger"), "--quiet", "--set", "hidden_dims=8",
                 "--set", "encoder.hidden_dims=8", "--set", "encoder.feature_dim=8"]) == 0
    rounds = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1]


def test_a_missing_lerobot_module_or_package_is_a_clear_error(robomimic_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imitate.data.lerobot", None)
    monkeypatch.setitem(sys.modules, "imitate.data.lerobot_writer", None)
    assert main(["data", "convert", str(robomimic_files["fp"]), str(tmp_path / "out"), "--format-out", "lerobot"]) == 1
    assert "needs imitate.data.lerobot" in capsys.readouterr().err
    (tmp_path / "ds" / "meta").mkdir(parents=True)
    (tmp_path / "ds" / "meta" / "info.json").write_text("{}")
    with pytest.raises(ImitateError, match="LeRobot datasets needs imitate.data.lerobot"):
        load_demo_file(tmp_path / "ds")
    assert not (tmp_path / "out").exists()


def test_data_info_and_convert_run_without_torch(robomimic_files, tmp_path):
    path = as_zarr(robomimic_files["fp"], tmp_path / "fp.zarr")
    code = ("import sys; sys.modules['torch'] = None; sys.modules['policy_heads.base'] = None\n"
            "from imitate.cli import main\n"
            f"assert main(['data', 'info', {str(path)!r}, '--json']) == 0\n"
            f"assert main(['data', 'convert', {str(path)!r}, {str(tmp_path / 'o.hdf5')!r}, '--quiet']) == 0\n"
            "print('TORCH', sys.modules.get('torch') is not None)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**__import__("os").environ, "IMITATE_CACHE": str(tmp_path / "c")})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "TORCH False" in res.stdout and (tmp_path / "o.hdf5").is_file()


def test_convert_to_lerobot_and_back_keeps_the_values(robomimic_files, tmp_path, capsys):
    pytest.importorskip("imitate.data.lerobot", reason="imitate.data.lerobot (LeRobot reader and writer) is not in "
                                                       "this tree")
    src, out = robomimic_files["fp"], tmp_path / "fp_lerobot"
    assert main(["data", "convert", str(src), str(out), "--format-out", "lerobot", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["format_out"] == "lerobot" and (out / "meta" / "info.json").is_file()
    assert main(["data", "convert", str(src), str(out), "--format-out", "lerobot", "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "convert", str(src), str(out), "--format-out", "lerobot", "--overwrite", "--quiet"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["fp_lerobot"]  # nothing left beside it
    assert main(["data", "convert", str(out), str(tmp_path / "back.hdf5"), "--quiet"]) == 0
    back, original = load_demo_file(tmp_path / "back.hdf5"), load_demo_file(src)
    rows = np.arange(len(original))
    for key in original.keys:
        np.testing.assert_array_equal(back.get(key, rows), original.get(key, rows))


def test_a_file_without_next_obs_converts_to_lerobot_with_its_last_steps_still_unknown(robomimic_files, tmp_path):
    pytest.importorskip("imitate.data.lerobot", reason="imitate.data.lerobot (LeRobot reader and writer) is not in "
                                                       "this tree")
    import shutil

    import h5py

    src = tmp_path / "nonext.hdf5"
    shutil.copy(robomimic_files["fp"], src)
    with h5py.File(src, "a") as f:
        for demo in f["data"]:
            del f["data"][demo]["next_obs"]
    assert main(["data", "convert", str(src), str(tmp_path / "lr"), "--format-out", "lerobot", "--quiet"]) == 0
    back = load_demo_file(tmp_path / "lr")
    assert back.next_obs_derived
    known = back.next_obs_known()
    assert not known[back.episode_ends - 1].any() and known.sum() == len(back) - back.n_episodes
