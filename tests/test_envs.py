"""imitate.envs: the ForkedPath task, its registration, and the scripted experts."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import imitate.envs as envs
from imitate.envs import (
    EXPERTS,
    Expert,
    ForkedPathEnv,
    ForkedPathExpert,
    PendulumExpert,
    UnknownEnvError,
    make_env,
    make_expert,
)

FORKED = "imitate/ForkedPath-v0"


def run_episode(env, expert, seed: int, expert_seed: int | None = None):
    """Roll out one seeded episode; return (info of the last step, steps, total reward)."""
    obs, info = env.reset(seed=seed)
    expert.reset(seed=seed + 1000 if expert_seed is None else expert_seed)
    steps, total = 0, 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        steps, total = steps + 1, total + reward
        if terminated or truncated:
            return info, steps, total


def test_env_passes_gymnasium_checker():
    for n_routes in (2, 3, 4):
        env = make_env(FORKED, {"n_routes": n_routes}, render_mode="rgb_array")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=False)


def test_registration_survives_reimport():
    spec = gym.spec(FORKED)
    assert spec.max_episode_steps == 120
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
    assert gym.spec(FORKED).entry_point == spec.entry_point


def test_importing_envs_does_not_import_torch():
    code = "import sys, imitate.envs; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_observation_and_info_contract():
    env = make_env(FORKED)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"agent_pos", "goal_pos"}
    assert all(v.shape == (2,) and v.dtype == np.float32 for v in obs.values())
    assert info == {"is_success": False, "collided": False, "mode": None}
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert isinstance(info["is_success"], bool) and info["mode"] is None
    assert not terminated and not truncated
    assert ForkedPathEnv.MODES == ("left", "right") == env.unwrapped.modes


def test_seeding_reproduces_trajectories():
    actions = np.random.default_rng(0).uniform(-1, 1, size=(40, 2)).astype(np.float32)

    def trajectory(seed):
        env = make_env(FORKED)
        obs, _ = env.reset(seed=seed)
        out = [obs["agent_pos"], obs["goal_pos"]]
        for a in actions:
            obs, reward, terminated, truncated, _ = env.step(a)
            out += [obs["agent_pos"], [reward]]
            if terminated or truncated:
                break
        return np.concatenate(out)

    assert np.array_equal(trajectory(7), trajectory(7))
    assert not np.array_equal(trajectory(7), trajectory(8))


def test_render_draws_the_scene():
    env = make_env(FORKED, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    colours = {tuple(c) for c in frame.reshape(-1, 3)}
    for colour in [(40, 90, 210), (60, 170, 75), (120, 120, 120), (40, 40, 40)]:
        assert colour in colours, f"missing {colour} (agent, goal, barrier, border)"
    env.step(np.array([1.0, 1.0], np.float32))
    assert not np.array_equal(env.render(), frame), "the agent moved but the frame did not change"
    plain = make_env(FORKED)
    plain.reset(seed=0)
    assert plain.render() is None


def test_straight_to_the_goal_collides():
    """The mean of "left" and "right" drives into the block between the passages."""
    env = make_env(FORKED)
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        done = False
        while not done:
            direction = obs["goal_pos"] - obs["agent_pos"]
            obs, reward, terminated, truncated, info = env.step(direction / np.linalg.norm(direction))
            done = terminated or truncated
        assert terminated and info["collided"] and not info["is_success"], seed
        assert reward < 0


def test_expert_succeeds_through_both_routes():
    env = make_env(FORKED)
    expert = make_expert(FORKED)
    assert isinstance(expert, Expert)
    results = []
    for seed in range(60):
        info, steps, total = run_episode(env, expert, seed)
        if info["is_success"]:
            assert info["mode"] == expert.route, (seed, info, expert.route)
            assert total > ForkedPathEnv.SUCCESS_BONUS
        results.append((info["is_success"], info["mode"], steps))
    success = np.mean([r[0] for r in results])
    left = np.mean([r[1] == "left" for r in results])
    assert success >= 0.95, success
    assert 0.3 <= left <= 0.7, left
    assert max(r[2] for r in results) < gym.spec(FORKED).max_episode_steps


def test_p_left_one_only_goes_left():
    env = make_env(FORKED)
    expert = make_expert(FORKED, p_left=1.0)
    modes = {run_episode(env, expert, seed)[0]["mode"] for seed in range(15)}
    assert modes == {"left"}


@pytest.mark.parametrize("n_routes", [3, 4])
def test_more_routes_are_one_kwarg_away(n_routes):
    env_kwargs = json.loads(json.dumps({"n_routes": n_routes}))
    env = make_env(FORKED, env_kwargs)
    expert = make_expert(FORKED, env_kwargs=env_kwargs)
    infos = [run_episode(env, expert, seed)[0] for seed in range(30)]
    assert np.mean([i["is_success"] for i in infos]) >= 0.9
    assert {i["mode"] for i in infos} <= set(env.unwrapped.modes)
    assert len({i["mode"] for i in infos}) >= 3


def test_expert_labels_states_it_never_visited():
    """From arbitrary free positions (as DAgger queries them) the expert still reaches the goal."""
    env = make_env(FORKED)
    geo = env.unwrapped.geometry
    expert = ForkedPathExpert(noise=0.0)
    rng = np.random.default_rng(1)
    successes = []
    for seed in range(30):
        env.reset(seed=seed)
        expert.reset(seed=seed)
        while True:
            pos = rng.uniform(-0.9, 0.9, 2)
            if geo.barrier_distance(pos) > 0.06:
                break
        env.unwrapped._agent = pos
        obs = env.unwrapped._obs()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
        successes.append(info["is_success"])
    assert np.mean(successes) >= 0.9


def test_noise_free_expert_is_a_function_of_the_observation():
    expert = ForkedPathExpert(noise=0.0, seed=0)
    states = np.random.default_rng(2).uniform(-0.9, 0.9, size=(50, 2)).astype(np.float32)
    goal = np.array([0.0, 0.8], np.float32)
    labels = np.stack([expert.act({"agent_pos": s, "goal_pos": goal}) for s in states])
    again = np.stack([expert.act({"agent_pos": s, "goal_pos": goal}) for s in states[::-1]])[::-1]
    assert np.array_equal(labels, again)
    assert labels.shape == (50, 2) and labels.dtype == np.float32 and np.all(np.abs(labels) <= 1)


def test_expert_reset_seed_is_deterministic():
    a, b = ForkedPathExpert(), ForkedPathExpert()
    routes_a, routes_b = [], []
    for seed in range(20):
        a.reset(seed=seed)
        b.reset(seed=seed)
        routes_a.append(a.route)
        routes_b.append(b.route)
    assert routes_a == routes_b and len(set(routes_a)) == 2


def test_pendulum_expert_swings_up_and_balances():
    env = make_env("Pendulum-v1")
    expert = make_expert("Pendulum-v1")
    assert isinstance(expert, PendulumExpert)
    returns = [run_episode(env, expert, seed)[2] for seed in range(5)]
    assert np.mean(returns) > -300, returns
    obs, _ = env.reset(seed=4)
    for _ in range(150):
        obs, *_ = env.step(expert.act(obs))
    assert obs[0] > 0.99, f"not balanced upright after 150 steps: cos(theta) = {obs[0]:.3f}"


def test_unknown_ids_and_bad_arguments_are_named():
    with pytest.raises(UnknownEnvError, match="Nope-v0") as err:
        make_expert("Nope-v0")
    assert isinstance(err.value, ValueError)
    for known in EXPERTS:
        assert known in str(err.value)
    with pytest.raises(UnknownEnvError, match="imitate/Nope-v0"):
        make_env("imitate/Nope-v0")
    with pytest.raises(ValueError, match="ForkedPath"):
        make_env(FORKED, {"speed": 2})
    with pytest.raises(ValueError, match="n_routes"):
        make_env(FORKED, {"n_routes": 7})
    with pytest.raises(ValueError, match="speed"):
        make_expert(FORKED, env_kwargs={"speed": 2})
    with pytest.raises(ValueError, match="ForkedPathExpert"):
        make_expert(FORKED, p_lft=0.3)
    with pytest.raises(ValueError, match="route_probs"):
        make_expert(FORKED, p_left=1.5)


def test_routes_share_the_stem_and_split_at_the_fork():
    """Below the fork every route acts alike; past it the routes turn opposite ways: the demonstrations
    are bimodal exactly where the mean of the modes drives into the block between the passages."""
    from imitate.envs import ForkedPathExpert

    left, right = ForkedPathExpert(p_left=1.0, noise=0.0), ForkedPathExpert(p_left=0.0, noise=0.0)
    left.reset(seed=5)
    right.reset(seed=5)
    assert (left.route, right.route) == ("left", "right")
    goal = np.array([0.0, 0.8], np.float32)
    for y in (-0.8, -0.7, -0.6, -0.5):
        obs = {"agent_pos": np.array([0.02, y], np.float32), "goal_pos": goal}
        np.testing.assert_array_equal(left.act(obs), right.act(obs))
    fork = {"agent_pos": np.array([left.fork[0], left.fork[1] + 0.01], np.float32), "goal_pos": goal}
    a_left, a_right = left.act(fork), right.act(fork)
    assert a_left[0] < -0.3 and a_right[0] > 0.3 and a_left[1] > 0 and a_right[1] > 0
    mean = (a_left + a_right) / 2
    assert abs(mean[0]) < 0.05 and mean[1] > 0  # the average of the two routes heads straight up, into the block


def test_to_env_action_fits_each_space():
    from gymnasium import spaces

    from imitate.envs import to_env_action

    assert to_env_action(spaces.Discrete(2), np.array([0.7])) == 1
    assert to_env_action(spaces.Discrete(3, start=-1), np.array([5.0])) == 1  # clipped index 2, offset -1
    box = to_env_action(spaces.Box(-2.0, 2.0, (1,), np.float32), np.array([3.5]))
    assert box.dtype == np.float32 and box.tolist() == [2.0]
    md = to_env_action(spaces.MultiDiscrete([3, 2]), np.array([2.4, -1.0]))
    assert md.tolist() == [2, 0]
