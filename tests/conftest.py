"""Shared fixtures: seeded synthetic demonstrations and single-threaded torch."""
from __future__ import annotations

import numpy as np
import pytest

from imitate.data import Episode, make_env_args, write_demo_file


def make_episode(rng: np.random.Generator, length: int, obs_shapes=None, action_dim: int = 2, name="demo") -> Episode:
    """A random but valid episode whose values encode their row, so windows can be checked."""
    obs_shapes = obs_shapes or {"pos": (2,), "goal": (2,)}
    obs = {k: rng.normal(size=(length + 1, *s)).astype(np.float32) for k, s in obs_shapes.items()}
    return Episode(obs={k: v[:-1] for k, v in obs.items()}, next_obs={k: v[1:] for k, v in obs.items()},
                   actions=rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32),
                   rewards=rng.normal(size=length).astype(np.float32),
                   dones=np.r_[np.zeros(length - 1), 1].astype(np.uint8), name=name)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def episodes(rng):
    lengths = [5, 1, 12, 3, 30, 7, 2, 16]
    return [make_episode(rng, n, name=f"demo_{i}") for i, n in enumerate(lengths)]


@pytest.fixture
def demo_file(tmp_path, episodes):
    path = tmp_path / "demos.hdf5"
    write_demo_file(path, episodes, make_env_args("imitate/ForkedPath-v0", {}), valid_fraction=0.25)
    return path


@pytest.fixture(autouse=True)
def _torch_single_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
