"""Observation encoders: normalized observations with history -> one feature vector per sample.

    obs: {key: (B, To, *shape)}  --flatten and concatenate-->  (B, To * sum(prod(shape)))  --MLP-->  (B, F)

The low-dimensional encoder is an MLP over every key's history, concatenated in a fixed key order.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from imitate.settings import EncoderConfig


class LowDimEncoder(nn.Module):
    """MLP over the concatenated low-dim observation keys and their history.

    Args:
        obs_shapes: key -> per-step shape; the keys' order here is the concatenation order.
        obs_horizon: To.
        config: `EncoderConfig`.
    """

    def __init__(self, obs_shapes: Mapping[str, Sequence[int]], obs_horizon: int, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config or EncoderConfig()
        self.obs_keys = list(obs_shapes)
        self.obs_shapes = {k: tuple(int(d) for d in s) for k, s in obs_shapes.items()}
        self.obs_horizon = obs_horizon
        in_dim = obs_horizon * sum(math.prod(s) for s in self.obs_shapes.values())
        layers: list[nn.Module] = []
        for width in self.config.hidden_dims:
            layers += [nn.Linear(in_dim, width), nn.Mish()]
            in_dim = width
        layers.append(nn.Linear(in_dim, self.config.feature_dim))
        if self.config.layer_norm:
            layers.append(nn.LayerNorm(self.config.feature_dim))
        self.net = nn.Sequential(*layers)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """obs {key: (B, To, *shape)} normalized -> features (B, F)."""
        parts = [obs[k].reshape(obs[k].shape[0], -1) for k in self.obs_keys]
        return self.net(torch.cat(parts, dim=-1))
