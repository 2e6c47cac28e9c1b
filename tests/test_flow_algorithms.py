"""The flow head through the registry alone in every algorithm that takes a head: compare, DAgger, the
offline algorithms that train a head by its weighted loss (IQL, AWAC), and clear refusals where a
log-probability (GAIL, AIRL, PPO) or a reparameterized sample (CQL) is needed. Tiny budgets: the
plumbing is under test, not the policies. The export of flow policies is in tests/test_export.py."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from imitate.errors import ConfigError

TASK = "imitate/ForkedPath-v0"
FLOW = {"denoiser": "mlp", "mlp_hidden_dims": "16,16", "time_embed_dim": "8", "shortcut_max_steps": "4",
        "num_inference_steps": "2"}
OBJECTIVES = ("shortcut", "meanflow")


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("flow_algos") / "fp.hdf5"
    collect(TASK, 6, path, seed=0, valid_fraction=0.2, progress=False)
    return path


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("flow_offline") / "pendulum.hdf5"
    collect("Pendulum-v1", 2, path, seed=0, progress=False)
    return path


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_compare_trains_and_measures_the_flow_head(forked, tmp_path, objective):
    from imitate.compare import compare

    settings = {**{f"flow.{k}": v for k, v in FLOW.items()}, "flow.objective": objective,
                "encoder.hidden_dims": "16", "encoder.feature_dim": "8"}
    res = compare(str(forked), str(tmp_path / "cmp"), heads="flow", settings=settings, progress=False, jobs=1, steps=4,
                  seeds=1, episodes=2, batch_size=16, action_horizon=4, n_act=2, queries=4, samples=6, neighbours=2,
                  latency_calls=2)
    (run,) = res["heads"]["flow"]["runs"]
    assert 0.0 <= run["success_rate"] <= 1.0 and math.isfinite(run["energy_distance"]) and run["latency_ms"] > 0
    config = json.loads((tmp_path / "cmp" / "runs" / "flow" / "seed0" / "config.json").read_text())
    assert config["policy"]["head"] == "flow" and config["policy"]["head_config"]["objective"] == objective
    assert (tmp_path / "cmp" / "report.md").exists()


def test_dagger_aggregates_with_a_flow_policy(tmp_path):
    from imitate.algos.dagger import dagger, dagger_config
    from imitate.checkpoint import load_policy
    from imitate.data import load_demo_file

    cfg = dagger_config(out=str(tmp_path / "dagger"), head="flow", rounds=1, episodes_per_round=2, initial_demos=2,
                        steps=4, steps_per_round=2, batch_size=16, action_horizon=4, n_act=2, eval_episodes=1,
                        head_config={**FLOW, "objective": "meanflow", "encoder.hidden_dims": "16",
                                     "encoder.feature_dim": "8"})
    rounds = dagger(cfg, progress=False)
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["new_labels"] > 0
    aggregate = load_demo_file(rounds[-1]["data"])
    assert aggregate.n_episodes == 2 + 2
    policy = load_policy(rounds[-1]["run_dir"])
    assert policy.head.name == "flow" and policy.head.config.objective == "meanflow"


@pytest.mark.parametrize("algo, objective", [("iql", "meanflow"), ("awac", "shortcut"), ("awac", "meanflow")])
def test_offline_algorithms_train_the_flow_head_by_its_weighted_loss(pendulum, tmp_path, algo, objective):
    from imitate.algos.offline import train_offline
    from imitate.checkpoint import load_policy
    from imitate.settings import OfflineConfig

    cfg = OfflineConfig(algo=algo, data=str(pendulum), out=str(tmp_path / algo), head="flow", steps=4, batch_size=16,
                        log_every=2, ckpt_every=100, eval_episodes=0, warmup_steps=1, action_horizon=2, n_act=2)
    final = train_offline(cfg, {"critic_hidden": "16,16"}, {**FLOW, "objective": objective},
                          {"hidden_dims": "16", "feature_dim": "8"}, progress=False)
    assert final["step"] == 4 and np.isfinite(final["actor_loss"]) and np.isfinite(final["q_loss"])
    policy = load_policy(tmp_path / algo)
    chunk = policy.predict_chunk({k: np.zeros((1, policy.obs_horizon, *s), np.float32)
                                  for k, s in policy.obs_shapes.items()}, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (1, 2, 1) and np.isfinite(chunk).all()


def test_cql_refuses_the_flow_head_for_its_missing_reparameterized_sample(pendulum, tmp_path):
    from imitate.algos.offline import train_offline
    from imitate.settings import OfflineConfig

    cfg = OfflineConfig(algo="cql", data=str(pendulum), out=str(tmp_path / "cql"), head="flow", steps=2, batch_size=16,
                        eval_episodes=0, warmup_steps=1)
    with pytest.raises(ConfigError, match="reparameterized.*'flow'|'flow'.*reparameterized"):
        train_offline(cfg, {"critic_hidden": "16,16"}, dict(FLOW), {"hidden_dims": "16", "feature_dim": "8"},
                      progress=False)


@pytest.mark.parametrize("which", ["gail", "airl", "ppo"])
def test_algorithms_that_need_a_log_probability_refuse_the_flow_head(pendulum, tmp_path, which):
    if which == "ppo":
        import gymnasium

        from imitate.algos.ppo import new_rl_policy

        with pytest.raises(ConfigError, match="--head flow has no log-probability"):
            new_rl_policy(3, gymnasium.spaces.Box(-2, 2, (1,), np.float32), "flow", dict(FLOW))
        return
    from imitate.algos.adversarial import AdversarialConfig
    from imitate.algos.airl import train_airl
    from imitate.algos.gail import train_gail

    train = train_gail if which == "gail" else train_airl
    cfg = AdversarialConfig(data=str(pendulum), out=str(tmp_path / which), head="flow", steps=64, eval_episodes=0,
                            disc_hidden=(16,))
    with pytest.raises(ConfigError, match="--head flow has no log-probability"):
        train(cfg, {"n_envs": 1, "n_steps": 32, "epochs": 1, "batch_size": 32}, dict(FLOW), progress=False)
    assert not (tmp_path / which / "model.safetensors").exists()
