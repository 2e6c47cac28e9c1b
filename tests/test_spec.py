"""PolicySpec: the typed description of a policy, its JSON, the run directories of earlier versions,
and the observation checks that Policy shares with the exported runtime."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imitate.errors import ImitateError
from imitate.spec import ActionSpec, ObsSpec, PolicySpec

GOLDEN = Path(__file__).parent / "golden"


def spec(**changes) -> PolicySpec:
    base = PolicySpec({"pos": ObsSpec((2,)), "img_free": ObsSpec((3, 1), "float64", "minmax")}, ActionSpec(2),
                      2, 4, 2, "gmm", {"num_modes": 3}, {"feature_dim": 16})
    return base.replace(**changes)


def test_json_round_trip_is_exact():
    s = spec(action=ActionSpec(2, (), (-1.0, -2.0), (1.0, 2.0)), temporal_ensemble=0.1)
    assert PolicySpec.from_json(json.loads(json.dumps(s.to_json()))) == s
    d = spec(head="autoregressive", head_config={}, action=ActionSpec(1, (3,), norm="identity"))
    assert PolicySpec.from_json(d.to_json()) == d and d.action.discrete
    assert d.normalizer_specs()["action"] == ((1,), "identity")


@pytest.mark.parametrize("head", ["deterministic", "gaussian", "gmm", "autoregressive", "diffusion"])
def test_run_directories_of_format_1_read_as_the_same_spec(head):
    config = json.loads((GOLDEN / head / "config.json").read_text())
    assert config["format"] == "imitate-run/1"
    s = PolicySpec.from_json(config["policy"])
    old = config["policy"]
    assert s.obs_keys == old["obs_keys"] and s.action.dim == old["action_dim"] and s.head == head
    assert {k: list(o.shape) for k, o in s.obs.items()} == old["obs_shapes"]
    assert {k: (list(v[0]), v[1]) for k, v in s.normalizer_specs().items()} == \
        {k: (v["shape"], v["mode"]) for k, v in old["normalizer"].items()}
    assert "discrete_nvec" not in s.head_config      # a property of the action space now


def test_a_policy_built_from_a_spec_describes_itself_with_the_heads_full_config():
    from imitate.policy import Policy

    policy = Policy(spec())
    s = policy.spec
    assert s.head_config["num_modes"] == 3 and "hidden_dims" in s.head_config and s.encoder_config["feature_dim"] == 16
    assert Policy(s).spec == s
    policy.n_act = 1
    assert policy.spec.n_act == 1


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("obs"), "missing 'obs'"),
    (lambda d: d["obs"]["pos"].update(shape="2"), "obs 'pos': 'shape' must be list"),
    (lambda d: d["obs"]["pos"].update(shape=[0]), "every size must be >= 1"),
    (lambda d: d["obs"].update(pos=[2]), "obs 'pos': must be an object"),
    (lambda d: d["action"].update(dim="2"), "'dim' must be int"),
    (lambda d: d.update(n_act=9), "n_act 9 exceeds action_horizon 4"),
    (lambda d: d["obs"]["pos"].update(norm="zscore"), "normalization 'zscore'"),
    (lambda d: d.update(head=None), "'head' must be str"),
])
def test_malformed_descriptions_name_the_field(mutate, message):
    d = spec().to_json()
    mutate(d)
    with pytest.raises(ImitateError, match=message):
        PolicySpec.from_json(d, "run/config.json: policy")


def test_format_1_sections_missing_a_shape_name_the_key():
    old = json.loads((GOLDEN / "gmm" / "config.json").read_text())["policy"]
    del old["obs_shapes"]["goal_pos"]
    with pytest.raises(ImitateError, match=r"\['goal_pos'\] have no entry in 'obs_shapes'"):
        PolicySpec.from_json(old)


@pytest.mark.parametrize("bad, message", [
    (None, "must be a dict"),
    ({"pos": None, "img_free": np.zeros((1, 2, 3, 1))}, "'pos' is None"),
    ({"pos": np.array([[["a", "b"]] * 2]), "img_free": np.zeros((1, 2, 3, 1))}, "'pos' has dtype"),
    ({"pos": np.zeros((0, 2, 2)), "img_free": np.zeros((0, 2, 3, 1))}, "batch size 0"),
    ({"pos": np.full((1, 2, 2), np.nan), "img_free": np.zeros((1, 2, 3, 1))}, "'pos' holds NaN or inf"),
    ({"pos": np.zeros((1, 2, 2))}, r"lacks key\(s\) \['img_free'\]"),
])
def test_policy_answers_bad_observations_as_the_runtime_does(bad, message):
    from imitate.policy import Policy

    with pytest.raises(ImitateError, match=message):
        Policy(spec()).predict_chunk(bad)


def test_act_refuses_nan_at_every_step_not_only_when_it_plans():
    from imitate.policy import Policy

    policy = Policy(spec())
    good = {"pos": np.zeros(2, np.float32), "img_free": np.zeros((3, 1), np.float32)}
    policy.act(good)                                   # plans a chunk of 4, executes 2
    with pytest.raises(ImitateError, match="'pos' holds NaN or inf"):
        policy.act({**good, "pos": np.array([np.nan, 0.0], np.float32)})   # would only pop the queue
