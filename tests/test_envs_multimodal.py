"""imitate.envs: the multimodal tasks ForkedPath3, ReacherModes and BlockPush and their experts."""
from __future__ import annotations

import json
import warnings
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from imitate.envs import (
    BLOCK_PUSH_ID,
    BLOCK_PUSH_MODES,
    EXPERTS,
    FORKED_PATH3_ID,
    REACHER_MODES,
    REACHER_MODES_ID,
    BlockPushEnv,
    BlockPushExpert,
    Expert,
    ReacherModesExpert,
    make_env,
    make_expert,
)

NEW_TASKS = {FORKED_PATH3_ID: 120, REACHER_MODES_ID: 50, BLOCK_PUSH_ID: 200}


def run_episode(env, expert, seed: int):
    """One seeded episode; return (info of the last step, steps)."""
    obs, info = env.reset(seed=seed)
    expert.reset(seed=seed + 1000)
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        steps += 1
        if terminated or truncated:
            return info, steps


def expert_stats(env_id: str, episodes: int, **expert_kwargs):
    env = make_env(env_id)
    expert = make_expert(env_id, **expert_kwargs)
    results = []
    for seed in range(episodes):
        info, steps = run_episode(env, expert, seed)
        results.append((bool(info["is_success"]), info["mode"], expert.route, steps))
    env.close()
    return results


@pytest.mark.parametrize("env_id", sorted(NEW_TASKS))
def test_registered_with_an_expert(env_id):
    spec = gym.spec(env_id)
    assert spec.max_episode_steps == NEW_TASKS[env_id]
    assert env_id in EXPERTS
    assert isinstance(make_expert(env_id), Expert)


@pytest.mark.parametrize("env_id", sorted(NEW_TASKS))
def test_env_passes_gymnasium_checker(env_id):
    env = make_env(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # joint velocities are unbounded, as in Reacher-v5 itself
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value is")
        check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", sorted(NEW_TASKS))
def test_reset_step_render_shapes(env_id):
    env = make_env(env_id, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert {"is_success", "mode"} <= set(info) and info["is_success"] is False
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert isinstance(info["is_success"], bool) and not terminated
    for _ in range(5):
        env.step(np.ones(2, np.float32))
    assert not np.array_equal(env.render(), frame), "the scene moved but the frame did not change"
    env.close()
    plain = make_env(env_id)
    plain.reset(seed=0)
    assert plain.render() is None
    plain.close()


def test_forked_path3_expert_takes_all_three_routes():
    results = expert_stats(FORKED_PATH3_ID, 30)
    assert np.mean([r[0] for r in results]) >= 0.95
    assert {r[1] for r in results} == {"left", "center", "right"}
    assert all(r[1] == r[2] for r in results if r[0])
    assert make_env(FORKED_PATH3_ID).unwrapped.modes == ("left", "center", "right")


def test_reacher_expert_succeeds_with_both_elbows():
    results = expert_stats(REACHER_MODES_ID, 40)
    assert np.mean([r[0] for r in results]) >= 0.95
    modes = Counter(r[1] for r in results if r[0])
    assert set(modes) == set(REACHER_MODES) and min(modes.values()) >= 10, modes
    assert all(r[1] == r[2] for r in results if r[0]), "the arm ended in another elbow solution than the expert chose"
    assert max(r[3] for r in results) < NEW_TASKS[REACHER_MODES_ID]


def test_reacher_solutions_differ_and_the_mode_reads_the_elbow():
    env = make_env(REACHER_MODES_ID).unwrapped
    geo = env.geometry
    rng = np.random.default_rng(0)
    for _ in range(50):
        radius, angle = rng.uniform(*geo.target_radius), rng.uniform(0, 2 * np.pi)
        target = radius * np.array([np.cos(angle), np.sin(angle)])
        up, down = geo.inverse_kinematics(target, elbow_up=True), geo.inverse_kinematics(target, elbow_up=False)
        assert up[1] < -1.2 and down[1] > 1.2 and abs(up[1]) < 3.0  # clearly apart and inside the joint limit
        for q in (up, down):
            tip = np.array([geo.upper_arm * np.cos(q[0]) + geo.forearm * np.cos(q[0] + q[1]),
                            geo.upper_arm * np.sin(q[0]) + geo.forearm * np.sin(q[0] + q[1])])
            np.testing.assert_allclose(tip, target, atol=1e-9)
    assert geo.mode_of(-1.0) == "elbow_up" and geo.mode_of(1.0) == "elbow_down" and geo.mode_of(0.2) is None
    # success needs the fingertip held on the target: put the arm on an IK solution and wait
    obs, _ = env.reset(seed=3)
    q = geo.inverse_kinematics(obs[4:6].astype(np.float64), elbow_up=False)
    env._reacher.set_state(np.r_[q, obs[4:6]], np.zeros(4))
    infos = [env.step(np.zeros(2, np.float32))[-1] for _ in range(geo.hold_steps)]
    assert [i["is_success"] for i in infos] == [False] * (geo.hold_steps - 1) + [True]
    assert infos[-1]["mode"] == "elbow_down" and infos[-1]["distance"] <= geo.success_radius


def test_reacher_expert_p_elbow_up_and_arguments():
    assert {r[1] for r in expert_stats(REACHER_MODES_ID, 8, p_elbow_up=1.0)} == {"elbow_up"}
    with pytest.raises(ValueError, match="p_elbow_up"):
        make_expert(REACHER_MODES_ID, p_elbow_up=1.5)
    with pytest.raises(ValueError, match="ReacherModesExpert"):
        make_expert(REACHER_MODES_ID, env_kwargs={"n_routes": 3})
    with pytest.raises(ValueError, match="target_radius"):
        make_env(REACHER_MODES_ID, {"target_radius": (0.05, 0.25)})
    expert = ReacherModesExpert(noise=0.0, seed=0)
    obs = make_env(REACHER_MODES_ID).reset(seed=0)[0]
    assert np.array_equal(expert.act(obs), expert.act(obs)) and expert.act(obs).dtype == np.float32


def test_block_push_expert_succeeds_in_all_four_modes():
    results = expert_stats(BLOCK_PUSH_ID, 40)
    assert np.mean([r[0] for r in results]) >= 0.95
    modes = Counter(r[1] for r in results if r[0])
    assert set(modes) == set(BLOCK_PUSH_MODES) and min(modes.values()) >= 4, modes
    assert np.mean([r[1] == r[2] for r in results]) >= 0.95, "the env's mode and the expert's route disagree"
    assert max(r[3] for r in results) < NEW_TASKS[BLOCK_PUSH_ID]


def block_push_at(agent, blocks) -> BlockPushEnv:
    env = make_env(BLOCK_PUSH_ID).unwrapped
    env.reset(seed=0)
    env._agent = np.asarray(agent, dtype=np.float64)
    env._blocks = np.asarray(blocks, dtype=np.float64)
    return env


def test_block_push_p1_p2_on_placed_states():
    t1, t2 = BlockPushEnv().geometry.targets
    far = [(-0.3, -0.3), (0.3, -0.3)]
    cases = [  # blocks -> (p1, p2, return of the step that leads there from `far`)
        (far, 0.0, 0.0),
        ([t1, (0.3, -0.3)], 1.0, 0.0),
        ([(-0.3, -0.3), t1], 1.0, 0.0),
        ([t2, t1], 1.0, 1.0),
        ([t1, t2], 1.0, 1.0),
        ([t1, (t1[0] + 0.14, t1[1])], 1.0, 0.0),  # both blocks in zone 1: one zone occupied, not p2
    ]
    for blocks, p1, p2 in cases:
        env = block_push_at((0.0, -0.8), blocks)
        _, reward, terminated, _, info = env.step(np.zeros(2, np.float32))
        assert (info["p1"], info["p2"]) == (p1, p2), blocks
        assert info["is_success"] is bool(p2) and terminated is bool(p2)
    env = block_push_at((0.0, -0.8), [t2, t1])
    assert env.step(np.zeros(2, np.float32))[-1]["mode"] == "A2B1_Afirst"  # a tie names A first
    assert BlockPushEnv.metadata["episode_metrics"] == ["p1", "p2"]


def test_block_push_contact_and_mode_order():
    geo = BlockPushEnv().geometry
    env = block_push_at((-0.3, -0.5), [(-0.3, -0.3), (0.3, -0.3)])
    for _ in range(10):
        env.step(np.array([0.0, 1.0], np.float32))
    assert np.allclose(env._blocks[0], [-0.3, -0.3 + 10 * 0.05 - (0.2 - geo.contact_distance)])
    assert np.allclose(env._blocks[1], [0.3, -0.3]) and np.linalg.norm(env._agent - env._blocks[0]) >= geo.contact_distance - 1e-9
    env = block_push_at((0.6, 0.0), [(0.72, 0.0), (0.3, -0.3)])  # a block stopped by the wall stops the agent
    for _ in range(8):
        env.step(np.array([1.0, 0.0], np.float32))
    np.testing.assert_allclose(env._blocks[0], [geo.arena_half - geo.block_radius, 0.0])
    np.testing.assert_allclose(env._agent, [geo.arena_half - geo.block_radius - geo.contact_distance, 0.0])
    # touching from below and 60 degrees to the right, the agent moves left: outside the 45-degree friction
    # cone it slides along the block, which moves only along the normal; 30 degrees off the normal it sticks
    below_right = geo.contact_distance * np.array([np.cos(-np.pi / 3), np.sin(-np.pi / 3)])
    env = block_push_at(below_right, [(0.0, 0.0), (0.6, -0.6)])
    env.step(np.array([-1.0, 0.0], np.float32))
    normal = -below_right / geo.contact_distance
    np.testing.assert_allclose(env._blocks[0], 0.05 * 0.5 * normal, atol=1e-12)
    env = block_push_at((0.0, -geo.contact_distance), [(0.0, 0.0), (0.6, -0.6)])
    move = 0.05 * np.array([-np.sin(np.pi / 6), np.cos(np.pi / 6)])
    env.step((move / 0.05).astype(np.float64))
    np.testing.assert_allclose(env._blocks[0], move, atol=1e-7)
    # B enters zone 2 first, then A enters zone 1: the mode says so
    t1, t2 = geo.targets
    env = block_push_at((0.0, -0.8), [(-0.3, -0.3), t2])
    env.step(np.zeros(2, np.float32))
    env._blocks[0] = np.asarray(t1)
    assert env.step(np.zeros(2, np.float32))[-1]["mode"] == "A1B2_Bfirst"


def test_block_push_scene_and_agent_xy():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = make_env(BLOCK_PUSH_ID).unwrapped
    env.reset(seed=0)
    fig, ax = plt.subplots()
    env.plot_scene(ax)
    assert len(ax.patches) >= 3  # arena and two zones
    assert ax.get_xlim()[0] < -0.99 and ax.get_xlim()[1] > 0.99
    plt.close(fig)
    obs = {"agent_pos": np.arange(10, dtype=np.float32).reshape(5, 2), "block_pos": np.zeros((5, 2, 2), np.float32)}
    xy = BlockPushEnv.agent_xy(obs)
    assert xy.shape == (5, 2) and np.array_equal(xy, obs["agent_pos"])


def test_block_push_expert_arguments():
    with pytest.raises(ValueError, match="mode_probs"):
        make_expert(BLOCK_PUSH_ID, mode_probs=[1.0, 0.0])
    with pytest.raises(ValueError, match="BlockPushExpert"):
        make_expert(BLOCK_PUSH_ID, env_kwargs={"n_routes": 3})
    only = [0.0, 0.0, 1.0, 0.0]
    assert {r[1] for r in expert_stats(BLOCK_PUSH_ID, 3, mode_probs=only)} == {BLOCK_PUSH_MODES[2]}
    expert = BlockPushExpert(noise=0.0, seed=0)
    obs = make_env(BLOCK_PUSH_ID).reset(seed=0)[0]
    assert np.array_equal(expert.act(obs), expert.act(obs))


@pytest.mark.parametrize("env_id", sorted(NEW_TASKS))
def test_collect_writes_a_valid_file(tmp_path, env_id):
    from imitate.cli import main
    from imitate.data.info import demo_file_info

    out = tmp_path / "demos.hdf5"
    assert main(["collect", env_id, "--episodes", "4", "--out", str(out), "--quiet"]) == 0
    info = demo_file_info(out)
    assert info["demos"] == 4 and info["env_args"]["env_name"] == env_id
    assert info["demo_attrs"]["is_success"] == {"true": 4, "of": 4}
    routes = info["demo_attrs"]["route"]
    assert sum(routes.values()) == 4 and set(routes) <= set(make_env(env_id).unwrapped.modes)
    assert main(["data", "info", str(out)]) == 0
    assert json.loads(json.dumps(info))["content_sha256"] == info["content_sha256"]


CARDS = ["forked_path3", "reacher_modes", "block_push"]


@pytest.mark.parametrize("name", CARDS)
def test_shipped_dataset_matches_its_card_and_command(tmp_path, name):
    """The card's size and checksum describe the shipped file, and its command regenerates the demos
    (the first few: episode i depends on seed + i only)."""
    import hashlib
    import re
    from pathlib import Path

    from imitate.cli import main
    from imitate.data import load_demo_file

    root = Path(__file__).resolve().parent.parent / "datasets"
    card, data = (root / f"{name}.md").read_text(), root / f"{name}.hdf5"
    assert f"size: {data.stat().st_size} bytes" in card
    assert hashlib.sha256(data.read_bytes()).hexdigest() == re.search(r"^- sha256: ([0-9a-f]{64})$", card, re.M).group(1)
    command = re.search(r"^- command: `imitate (.+)`$", card, re.M).group(1).split()
    out = tmp_path / "regen.hdf5"
    command[command.index("--out") + 1] = str(out)
    command[command.index("--episodes") + 1] = "3"
    assert main(command + ["--quiet"]) == 0
    shipped, regen = load_demo_file(data), load_demo_file(out)
    for i in range(3):
        a, b = shipped.episode(i), regen.episode(i)
        assert a.attrs == b.attrs
        np.testing.assert_array_equal(a.actions, b.actions)
        for key in a.obs:
            np.testing.assert_array_equal(a.obs[key], b.obs[key])


def test_importing_envs_does_not_import_mujoco():
    import subprocess
    import sys

    code = "import sys, imitate.envs; assert 'mujoco' not in sys.modules, 'mujoco imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
