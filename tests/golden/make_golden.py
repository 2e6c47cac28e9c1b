"""Regenerate the golden checkpoints: ``python -m tests.golden.make_golden [HEAD ...]`` from the repository
root (every head when none is named).

Each head gets a tiny run (tests/golden/<head>/config.json + model.safetensors) and expected.json,
the actions it gives for fixed observations and a fixed generator seed. Regenerate only when a
change of checkpoint semantics is intended, and say so in the change.
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from imitate.checkpoint import load_policy
from imitate.collect import collect
from imitate.train import train
from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

HERE = Path(__file__).parent


def main(heads: list[str]) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fp.hdf5"
        collect("imitate/ForkedPath-v0", 10, data, seed=0, progress=False)
        for head in sorted(heads or TINY_HEADS):
            run = Path(tmp) / head
            train(tiny_config(data, run, head, steps=4, val_every=0), dict(TINY_HEADS[head]), dict(TINY_ENCODER),
                  progress=False)
            out = HERE / head
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            for name in ("config.json", "model.safetensors"):
                shutil.copy(run / name, out / name)
            rng = np.random.default_rng(0)
            obs = {"agent_pos": rng.uniform(-0.5, 0.5, (3, 2, 2)).round(4).tolist(),
                   "goal_pos": rng.uniform(-0.5, 0.5, (3, 2, 2)).round(4).tolist()}
            actions = load_policy(out).predict_chunk({k: np.asarray(v, np.float32) for k, v in obs.items()},
                                                     generator=torch.Generator().manual_seed(7))
            (out / "expected.json").write_text(json.dumps({"obs": obs, "generator_seed": 7,
                                                           "actions": actions.tolist()}) + "\n")
            print(head, out)


if __name__ == "__main__":
    main(sys.argv[1:])
