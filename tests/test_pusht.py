"""Push-T (imitate[pusht], gym-pusht): the ``pusht/PushT`` wrapper, its route, and the push-planner expert.

Everything that runs the simulation skips, naming the package, when gym-pusht is not installed.
"""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import gymnasium as gym
import h5py
import numpy as np
import pytest

from imitate.envs import EXPERTS, make_env, make_expert
from imitate.envs.pusht_expert import (
    GOAL_POSE,
    PushSim,
    PushTExpert,
    agent_motion,
    outline_distance,
    pose_cost,
    segment_clearance,
    to_body,
    to_world,
)
from imitate.errors import ConfigError, ImitateError

PUSHT = "pusht/PushT"
needs_pusht = pytest.mark.skipif(importlib.util.find_spec("gym_pusht") is None,
                                 reason="gym-pusht is not installed (pip install 'imitate[pusht]')")


def run_expert(env, expert, seed: int):
    """One episode: (last info, steps, terminated)."""
    from imitate.envs import expert_view

    obs, info = env.reset(seed=seed)
    expert.reset(seed=seed)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(expert_view(env, obs)))
        steps += 1
        if terminated or truncated:
            return info, steps, terminated


# -- geometry, without the simulator --------------------------------------------------------------

def test_pose_cost_is_zero_at_the_goal_and_grows_with_translation_and_rotation():
    assert pose_cost(GOAL_POSE) == pytest.approx(0.0, abs=1e-9)
    x, y, a = GOAL_POSE
    assert pose_cost((x + 3, y, a)) == pytest.approx(9.0)
    assert 0 < pose_cost((x, y, a + 0.02)) < pose_cost((x, y, a + 0.2)) < pose_cost((x, y, a + 2.0))


def test_body_frame_round_trip_and_outline_distances():
    pose = (100.0, 200.0, 0.7)
    p = (12.5, -40.0)
    assert np.allclose(to_body(pose, to_world(pose, p)), p)
    assert outline_distance((0.0, 60.0)) == 0.0  # inside the stem
    assert outline_distance((0.0, -10.0)) == pytest.approx(10.0)  # above the bar
    assert outline_distance((40.0, 50.0)) == pytest.approx(20.0)  # under the bar (25 px beside the stem)
    assert segment_clearance((-100.0, 60.0), (100.0, 60.0)) == 0.0  # crosses the stem
    assert segment_clearance((-100.0, -20.0), (100.0, -20.0)) == pytest.approx(20.0)


def test_agent_motion_is_a_critically_damped_step_towards_the_target():
    pos, vel = agent_motion((0.0, 0.0), (0.0, 0.0), (100.0, 0.0))
    assert 0 < pos[0] < 100 and pos[1] == 0 and vel[0] > 0
    pos, vel = (0.0, 0.0), (0.0, 0.0)
    for _ in range(20):
        pos, vel = agent_motion(pos, vel, (100.0, 50.0))
    assert np.allclose(pos, (100.0, 50.0), atol=0.1)


def test_the_expert_checks_its_arguments_and_its_input():
    with pytest.raises(ConfigError, match="p_left"):
        PushTExpert(p_left=1.5)
    with pytest.raises(ConfigError, match="not pusht/PushT arguments"):
        PushTExpert(env_kwargs={"n_routes": 2})
    with pytest.raises(ConfigError, match="push_steps"):
        PushTExpert(push_steps=0)
    with pytest.raises(ConfigError, match="5-D state"):
        PushTExpert(seed=0).act(np.zeros(7))


def test_the_side_is_drawn_per_episode_with_p_left():
    expert = PushTExpert(seed=0)
    sides = []
    for seed in range(40):
        expert.reset(seed=seed)
        sides.append(expert.route)
    assert set(sides) == {"left", "right"}
    assert {PushTExpert(p_left=1.0, seed=s).route for s in range(5)} == {"left"}
    assert {PushTExpert(p_left=0.0, seed=s).route for s in range(5)} == {"right"}


# -- the environment -------------------------------------------------------------------------------

@needs_pusht
def test_pusht_is_registered_with_its_expert_and_gym_pushts_time_limit():
    assert PUSHT in EXPERTS
    assert gym.spec(PUSHT).max_episode_steps == 300
    assert isinstance(make_expert(PUSHT, seed=0), PushTExpert)


@needs_pusht
def test_registering_imports_neither_gym_pusht_nor_its_simulator():
    code = ("import sys, gymnasium, imitate.envs; "
            "assert 'pusht/PushT' in gymnasium.registry; "
            "loaded = [m for m in ('gym_pusht', 'pymunk', 'cv2', 'pygame', 'shapely') if m in sys.modules]; "
            "assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@needs_pusht
def test_seeded_reset_and_observation_modes():
    env = make_env(PUSHT)
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    c, _ = env.reset(seed=6)
    assert a.shape == (5,) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(env.unwrapped.state_obs(), c)
    env.close()
    keypoints = make_env(PUSHT, {"obs_mode": "keypoints"})
    obs, _ = keypoints.reset(seed=5)
    assert obs["environment_state"].shape == (16,) and np.allclose(obs["agent_pos"], a[:2])
    for mode in ("pixels", "pixels_agent_pos"):
        env = make_env(PUSHT, {"obs_mode": mode, "image_size": 64})
        obs, _ = env.reset(seed=5)
        assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
        assert obs["pixels"].std() > 10  # the table, the goal, the T and the agent, not a blank frame
        assert ("agent_pos" in obs) == (mode == "pixels_agent_pos")
        assert env.observation_space.contains(obs)
        assert np.array_equal(env.unwrapped.state_obs(), a)
        env.close()


@needs_pusht
def test_bad_settings_and_actions_are_refused_with_clear_errors():
    with pytest.raises(ImitateError, match="obs_mode"):
        make_env(PUSHT, {"obs_mode": "depth"})
    with pytest.raises(ImitateError, match="image_size"):
        make_env(PUSHT, {"image_size": 2})
    env = make_env(PUSHT)
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="2 finite numbers"):
        env.step(np.array([np.nan, 3.0]))
    with pytest.raises(ConfigError, match="2 finite numbers"):
        env.step(np.zeros(3))


@needs_pusht
def test_the_planners_copy_of_the_scene_matches_gym_pusht():
    env = make_env(PUSHT)
    obs, _ = env.reset(seed=3)
    sim = PushSim()
    sim.set(obs[:2], (0.0, 0.0), obs[2:])
    pos, vel = obs[:2], np.zeros(2)
    rng = np.random.default_rng(0)
    touched = False
    for _ in range(25):  # random targets around the T: pushes it
        target = obs[2:4] + rng.normal(0, 30, 2)
        predicted, vel = agent_motion(pos, vel, target)
        obs, _, _, _, info = env.step(target)
        sim.step(target)
        pos = obs[:2]
        touched |= info["mode"] is not None
        assert np.allclose(predicted, obs[:2], atol=1e-6)
        x, y, angle = sim.pose()
        assert np.allclose((x, y), obs[2:4], atol=1e-3)
        assert abs(math.remainder(angle - obs[4], 2 * math.pi)) < 1e-4
    assert touched


@needs_pusht
@pytest.mark.parametrize("side,around", [("left", -1.0), ("right", 1.0)])
def test_the_route_is_the_side_the_agent_went_around_in_the_image(side, around):
    """The T's bar lies along x at angle 0; the agent starts west of it, faces east and goes around
    its north side (smaller y, up in the image: the agent's left) or its south side (its right)."""
    env = make_env(PUSHT)
    env.reset(options={"reset_to_state": [120.0, 250.0, 256.0, 250.0, 0.0]})
    cog = (256.0, 295.0)  # the body origin plus the centre of gravity (0, 45)
    info = {}
    for phi in np.linspace(math.pi, math.pi + around * -math.pi / 2, 8)[1:]:
        for _ in range(3):  # on a circle of radius 120 about the T, out of its reach
            _, _, _, _, info = env.step((cog[0] + 120 * math.cos(phi), cog[1] + 120 * math.sin(phi)))
    assert info["mode"] is None  # no contact yet
    for _ in range(10):  # then straight into the T
        _, _, _, _, info = env.step(cog)
    assert info["mode"] == side
    assert np.sign(info["route_sweep"]) == (1.0 if side == "left" else -1.0)


@needs_pusht
def test_coverage_metrics_are_reported():
    env = make_env(PUSHT)
    assert env.metadata["episode_metrics"] == ["coverage", "max_coverage"]
    _, info = env.reset(seed=1)
    assert 0.0 <= info["coverage"] <= info["max_coverage"] <= 1.0
    seen = info["coverage"]
    for target in ((500.0, 500.0), (256.0, 256.0), (20.0, 20.0)):
        _, _, _, _, info = env.step(np.array(target))
        seen = max(seen, info["coverage"])
        assert info["max_coverage"] == pytest.approx(seen)


# -- the expert in the environment -----------------------------------------------------------------

@needs_pusht
@pytest.mark.parametrize("seed,p_left", [(0, 1.0), (1, 0.0), (2, 1.0), (3, 0.0)])
def test_the_expert_succeeds_and_goes_around_the_side_it_drew(seed, p_left):
    env = make_env(PUSHT)
    expert = make_expert(PUSHT, p_left=p_left, seed=seed)
    info, steps, terminated = run_expert(env, expert, seed)
    assert terminated and info["is_success"] and info["coverage"] > 0.95 and steps <= 300
    assert expert.route == ("left" if p_left == 1.0 else "right")
    assert info["mode"] == expert.route


@needs_pusht
def test_the_expert_uses_both_sides_over_a_batch_and_collects_them(tmp_path):
    from imitate.collect import collect

    out = tmp_path / "pusht.hdf5"
    result = collect(PUSHT, episodes=10, out=out, seed=0, progress=False)
    assert result.success_rate >= 0.8
    assert set(result.mode_shares) == {"left", "right"}
    with h5py.File(out, "r") as f:
        demos = [f["data"][k] for k in f["data"]]
        assert all(d["obs/state"].shape[1] == 5 and d["actions"].shape[1] == 2 for d in demos)
        assert all(d.attrs["route"] == d.attrs["expert_route"] for d in demos if d.attrs["is_success"])


@needs_pusht
def test_the_expert_labels_states_it_did_not_produce():
    """DAgger's use: states from elsewhere; the expert takes the agent's velocity as zero there."""
    env = make_env(PUSHT)
    obs, _ = env.reset(seed=4)
    expert = make_expert(PUSHT, seed=0)
    first = expert.act(obs)
    plans = expert.plans
    for _ in range(3):
        obs, *_ = env.step(np.array([256.0, 256.0]))  # moved by someone else
    action = expert.act(obs)
    assert action.shape == (2,) and action.dtype == np.float32 and np.all((0 <= action) & (action <= 512))
    assert first.shape == (2,) and expert.plans == plans + 1  # planned afresh from the new state
    fresh = make_expert(PUSHT, seed=0)
    fresh.act(obs)  # the same state, first seen: the same plan, the same label
    assert np.allclose(fresh.act(obs), expert.act(obs))


# -- gym-pusht without OpenCV ----------------------------------------------------------------------

@needs_pusht
def test_pusht_imports_and_renders_where_cv2_cannot_be_imported():
    """gym-pusht imports cv2 at import time; without it (no libGL) the NumPy stand-in draws the pixels."""
    code = (
        "import sys\n"
        "sys.modules['cv2'] = None  # import cv2 raises ImportError, as without libGL\n"
        "from imitate.envs import make_env\n"
        "env = make_env('pusht/PushT', {'obs_mode': 'pixels'}, render_mode='rgb_array')\n"
        "obs, _ = env.reset(seed=0)\n"
        "env.step(obs['pixels'].shape[:2])\n"
        "frame = env.render()\n"
        "assert obs['pixels'].shape == (96, 96, 3) and obs['pixels'].std() > 10, obs['pixels'].std()\n"
        "assert frame.shape == (680, 680, 3)\n"
        "assert sys.modules['cv2'] is None  # the stand-in was only lent while gym-pusht imported\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


@needs_pusht
def test_the_stand_in_resize_is_close_to_opencvs():
    cv2 = pytest.importorskip("cv2", reason="opencv cannot be imported here (no libGL): nothing to compare to")
    from imitate.envs.pusht import _resize

    rng = np.random.default_rng(0)
    img = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    for size in ((40, 32), (160, 128)):
        ours, theirs = _resize(img, size), cv2.resize(img, size)
        assert ours.shape == theirs.shape
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 1.0


def test_a_missing_gym_pusht_is_a_clear_error(monkeypatch):
    from imitate.envs import pusht

    monkeypatch.delitem(sys.modules, "gym_pusht.envs.pusht", raising=False)
    monkeypatch.setattr(pusht.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"imitate\[pusht\]"):
        pusht.import_gym_pusht()


@needs_pusht
def test_the_expert_acts_with_the_t_against_a_wall():
    env = make_env(PUSHT)
    obs, _ = env.reset(options={"reset_to_state": [400.0, 400.0, 70.0, 30.0, 0.0]})  # the bar along the top wall
    expert = make_expert(PUSHT, seed=1)
    for _ in range(20):
        action = expert.act(obs)
        assert np.all(np.isfinite(action)) and np.all((0 <= action) & (action <= 512))
        obs, *_ = env.step(action)
    assert expert.plans >= 1
