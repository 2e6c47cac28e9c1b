"""From pixels, end to end: collect with a camera, train, evaluate, compare and DAgger on images only.

The pieces are tested on their own in test_image_data.py (files, stores, windows), test_image_policy.py
(encoders, augmentation, export) and test_image_tasks.py (image tasks, experts from the state); here
they meet as a user meets them, at tiny budgets.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from imitate.checkpoint import load_policy
from imitate.collect import collect
from imitate.settings import TrainConfig
from imitate.train import train

TASK = "imitate/ForkedPath-v0"
SMALL = {"obs_mode": "state+image", "image_size": 32}


@pytest.fixture(scope="module")
def pixel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pixels") / "fp_pixels.hdf5"
    collect(TASK, 12, path, seed=0, env_kwargs=SMALL, progress=False)
    return path


def test_the_collected_file_holds_compressed_uint8_frames_next_to_the_state(pixel_file):
    with h5py.File(pixel_file, "r") as f:
        image = f["data/demo_0/obs/image"]
        assert image.dtype == np.uint8 and image.shape[1:] == (32, 32, 3)
        assert image.compression is not None and image.chunks[0] == 1
        assert "agent_pos" in f["data/demo_0/obs"]


def test_train_evaluate_from_pixels_and_the_trace_keeps_the_state(pixel_file, tmp_path):
    from imitate.evaluate import evaluate

    run = tmp_path / "run"
    train(TrainConfig(data=str(pixel_file), out=str(run), head="deterministic", obs_keys=("image",), steps=20,
                      batch_size=8, eval_episodes=0, device="cpu"), None, {"image_encoder": "conv"}, progress=False)
    policy = load_policy(run)
    assert policy.obs_keys == ["image"] and policy.spec.obs["image"].is_image
    result = evaluate(policy, TASK, {"obs_mode": "image", "image_size": 32}, episodes=2, n_envs=2,
                      video=str(tmp_path / "roll.gif"), progress=False, return_observations=True)
    assert 0.0 <= result["success_rate"] <= 1.0
    assert (tmp_path / "roll.gif").stat().st_size > 0
    traced = result["observations"][0]
    assert "agent_pos" in traced and "image" not in traced


def test_compare_ranks_heads_from_pixels_and_shows_input_frames(pixel_file, tmp_path):
    from imitate.compare import compare

    out = tmp_path / "cmp"
    results = compare(str(pixel_file), str(out), settings={"encoder.image_encoder": "conv"}, progress=False,
                      heads="deterministic,gmm", seeds=1, steps=20, batch_size=8, episodes=2, queries=4, samples=8,
                      neighbours=4, latency_calls=2, obs_keys=("image",), jobs=1)
    assert set(results["heads"]) == {"deterministic", "gmm"}
    assert (out / "plots" / "input_frames.png").stat().st_size > 0


def test_dagger_acts_from_pixels_while_the_expert_labels_from_the_state(tmp_path):
    from imitate.algos.dagger import dagger, dagger_config

    out = tmp_path / "dagger"
    dagger(dagger_config(task=TASK, out=str(out), env_kwargs={"obs_mode": "image", "image_size": 32}, rounds=1,
                         episodes_per_round=2, initial_demos=4, steps=20, steps_per_round=10, eval_episodes=2,
                         batch_size=8, head="deterministic", head_config={"encoder.image_encoder": "conv"}),
           progress=False)
    files = sorted(out.rglob("*.hdf5"))
    assert files
    with h5py.File(files[-1], "r") as f:
        demo = next(iter(f["data"].values()))
        assert list(demo["obs"]) == ["image"]
        assert np.isfinite(demo["actions"][()]).all()


def test_offline_rl_learns_from_pixels_with_critics_that_see_the_frames(pixel_file, tmp_path):
    from imitate.algos.offline import train_offline
    from imitate.settings import OfflineConfig

    run = tmp_path / "iql"
    train_offline(OfflineConfig(algo="iql", data=str(pixel_file), out=str(run), head="gmm", obs_keys=("image",),
                                steps=10, batch_size=8, eval_episodes=0, device="cpu"),
                  None, None, {"image_encoder": "conv"}, progress=False)
    from safetensors import safe_open

    with safe_open(str(run / "critics.safetensors"), "pt") as f:
        names = list(f.keys())
    assert any("trunk" in n or "conv" in n for n in names), names[:10]
    assert load_policy(run).obs_keys == ["image"]


def test_collect_chooses_the_compression_of_camera_keys_and_refuses_an_unknown_one(tmp_path, capsys):
    from imitate.cli import main

    out = tmp_path / "lzf.hdf5"
    assert main(["collect", TASK, "--episodes", "2", "--out", str(out), "--env-kw", "obs_mode=image",
                 "--env-kw", "image_size=16", "--image-compression", "lzf", "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        assert f["data/demo_0/obs/image"].compression == "lzf"
    assert main(["collect", TASK, "--episodes", "2", "--out", str(tmp_path / "bad.hdf5"),
                 "--image-compression", "zstd", "--quiet"]) != 0
    assert "zstd" in capsys.readouterr().err and not (tmp_path / "bad.hdf5").exists()
