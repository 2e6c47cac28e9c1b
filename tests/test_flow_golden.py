"""Flow checkpoints keep their meaning: the MeanFlow golden checkpoint gives its recorded actions, and a
saved flow config is read back with the objective it was trained with (tests/test_train.py checks the
golden checkpoint of every head's tiny settings; tests/golden/make_golden.py makes both)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imitate.checkpoint import load_policy
from policy_heads import config_from_dict, get_head_class

GOLDEN = Path(__file__).parent / "golden"


def test_meanflow_golden_checkpoint_still_gives_its_recorded_outputs():
    run = GOLDEN / "flow_meanflow"
    expected = json.loads((run / "expected.json").read_text())
    policy = load_policy(run)
    assert policy.head.config.objective == "meanflow" and policy.head.config.num_inference_steps == 2
    chunk = policy.predict_chunk({k: np.asarray(v, np.float32) for k, v in expected["obs"].items()},
                                 generator=torch.Generator().manual_seed(expected["generator_seed"]))
    np.testing.assert_allclose(chunk, np.asarray(expected["actions"]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("golden, objective", [("flow", "shortcut"), ("flow_meanflow", "meanflow")])
def test_saved_flow_configs_keep_their_objective_and_missing_fields_take_the_defaults(golden, objective):
    saved = json.loads((GOLDEN / golden / "config.json").read_text())["policy"]["head_config"]
    assert saved["objective"] == objective          # every field is written, the objective included
    assert load_policy(GOLDEN / golden).head.config.objective == objective
    cls = get_head_class("flow")
    partial = {k: v for k, v in saved.items() if k != "shortcut_fraction"}
    cfg = config_from_dict(cls, partial)
    assert cfg.objective == objective and cfg.shortcut_fraction == cls.Config().shortcut_fraction
