"""Normalizer: fitted statistics, modes, round trip, saved state, loud unknown keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from imitate.data import load_demo_file
from imitate.data.normalizer import Normalizer


def test_minmax_maps_actions_onto_minus_one_one(demo_file):
    store = load_demo_file(demo_file)
    norm = Normalizer.from_store(store)
    acts = torch.from_numpy(store.get("actions", np.arange(len(store))))
    z = norm.normalize("action", acts)
    assert torch.allclose(z.min(0).values, torch.full((2,), -1.0), atol=1e-5)
    assert torch.allclose(z.max(0).values, torch.full((2,), 1.0), atol=1e-5)
    assert torch.allclose(norm.unnormalize("action", z), acts, atol=1e-5)


def test_meanstd_standardizes_and_fits_in_chunks(demo_file):
    store = load_demo_file(demo_file)
    x = store.get("obs/pos", np.arange(len(store)))
    norm = Normalizer({"obs/pos": ((2,), "meanstd")})
    norm.fit("obs/pos", [x[:7], x[7:20], x[20:]])
    z = norm.normalize("obs/pos", torch.from_numpy(x)).double()
    assert torch.allclose(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-4)


def test_constant_dimension_maps_to_zero_and_identity_is_unchanged():
    norm = Normalizer({"a": ((2,), "minmax"), "b": ((2,), "meanstd"), "c": ((1,), "identity")})
    data = np.stack([np.full(10, 3.0), np.linspace(0, 1, 10)], 1)
    norm.fit("a", [data])
    norm.fit("b", [data])
    norm.fit("c", [np.arange(5.0)[:, None]])
    for key in ("a", "b"):
        z = norm.normalize(key, torch.tensor(data, dtype=torch.float32))
        assert torch.all(z[:, 0] == 0) and torch.isfinite(z).all()
    assert torch.equal(norm.normalize("c", torch.arange(5.0)[:, None]), torch.arange(5.0)[:, None])


def test_statistics_are_saved_with_the_weights(demo_file):
    norm = Normalizer.from_store(load_demo_file(demo_file))
    fresh = Normalizer.from_config(norm.config())
    fresh.load_state_dict(norm.state_dict())
    x = torch.randn(4, 3, 2)
    assert torch.equal(fresh.normalize("obs/goal", x), norm.normalize("obs/goal", x))
    assert any(k.endswith("scale") for k in norm.state_dict())


def test_unknown_key_and_bad_mode_are_errors():
    norm = Normalizer({"obs/pos": ((2,), "minmax")})
    with pytest.raises(KeyError, match="obs/vel"):
        norm.normalize("obs/vel", torch.zeros(2))
    with pytest.raises(ValueError, match="zscore"):
        Normalizer({"obs/pos": ((2,), "zscore")})
