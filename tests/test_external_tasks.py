"""Tasks others built: Meta-World (imitate[metaworld]) and robosuite (imitate[robosuite]).

Each part skips, naming the package, when that package is not installed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import gymnasium as gym
import h5py
import numpy as np
import pytest

from imitate.envs import EXPERTS, env_from_args, make_env, make_expert
from imitate.errors import ConfigError, ImitateError

needs_metaworld = pytest.mark.skipif(importlib.util.find_spec("metaworld") is None,
                                     reason="metaworld is not installed (pip install 'imitate[metaworld]')")
needs_robosuite = pytest.mark.skipif(importlib.util.find_spec("robosuite") is None,
                                     reason="robosuite is not installed (pip install 'imitate[robosuite]')")


def run_expert(env, expert, seed: int):
    obs, info = env.reset(seed=seed)
    expert.reset(seed=seed)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        steps += 1
        if terminated or truncated:
            return info, steps, terminated


def tiny_train(data, out, obs_keys=()):
    from imitate.train import TrainConfig, train

    cfg = TrainConfig(data=str(data), out=str(out), head="gmm", steps=20, batch_size=16, eval_episodes=0,
                      val_every=0, ckpt_every=20, warmup_steps=5, obs_keys=tuple(obs_keys))
    train(cfg, progress=False)


# -- Meta-World ----------------------------------------------------------------------------------

@needs_metaworld
def test_every_metaworld_task_is_registered_with_its_expert():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    from imitate.envs.metaworld import METAWORLD_TASKS

    assert sorted(METAWORLD_TASKS) == sorted(ALL_V3_ENVIRONMENTS)
    for task in METAWORLD_TASKS:
        assert gym.spec(f"metaworld/{task}").max_episode_steps == 500
        assert f"metaworld/{task}" in EXPERTS
        assert task in ENV_POLICY_MAP


@needs_metaworld
@needs_robosuite
def test_registering_imports_neither_simulator():
    code = ("import sys, gymnasium, imitate.envs; "
            "assert 'metaworld/push-v3' in gymnasium.registry and 'robosuite/Lift' in gymnasium.registry; "
            "loaded = [m for m in ('metaworld', 'robosuite', 'mujoco') if m in sys.modules]; "
            "assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@needs_metaworld
def test_every_metaworld_id_resets_reproducibly_and_seeds_change_the_layout():
    from imitate.envs.metaworld import METAWORLD_TASKS

    for task in METAWORLD_TASKS:
        env = make_env(f"metaworld/{task}")
        first, _ = env.reset(seed=3)
        again, _ = env.reset(seed=3)
        other, _ = env.reset(seed=4)
        unseeded, _ = env.reset()
        assert first.shape == (39,) and env.observation_space.contains(first), task
        np.testing.assert_array_equal(first, again, err_msg=task)
        assert not np.allclose(first, other), f"{task}: seeds 3 and 4 gave the same layout"
        assert not np.allclose(other, unseeded), f"{task}: a reset without a seed repeated the layout"
        env.close()


@needs_metaworld
@pytest.mark.parametrize("task", ["reach-v3", "push-v3", "pick-place-v3"])
def test_metaworld_expert_succeeds_and_the_episode_ends_at_success(task):
    env = make_env(f"metaworld/{task}")
    expert = make_expert(f"metaworld/{task}")
    for seed in range(3):
        info, steps, terminated = run_expert(env, expert, seed)
        assert info["is_success"] and terminated and steps < 500, (task, seed, steps)
        assert info["is_success"] == bool(info["success"])


@needs_metaworld
def test_metaworld_full_horizon_option_and_clipped_actions():
    env = make_env("metaworld/reach-v3", {"terminate_on_success": False})
    info, steps, terminated = run_expert(env, make_expert("metaworld/reach-v3"), 0)
    assert steps == 500 and not terminated and info["is_success"]
    a = make_env("metaworld/reach-v3")
    b = make_env("metaworld/reach-v3")
    a.reset(seed=1)
    b.reset(seed=1)
    wild, clipped = a.step(np.array([7.0, -3.0, 2.0, 9.0]))[0], b.step(np.array([1.0, -1.0, 1.0, 1.0]))[0]
    np.testing.assert_array_equal(wild, clipped)
    assert np.all(np.abs(make_expert("metaworld/push-v3").act(a.reset(seed=2)[0])) <= 1.0)


@needs_metaworld
def test_metaworld_image_observation_and_render():
    env = make_env("metaworld/push-v3", {"obs_mode": "state+image", "camera": "corner2", "width": 32, "height": 24},
                   render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "corner2_image"}
    assert obs["corner2_image"].shape == (24, 32, 3) and obs["corner2_image"].dtype == np.uint8
    assert obs["corner2_image"].std() > 0 and env.observation_space.contains(obs)
    moved = obs
    for _ in range(5):
        moved, *_ = env.step(np.array([1.0, 0.0, 0.0, 0.0]))
    assert not np.array_equal(moved["corner2_image"], obs["corner2_image"])
    assert env.render().shape == (24, 32, 3)
    with pytest.raises(ConfigError, match="camera"):
        make_env("metaworld/push-v3", {"camera": "nowhere"})
    with pytest.raises(ConfigError, match="obs_mode"):
        make_env("metaworld/push-v3", {"obs_mode": "pixels"})


@needs_metaworld
def test_metaworld_collect_train_evaluate(tmp_path):
    from imitate.checkpoint import load_policy
    from imitate.collect import collect
    from imitate.data import load_demo_file
    from imitate.evaluate import evaluate

    res = collect("metaworld/reach-v3", 3, tmp_path / "reach.hdf5", progress=False)
    assert res.success_rate == 1.0
    store = load_demo_file(tmp_path / "reach.hdf5")
    assert store.env_args == {"env_name": "metaworld/reach-v3", "type": 2, "env_kwargs": {}}
    tiny_train(tmp_path / "reach.hdf5", tmp_path / "run")
    out = evaluate(load_policy(str(tmp_path / "run")), *env_from_args(store.env_args), episodes=2, n_envs=2,
                   progress=False)
    assert out["success_rate"] is not None and len(out["successes"]) == 2 and 1 <= out["mean_length"] <= 500


# -- robosuite -----------------------------------------------------------------------------------

def test_env_from_args_by_type(monkeypatch):
    assert env_from_args(None) is None
    assert env_from_args({"env_name": "x", "type": 3, "env_kwargs": {}}) is None
    assert env_from_args({"env_name": "Pendulum-v1", "type": 2, "env_kwargs": {"g": 9.0}}) == ("Pendulum-v1", {"g": 9.0})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "robosuite" else real(name, *a))
    with pytest.raises(ImitateError, match=r"imitate\[robosuite\]"):
        env_from_args({"env_name": "Lift", "type": 1, "env_kwargs": {}})


@needs_robosuite
def test_robosuite_env_from_args_keys_and_seeded_layout():
    env_id, kwargs = env_from_args({"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20}})
    assert env_id == "robosuite/Lift" and kwargs == {"control_freq": 20}
    env = make_env(env_id, kwargs)
    first, _ = env.reset(seed=5)
    again, _ = env.reset(seed=5)
    other, _ = env.reset(seed=6)
    for key in ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"):
        assert key in first and env.observation_space[key].shape == first[key].shape
    np.testing.assert_array_equal(first["object"], again["object"])
    assert not np.allclose(first["object"][:3], other["object"][:3])


@needs_robosuite
def test_robosuite_camera_images_under_robomimic_keys():
    env = make_env("Lift", {"use_camera_obs": True, "camera_names": ["agentview"], "camera_heights": 32,
                            "camera_widths": 40}, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    image = obs["agentview_image"]
    assert image.shape == (32, 40, 3) and image.dtype == np.uint8 and image.std() > 0
    assert env.observation_space.contains(obs) and env.render().shape == (256, 256, 3)
    env.close()


@needs_robosuite
def test_robosuite_errors_name_the_key_and_the_version():
    from imitate.envs.robosuite_env import robosuite_version
    from imitate.evaluate import check_obs_keys

    version = robosuite_version()
    with pytest.raises(ConfigError) as err:
        make_env("Lift", {"not_a_setting": 1})
    assert "not_a_setting" in str(err.value) and f"robosuite {version}" in str(err.value)
    with pytest.raises(ConfigError, match=rf"robosuite {version}.*controller_configs type 'NO_SUCH_CONTROLLER'"):
        make_env("Lift", {"controller_configs": {"type": "NO_SUCH_CONTROLLER"}})
    env = make_env("robosuite/Lift")
    obs, _ = env.reset(seed=0)
    policy = SimpleNamespace(obs_keys=["robot0_eef_pos", "eef_pos"])
    with pytest.raises(ImitateError, match=rf"robosuite {version}.*\['eef_pos'\]"):
        check_obs_keys(policy, env, obs, "robosuite/Lift")


@needs_robosuite
def test_robosuite_accepts_a_robosuite_1_4_controller_config():
    old = {"type": "OSC_POSE", "input_max": 1, "input_min": -1, "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
           "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5], "kp": 150, "damping": 1,
           "impedance_mode": "fixed", "kp_limits": [0, 300], "damping_limits": [0, 10], "position_limits": None,
           "orientation_limits": None, "uncouple_pos_ori": True, "control_delta": True, "interpolation": None,
           "ramp_ratio": 0.2}
    env = make_env("Lift", {"robots": ["Panda"], "controller_configs": old})
    assert env.action_space.shape == (7,)
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(7))[0]["robot0_eef_pos"]).all()


ROBOMIMIC_KEYS = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]


@pytest.fixture(scope="module")
def lift_file(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("lift") / "lift.hdf5"
    res = collect("robosuite/Lift", 2, path, progress=False)
    assert res.success_rate == 1.0  # the scripted expert lifts the cube
    return path


@needs_robosuite
def test_lift_expert_writes_a_robomimic_file_that_rolls_out_through_eval(lift_file, tmp_path):
    from imitate.data import load_demo_file

    with h5py.File(lift_file) as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        demo = f["data/demo_0"]
        assert demo["states"].shape[0] == demo["actions"].shape[0] and demo["states"].ndim == 2
        assert "<mujoco" in demo.attrs["model_file"]
        assert set(ROBOMIMIC_KEYS) <= set(demo["obs"])
    assert env_args["type"] == 1 and env_args["env_name"] == "Lift" and env_args["env_version"]
    assert {"robots", "controller_configs", "control_freq"} <= set(env_args["env_kwargs"])
    assert load_demo_file(lift_file).env_args == env_args
    tiny_train(lift_file, tmp_path / "run", ROBOMIMIC_KEYS)
    proc = subprocess.run([sys.executable, "-m", "imitate", "eval", str(tmp_path / "run"), "--env", "Lift",
                           "--episodes", "1", "--quiet"], capture_output=True, text=True,
                          env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 1 and summary["success_rate"] is not None and 1 <= summary["mean_length"] <= 400


@needs_robosuite
def test_robomimic_reads_the_collected_lift_file(lift_file):
    if importlib.util.find_spec("robomimic") is None:
        pytest.skip("robomimic is not installed (`make install-dev` installs it)")
    from robomimic.utils import obs_utils
    from robomimic.utils.dataset import SequenceDataset

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ROBOMIMIC_KEYS}})
    ds = SequenceDataset(hdf5_path=str(lift_file), obs_keys=ROBOMIMIC_KEYS, dataset_keys=("actions", "rewards", "dones"),
                         frame_stack=1, seq_length=1, hdf5_cache_mode="all", hdf5_use_swmr=False)
    with h5py.File(lift_file) as f:
        assert len(ds) == sum(f[f"data/{d}/actions"].shape[0] for d in f["data"])
        np.testing.assert_allclose(ds[0]["obs"]["object"][0], f["data/demo_0/obs/object"][0])


# -- benchmarks/external.py ----------------------------------------------------------------------

EXTERNAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "external.py")


def load_external():
    """benchmarks/external.py as a module; it sets torch to one thread on import, which is undone here."""
    import importlib.util as iu

    import torch

    threads = torch.get_num_threads()
    spec = iu.spec_from_file_location("external_benchmark", EXTERNAL)
    module = iu.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        torch.set_num_threads(threads)
    return module


def test_external_run_trains_with_compare_settings(tmp_path):
    from imitate.compare import _trains_on_cpu, make_config, split_settings

    ext = load_external()
    args = SimpleNamespace(steps=300, batch_size=0, obs_keys="")
    cfg = ext.run_config(tmp_path / "d.hdf5", tmp_path / "run", "gmm", 2, args)
    want = make_config(str(tmp_path / "d.hdf5"), str(tmp_path / "run"), steps=300).train
    for name in ("batch_size", "obs_horizon", "action_horizon", "n_act", "warmup_steps", "val_every",
                 "ckpt_every", "log_every", "lr", "sizing"):
        assert getattr(cfg, name) == getattr(want, name), name
    assert (cfg.batch_size, cfg.action_horizon, cfg.n_act, cfg.val_every) == (128, 8, 4, 30)
    assert (cfg.head, cfg.seed, cfg.steps, cfg.eval_episodes, cfg.out) == ("gmm", 2, 300, 0, str(tmp_path / "run"))
    assert ext.run_config(tmp_path / "d.hdf5", tmp_path / "run", "gmm", 0,
                          SimpleNamespace(steps=300, batch_size=64, obs_keys="a,b")).batch_size == 64

    heads = ["gmm", "diffusion", "autoregressive"]
    per_head, encoder = ext.head_settings(heads, ["diffusion.num_inference_steps=5", "encoder.feature_dim=64"], args)
    want_heads, want_encoder = split_settings({"diffusion.num_inference_steps": "5", "encoder.feature_dim": "64"},
                                              heads, _trains_on_cpu(cfg.device), cfg.sizing, cfg.action_horizon)
    assert per_head == want_heads and encoder == want_encoder == {"feature_dim": "64"}
    if _trains_on_cpu(cfg.device):   # the CPU-sized defaults, as imitate compare chooses them
        assert per_head["diffusion"] == {"denoiser": "mlp", "num_inference_steps": "5"}
        assert per_head["autoregressive"]["num_layers"] == "2"
    with pytest.raises(ConfigError, match="flow head is not among --heads"):
        ext.head_settings(heads, ["flow.denoiser=mlp"], args)


@needs_metaworld
def test_external_run_goes_seed_by_seed_and_skips_finished_runs(tmp_path):
    out = tmp_path / "ext"
    cmd = [sys.executable, EXTERNAL, "run", "--tasks", "metaworld/reach-v3", "--heads", "deterministic,diffusion",
           "--demos", "2", "--steps", "6", "--seeds", "0,1", "--eval-episodes", "2", "--n-envs", "2",
           "--out", str(out)]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["head"], r["seed"]) for r in rows] == [("expert", 0), ("deterministic", 0), ("diffusion", 0),
                                                      ("deterministic", 1), ("diffusion", 1)]
    runs = rows[1:]
    assert all((r["batch_size"], r["obs_horizon"], r["action_horizon"], r["n_act"]) == (128, 2, 8, 4) for r in runs)
    assert all(r["steps"] == 6 and 0.0 <= r["success_rate"] <= 1.0 and r["eval_steps_per_s"] > 0 for r in runs)
    # the config each run directory records is the one reported
    saved = json.loads((out / "runs" / "metaworld_reach-v3" / "diffusion" / "seed1" / "config.json").read_text())
    assert saved["train"]["action_horizon"] == 8 and saved["train"]["seed"] == 1
    assert saved["policy"]["head_config"]["denoiser"] == runs[1]["head_config"]["denoiser"]
    assert "| metaworld/reach-v3 | 1.00 |" in proc.stdout

    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((out / "results.jsonl").read_text().splitlines()) == 5     # nothing trained twice

    bad = subprocess.run(cmd[:-2] + ["--out", str(tmp_path / "bad"), "--set", "gmm.num_modes=3"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "gmm head is not among --heads" in bad.stderr and "Traceback" not in bad.stderr
