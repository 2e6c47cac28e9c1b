"""Demonstrations inside online RL: `imitate rl --init` (BC weights, value warm-up, DAPG term), start
states from demonstrations (stored-state resets, the reverse curriculum), sparse rewards, and the
demonstration share of the offline-to-online phase."""
from __future__ import annotations

import importlib.util
import json

import h5py
import numpy as np
import pytest
import torch

from imitate.algos.finetune import (DemoRows, FinetunePPO, StartStates, StartStateWrapper, load_init_policy,
                                    load_start_states)
from imitate.algos.ppo import PPOConfig
from imitate.checkpoint import load_policy
from imitate.collect import collect
from imitate.envs import expert_view, make_env, make_expert
from imitate.errors import ConfigError, DemoFileError, ImitateError

FP = "imitate/ForkedPath-v0"
SPARSE = {"reward": "sparse"}
TINY_PPO = PPOConfig(n_envs=2, n_steps=16, epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("rl_demos") / "fp.hdf5"
    collect(FP, 4, path, seed=0, env_kwargs=SPARSE, progress=False)
    return path


def bc_run(data, out, head="gaussian", steps=30):
    from imitate.train import TrainConfig, train

    train(TrainConfig(data=str(data), out=str(out), head=head, steps=steps, batch_size=32, obs_horizon=1,
                      action_horizon=1, n_act=1, warmup_steps=1, eval_episodes=0, val_every=0),
          {"hidden_dims": "16"}, {"hidden_dims": "16", "feature_dim": "16"}, progress=False)
    return out


@pytest.fixture(scope="module")
def bc(demos, tmp_path_factory):
    return bc_run(demos, tmp_path_factory.mktemp("bc") / "gaussian")


# -- tasks: sparse rewards and stored states ---------------------------------------------------------------


@pytest.mark.parametrize("task", [FP, "imitate/BlockPush-v0"])
def test_sparse_reward_pays_only_at_success(task):
    kwargs = SPARSE
    env, dense = make_env(task, kwargs), make_env(task)
    expert = make_expert(task)
    obs, _ = env.reset(seed=1)
    dense.reset(seed=1)
    expert.reset(seed=0)
    rewards, dense_rewards, done = [], [], False
    while not done:
        action = np.asarray(expert.act(expert_view(env, obs)), np.float32)
        obs, r, terminated, truncated, info = env.step(action)
        dense_rewards.append(dense.step(action)[1])
        rewards.append(r)
        done = terminated or truncated
    assert info["is_success"] and rewards[-1] == 1.0 and set(rewards[:-1]) == {0.0}
    assert any(r != 0 for r in dense_rewards[:-1])          # the dense variant pays along the way
    with pytest.raises(ConfigError, match="reward"):
        make_env(task, {"reward": "shaped"})


TASKS = [FP, "imitate/BlockPush-v0", "imitate/StitchMaze-v0", "imitate/ReacherModes-v0"]


@pytest.mark.parametrize("task", TASKS)
def test_a_reset_into_a_stored_state_reproduces_the_stored_observation(task, tmp_path):
    if task.endswith("ReacherModes-v0") and importlib.util.find_spec("mujoco") is None:
        pytest.skip("ReacherModes needs mujoco, which is not installed")
    path = tmp_path / "d.hdf5"
    collect(task, 2, path, seed=3, progress=False)
    env = make_env(task)
    with h5py.File(path) as f:
        for demo in ("demo_0", "demo_1"):
            g = f["data"][demo]
            states = g["states"][()]
            obs = {k: g["obs"][k][()] for k in g["obs"]}
            assert len(states) == len(g["actions"])
            for t in range(0, len(states), 3):
                got, _ = env.reset(seed=1000 + t, options={"state": states[t]})   # another seed: the state decides
                got = got if isinstance(got, dict) else {"state": got}
                for k, v in obs.items():
                    if task.endswith("ReacherModes-v0"):
                        # MuJoCo's step leaves body positions from before its integration; set_state recomputes them
                        np.testing.assert_allclose(got[k], v[t], atol=1e-5)
                    else:
                        np.testing.assert_array_equal(got[k], v[t])
    with pytest.raises(ValueError, match="values"):
        env.reset(options={"state": np.zeros(len(states[0]) + 1)})


def test_a_stored_state_continues_the_episode_as_it_went(demos):
    """From a stored mid-episode state, the demo's own actions lead to the same observations and success."""
    env = make_env(FP, SPARSE)
    with h5py.File(demos) as f:
        g = f["data/demo_0"]
        states, actions, next_obs = g["states"][()], g["actions"][()], g["next_obs/agent_pos"][()]
    t0 = len(states) // 2
    env.reset(seed=5, options={"state": states[t0]})
    for t in range(t0, len(states)):
        obs, r, terminated, _, info = env.step(actions[t])
        np.testing.assert_array_equal(obs["agent_pos"], next_obs[t])
    assert terminated and info["is_success"] and r == 1.0


# -- --init: BC weights, first actions, value warm-up --------------------------------------------------------


def test_init_loads_the_bc_weights_exactly_and_acts_as_the_bc_policy(bc):
    policy = load_init_policy(str(bc))
    reference = load_policy(bc)
    ppo = FinetunePPO(policy, FP, TINY_PPO, SPARSE, obs_stats="frozen", seed=7)
    saved = reference.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in policy.state_dict().items())
    buf = ppo.collect()
    # the first step's actions: the BC policy's sample for the same observations and the same noise
    obs = {k: torch.as_tensor(v).unsqueeze(1) for k, v in ppo.split(buf["obs"][0]).items()}
    with torch.no_grad():
        expected = reference.head.sample(reference.encode(obs), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(buf["u"][0], expected, rtol=0, atol=0)
    # the normalizer stays the BC run's (frozen), also after a rollout
    assert all(torch.equal(v, saved[k]) for k, v in policy.state_dict().items() if k.startswith("normalizer"))
    ppo.close()


def test_value_warm_up_fits_the_value_and_leaves_the_policy_alone(bc):
    policy = load_init_policy(str(bc))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    ppo = FinetunePPO(policy, FP, PPOConfig(n_envs=2, n_steps=64, batch_size=32, lr=1e-3), SPARSE,
                      obs_stats="frozen", seed=0)
    stats = ppo.warm_up_value(2, 30)
    assert stats["value_warmup/last_loss"] < stats["value_warmup/first_loss"]
    assert stats["value_warmup/env_steps"] == 2 * 2 * 64 == ppo.env_steps and ppo.updates == 0
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())
    ppo.close()


def test_init_refuses_heads_without_a_log_probability_and_multi_step_runs(demos, tmp_path):
    from imitate.train import TrainConfig, train

    train(TrainConfig(data=str(demos), out=str(tmp_path / "flow"), head="flow", steps=2, batch_size=16,
                      obs_horizon=1, action_horizon=1, n_act=1, warmup_steps=1, eval_episodes=0, val_every=0),
          {}, {"hidden_dims": "16", "feature_dim": "16"}, progress=False)
    with pytest.raises(ConfigError, match="log-probability.*DPPO"):
        load_init_policy(str(tmp_path / "flow"))
    train(TrainConfig(data=str(demos), out=str(tmp_path / "chunk"), head="gaussian", steps=2, batch_size=16,
                      obs_horizon=2, action_horizon=4, n_act=2, warmup_steps=1, eval_episodes=0, val_every=0),
          {"hidden_dims": "16"}, {"hidden_dims": "16", "feature_dim": "16"}, progress=False)
    with pytest.raises(ConfigError, match="--obs-horizon 1"):
        load_init_policy(str(tmp_path / "chunk"))


# -- the DAPG term -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["gaussian", "gmm"])
def test_the_dapg_gradient_is_the_bc_loss_gradient_times_its_weight(demos, tmp_path, head):
    run = bc_run(demos, tmp_path / head, head=head, steps=5)
    policy = load_init_policy(str(run))
    rows = DemoRows(str(demos), policy.obs_keys, policy.obs_shapes)
    coef, decay = 0.3, 0.5
    ppo = FinetunePPO(policy, FP, TINY_PPO, SPARSE, obs_stats="frozen", demos=rows, demo_coef=coef, demo_decay=decay)
    idx = torch.arange(5)
    with h5py.File(demos) as f:                      # a tiny batch read straight from the file
        g = f["data/demo_0"]
        obs = {k: torch.as_tensor(g["obs"][k][:5], dtype=torch.float32).unsqueeze(1) for k in g["obs"]}
        actions = torch.as_tensor(g["actions"][:5], dtype=torch.float32).unsqueeze(1)
    params = [p for p in policy.parameters() if p.requires_grad]

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    bc_loss, _ = policy.head.loss(policy.encode(obs), policy.normalizer.normalize("action", actions))
    bc_grads = grads(bc_loss)
    for updates in (0, 3):
        ppo.updates = updates
        term, _ = ppo.demo_term(idx)
        for g_term, g_bc in zip(grads(term), bc_grads):
            if g_bc is None:
                assert g_term is None
                continue
            torch.testing.assert_close(g_term, coef * decay ** updates * g_bc, rtol=1e-5, atol=1e-7)
    assert any(g is not None and g.abs().sum() > 0 for g in bc_grads)
    ppo.close()


def test_the_dapg_term_joins_the_ppo_update_and_decays(demos, bc):
    policy = load_init_policy(str(bc))
    rows = DemoRows(str(demos), policy.obs_keys, policy.obs_shapes)
    ppo = FinetunePPO(policy, FP, TINY_PPO, SPARSE, obs_stats="frozen", demos=rows, demo_coef=2.0, demo_decay=0.5)
    weights = []
    for _ in range(3):
        info = ppo.update(ppo.collect())
        weights.append(info["ppo/demo_weight"])
        assert np.isfinite(info["ppo/demo_bc_loss"])
    assert weights == [2.0, 1.0, 0.5]
    ppo.close()


def test_demos_with_other_keys_are_refused(tmp_path, bc):
    path = tmp_path / "bp.hdf5"
    collect("imitate/BlockPush-v0", 1, path, progress=False)
    policy = load_init_policy(str(bc))
    with pytest.raises(DemoFileError, match=f"{path}.*goal_pos"):
        DemoRows(str(path), policy.obs_keys, policy.obs_shapes)


# -- start states and the curriculum ----------------------------------------------------------------------------


def test_the_reverse_curriculum_moves_its_start_point_back_as_success_grows():
    states = [np.arange(30, dtype=np.float64)[:, None] * np.ones((1, 5)), np.arange(20.0)[:, None] * np.ones((1, 5))]
    starts = StartStates(states, "reverse", total_steps=1000, step=4, success=0.5, window=6, seed=0)
    state, level = starts.draw()
    assert level == 4
    assert state[0] >= len(states[0]) - 4 or state[0] >= len(states[1]) - 4       # within the last 4 steps
    for _ in range(10):                                                        # failures: the point stays
        starts.report(False, 4)
    assert starts.back == 4
    for _ in range(6):                                                         # 6 of the last 6 succeed: it moves
        starts.report(True, 4)
    assert starts.back == 8 and starts.moves == [(0, 8)]
    starts.report(True, 4)                                                     # an episode of the old level: ignored
    assert starts.back == 8
    for _ in range(60):
        starts.report(True, starts.back)
    assert starts.back == 30                                                   # the longest demo: its first state
    assert starts.draw()[0] is not None


def test_start_states_mix_with_the_task_starts_down_to_none_by_the_end():
    states = [np.zeros((10, 5))]
    starts = StartStates(states, "uniform", total_steps=100, share=0.8, seed=1)
    draws = [starts.draw()[0] is not None for _ in range(2000)]
    assert 0.75 < np.mean(draws) < 0.85
    starts.env_steps = 50
    assert starts.demo_probability() == pytest.approx(0.4)
    starts.env_steps = 100
    assert not any(starts.draw()[0] is not None for _ in range(200))


def test_episodes_started_near_the_goal_advance_the_curriculum(demos):
    """The expert, started from the demos' last steps through the wrapper, succeeds; the point moves back."""
    states = load_start_states(str(demos))
    starts = StartStates(states, "reverse", total_steps=10**6, step=3, success=0.9, window=4, seed=0)
    env = StartStateWrapper(make_env(FP, SPARSE), starts)
    expert = make_expert(FP)
    for episode in range(12):
        obs, _ = env.reset(seed=episode)
        expert.reset(seed=episode)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(np.asarray(expert.act(expert_view(env, obs)), np.float32))
            done = terminated or truncated
    assert starts.back >= 9 and len(starts.moves) >= 2
    assert [b for _, b in starts.moves] == list(range(6, 3 * (len(starts.moves) + 1) + 1, 3))


def test_start_states_need_states_in_the_file(tmp_path, demos):
    path = tmp_path / "nostates.hdf5"
    with h5py.File(demos) as src, h5py.File(path, "w") as dst:
        src.copy("data", dst)
        del dst["data/demo_0/states"]
    with pytest.raises(DemoFileError, match="demo_0 has no 'states'"):
        load_start_states(str(path))


# -- imitate rl end to end --------------------------------------------------------------------------------------


def test_cli_rl_init_with_dapg_and_reverse_start_states(demos, bc, tmp_path, capsys):
    from imitate.cli import main

    out = tmp_path / "ft"
    assert main(["rl", "--init", str(bc), "--out", str(out), "--steps", "128", "--demos", str(demos),
                 "--demo-coef", "0.5", "--start-states", str(demos), "--curriculum", "reverse", "--eval-every", "64",
                 "--eval-episodes", "2", "--log-every", "64", "--quiet", "--set", "ppo.n_envs=2",
                 "--set", "ppo.n_steps=16", "--set", "ppo.epochs=1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["env_steps"] == 0 and "eval/success_rate" in lines[0]            # the BC policy, evaluated first
    assert "value_warmup/last_loss" in lines[1] and lines[1]["env_steps"] == 32      # one warm-up rollout
    final = lines[-1]["final"]
    assert final["env_steps"] >= 128 and final["start_states"]["demo_starts"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["head"] == "gaussian" and config["demo"]["demo_coef"] == 0.5
    assert config["data"]["env_args"]["env_kwargs"] == SPARSE                       # the BC run's task
    assert load_policy(out).head.name == "gaussian"
    assert main(["rl", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "--env" in capsys.readouterr().err
    assert main(["rl", "--env", FP, "--out", str(tmp_path / "y"), "--demo-coef", "1", "--quiet"]) == 1
    assert "--demos" in capsys.readouterr().err


def test_rl_from_scratch_on_a_dict_observation_task(tmp_path):
    from imitate.algos.rl_loop import train_rl

    final = train_rl(FP, tmp_path / "scratch", steps=64, ppo_overrides={"n_envs": 2, "n_steps": 32, "epochs": 1},
                     env_kwargs=SPARSE, eval_episodes=2, progress=False, log_every=64)
    policy = load_policy(tmp_path / "scratch")
    assert set(policy.obs_keys) == {"agent_pos", "goal_pos"} and final["eval_success_rate"] is not None


# -- offline to online: the demonstration share -------------------------------------------------------------------


def test_online_phase_draws_a_fixed_share_from_the_demonstrations(demos, tmp_path, monkeypatch):
    from imitate.algos import offline
    from imitate.settings import OfflineConfig

    sizes, drawn = [], []
    real, real_sample = offline._one_step, offline.TransitionSampler.sample

    def spy(run, batch, log):
        if run.step >= run.cfg.steps:
            sizes.append(len(batch.reward))
        real(run, batch, log)

    def sample(self):
        drawn.append((self.batch_size, str(getattr(self.store, "path", ""))))
        return real_sample(self)

    monkeypatch.setattr(offline.TransitionSampler, "sample", sample)
    monkeypatch.setattr(offline, "_one_step", spy)
    cfg = OfflineConfig(algo="iql", data=str(demos), out=str(tmp_path / "iql"), head="gaussian", steps=4,
                        online_steps=6, online_demos=str(demos), batch_size=20, log_every=2, eval_episodes=0,
                        warmup_steps=1)
    final = offline.train_offline(cfg, {"online_ratio": 0.5, "demo_ratio": 0.25, "critic_hidden": "16"},
                                  {"hidden_dims": "16"}, {"hidden_dims": "16", "feature_dim": "16"}, progress=False)
    assert final["online_batch_shares"] == {"offline": 0.25, "demos": 0.25, "online": 0.5}
    assert sizes == [20] * 6
    assert [n for n, _ in drawn[-12:]] == [5, 5] * 6          # each online batch: 5 offline rows, 5 demo rows, 10 online
    with pytest.raises(ConfigError, match="demo_ratio"):
        offline.train_offline(OfflineConfig(algo="iql", data=str(demos), out=str(tmp_path / "bad"), steps=2,
                                            online_steps=2, eval_episodes=0), {"demo_ratio": 0.2}, progress=False)
    with pytest.raises(ConfigError, match="demo_ratio"):
        offline.train_offline(OfflineConfig(algo="iql", data=str(demos), out=str(tmp_path / "bad2"), steps=2,
                                            online_steps=2, online_demos=str(demos), eval_episodes=0),
                              {"demo_ratio": 0.6, "online_ratio": 0.5}, progress=False)
