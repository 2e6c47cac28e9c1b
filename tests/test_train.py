"""The BC trainer and policies for every head: checkpoints, determinism, resume, errors, golden outputs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from imitate.checkpoint import load_policy
from imitate.errors import ConfigError, ImitateError
from imitate.train import TrainConfig, resume, train
from policy_heads import available_heads
from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def fp_file(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("data") / "fp.hdf5"
    collect("imitate/ForkedPath-v0", 10, path, seed=0, progress=False)
    return path


def fit(data, out, head, stop_at=None, **kw):
    return train(tiny_config(data, out, head, **kw), dict(TINY_HEADS[head]), dict(TINY_ENCODER), progress=False,
                 stop_at=stop_at)


def obs_window(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"agent_pos": rng.uniform(-0.5, 0.5, (batch, 2, 2)).astype(np.float32),
            "goal_pos": rng.uniform(-0.5, 0.5, (batch, 2, 2)).astype(np.float32)}


def test_every_head_is_covered():
    assert set(TINY_HEADS) == set(available_heads())


@pytest.mark.parametrize("head", sorted(TINY_HEADS))
def test_train_writes_a_run_that_loads_and_acts(fp_file, tmp_path, head):
    result = fit(fp_file, tmp_path / "run", head)
    assert result["step"] == 6 and math.isfinite(result["train_loss"]) and math.isfinite(result["val_loss"])
    run = tmp_path / "run"
    assert {"config.json", "model.safetensors", "train_state.safetensors", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["policy"]["head"] == head and config["train"]["steps"] == 6 and config["versions"]["torch"]
    policy = load_policy(run)
    assert (policy.obs_horizon, policy.action_horizon, policy.n_act) == (2, 4, 2)
    obs = obs_window()
    before = {k: v.copy() for k, v in obs.items()}
    chunk = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (3, 4, 2) and np.isfinite(chunk).all()
    assert all(np.array_equal(obs[k], before[k]) for k in obs)  # inputs untouched
    again = load_policy(run).predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(chunk, again)  # save then load: identical outputs for a fixed generator
    policy.reset()
    assert policy.act({"agent_pos": np.zeros(2, np.float32), "goal_pos": np.zeros(2, np.float32)}).shape == (2,)


def test_same_seed_same_weights_and_another_seed_differs(fp_file, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        fit(fp_file, tmp_path / name, "gmm", seed=seed)
    a, b, c = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("head", ["diffusion", "autoregressive"])
def test_resume_reproduces_an_uninterrupted_run(fp_file, tmp_path, head):
    fit(fp_file, tmp_path / "whole", head, steps=8)
    fit(fp_file, tmp_path / "split", head, steps=8, ckpt_every=100, stop_at=5)
    partial = load_file(str(tmp_path / "split" / "train_state.safetensors"))
    assert not torch.equal(partial["model.encoder.net.0.weight"],
                           load_file(str(tmp_path / "whole" / "train_state.safetensors"))["model.encoder.net.0.weight"])
    resume(tmp_path / "split", progress=False)
    whole = load_file(str(tmp_path / "whole" / "train_state.safetensors"))
    split = load_file(str(tmp_path / "split" / "train_state.safetensors"))
    assert whole.keys() == split.keys()
    for k in whole:
        assert torch.equal(whole[k], split[k]), k


def test_non_finite_loss_stops_with_the_step_and_keeps_the_good_checkpoint(fp_file, tmp_path, monkeypatch):
    from imitate.policy import Policy

    original, calls = Policy.compute_loss, {"n": 0}

    def poisoned(self, *a, **k):
        loss, info = original(self, *a, **k)
        calls["n"] += 1
        return (loss * float("nan"), info) if calls["n"] == 5 else (loss, info)

    monkeypatch.setattr(Policy, "compute_loss", poisoned)
    with pytest.raises(ImitateError, match="step 4"):
        fit(fp_file, tmp_path / "run", "gaussian", steps=8, ckpt_every=2, log_every=4, val_every=0)
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "train_state.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["state"])["step"] == 4  # the last good checkpoint, not step 6


def test_robomimic_style_file_trains_without_conversion(tmp_path, rng):
    from tests.test_data_files import _write_robomimic_style

    path = tmp_path / "lift.hdf5"
    _write_robomimic_style(path, rng)
    result = train(TrainConfig(data=str(path), out=str(tmp_path / "run"), head="gmm", steps=3, batch_size=8,
                               action_horizon=4, n_act=2, warmup_steps=1, log_every=1, val_every=0, eval_episodes=5),
                   dict(TINY_HEADS["gmm"]), dict(TINY_ENCODER), progress=False)
    assert math.isfinite(result["train_loss"]) and "success_rate" not in result  # a robosuite env is not rolled out
    policy = load_policy(tmp_path / "run")
    assert policy.action_dim == 7 and set(policy.obs_keys) == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"}


def test_act_replans_every_n_act_steps_and_ensembles_every_step(fp_file, tmp_path):
    fit(fp_file, tmp_path / "run", "deterministic")
    policy = load_policy(tmp_path / "run")
    calls = []
    original = policy.predict_chunk
    policy.predict_chunk = lambda *a, **k: calls.append(1) or original(*a, **k)
    obs = {"agent_pos": np.zeros((5, 2), np.float32), "goal_pos": np.ones((5, 2), np.float32)}
    policy.reset()
    actions = [policy.act(obs) for _ in range(6)]
    assert len(calls) == 3 and actions[0].shape == (5, 2)  # Ta=4, n_act=2: re-plan at steps 0, 2, 4
    chunk = original({k: np.repeat(v[:, None], 2, 1) for k, v in obs.items()})
    np.testing.assert_allclose(actions[0], chunk[:, 0], atol=1e-6)
    np.testing.assert_allclose(actions[1], chunk[:, 1], atol=1e-6)
    calls.clear()
    policy.temporal_ensemble = 0.1
    policy.reset()
    for _ in range(3):
        policy.act(obs)
    assert len(calls) == 3


# -- errors -------------------------------------------------------------------------------------------

def test_bad_settings_and_run_directories_get_clear_errors(fp_file, tmp_path):
    with pytest.raises(ConfigError, match="'transformer'.*available heads"):
        train(tiny_config(fp_file, tmp_path / "x", "transformer"), progress=False)
    with pytest.raises(ConfigError, match="num_modes|no setting|unknown config field"):
        train(tiny_config(fp_file, tmp_path / "y", "gmm"), {"num_modez": "3"}, progress=False)
    fit(fp_file, tmp_path / "run", "deterministic")
    with pytest.raises(ImitateError, match="already holds a run.*--resume"):
        fit(fp_file, tmp_path / "run", "deterministic")
    with pytest.raises(ImitateError, match="no such run directory"):
        load_policy(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImitateError, match="not an imitate run directory"):
        load_policy(tmp_path / "empty")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"_target_": "diffusion_policy.workspace"}')
    with pytest.raises(ImitateError, match="not an imitate run config"):
        load_policy(tmp_path / "foreign")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["policy"]["head"], config["policy"]["head_config"] = "gaussian", {}
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ImitateError, match="does not match the 'gaussian' policy"):
        load_policy(tmp_path / "run")


def test_observations_that_do_not_match_the_policy_are_clear_errors(fp_file, tmp_path):
    fit(fp_file, tmp_path / "run", "gaussian")
    policy = load_policy(tmp_path / "run")
    with pytest.raises(ImitateError, match="lacks key.*goal_pos"):
        policy.predict_chunk({"agent_pos": np.zeros((1, 2, 2))})
    with pytest.raises(ImitateError, match="'agent_pos' has shape \\(1, 2, 3\\)"):
        policy.predict_chunk({"agent_pos": np.zeros((1, 2, 3)), "goal_pos": np.zeros((1, 2, 2))})


# -- golden outputs: a silent change of checkpoint semantics fails here ---------------------------------

@pytest.mark.parametrize("head", sorted(TINY_HEADS))
def test_golden_checkpoints_still_give_their_recorded_outputs(head):
    run = GOLDEN / head
    expected = json.loads((run / "expected.json").read_text())
    policy = load_policy(run)
    chunk = policy.predict_chunk({k: np.asarray(v, np.float32) for k, v in expected["obs"].items()},
                                 generator=torch.Generator().manual_seed(expected["generator_seed"]))
    np.testing.assert_allclose(chunk, np.asarray(expected["actions"]), atol=1e-5, rtol=1e-5)


def test_discrete_actions_train_through_the_autoregressive_head(tmp_path, rng):
    from imitate.data import Episode, make_env_args, write_demo_file

    episodes = []
    for i in range(6):
        n = 20
        obs = rng.normal(size=(n + 1, 4)).astype(np.float32)
        actions = (obs[:-1, :1] > 0).astype(np.float32)  # category 0 or 1, as CartPole's Discrete(2)
        episodes.append(Episode(obs={"state": obs[:-1]}, next_obs={"state": obs[1:]}, actions=actions,
                                rewards=np.ones(n, np.float32), dones=np.zeros(n, np.uint8)))
    path = write_demo_file(tmp_path / "discrete.hdf5", episodes, make_env_args("CartPole-v1"))
    cfg = TrainConfig(data=str(path), out=str(tmp_path / "run"), head="autoregressive", steps=4, batch_size=8,
                      action_horizon=2, n_act=1, warmup_steps=1, log_every=2, val_every=0, eval_episodes=0)
    train(cfg, {**TINY_HEADS["autoregressive"], "discrete_nvec": "2"}, dict(TINY_ENCODER), progress=False)
    policy = load_policy(tmp_path / "run")
    assert policy.normalizer.specs["action"][1] == "identity"
    chunk = policy.predict_chunk({"state": rng.normal(size=(16, 2, 4))}, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (16, 2, 1) and set(np.unique(chunk)) <= {0.0, 1.0}


def test_clip_grad_norm_matches_torch():
    from imitate.train import clip_grad_norm

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7)), torch.nn.Parameter(torch.randn(2))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn_like(p) * 3
        q.grad = p.grad.clone()
    a[2].grad = b[2].grad = None
    ours, theirs = clip_grad_norm(a, 1.0), torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(ours, theirs)
    for p, q in zip(a[:2], b[:2]):
        torch.testing.assert_close(p.grad, q.grad)
    before = [p.grad.clone() for p in a[:2]]
    clip_grad_norm(a, 0.0)  # no clipping: gradients unchanged
    assert all(torch.equal(x, p.grad) for x, p in zip(before, a[:2]))
