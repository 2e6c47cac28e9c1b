"""DAgger and human-gated DAgger: β schedule, gate, aggregation, the file written, --init."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from imitate.algos.dagger import (dagger_config, ScriptedGate, beta_schedule, dagger, rollout,
                                  takeover_segments)
from imitate.cli import main
from imitate.data import load_demo_file
from imitate.data.hdf5 import read_extra
from imitate.envs import make_env, make_expert
from imitate.envs.experts import LABEL_SETTINGS
from imitate.errors import ConfigError, ImitateError
from imitate.train import train
from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

TASK = "imitate/ForkedPath-v0"
TINY_SET = ["hidden_dims=32", "encoder.hidden_dims=32", "encoder.feature_dim=16"]


def tiny_dagger(out, **kw):
    settings = dict(out=str(out), head="gaussian", rounds=2, episodes_per_round=2, initial_demos=2, steps=20,
                    steps_per_round=10, batch_size=16, action_horizon=4, n_act=2, eval_episodes=2,
                    head_config=dict(kv.split("=") for kv in TINY_SET))
    settings.update(kw)
    return dagger_config(**settings)


class ConstantPolicy:
    """Stands in for a trained policy: always the same action, so the executed actions show who drove."""

    def __init__(self, action):
        self.action = np.asarray(action, np.float32)

    def reset(self):
        pass

    def act(self, obs, generator=None):
        return self.action.copy()


def labeler():
    return make_expert(TASK, **LABEL_SETTINGS[TASK])


def test_beta_schedules_and_their_errors():
    assert [beta_schedule("constant:0.3")(i) for i in (1, 5)] == [0.3, 0.3]
    assert [beta_schedule("linear:4")(i) for i in (1, 2, 4, 9)] == [0.75, 0.5, 0.0, 0.0]
    assert beta_schedule("exponential:0.5")(3) == 0.125
    assert [beta_schedule("1,0.5,0")(i) for i in (1, 2, 3, 7)] == [1.0, 0.5, 0.0, 0.0]
    for bad in ("linear:0", "constant:2", "exponential:x", "sometimes"):
        with pytest.raises(ConfigError, match="beta-schedule"):
            beta_schedule(bad)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_beta_is_the_share_of_steps_the_expert_executes(beta):
    env, expert = make_env(TASK), labeler()
    policy = ConstantPolicy([0.0, 0.6])  # straight up: long episodes that end at the barrier
    flags = []
    for seed in range(4):
        steps, _ = rollout(env, policy, expert, seed, beta=beta, rng=np.random.default_rng(seed))
        for s in steps:
            assert s["label"] is not None and s["label"].shape == (2,)  # every visited state is labelled
            np.testing.assert_array_equal(s["executed"], s["label"] if s["expert"] else policy.action)
        flags += [s["expert"] for s in steps]
    share = np.mean(flags)
    if beta in (0.0, 1.0):
        assert share == beta
    else:
        assert 0.35 < share < 0.65 and len(flags) > 60


def test_scripted_gate_drives_only_while_the_agent_is_off_route():
    env, expert = make_env(TASK), labeler()
    gate = ScriptedGate(expert, threshold=0.05, patience=3)
    steps, _ = rollout(env, ConstantPolicy([0.7, 0.3]), expert, seed=0, gate=gate)  # drifts to the right
    segments = takeover_segments(steps)
    assert segments, "the gate never took over from a policy that drifts off the route"
    driven = {t for a, b in segments for t in range(a, b)}
    assert driven == {t for t, s in enumerate(steps) if s["expert"]}
    assert len(driven) < len(steps)  # the policy drove at first: not every step is a takeover
    assert not steps[0]["expert"]
    for t in driven:
        np.testing.assert_array_equal(steps[t]["executed"], steps[t]["label"])
    for t in set(range(len(steps))) - driven:
        assert steps[t]["label"] is None
    with pytest.raises(ConfigError, match="route deviation"):
        ScriptedGate(make_expert("Pendulum-v1"), 0.05, 3)


def _snapshot(path):
    with h5py.File(path, "r") as f:
        return {demo: {k: f["data"][demo][k][()] for k in ("actions", "obs/agent_pos", "expert_in_control")}
                | {"attrs": dict(f["data"][demo].attrs)} for demo in f["data"]}


def test_aggregation_keeps_every_sample_and_the_file_is_ordinary(tmp_path, capsys):
    snapshots = []
    cfg = tiny_dagger(tmp_path / "run", beta_schedule="0.5")
    results = dagger(cfg, progress=False, on_round=lambda r: snapshots.append(_snapshot(r["data"])))
    assert [r["round"] for r in results] == [0, 1, 2]
    for earlier, later, r in zip(snapshots, snapshots[1:], results[1:]):
        assert set(earlier) < set(later)
        for demo, content in earlier.items():  # every earlier sample, unchanged
            for k in ("actions", "obs/agent_pos", "expert_in_control"):
                np.testing.assert_array_equal(later[demo][k], content[k])
        added = [d for d in later if d not in earlier]
        assert all(later[d]["attrs"]["round"] == r["round"] and later[d]["attrs"]["kind"] == "dagger" for d in added)
        assert sum(len(later[d]["actions"]) for d in added) == r["new_labels"] == r["rollout_steps"]
    labels = [r["expert_labels"] for r in results]
    assert labels[1] - labels[0] == results[1]["new_labels"] and labels[2] - labels[1] == results[2]["new_labels"]
    flags = np.concatenate(read_extra(results[-1]["data"], "expert_in_control"))
    assert 0 < flags.mean() < 1  # expert demos (all 1) and mixed DAgger rollouts (β = 0.5)
    store = load_demo_file(results[-1]["data"])
    assert "expert_in_control" not in " ".join(store.keys)  # never a policy input
    assert len(store) == labels[-1]
    rounds = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    config = json.loads((tmp_path / "run" / "round_2" / "config.json").read_text())
    assert config["train"]["init"] == str(tmp_path / "run" / "round_1")

    assert main(["data", "info", results[-1]["data"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["demos"] == results[-1]["demos"] and info["demo_attrs"]["kind"] == {"dagger": 4, "expert_demo": 2}
    assert main(["train", "--data", results[-1]["data"], "--head", "gaussian", "--out", str(tmp_path / "bc"),
                 "--steps", "4", "--batch-size", "8", "--action-horizon", "4", "--n-act", "2", "--eval-episodes", "1",
                 "--val-every", "0", "--quiet", "--set", "hidden_dims=32"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 4
    with pytest.raises(ImitateError, match="not an empty directory"):
        dagger(cfg, progress=False)  # never writes into an earlier run


def test_scripted_gate_run_adds_only_takeover_segments(tmp_path, capsys):
    from imitate.collect import collect

    collect(TASK, 3, tmp_path / "initial.hdf5", seed=5, env_kwargs={"gap_width": 0.2}, progress=False)
    initial = load_demo_file(tmp_path / "initial.hdf5")
    assert main(["dagger", "--head", "gaussian", "--rounds", "1", "--episodes-per-round", "3", "--initial-demos", "2",
                 "--initial-data", str(tmp_path / "initial.hdf5"),
                 "--steps", "20", "--steps-per-round", "10", "--batch-size", "16", "--action-horizon", "4",
                 "--n-act", "2", "--eval-episodes", "2", "--gate", "scripted", "--gate-threshold", "0.03",
                 "--env-kw", "gap_width=0.2", "--out", str(tmp_path / "hg"), "--quiet",
                 *sum([["--set", s] for s in TINY_SET], [])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["round"] for r in lines] == [0, 1] and all({"expert_labels", "success_rate"} <= set(r) for r in lines)
    data = lines[-1]["data"]
    store = load_demo_file(data)
    assert store.env_args["env_kwargs"] == {"gap_width": 0.2}
    kinds = [a["kind"] for a in store.demo_attrs]
    assert kinds[:2] == ["expert_demo"] * 2 and kinds.count("expert_demo") == 2  # the file's first two demos
    n0 = initial.episode_ends[1]
    np.testing.assert_array_equal(store.get("actions", np.arange(n0)), initial.get("actions", np.arange(n0)))
    added = [i for i, k in enumerate(kinds) if k == "hg_dagger"]
    flags, executed = read_extra(data, "expert_in_control"), read_extra(data, "executed_actions")
    for i in added:  # a takeover segment: the expert drove every step and its action is the label
        assert flags[i].all()
        rows = np.arange(store.episode_starts[i], store.episode_ends[i])
        np.testing.assert_array_equal(executed[i], store.get("actions", rows))
    assert sum(len(flags[i]) for i in added) == lines[1]["new_labels"] < lines[1]["rollout_steps"]


def test_init_starts_from_the_previous_weights_and_checks_shapes(tmp_path):
    from imitate.collect import collect

    data = tmp_path / "fp.hdf5"
    collect(TASK, 3, data, progress=False)
    train(tiny_config(data, tmp_path / "a", "gmm"), dict(TINY_HEADS["gmm"]), dict(TINY_ENCODER), progress=False)
    train(tiny_config(data, tmp_path / "b", "gmm", steps=1, lr=1e-12, init=str(tmp_path / "a")), progress=False)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert set(a) == set(b)
    for k in a:  # one step at a negligible learning rate: the weights and normalizer are run a's
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="action_horizon"):
        train(tiny_config(data, tmp_path / "c", "gmm", action_horizon=6, init=str(tmp_path / "a")), progress=False)
    with pytest.raises(ConfigError, match="drop --set"):
        train(tiny_config(data, tmp_path / "d", "gmm", init=str(tmp_path / "a")), {"num_modes": "2"}, progress=False)


def test_noise_and_narrow_passages_are_seeded_and_the_expert_follows_the_agent():
    env = make_env(TASK, {"gap_width": 0.14, "action_noise": 0.3})
    assert env.unwrapped.geometry.gap_width == 0.14
    runs = []
    for seed in (3, 3, 4):
        env.reset(seed=seed)
        runs.append(np.stack([env.step(np.array([0.0, 1.0], np.float32))[0]["agent_pos"] for _ in range(5)]))
    np.testing.assert_array_equal(runs[0], runs[1])  # the noise comes from the seeded generator
    assert not np.array_equal(runs[0], runs[2])
    assert np.abs(np.diff(runs[0][:, 0])).max() > 0  # noise moves the agent sideways
    obs = {"agent_pos": np.array([0.3, -0.3], np.float32), "goal_pos": np.array([0.0, 0.8], np.float32)}
    stay = make_expert(TASK, p_left=1.0, noise=0.0)       # heads back to its left passage
    follow = make_expert(TASK, p_left=1.0, noise=0.0, follow_agent=True)  # the agent is past the fork, right
    start = {"agent_pos": np.array([0.0, -0.8], np.float32), "goal_pos": obs["goal_pos"]}
    assert stay.route_deviation(start) == follow.route_deviation(start) == 0.0  # the path starts where the agent does
    assert stay.act(obs)[0] < 0 < follow.act(obs)[0] and follow.route == "right"
    assert follow.route_deviation(obs) < stay.route_deviation(obs)


@pytest.mark.parametrize("task", sorted(LABEL_SETTINGS))
def test_every_label_setting_builds_its_expert_and_labels_a_state(task):
    env = make_env(task)
    obs, _ = env.reset(seed=0)
    expert = make_expert(task, **LABEL_SETTINGS[task])
    expert.reset(seed=0)
    action = np.asarray(expert.act(obs))
    assert action.shape == env.action_space.shape and np.all(np.isfinite(action))
    assert expert.follow_agent and expert.noise == 0.0
