"""What each process does in tests/test_distributed.py, started as ``torchrun --nproc_per_node 2 -m tests.ddp_worker``.

    ddp_worker train DATA WORKDIR   through `imitate.cli.main`: a whole run; through `train(stop_at=5)`
                                    then `imitate train --resume`: the same run, interrupted and continued.
                                    Every rank saves its final weights (raw and EMA) to
                                    WORKDIR/<run>.rank<R>.safetensors, for the test to compare.
    ddp_worker die DATA WORKDIR     `imitate train` (gmm head) in which rank 1 exits abruptly at its 4th step.
"""
from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)


def _train_args(data: str, out: str, steps: int, head: str = "diffusion") -> list[str]:
    from tests.tiny import TINY_ENCODER, TINY_HEADS

    args = ["train", "--data", data, "--out", out, "--head", head, "--steps", str(steps), "--batch-size", "16",
            "--action-horizon", "4", "--n-act", "2", "--warmup-steps", "2", "--log-every", "2", "--val-every", "3",
            "--val-batches", "1", "--eval-episodes", "0", "--ckpt-every", "100", "--device", "cpu", "--quiet"]
    for k, v in TINY_HEADS[head].items():
        args += ["--set", f"{k}={v}"]
    for k, v in TINY_ENCODER.items():
        args += ["--set", f"encoder.{k}={v}"]
    return args


def main(mode: str, data: str, workdir: str) -> int:
    from imitate import distributed
    from imitate.cli import main as cli

    rank = int(os.environ["RANK"])
    if mode == "die":
        from imitate.policy import Policy

        original, calls = Policy.compute_loss, [0]

        def dying(self, *a, **k):
            calls[0] += 1
            if rank == 1 and calls[0] == 4:
                os._exit(7)
            return original(self, *a, **k)

        Policy.compute_loss = dying
        return cli(_train_args(data, f"{workdir}/dies", 200, head="gmm"))

    digest, tag = distributed.weights_digest, {"run": ""}

    def dump(*modules):  # the trainer's own cross-rank check, plus every rank's weights on disk
        tensors = {f"{i}.{k}": v.detach().cpu().contiguous().clone()
                   for i, m in enumerate(modules) for k, v in m.state_dict().items()}
        save_file(tensors, f"{workdir}/{tag['run']}.rank{rank}.safetensors")
        return digest(*modules)

    distributed.weights_digest = dump
    tag["run"] = "whole"
    if cli(_train_args(data, f"{workdir}/whole", 8)):
        return 1
    from imitate.train import train
    from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

    tag["run"] = "split"  # the same settings as the command line above, stopped after step 5
    cfg = tiny_config(data, f"{workdir}/split", "diffusion", steps=8, ckpt_every=100, device="cpu")
    train(cfg, dict(TINY_HEADS["diffusion"]), dict(TINY_ENCODER), progress=False, stop_at=5)
    tag["run"] = "resumed"
    return cli(["train", "--resume", "--out", f"{workdir}/split", "--quiet"])


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
