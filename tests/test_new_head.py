"""Adding a head touches one file: a head defined here, in the test, trains, saves, loads, evaluates and
exports through the ordinary commands, with nothing else changed."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from imitate.cli import main


@pytest.fixture
def throwaway_head():
    """Register the head for this test only."""
    from policy_heads import base
    from policy_heads.base import PolicyHead, masked_mean, mlp

    class NoisyMeanHead(PolicyHead, name="noisy_mean"):
        """Regresses the chunk and adds scaled Gaussian noise when sampling."""

        @dataclass
        class Config:
            hidden: int = 16
            """Width of the hidden layer."""
            noise_scale: float = 0.05
            """Standard deviation of the noise added to the predicted chunk."""

        def __init__(self, feature_dim, action_dim, action_horizon, config=None):
            super().__init__(feature_dim, action_dim, action_horizon, config)
            self.net = mlp(feature_dim, (self.config.hidden,), action_horizon * action_dim)

        def _mean(self, features):
            return self.net(features).view(-1, self.action_horizon, self.action_dim)

        def loss(self, features, action, mask=None):
            action, mask = self._check_batch(features, action, mask)
            err = (self._mean(features) - action).square().mean(-1)
            loss = masked_mean(err, mask)
            return loss, {"mse": loss.detach()}

        def noise_spec(self):
            return {"normal": ((self.action_horizon, self.action_dim), "normal")}

        def sample_with_noise(self, features, noise):
            self._check_noise(features, noise)
            return self._mean(features) + self.config.noise_scale * noise["normal"]

    yield NoisyMeanHead
    base._REGISTRY.pop("noisy_mean", None)


def test_a_head_defined_in_one_place_goes_through_every_command(throwaway_head, tmp_path, capsys):
    from imitate.checkpoint import load_policy
    from imitate.export.runtime import load

    data, run, exported = tmp_path / "fp.hdf5", tmp_path / "run", tmp_path / "exported"
    assert main(["collect", "imitate/ForkedPath-v0", "--episodes", "6", "--out", str(data), "--quiet"]) == 0
    assert main(["train", "--data", str(data), "--head", "noisy_mean", "--out", str(run), "--steps", "6",
                 "--batch-size", "16", "--action-horizon", "4", "--n-act", "2", "--eval-episodes", "2",
                 "--set", "head.hidden=8", "--set", "encoder.feature_dim=16", "--quiet"]) == 0
    capsys.readouterr()
    config = json.loads((run / "config.json").read_text())
    assert config["policy"]["head"] == "noisy_mean" and config["policy"]["head_config"]["hidden"] == 8
    assert main(["eval", str(run), "--episodes", "2", "--quiet"]) == 0
    assert "success_rate" in json.loads(capsys.readouterr().out)
    assert main(["export", str(run), "--out", str(exported), "--quiet"]) == 0
    policy, model = load_policy(run), load(exported, threads=1)
    obs = {k: np.random.default_rng(0).normal(size=(3, 2, *s)).astype(np.float32) for k, s in policy.obs_shapes.items()}
    noise = np.random.default_rng(1).normal(size=(3, 4, 2)).astype(np.float32)
    eager = policy.normalizer.unnormalize("action", policy.head.sample_with_noise(
        policy.encode({k: torch.from_numpy(v) for k, v in obs.items()}), {"normal": torch.from_numpy(noise)}))
    np.testing.assert_allclose(model.predict_chunk(obs, noise={"normal": noise}), eager.detach().numpy(), atol=1e-4)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "noisy_mean:" in capsys.readouterr().out
