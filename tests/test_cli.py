"""The imitate command: collect, data info, demo; errors without tracebacks; the shipped dataset."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imitate.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imitate", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_collect_writes_a_valid_file_and_reports_the_expert(tmp_path, capsys):
    out = tmp_path / "fp.hdf5"
    assert main(["collect", "imitate/ForkedPath-v0", "--episodes", "12", "--out", str(out), "--seed", "3",
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["episodes"] == 12 and summary["success_rate"] >= 0.9
    assert set(summary["mode_shares"]) <= {"left", "right"}
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["demos"] == 12 and info["env_args"]["env_name"] == "imitate/ForkedPath-v0"
    assert info["obs"] == {"agent_pos": {"shape": [2], "dtype": "float32"}, "goal_pos": {"shape": [2], "dtype": "float32"}}
    assert info["filter_keys"] == {"train": 11, "valid": 1} and info["actions"]["dim"] == 2


def test_collect_pendulum_with_its_expert(tmp_path, capsys):
    out = tmp_path / "pendulum.hdf5"
    assert main(["collect", "Pendulum-v1", "--episodes", "2", "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["transitions"] == 400 and summary["success_rate"] is None and summary["mean_return"] > -400
    assert main(["data", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["obs"] == {"state": {"shape": [3], "dtype": "float32"}}


def test_existing_output_is_kept_and_errors_have_no_traceback(tmp_path):
    out = tmp_path / "fp.hdf5"
    out.write_bytes(b"keep me")
    res = run("collect", "imitate/ForkedPath-v0", "--episodes", "2", "--out", str(out))
    assert res.returncode == 1 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert "Traceback" not in res.stderr and out.read_bytes() == b"keep me"
    res = run("collect", "NoSuchTask-v9", "--episodes", "2", "--out", str(tmp_path / "x.hdf5"))
    assert res.returncode == 1 and "NoSuchTask-v9" in res.stderr and "Traceback" not in res.stderr
    res = run("collect", "imitate/ForkedPath-v0", "--episodes", "2", "--out", str(tmp_path / "y.hdf5"),
              "--expert-kw", "p_sideways=0.3")
    assert res.returncode == 1 and "p_sideways" in res.stderr and "Traceback" not in res.stderr


def test_data_info_rejects_an_invalid_file_with_exit_1(tmp_path):
    bad = tmp_path / "bad.hdf5"
    bad.write_text("not a demonstration file")
    res = run("data", "info", str(bad))
    assert res.returncode == 1 and "not an HDF5 file" in res.stderr and str(bad) in res.stderr
    assert "Traceback" not in res.stderr


def test_shipped_dataset_matches_its_card():
    card = (ROOT / "datasets" / "forked_path.md").read_text()
    data = ROOT / "datasets" / "forked_path.hdf5"
    assert f"size: {data.stat().st_size} bytes" in card
    digest = re.search(r"^- sha256: ([0-9a-f]{64})$", card, re.M).group(1)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest


def test_the_card_command_regenerates_the_shipped_content(tmp_path, capsys):
    from imitate.data.info import demo_file_info

    card = (ROOT / "datasets" / "forked_path.md").read_text()
    command = re.search(r"^- command: `imitate (.+)`$", card, re.M).group(1).split()
    out = tmp_path / "regen.hdf5"
    command[command.index("--out") + 1] = str(out)
    assert main(command + ["--quiet"]) == 0
    assert demo_file_info(out)["content_sha256"] == demo_file_info(ROOT / "datasets" / "forked_path.hdf5")["content_sha256"]


def test_python_dash_m_and_help():
    res = run("--help")
    assert res.returncode == 0 and "collect" in res.stdout and "data" in res.stdout


def test_train_then_eval_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "fp.hdf5"
    assert main(["collect", "imitate/ForkedPath-v0", "--episodes", "6", "--out", str(data), "--quiet"]) == 0
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--head", "gmm", "--out", str(run), "--steps", "4", "--batch-size", "8",
            "--action-horizon", "4", "--n-act", "2", "--warmup-steps", "1", "--log-every", "2", "--eval-episodes", "0",
            "--set", "hidden_dims=32", "--set", "num_modes=2", "--set", "encoder.feature_dim=16", "--quiet"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 4 and result["head"] == "gmm"
    config = json.loads((run / "config.json").read_text())
    assert config["policy"]["head_config"]["num_modes"] == 2 and config["policy"]["encoder_config"]["feature_dim"] == 16
    assert main(["train", "--out", str(run), "--resume", "--steps", "6", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 6
    video = tmp_path / "rollout.gif"
    assert main(["eval", str(run), "--episodes", "2", "--video", str(video), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"success_rate", "mean_return", "mode_shares", "behaviour_entropy"} <= set(summary)
    assert 0.0 <= summary["success_rate"] <= 1.0
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    assert len(frames) > 5 and frames[0].shape[-1] in (3, 4)


def test_train_errors_are_clear(tmp_path):
    res = run("train", "--out", str(tmp_path / "r"), "--resume", "--lr", "0.1")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    res = run("train", "--data", "datasets/forked_path.hdf5", "--head", "transformer", "--out", str(tmp_path / "r2"))
    assert res.returncode == 1 and "transformer" in res.stderr and "available heads" in res.stderr
    res = run("train", "--data", str(tmp_path / "missing.hdf5"), "--head", "gmm", "--out", str(tmp_path / "r3"))
    assert res.returncode == 1 and "no such file" in res.stderr and "Traceback" not in res.stderr
    res = run("eval", str(tmp_path / "nothing"))
    assert res.returncode == 1 and "no such run directory" in res.stderr
    res = run("train", "--help")
    assert res.returncode == 0 and "num_modes" in res.stdout and "encoder.KEY=VALUE" in res.stdout
