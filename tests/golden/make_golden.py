"""Regenerate the golden checkpoints: ``python -m tests.golden.make_golden [HEAD ...]`` from the repository
root (every head when none is named).

Each head, and each entry of VARIANTS (a head with other settings), gets a tiny run
(tests/golden/<name>/config.json + model.safetensors) and expected.json, the actions it gives for
fixed observations and a fixed generator seed. Regenerate only when a change of checkpoint
semantics is intended, and say so in the change.
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
#: Golden checkpoints of a head with other settings: name -> (head, settings over TINY_HEADS[head]).
VARIANTS = {
    "flow_meanflow": ("flow", {"objective": "meanflow"}),
    "autoregressive_step": ("autoregressive", {"layout": "step", "ff_mult": "2"}),
}
#: What the golden checkpoint named after a head was made as, where that head's defaults have changed since
#: (the autoregressive golden predates the `layout` field and is the "entry" layout; the flow golden is the
#: shortcut objective): regenerating one keeps its meaning.
PINNED = {"autoregressive": {"layout": "entry"}, "flow": {"objective": "shortcut"}}


def main(heads: list[str]) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fp.hdf5"
        collect("imitate/ForkedPath-v0", 10, data, seed=0, progress=False)
        for golden in sorted(heads or [*TINY_HEADS, *VARIANTS]):
            head, extra = VARIANTS.get(golden, (golden, PINNED.get(golden, {})))
            run = Path(tmp) / golden
            train(tiny_config(data, run, head, steps=4, val_every=0), {**TINY_HEADS[head], **extra}, dict(TINY_ENCODER),
                  progress=False)
            out = HERE / golden
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
            print(golden, out)


if __name__ == "__main__":
    main(sys.argv[1:])
