"""Policy = Normalizer + observation encoder + head.

    raw obs {key: (B, To, *shape)} --normalize--> --encoder--> features (B, F)
    features --head.sample--> normalized chunk (B, Ta, A) --unnormalize--> actions (B, Ta, A)

Acting in an environment (`act`, `reset`) is `imitate.acting.ChunkActing`: a history of To
observations and a queue of actions, re-planned every ``n_act`` steps (timing diagram there),
or ACT's temporal ensemble.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from imitate.acting import ChunkActing
from imitate.data.normalizer import Normalizer
from imitate.encoders import EncoderConfig, LowDimEncoder
from imitate.errors import ConfigError, ImitateError


class Policy(ChunkActing, nn.Module):
    """A behaviour-cloning policy: normalizer, encoder and head in one module.

    Args:
        normalizer: keys ``obs/<k>`` for every observation key and ``action``.
        encoder: maps normalized obs {key: (B, To, *shape)} to features (B, F).
        head: a `policy_heads.PolicyHead` over normalized action chunks (B, Ta, A).
        obs_horizon: To.
        action_horizon: Ta.
        n_act: actions executed from each chunk before re-planning (1..Ta; default Ta // 2, at least 1).
        temporal_ensemble: None, or the k of ACT's exp(-k * i) weights (re-plans every step).
    """

    def __init__(self, normalizer: Normalizer, encoder: LowDimEncoder, head: nn.Module, obs_horizon: int,
                 action_horizon: int, n_act: int | None = None, temporal_ensemble: float | None = None):
        super().__init__()
        self.normalizer, self.encoder, self.head = normalizer, encoder, head
        self.obs_keys = list(encoder.obs_keys)
        self.obs_shapes = dict(encoder.obs_shapes)
        self.obs_horizon, self.action_horizon = obs_horizon, action_horizon
        self.n_act = n_act if n_act is not None else max(1, action_horizon // 2)
        if not 1 <= self.n_act <= action_horizon:
            raise ConfigError(f"n_act={self.n_act} must lie in 1..action_horizon ({action_horizon})")
        self.temporal_ensemble = temporal_ensemble
        self.reset()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def action_dim(self) -> int:
        return self.normalizer.specs["action"][0][0]

    # -- training ---------------------------------------------------------------------------------
    def encode(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs {key: (B, To, *shape)} -> features (B, F)."""
        return self.encoder({k: self.normalizer.normalize(f"obs/{k}", obs[k]) for k in self.obs_keys})

    def compute_loss(self, obs: Mapping[str, torch.Tensor], action: torch.Tensor, action_mask: torch.Tensor | None = None):
        """Raw obs {key: (B, To, *shape)}, raw action (B, Ta, A), mask (B, Ta) -> (loss, info)."""
        return self.head.loss(self.encode(obs), self.normalizer.normalize("action", action), action_mask)

    # -- inference --------------------------------------------------------------------------------
    def _as_tensors(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise ImitateError(f"observation lacks key(s) {missing}; the policy reads {self.obs_keys}")
        out, batch = {}, None
        for k in self.obs_keys:
            x = torch.as_tensor(np.asarray(obs[k]) if not torch.is_tensor(obs[k]) else obs[k], dtype=torch.float32)
            want = (self.obs_horizon, *self.obs_shapes[k])
            if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
                raise ImitateError(f"observation {k!r} has shape {tuple(x.shape)}; expected (B, {', '.join(map(str, want))})"
                                   f" = (batch, obs_horizon, *shape)")
            if batch is not None and x.shape[0] != batch:
                raise ImitateError(f"observation {k!r} has batch size {x.shape[0]}, other keys {batch}")
            batch = x.shape[0]
            out[k] = x.to(self.device)
        return out

    @torch.no_grad()
    def predict_chunk(self, obs: Mapping[str, Any], generator: torch.Generator | None = None,
                      deterministic: bool = False) -> np.ndarray:
        """obs {key: (B, To, *shape)} (NumPy arrays or tensors) -> raw actions (B, Ta, A), a fresh sample.

        ``deterministic`` uses the head's mode (most likely chunk) where it has one.
        """
        features = self.encode(self._as_tensors(obs))
        if deterministic and getattr(self.head, "has_mode", False):
            chunk = self.head.mode(features)
        else:
            chunk = self.head.sample(features, generator=generator)
        return self.normalizer.unnormalize("action", chunk).cpu().numpy()

    def act(self, obs: Any, generator: torch.Generator | None = None, deterministic: bool = False) -> np.ndarray:
        """One step: the current observation of one environment (dict of (*shape) arrays, or an array
        for the key ``state``) -> action (A,); of N environments ((N, *shape) per key) -> (N, A).
        Re-plans every ``n_act`` steps (or every step with ``temporal_ensemble``); see `imitate.acting`."""
        return self._act(obs, lambda window: self.predict_chunk(window, generator, deterministic))

    # -- description ------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """Everything `build_policy` needs to rebuild this module (JSON-ready)."""
        from imitate.config import to_dict
        from policy_heads import config_to_dict

        return {"obs_keys": self.obs_keys, "obs_shapes": {k: list(s) for k, s in self.obs_shapes.items()},
                "action_dim": self.action_dim, "obs_horizon": self.obs_horizon, "action_horizon": self.action_horizon,
                "n_act": self.n_act, "temporal_ensemble": self.temporal_ensemble, "head": self.head.name,
                "head_config": config_to_dict(self.head.config), "encoder_config": to_dict(self.encoder.config),
                "normalizer": self.normalizer.config()}


def build_policy(spec: Mapping[str, Any]) -> Policy:
    """A fresh Policy (untrained weights, unfitted normalizer) from `Policy.spec()`."""
    from imitate.config import apply_overrides
    from policy_heads import make_head

    encoder = LowDimEncoder({k: tuple(spec["obs_shapes"][k]) for k in spec["obs_keys"]}, spec["obs_horizon"],
                            apply_overrides(EncoderConfig(), spec.get("encoder_config", {}), "encoder"))
    try:
        head = make_head(spec["head"], encoder.feature_dim, spec["action_dim"], spec["action_horizon"],
                         **spec.get("head_config", {}))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return Policy(Normalizer.from_config(spec["normalizer"]), encoder, head, spec["obs_horizon"],
                  spec["action_horizon"], spec.get("n_act"), spec.get("temporal_ensemble"))
