"""Regenerate the golden checkpoint of the autoregressive head's "step" layout:
``python -m tests.golden.autoregressive_layouts`` from the repository root.

tests/golden/autoregressive (made by make_golden.py before the head had a `layout` field) holds the
"entry" layout: its saved config names no layout and must keep loading as one position per token.
tests/golden/autoregressive_step holds a run whose config names layout "step", trained and recorded
as make_golden.py does (fixed observations, generator seed 7). Regenerate only when a change of the
step layout's checkpoint semantics is intended, and say so in the change.
"""
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from tests.tiny import TINY_ENCODER, TINY_HEADS

HERE = Path(__file__).parent
STEP_DIR = HERE / "autoregressive_step"
# Every layout field named, so the checkpoint does not depend on the CPU defaults of the day.
STEP_SETTINGS = {**TINY_HEADS["autoregressive"], "layout": "step", "ff_mult": "2"}


def main() -> None:
    from imitate.checkpoint import load_policy
    from imitate.collect import collect
    from imitate.train import train
    from tests.tiny import tiny_config

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fp.hdf5"
        collect("imitate/ForkedPath-v0", 10, data, seed=0, progress=False)
        run = Path(tmp) / "run"
        train(tiny_config(data, run, "autoregressive", steps=4, val_every=0), dict(STEP_SETTINGS), dict(TINY_ENCODER),
              progress=False)
        shutil.rmtree(STEP_DIR, ignore_errors=True)
        STEP_DIR.mkdir()
        for name in ("config.json", "model.safetensors"):
            shutil.copy(run / name, STEP_DIR / name)
        rng = np.random.default_rng(0)
        obs = {"agent_pos": rng.uniform(-0.5, 0.5, (3, 2, 2)).round(4).tolist(),
               "goal_pos": rng.uniform(-0.5, 0.5, (3, 2, 2)).round(4).tolist()}
        actions = load_policy(STEP_DIR).predict_chunk({k: np.asarray(v, np.float32) for k, v in obs.items()},
                                                      generator=torch.Generator().manual_seed(7))
        (STEP_DIR / "expected.json").write_text(json.dumps({"obs": obs, "generator_seed": 7,
                                                            "actions": actions.tolist()}) + "\n")
        print(STEP_DIR)


if __name__ == "__main__":
    main()
