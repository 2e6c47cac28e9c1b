"""AIRL's recovered state reward g(s), saved beside an AIRL run and re-optimized by `imitate rl --reward DIR`.

    DIR/reward.json           format "imitate-reward/1": obs_dim, hidden widths, env id, expert return, gamma
    DIR/reward.safetensors    g's weights, its observation normalization and the constant shift
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from imitate import checkpoint as ckpt
from imitate.errors import ImitateError
from imitate.formats import read_tagged_json

REWARD_FORMAT = "imitate-reward/1"


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int = 1) -> nn.Sequential:
    """Linear layers with ReLU between them (discriminators and reward networks)."""
    layers: list[nn.Module] = []
    for w in hidden:
        layers += [nn.Linear(in_dim, w), nn.ReLU()]
        in_dim = w
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class StateReward(nn.Module):
    """r(s) = g(normalize(s)) - shift for raw observations (B, D) -> (B,); normalization and shift are buffers.

    AIRL identifies g only up to a constant, and a constant matters where episodes can end (a
    negative reward teaches an agent to end them). ``shift`` is chosen when saving (`airl.state_reward`)
    so that r >= 0 on every state seen in training: staying alive is never worse than ending.
    """

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.obs_dim, self.hidden = obs_dim, tuple(hidden)
        self.register_buffer("obs_scale", torch.ones(obs_dim))
        self.register_buffer("obs_offset", torch.zeros(obs_dim))
        self.register_buffer("shift", torch.zeros(()))
        self.g = mlp(obs_dim, self.hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.g(obs * self.obs_scale + self.obs_offset).squeeze(-1) - self.shift


def save_reward(directory: str | Path, reward: StateReward, meta: dict[str, Any]) -> None:
    """``reward.safetensors`` (weights and normalization) and ``reward.json`` (shape, origin) in ``directory``."""
    directory = Path(directory)
    ckpt.save_weights(directory / "reward.safetensors", reward)
    ckpt.write_json(directory / "reward.json", {"format": REWARD_FORMAT, "obs_dim": reward.obs_dim,
                                                "hidden": list(reward.hidden), **meta})


def load_reward(directory: str | Path) -> tuple[StateReward, dict[str, Any]]:
    """The StateReward saved in ``directory`` and its JSON description; errors name the file."""
    directory = Path(directory)
    meta_path, weights = directory / "reward.json", directory / "reward.safetensors"
    if not meta_path.exists() or not weights.exists():
        raise ImitateError(f"{directory}: no reward.json and reward.safetensors (written by `imitate airl`)")
    meta = read_tagged_json(meta_path, (REWARD_FORMAT,), "an imitate reward")
    try:
        reward = StateReward(int(meta["obs_dim"]), tuple(int(w) for w in meta["hidden"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ImitateError(f"{meta_path}: 'obs_dim' and 'hidden' must be an int and a list of ints ({e!r})") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ImitateError(f"{weights}: not a readable safetensors file ({e})") from None
    ckpt.load_state_into(reward, state, str(weights), "reward")
    return reward.eval(), meta
