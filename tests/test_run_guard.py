"""The trainer's guards and run directories: divergence, resuming, stale files, config checks, signals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from imitate.checkpoint import load_policy, read_run_config
from imitate.errors import ConfigError, ImitateError
from imitate.settings import head_settings_for, train_config_from_file
from imitate.train import resume, train
from tests.tiny import TINY_ENCODER, TINY_HEADS, tiny_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fp_file(tmp_path_factory):
    from imitate.collect import collect

    path = tmp_path_factory.mktemp("data") / "fp.hdf5"
    collect("imitate/ForkedPath-v0", 10, path, seed=0, progress=False)
    return path


def fit(data, out, head="gaussian", stop_at=None, **kw):
    return train(tiny_config(data, out, head, **kw), dict(TINY_HEADS[head]), dict(TINY_ENCODER), progress=False,
                 stop_at=stop_at)


def _lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# -- divergence ------------------------------------------------------------------------------------------

class _InfiniteGradient(torch.autograd.Function):
    """The identity whose gradient is infinite: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _poison_gradients(monkeypatch, from_call: int, until_call: int | None = None):
    """Make the gradient of the loss infinite (the loss itself stays finite) on calls from..until."""
    from imitate.policy import Policy

    original, calls = Policy.compute_loss, {"n": 0}

    def poisoned(self, *a, **k):
        loss, info = original(self, *a, **k)
        if not self.training:                                # validation of the EMA policy: not a step
            return loss, info
        calls["n"] += 1
        if calls["n"] >= from_call and (until_call is None or calls["n"] <= until_call):
            loss = _InfiniteGradient.apply(loss)
        return loss, info

    monkeypatch.setattr(Policy, "compute_loss", poisoned)


def test_a_few_infinite_gradients_are_skipped_and_training_goes_on(fp_file, tmp_path, monkeypatch):
    _poison_gradients(monkeypatch, 3, 4)                    # steps 3 and 4: skipped, no update
    result = fit(fp_file, tmp_path / "run", steps=6, max_bad_grad_steps=3)
    assert result["step"] == 6
    tensors = load_file(str(tmp_path / "run" / "train_state.safetensors"))
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "train_state.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["state"])["skipped_steps"] == 2


def test_infinite_gradients_in_a_row_stop_with_the_step_and_write_nothing_broken(fp_file, tmp_path, monkeypatch):
    _poison_gradients(monkeypatch, 4)
    with pytest.raises(ImitateError, match=r"gradient norm was (inf|nan) at 2 steps in a row.*step 5"):
        fit(fp_file, tmp_path / "run", steps=8, ckpt_every=1, max_bad_grad_steps=2)
    tensors = load_file(str(tmp_path / "run" / "train_state.safetensors"))
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "train_state.safetensors"), "pt") as f:
        state = json.loads(f.metadata()["state"])
    assert state["step"] == 4 and state["skipped_steps"] == 1   # step 4 was skipped, then written


def test_a_loss_far_above_its_running_median_stops_training(fp_file, tmp_path, monkeypatch):
    from imitate.policy import Policy

    original, calls = Policy.compute_loss, {"n": 0}

    def exploding(self, *a, **k):
        loss, info = original(self, *a, **k)
        calls["n"] += self.training
        return (loss * 1e9 if calls["n"] > 8 else loss), info

    monkeypatch.setattr(Policy, "compute_loss", exploding)
    with pytest.raises(ImitateError, match=r"loss at step 10 is .*running median"):
        fit(fp_file, tmp_path / "run", steps=12, log_every=2, ckpt_every=100, loss_spike=1e4)
    calls["n"] = 0                                          # the same run with the guard off ends normally
    assert fit(fp_file, tmp_path / "run2", steps=12, log_every=2, ckpt_every=100, loss_spike=0)["step"] == 12


# -- resuming ----------------------------------------------------------------------------------------------

def test_resume_without_a_checkpoint_starts_again_with_the_same_settings(fp_file, tmp_path):
    run = tmp_path / "run"
    fit(fp_file, run, steps=6)
    before = read_run_config(run)
    for name in ("train_state.safetensors", "model.safetensors"):   # as if killed before its first checkpoint
        (run / name).unlink()
    result = resume(run, progress=False)
    assert result["step"] == 6
    after = read_run_config(run)
    assert after["train"] == before["train"] and after["policy"] == before["policy"]
    assert [x["step"] for x in _lines(run) if "train/loss" in x] == [2, 4, 6]   # the old log is gone
    assert sum("final" in x for x in _lines(run)) == 1


def test_resume_drops_log_lines_of_discarded_steps_and_stale_temporaries(fp_file, tmp_path):
    run = tmp_path / "run"
    fit(fp_file, run, steps=6, ckpt_every=3, log_every=1, stop_at=5)   # checkpoints at 3 and 5
    # go back to the checkpoint of step 3: what steps 4-5 logged must not stay in metrics.jsonl
    fit(fp_file, tmp_path / "ref", steps=6, ckpt_every=3, log_every=1, stop_at=3)
    for name in ("train_state.safetensors", "model.safetensors"):
        (run / name).write_bytes((tmp_path / "ref" / name).read_bytes())
    (run / ".model.safetensors.dead.tmp").write_bytes(b"half a file")
    resume(run, progress=False)
    steps = [x["step"] for x in _lines(run) if "train/loss" in x]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert sum("final" in x for x in _lines(run)) == 1
    assert not list(run.glob(".*.tmp"))


def test_sigterm_writes_a_checkpoint(fp_file, tmp_path):
    run = tmp_path / "run"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.tiny import tiny_config, TINY_HEADS, TINY_ENCODER\n"
            "from imitate.train import train\n"
            f"train(tiny_config({str(fp_file)!r}, {str(run)!r}, 'deterministic', steps=100000, ckpt_every=100000, "
            "log_every=1, val_every=0), dict(TINY_HEADS['deterministic']), dict(TINY_ENCODER), progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "checkpoint saved" in out, err[-2000:]
    from safetensors import safe_open

    with safe_open(str(run / "train_state.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["state"])["step"] >= 1


# -- run directories that do not hold what they claim ---------------------------------------------------

def test_broken_run_configs_and_weights_are_clear_errors(fp_file, tmp_path):
    run = tmp_path / "run"
    fit(fp_file, run, "gaussian")
    config = json.loads((run / "config.json").read_text())

    def with_config(mutate, name):
        d = tmp_path / name
        d.mkdir()
        for f in ("model.safetensors", "train_state.safetensors"):
            (d / f).write_bytes((run / f).read_bytes())
        c = json.loads(json.dumps(config))
        mutate(c)
        (d / "config.json").write_text(json.dumps(c))
        return d

    no_policy = with_config(lambda c: c.pop("policy"), "no_policy")
    with pytest.raises(ImitateError, match="config.json: no 'policy' section"):
        load_policy(no_policy)
    no_shape = with_config(lambda c: c["policy"]["obs"]["agent_pos"].pop("shape"), "no_shape")
    with pytest.raises(ImitateError, match="obs 'agent_pos': missing 'shape'"):
        load_policy(no_shape)
    no_train = with_config(lambda c: c.pop("train"), "no_train")
    with pytest.raises(ImitateError, match="no 'train' section"):
        resume(no_train, progress=False)
    weights = load_file(str(run / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    weights[key] = weights[key].view(torch.int32)           # the same bytes, declared int32
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(ImitateError, match=f"dtype mismatches.*{key}"):
        load_policy(run)


def test_an_environment_that_cannot_be_built_is_an_error_before_the_run_directory(tmp_path):
    from imitate.data import make_env_args, write_demo_file
    from tests.conftest import make_episode

    rng = np.random.default_rng(0)
    episodes = [make_episode(rng, 8, name=f"demo_{i}") for i in range(4)]
    path = write_demo_file(tmp_path / "d.hdf5", episodes, make_env_args("NoSuchEnv-v3", {}))
    with pytest.raises(ConfigError, match="NoSuchEnv-v3.*--eval-episodes 0"):
        train(tiny_config(path, tmp_path / "run", "deterministic", eval_episodes=2), dict(TINY_HEADS["deterministic"]),
              dict(TINY_ENCODER), progress=False)
    assert not (tmp_path / "run").exists()


# -- settings: CPU-sized defaults, --config ------------------------------------------------------------------

def test_cpu_sized_defaults_are_chosen_on_a_cpu_and_said(fp_file, tmp_path, capsys):
    settings, note = head_settings_for("diffusion", True, "auto", {})
    assert settings == {"denoiser": "mlp"} and "no GPU found" in note and "--sizing full" in note
    assert head_settings_for("diffusion", False, "auto", {}) == ({}, "")
    assert head_settings_for("diffusion", True, "auto", {"denoiser": "unet"})[0] == {"denoiser": "unet"}
    assert head_settings_for("gmm", True, "auto", {}) == ({}, "")
    with pytest.raises(ConfigError, match="--sizing"):
        head_settings_for("gmm", True, "small", {})
    cfg = tiny_config(fp_file, tmp_path / "run", "diffusion", device="cpu")
    train(cfg, {"num_train_timesteps": "20", "num_inference_steps": "3"}, dict(TINY_ENCODER), progress=True)
    assert "no GPU found: using the CPU-sized defaults of the diffusion head (denoiser=mlp)" in capsys.readouterr().out
    assert read_run_config(tmp_path / "run")["policy"]["head_config"]["denoiser"] == "mlp"


def test_config_file_round_trip_trains_the_same_run_again(fp_file, tmp_path, capsys):
    from imitate.cli import main

    fit(fp_file, tmp_path / "a", "gmm")
    cfg, head, encoder = train_config_from_file(tmp_path / "a" / "config.json")
    assert cfg.steps == 6 and cfg.out == "" and head["num_modes"] == 3 and encoder["feature_dim"] == 16
    assert main(["train", "--config", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--steps", "4", "--quiet"]) == 0
    a, b = read_run_config(tmp_path / "a"), read_run_config(tmp_path / "b")
    assert b["train"]["steps"] == 4 and {k: v for k, v in a["train"].items() if k not in ("out", "steps")} == \
        {k: v for k, v in b["train"].items() if k not in ("out", "steps")}
    assert a["policy"] == b["policy"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="--config .*bad.json.*'train' section"):
        train_config_from_file(tmp_path / "bad.json")
    (tmp_path / "c.json").write_text(json.dumps({"train": {"steps": "many"}}))
    with pytest.raises(ConfigError, match="steps"):
        train_config_from_file(tmp_path / "c.json")
