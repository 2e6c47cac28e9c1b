"""Offline RL (imitate offline): the expectile loss, chunked transitions, IQL on a two-state MDP with
known values, a tiny run of each algorithm (train, resume bit-exact, evaluate, export) and the errors."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from imitate.algos.critics import Critics, Transitions, expectile_loss
from imitate.algos.offline import TransitionSampler, resume_offline, train_offline
from imitate.data import Episode, make_env_args, write_demo_file
from imitate.data.store import EpisodeStore
from imitate.errors import ImitateError
from imitate.settings import OfflineAlgoConfig, OfflineConfig

TINY_ALGO = {"critic_hidden": "16,16"}
TINY_ENCODER = {"hidden_dims": "16", "feature_dim": "8"}
TINY_HEADS = {"gaussian": {"hidden_dims": "16"}, "gmm": {"hidden_dims": "16", "num_modes": "2"},
              "deterministic": {"hidden_dims": "16"},
              "diffusion": {"denoiser": "mlp", "mlp_hidden_dims": "16,16", "time_embed_dim": "8",
                            "num_train_timesteps": "10", "num_inference_steps": "2"}}


def test_expectile_loss_by_hand():
    # diff = target - prediction: 1 (under-estimate, weight tau) and -2 (over-estimate, weight 1 - tau)
    diff = torch.tensor([1.0, -2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (1 + 4) / 2)   # half the squared error


def _store(rewards, dones, with_next=True):
    n = len(rewards)
    obs = np.arange(n + 1, dtype=np.float32)[:, None]            # obs row i holds i; next_obs[i] = i + 1
    arrays = {"obs/state": obs[:n], "actions": np.zeros((n, 1), np.float32),
              "rewards": np.asarray(rewards, np.float32), "dones": np.asarray(dones, np.uint8)}
    if with_next:
        arrays["next_obs/state"] = obs[1:] + 100                 # marked, to see where the bootstrap reads it
    return EpisodeStore(arrays, np.array([n]), ["demo_0"])


def test_chunked_transitions_sum_rewards_and_bootstrap_n_steps_later():
    store = _store([1, 2, 3, 4], [0, 0, 0, 1])
    sampler = TransitionSampler(store, 1, 2, 4, n_act=2, gamma=0.5)
    batch = sampler.gather(np.arange(4))
    np.testing.assert_allclose(batch.reward, [1 + 0.5 * 2, 2 + 0.5 * 3, 3 + 0.5 * 4, 4])
    np.testing.assert_allclose(batch.discount, [0.25, 0.25, 0, 0])           # the last two chunks terminate
    np.testing.assert_array_equal(batch.next_obs["state"][:2, 0, 0], [2, 3])  # the window 2 steps later
    # an episode cut by a time limit (no done): the last step bootstraps from its next_obs, one step on
    cut = TransitionSampler(_store([1, 2, 3], [0, 0, 0]), 2, 2, 3, n_act=2, gamma=0.5).gather(np.arange(3))
    np.testing.assert_allclose(cut.reward, [2, 3.5, 3])
    np.testing.assert_allclose(cut.discount, [0.25, 0.25, 0.5])
    np.testing.assert_array_equal(cut.next_obs["state"][:, :, 0], [[1, 2], [2, 103], [2, 103]])
    one = TransitionSampler(_store([1, 2, 3], [0, 0, 0]), 1, 1, 3, n_act=1, gamma=0.9).gather(np.arange(3))
    np.testing.assert_allclose(one.discount, [0.9, 0.9, 0.9])
    np.testing.assert_array_equal(one.next_obs["state"][:, 0, 0], [1, 2, 103])


def _mdp_batch(n):
    """Two states (one-hot), 1-D actions. s0: a = +0.5 gives 1, a = -0.5 gives 0, both go to s1;
    s1: a = 0 gives 2 and ends. Equal counts of every transition."""
    s0, s1 = [1.0, 0.0], [0.0, 1.0]
    rows = [(s0, 0.5, 1.0, 0.9, s1), (s0, -0.5, 0.0, 0.9, s1), (s1, 0.0, 2.0, 0.0, s1), (s1, 0.0, 2.0, 0.0, s1)]
    rows = rows * (n // 4)
    obs = torch.tensor([r[0] for r in rows])[:, None]
    return Transitions({"state": obs}, torch.tensor([[[r[1]]] for r in rows]), torch.ones(len(rows), 1, dtype=torch.bool),
                       torch.tensor([r[2] for r in rows]), torch.tensor([r[3] for r in rows]),
                       {"state": torch.tensor([r[4] for r in rows])[:, None]})


def test_iql_converges_to_the_known_values_on_a_two_state_mdp():
    """gamma 0.9: V(s1) = Q(s1, 0) = 2; Q(s0, +0.5) = 1 + 0.9 * 2 = 2.8, Q(s0, -0.5) = 1.8; V(s0) is the
    0.7-expectile of {1.8, 2.8} at equal weight: 1.8 + 0.7 = 2.5 (tau (2.8 - v) = (1 - tau) (v - 1.8))."""
    from imitate.algos.iql import IQL
    from imitate.policy import Policy
    from imitate.spec import ActionSpec, ObsSpec, PolicySpec

    torch.manual_seed(0)
    spec = PolicySpec({"state": ObsSpec((2,), "float32", "identity")}, ActionSpec(1, (), norm="identity"), 1, 1, 1,
                      "deterministic", {"hidden_dims": (16,)}, {"hidden_dims": (16,), "feature_dim": 16})
    policy = Policy(spec)
    algo = OfflineAlgoConfig(gamma=0.9, critic_lr=3e-3, polyak=0.05, critic_hidden=(32, 32), expectile=0.7)
    cfg = OfflineConfig(steps=300, lr=3e-3, warmup_steps=1)
    critics = Critics(spec, 2, algo.critic_hidden, 1, with_v=True)
    iql = IQL(policy, critics, cfg, algo)
    batch = _mdp_batch(32)
    for step in range(cfg.steps):
        iql.update(batch, step)
    s0, s1 = {"state": torch.tensor([[[1.0, 0.0]]])}, {"state": torch.tensor([[[0.0, 1.0]]])}
    with torch.no_grad():
        assert critics.value(s1).item() == pytest.approx(2.0, abs=0.05)
        assert critics.value(s0).item() == pytest.approx(2.5, abs=0.05)
        for a, q in ((0.5, 2.8), (-0.5, 1.8)):
            assert critics.q_min(s0, torch.tensor([[[a]]])).item() == pytest.approx(q, abs=0.05)
        # the actor regresses the better action with the larger weight: exp(3 * 0.3) against exp(3 * -0.7)
        assert policy.head.mode(policy.encode(s0)).item() > 0.3


def test_q_scores_on_reused_features_equal_q_values_on_repeated_observations():
    """CQL scores n sampled actions per observation by repeating each Q-network's features of it; that
    must give what encoding the repeated observations gives."""
    from imitate.spec import ActionSpec, ObsSpec, PolicySpec

    torch.manual_seed(0)
    spec = PolicySpec({"state": ObsSpec((3,), "float32", "identity")}, ActionSpec(2, (), norm="identity"), 2, 4, 2,
                      "gaussian", {"hidden_dims": (16,)}, {"hidden_dims": (16,), "feature_dim": 8})
    critics = Critics(spec, 3, (16, 16), n_act=2, with_v=False)
    obs, n = {"state": torch.randn(5, 2, 3)}, 4
    actions = torch.randn(5 * n, 4, 2)
    repeated = {"state": obs["state"].repeat_interleave(n, 0)}
    features = [f.repeat_interleave(n, 0) for f in critics.q_features(obs)]
    expected = critics.q_values(repeated, actions)
    assert expected.shape == (3, 5 * n)
    torch.testing.assert_close(critics.q_scores(features, actions), expected)
    # the score reads only the executed actions (the first n_act of the chunk)
    changed = actions.clone()
    changed[:, 2:] += 1.0
    torch.testing.assert_close(critics.q_scores(features, changed), expected)


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("offline") / "pendulum.hdf5"
    collect("Pendulum-v1", 3, path, seed=0, progress=False)
    return path


def _cfg(data, out, algo, head, **overrides):
    settings = dict(algo=algo, data=str(data), out=str(out), head=head, steps=6, batch_size=16, log_every=2,
                    ckpt_every=100, eval_episodes=0, warmup_steps=2)
    settings.update(overrides)
    return OfflineConfig(**settings)


def _run(data, out, algo, head, stop_at=None, **overrides):
    return train_offline(_cfg(data, out, algo, head, **overrides), TINY_ALGO, TINY_HEADS[head], TINY_ENCODER,
                         progress=False, stop_at=stop_at)


@pytest.mark.parametrize("algo,head,chunk", [("iql", "gmm", 2), ("awac", "diffusion", 1), ("cql", "gaussian", 1),
                                             ("cql", "deterministic", 2)])
def test_tiny_run_trains_resumes_bit_exact_evaluates_and_exports(pendulum_file, tmp_path, algo, head, chunk):
    from imitate.checkpoint import load_policy
    from imitate.evaluate import evaluate

    horizons = dict(action_horizon=chunk, n_act=chunk)
    final = _run(pendulum_file, tmp_path / "whole", algo, head, **horizons)
    assert final["step"] == 6 and np.isfinite(final["actor_loss"]) and np.isfinite(final["q_loss"])
    _run(pendulum_file, tmp_path / "split", algo, head, stop_at=3, **horizons)
    from imitate.checkpoint import load_train_state
    assert load_train_state(tmp_path / "split" / "train_state.safetensors")[1]["step"] == 3
    resume_offline(tmp_path / "split", progress=False)
    for name in ("train_state.safetensors", "model.safetensors", "critics.safetensors"):
        whole, split = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "split" / name))
        assert whole.keys() == split.keys()
        for k in whole:
            assert torch.equal(whole[k], split[k]), (name, k)
    critics = load_file(str(tmp_path / "whole" / "critics.safetensors"))
    assert any(k.startswith("q_target.1.") for k in critics)
    assert any(k.startswith("v.") for k in critics) == (algo == "iql")
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert config["format"] == "imitate-run/2" and config["algo"] == algo and config["policy"]["head"] == head
    lines = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "step" in r] == [2, 4, 6] and "final" in lines[-1]

    policy = load_policy(tmp_path / "whole")
    res = evaluate(policy, "Pendulum-v1", None, episodes=1, seed=0, progress=False)
    assert np.isfinite(res["mean_return"]) and res["mean_length"] == 200
    if head == "gaussian":   # one export is enough: the run directory is an ordinary one
        from imitate.export.exporter import export_run
        meta = export_run(tmp_path / "whole", tmp_path / "export", ["onnx"])
        assert meta["head"] == head


def test_cli_offline_runs_and_resumes(pendulum_file, tmp_path, capsys):
    from imitate.cli import main

    out = tmp_path / "run"
    args = ["offline", "--algo", "iql", "--data", str(pendulum_file), "--head", "gaussian", "--out", str(out),
            "--steps", "4", "--batch-size", "8", "--eval-episodes", "2", "--quiet", "--set", "algo.critic_hidden=8",
            "--set", "head.hidden_dims=8", "--set", "encoder.feature_dim=8", "--set", "algo.beta=10"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["step"] == 4 and record["mean_return"] < 0
    assert json.loads((out / "config.json").read_text())["algo_settings"]["beta"] == 10
    assert main(["offline", "--resume", "--out", str(out), "--steps", "6", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 6
    assert main(["offline", "--resume", "--out", str(out), "--set", "algo.beta=1"]) == 1
    assert "only --steps may change" in capsys.readouterr().err


# -- bad input ---------------------------------------------------------------------------------------------


def _pendulum_like(path, rewards_fn=None, drop_rewards=False):
    rng = np.random.default_rng(0)
    eps = []
    for i in range(2):
        obs = rng.normal(size=(11, 3)).astype(np.float32)
        rewards = rng.normal(size=10).astype(np.float32) if rewards_fn is None else rewards_fn(10)
        eps.append(Episode(obs={"state": obs[:-1]}, next_obs={"state": obs[1:]},
                           actions=rng.uniform(-2, 2, (10, 1)).astype(np.float32), rewards=rewards,
                           dones=np.zeros(10, np.uint8), name=f"demo_{i}"))
    write_demo_file(path, eps, make_env_args("Pendulum-v1", {}), valid_fraction=0.0)
    if drop_rewards:
        with h5py.File(path, "a") as f:
            for d in f["data"]:
                del f["data"][d]["rewards"]
    return path


def test_file_without_rewards_is_refused_naming_file_and_key(tmp_path):
    data = _pendulum_like(tmp_path / "norewards.hdf5", drop_rewards=True)
    with pytest.raises(ImitateError, match=r"(?s)rewards.*norewards\.hdf5: offline RL learns from the rewards"):
        train_offline(_cfg(data, tmp_path / "r", "iql", "gaussian"), progress=False)
    assert not (tmp_path / "r").exists()


def test_file_with_all_zero_rewards_is_refused(tmp_path):
    data = _pendulum_like(tmp_path / "zeros.hdf5", rewards_fn=lambda n: np.zeros(n, np.float32))
    with pytest.raises(ImitateError, match=r"zeros\.hdf5: every reward is 0 \(20 steps\)"):
        train_offline(_cfg(data, tmp_path / "r", "awac", "gaussian"), progress=False)


def test_online_steps_need_the_environment_the_file_names(tmp_path):
    data = _pendulum_like(tmp_path / "noenv.hdf5")
    with h5py.File(data, "a") as f:
        del f["data"].attrs["env_args"]
    with pytest.raises(ImitateError, match=r"noenv\.hdf5: --online-steps needs an environment, and the file names none"):
        train_offline(_cfg(data, tmp_path / "r", "awac", "gaussian", online_steps=10), progress=False)
    assert not (tmp_path / "r").exists()


def test_an_environment_that_cannot_be_built_is_named_before_anything_is_written(tmp_path):
    data = _pendulum_like(tmp_path / "badenv.hdf5")
    with h5py.File(data, "a") as f:
        f["data"].attrs["env_args"] = json.dumps(make_env_args("NoSuchTask-v9"))
    with pytest.raises(ImitateError, match=r"badenv\.hdf5: --online-steps needs the environment the file names, and "
                                           r"it cannot be built .*NoSuchTask-v9"):
        train_offline(_cfg(data, tmp_path / "r", "iql", "gaussian", online_steps=10), progress=False)
    with pytest.raises(ImitateError, match=r"badenv\.hdf5: its environment cannot be built for rollouts .*"
                                           r"--eval-episodes 0"):
        train_offline(_cfg(data, tmp_path / "r", "iql", "gaussian", eval_episodes=2), progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("head", ["gmm", "diffusion"])
def test_cql_names_the_head_and_the_missing_reparameterized_sample(tmp_path, head):
    data = _pendulum_like(tmp_path / "d.hdf5")
    with pytest.raises(ImitateError, match=rf"--algo cql .*reparameterized sample; the '{head}' head has none.*"
                                           rf"deterministic, gaussian"):
        train_offline(_cfg(data, tmp_path / "r", "cql", head), progress=False)
    assert not (tmp_path / "r").exists()


def test_head_without_weighted_loss_is_refused_naming_head_and_algorithm(tmp_path):
    from policy_heads import base
    from policy_heads.deterministic import DeterministicHead

    class Unweighted(DeterministicHead, name="unweighted_test_head"):
        Config = DeterministicHead.Config

        def loss(self, features, action, mask=None):
            return super().loss(features, action, mask)

    try:
        data = _pendulum_like(tmp_path / "d.hdf5")
        with pytest.raises(ImitateError, match="--algo iql .*the 'unweighted_test_head' head's loss takes no weight"):
            train_offline(_cfg(data, tmp_path / "r", "iql", "unweighted_test_head"), progress=False)
    finally:
        base._REGISTRY.pop("unweighted_test_head", None)


def test_bad_settings_name_the_flag(tmp_path):
    data = _pendulum_like(tmp_path / "d.hdf5")
    cases = [({"algo": "bcq"}, "--algo 'bcq'"), ({"algo": "cql", "online_steps": 5}, "--algo cql has no online"),
             ({"n_act": 3, "action_horizon": 2}, "--n-act 3 exceeds")]
    for overrides, message in cases:
        with pytest.raises(ImitateError, match=message):
            train_offline(_cfg(data, tmp_path / "r", overrides.pop("algo", "iql"), "gaussian", **overrides),
                          progress=False)
    with pytest.raises(ImitateError, match="algo.*expectile"):
        train_offline(_cfg(data, tmp_path / "r", "iql", "gaussian"), {"expectile": "1.5"}, progress=False)
    with pytest.raises(ImitateError, match="not written by imitate offline"):
        (tmp_path / "bc").mkdir()
        (tmp_path / "bc" / "config.json").write_text(json.dumps(
            {"format": "imitate-run/2", "policy": json.loads(json.dumps(_spec_json())), "data": {}}))
        resume_offline(tmp_path / "bc", progress=False)


def _spec_json():
    from imitate.spec import ActionSpec, ObsSpec, PolicySpec

    return PolicySpec({"state": ObsSpec((3,), "float32", "meanstd")}, ActionSpec(1), 1, 1, 1, "gaussian").to_json()


def test_online_continuation_mixes_offline_and_online_transitions(pendulum_file, tmp_path):
    final = _run(pendulum_file, tmp_path / "online", "awac", "gaussian", steps=4, online_steps=210, obs_horizon=1,
                 action_horizon=1, n_act=1)
    assert final["step"] == 214 and final["online_episodes"] == 1
    lines = [json.loads(line) for line in (tmp_path / "online" / "metrics.jsonl").read_text().splitlines()]
    online = [r for r in lines if "env_steps" in r]
    assert online and online[-1]["env_steps"] == 210 and online[-1]["online/return"] < 0
    with pytest.raises(ImitateError, match="online phase"):
        resume_offline(tmp_path / "online", progress=False)


def test_online_evaluation_every_k_env_steps_leaves_training_unchanged(pendulum_file, tmp_path):
    horizons = dict(steps=4, online_steps=40, obs_horizon=1, action_horizon=2, n_act=2)
    plain = _run(pendulum_file, tmp_path / "plain", "iql", "gaussian", **horizons)
    final = _run(pendulum_file, tmp_path / "evals", "iql", "gaussian", online_eval_every=15, eval_episodes=1, **horizons)
    lines = [json.loads(line) for line in (tmp_path / "evals" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in lines if "eval/return" in r]
    assert [r["env_steps"] for r in evals] == [0, 15, 30, 40]          # before the first step, every 15, the last
    assert [r["step"] for r in evals] == [4, 19, 34, 44]
    assert all(r["eval/return"] < 0 and r["eval/success_rate"] is None for r in evals)   # Pendulum: costs, no success
    assert [e["env_steps"] for e in final["online_evals"]] == [0, 15, 30, 40]
    assert "online_evals" not in plain
    # the evaluations use their own random streams: the same weights as the run without them
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "evals" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert plain["online_return_last10"] == final["online_return_last10"]
    for overrides, message in [({"online_eval_every": 10}, "--online-eval-every 10 .* --online-steps"),
                               ({"online_eval_every": 10, "online_steps": 5}, "--eval-episodes"),
                               ({"online_eval_every": -1, "online_steps": 5}, "--online-eval-every must be >= 0")]:
        with pytest.raises(ImitateError, match=message):
            train_offline(_cfg(pendulum_file, tmp_path / "bad", "iql", "gaussian", **overrides), progress=False)


def test_online_buffer_draws_chunked_decisions_like_the_file(tmp_path):
    from imitate.algos.offline import OnlineBuffer

    cfg, algo = OfflineConfig(obs_horizon=2, action_horizon=3, n_act=2), OfflineAlgoConfig(gamma=0.5, reward_shift=-1)
    buf = OnlineBuffer(10, {"s": np.zeros(1, np.float32)}, 1)
    for t in range(3):                      # a finished episode of 3 steps, terminated at its last
        buf.add({"s": np.array([t], np.float32)}, np.array([t]), 1.0, t == 2, {"s": np.array([t + 1], np.float32)})
    buf.end_episode()
    for t in range(2):                      # a running one of 2 steps (observations 10, 11, then 12 next)
        buf.add({"s": np.array([10 + t], np.float32)}, np.array([10 + t]), 1.0, False,
                {"s": np.array([11 + t], np.float32)})
    batch = buf.sample(200, np.random.default_rng(0), cfg, algo, ["s"])
    by_row = {float(o[-1, 0]): i for i, o in enumerate(batch.obs["s"])}
    assert sorted(by_row) == [0, 1, 2, 10, 11]                      # every step, nothing past size
    first = by_row[0.0]                                              # steps 0, 1: shifted rewards 0 + 0.5 * 0
    assert batch.obs["s"][first, :, 0].tolist() == [0, 0] and batch.discount[first] == pytest.approx(0.25)
    assert batch.reward[first] == pytest.approx(0.0) and batch.next_obs["s"][first, -1, 0] == 2
    assert batch.discount[by_row[2.0]] == 0                          # terminated inside the decision
    last = by_row[11.0]                                              # the running episode's last step: bootstrap
    assert batch.discount[last] == pytest.approx(0.5) and batch.next_obs["s"][last, -1, 0] == 12
    assert batch.action_mask[last].tolist() == [True, False, False]


def test_online_continuation_with_chunked_horizons(pendulum_file, tmp_path):
    final = _run(pendulum_file, tmp_path / "chunked", "iql", "gaussian", steps=4, online_steps=30, obs_horizon=2,
                 action_horizon=4, n_act=2)
    assert final["step"] == 34 and np.isfinite(final["q_loss"])


def test_compare_ranks_heads_under_an_offline_algorithm(pendulum_file, tmp_path):
    from imitate.compare import compare

    settings = {"gaussian.hidden_dims": "16", "gmm.hidden_dims": "16", "gmm.num_modes": "2",
                "encoder.hidden_dims": "16", "encoder.feature_dim": "8"}
    tiny = dict(steps=4, seeds=1, episodes=1, batch_size=16, action_horizon=2, n_act=2, queries=4, samples=4,
                neighbours=2, latency_calls=2, jobs=1)
    out = tmp_path / "cmp"
    res = compare(str(pendulum_file), str(out), heads="gaussian,gmm", settings={**settings, "algo.expectile": "0.9",
                  "algo.reward_shift": "-1"}, progress=False, algo="iql", **tiny)
    for head in ("gaussian", "gmm"):
        run = out / "runs" / head / "seed0"
        saved = json.loads((run / "config.json").read_text())
        assert saved["algo"] == "iql"
        assert saved["algo_settings"]["expectile"] == 0.9 and saved["algo_settings"]["reward_shift"] == -1.0
        assert (run / "critics.safetensors").is_file()
        assert res["heads"][head]["summary"]["params"]["mean"] > 0
    with pytest.raises(ImitateError, match=r"trained with other settings \(algo.expectile\)"):
        compare(str(pendulum_file), str(out), heads="gaussian,gmm", settings={**settings, "algo.expectile": "0.8",
                "algo.reward_shift": "-1"}, progress=False, algo="iql", **tiny)
    with pytest.raises(ImitateError, match="algo.beta: algorithm settings need --algo"):
        compare(str(pendulum_file), str(tmp_path / "bc"), heads="gaussian", settings={"algo.beta": "3"},
                progress=False, **tiny)
    with pytest.raises(ImitateError, match="algo"):
        compare(str(pendulum_file), str(tmp_path / "bad"), heads="gaussian", settings={"algo.expectile": "x"},
                progress=False, algo="iql", **tiny)
    with pytest.raises(ImitateError, match="trained with other settings.*algo"):   # the same out, another algorithm
        compare(str(pendulum_file), str(out), heads="gaussian", settings={"encoder.feature_dim": "8",
                "encoder.hidden_dims": "16", "gaussian.hidden_dims": "16"}, progress=False, algo="awac", **tiny)
    with pytest.raises(ImitateError, match=r"--algo cql .*\['gmm'\] have no reparameterized sample"):
        compare(str(pendulum_file), str(tmp_path / "cql"), heads="gaussian,gmm", settings=settings, progress=False,
                algo="cql", **tiny)


def test_file_without_next_obs_and_cut_demos_is_refused(tmp_path):
    data = _pendulum_like(tmp_path / "nonext.hdf5")
    with h5py.File(data, "a") as f:
        for d in f["data"]:
            del f["data"][d]["next_obs"]
    with pytest.raises(ImitateError, match=r"nonext\.hdf5: the file has no next_obs and 2 demo\(s\) end without done"):
        train_offline(_cfg(data, tmp_path / "r", "iql", "gaussian"), progress=False)
