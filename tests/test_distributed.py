"""Training with two CPU processes under torchrun (gloo): identical weights on every rank, a checkpoint
that loads and samples, resume that continues exactly, and a clear error when a process dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from imitate.checkpoint import load_policy

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch has no torch.distributed with gloo")


@pytest.fixture(scope="module")
def fp_file(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("data") / "fp.hdf5"
    collect("imitate/ForkedPath-v0", 10, path, seed=0, progress=False)
    return path


def torchrun(mode: str, data: Path, workdir: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    # --standalone: a free port of its own; a slow monitor, so that the surviving process (not torchrun
    # cleaning up) is the one that notices a death, as it would be on machines apart
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--monitor_interval", "2", "-m", "tests.ddp_worker", mode, str(data), str(workdir)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and the processes it started
        out, err = proc.communicate()
        pytest.fail(f"torchrun {mode} did not end within {timeout} s:\n{out[-2000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_two_processes_train_identical_weights_that_load_sample_and_resume(fp_file, tmp_path):
    res = torchrun("train", fp_file, tmp_path, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # identical parameters and EMA on both ranks, after a whole run and after an interrupted-and-resumed one
    for run in ("whole", "split", "resumed"):
        r0, r1 = (load_file(str(tmp_path / f"{run}.rank{r}.safetensors")) for r in (0, 1))
        assert r0.keys() == r1.keys() and len(r0) > 10
        assert all(torch.equal(r0[k], r1[k]) for k in r0), run
    # rank 0 alone reported: one JSON line, naming two processes and the weights' digest
    reports = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2 and all(r["processes"] == 2 and r["step"] == 8 for r in reports)
    # the checkpoint holds those weights: the EMA as model.safetensors, raw weights in the training state
    whole = tmp_path / "whole"
    rank0 = load_file(str(tmp_path / "whole.rank0.safetensors"))
    state = load_file(str(whole / "train_state.safetensors"))
    assert all(torch.equal(state[f"model.{k[2:]}"], v) for k, v in rank0.items() if k.startswith("0."))
    weights = load_file(str(whole / "model.safetensors"))
    assert all(torch.equal(weights[k[2:]], v) for k, v in rank0.items() if k.startswith("1."))
    assert {"rng.torch", "rng.torch.rank1"} <= set(state)  # each rank's generator, to resume exactly
    policy = load_policy(whole)
    rng = np.random.default_rng(0)
    obs = {"agent_pos": rng.uniform(-0.5, 0.5, (3, 2, 2)).astype(np.float32),
           "goal_pos": rng.uniform(-0.5, 0.5, (3, 2, 2)).astype(np.float32)}
    chunk = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (3, 4, 2) and np.isfinite(chunk).all()
    # interrupted at step 5 and resumed with --resume under torchrun: the very same run
    split = load_file(str(tmp_path / "split" / "train_state.safetensors"))
    assert split.keys() == state.keys()
    assert all(torch.equal(split[k], state[k]) for k in state)
    assert not torch.equal(load_file(str(tmp_path / "split.rank0.safetensors"))["0.encoder.net.0.weight"],
                           rank0["0.encoder.net.0.weight"])  # the split run had stopped early
    lines = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "train/loss" in l] == [2, 4, 6, 8]  # one writer: no line twice


def test_a_process_that_dies_ends_the_run_with_a_clear_error(fp_file, tmp_path):
    res = torchrun("die", fp_file, tmp_path, timeout=120)  # a hang would exceed the timeout
    assert res.returncode != 0
    assert "imitate: error: rank 0 of 2: training failed because another process stopped" in res.stderr, \
        res.stderr[-3000:]
    assert "exitcode  : 7" in res.stderr  # torchrun names the process that died first


def test_settings_for_several_processes_and_gpus_are_checked_before_anything_starts(fp_file, tmp_path, monkeypatch):
    from imitate.errors import ConfigError
    from imitate.train import train
    from tests.tiny import tiny_config

    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="--batch-size 16 is the global batch.*3 processes"):
        train(tiny_config(fp_file, tmp_path / "a", "gmm"), progress=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match="--precision 'fp16'"):
        train(tiny_config(fp_file, tmp_path / "b", "gmm", precision="fp16"), progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda.*no usable CUDA"):
            train(tiny_config(fp_file, tmp_path / "c", "gmm", device="cuda"), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bf16_autocast_trains_and_keeps_float32_weights(fp_file, tmp_path):
    from imitate.train import train
    from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

    result = train(tiny_config(fp_file, tmp_path / "run", "diffusion", precision="bf16", device="cpu"),
                   dict(TINY_HEADS["diffusion"]), dict(TINY_ENCODER), progress=False)
    assert np.isfinite(result["train_loss"]) and np.isfinite(result["val_loss"])
    fp32 = train(tiny_config(fp_file, tmp_path / "fp32", "diffusion", device="cpu"),
                 dict(TINY_HEADS["diffusion"]), dict(TINY_ENCODER), progress=False)
    assert result["train_loss"] != fp32["train_loss"]  # the forward pass did run in bfloat16 ...
    assert abs(result["train_loss"] - fp32["train_loss"]) < 0.1 * fp32["train_loss"]  # ... and trains alike
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    chunk = load_policy(tmp_path / "run").predict_chunk(
        {"agent_pos": np.zeros((2, 2, 2), np.float32), "goal_pos": np.zeros((2, 2, 2), np.float32)})
    assert chunk.shape == (2, 4, 2) and np.isfinite(chunk).all()
