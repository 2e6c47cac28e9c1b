"""Policy = Normalizer + observation encoder + head, built from one `imitate.spec.PolicySpec`.

    raw obs {key: (B, To, *shape)} --normalize--> --encoder--> features (B, F)
    features --head.sample--> normalized chunk (B, Ta, A) --unnormalize--> actions (B, Ta, A)

    Policy(spec)                          fresh weights, unfitted (identity) normalizer
    Policy.from_data(spec, store, ...)    the normalizer fitted on the data, the head prepared: ready to train

Camera keys (`imitate.spec.ObsSpec.is_image`: uint8 (H, W, C)) skip the normalizer: the encoder
(`imitate.encoders.ImageEncoder`) scales and crops them, at random in training mode, in the centre
in evaluation mode and in `predict_chunk` / `act`.

Acting in an environment (`act`, `reset`) is `imitate.acting.ChunkActing`: a history of To
observations and a queue of actions, re-planned every ``n_act`` steps (timing diagram there),
or ACT's temporal ensemble.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from imitate.acting import ChunkActing, check_window
from imitate.config import apply_overrides, to_dict
from imitate.data.normalizer import Normalizer
from imitate.encoders import EncoderConfig, make_encoder
from imitate.errors import ConfigError
from imitate.spec import PolicySpec


class Policy(ChunkActing, nn.Module):
    """A behaviour-cloning policy: normalizer, encoder and head in one module, described by ``spec``.

    ``n_act`` (1..Ta) and ``temporal_ensemble`` (None, or the k of ACT's exp(-k * i) weights: re-plan
    every step) are plain attributes that may be changed after loading; `spec` reflects them.
    """

    def __init__(self, spec: PolicySpec):
        from policy_heads import config_to_dict, get_head_class, make_head

        super().__init__()
        self.normalizer = Normalizer(spec.normalizer_specs())
        self.encoder = make_encoder(spec, apply_overrides(EncoderConfig(), spec.encoder_config, "encoder"))
        self.image_keys = spec.image_keys
        try:
            self.head = make_head(spec.head, self.encoder.feature_dim, spec.action.dim, spec.action_horizon,
                                  discrete_nvec=spec.action.discrete_nvec, **spec.head_config)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        head_config = config_to_dict(self.head.config)
        if get_head_class(spec.head).discrete_actions:   # the action space's categories live in spec.action
            head_config.pop("discrete_nvec", None)
        self._spec = spec.replace(head_config=head_config, encoder_config=to_dict(self.encoder.config))
        self.obs_horizon, self.action_horizon = spec.obs_horizon, spec.action_horizon
        self.n_act, self.temporal_ensemble = spec.n_act, spec.temporal_ensemble
        self.reset()

    @classmethod
    def from_data(cls, spec: PolicySpec, store=None, episodes: np.ndarray | None = None, seed: int = 0,
                  prepare_rows: int = 100_000) -> "Policy":
        """A policy ready to train on ``store`` (an `imitate.data.EpisodeStore`; None: no data).

        The normalizer is fitted on the observations and actions of ``episodes`` (None: all); actions
        use the action space's bounds instead where ``spec.action`` has them, and without a store the
        observations keep identity statistics until fitted (`Normalizer.set_meanstd`). Then the head's
        data-dependent `prepare` sees up to ``prepare_rows`` normalized actions (drawn with ``seed``).
        Image trunks start from the encoder's ``weights`` files where it names them.
        """
        policy = cls(spec)
        if spec.image_keys:
            policy.encoder.load_pretrained()
        bounds = spec.action.low is not None and spec.action.high is not None
        if store is not None:
            policy.normalizer.fit_store(store, episodes, skip=("action",) if bounds else ())
        if bounds:
            policy.normalizer.fit("action", [np.stack([np.asarray(spec.action.low), np.asarray(spec.action.high)])])
        if store is not None:
            idx = range(store.n_episodes) if episodes is None else episodes
            rows = np.concatenate([np.arange(store.episode_starts[i], store.episode_ends[i]) for i in idx])
            rows = np.sort(np.random.default_rng(seed).permutation(rows)[:prepare_rows])
            actions = torch.from_numpy(np.asarray(store.get("actions", rows))).float()
            policy.head.prepare(policy.normalizer.normalize("action", actions))
        return policy

    @property
    def spec(self) -> PolicySpec:
        """This module's description (what config.json stores; `Policy(spec)` rebuilds the module)."""
        return self._spec.replace(n_act=self.n_act, temporal_ensemble=self.temporal_ensemble)

    @property
    def obs_keys(self) -> list[str]:
        return self._spec.obs_keys

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: o.shape for k, o in self._spec.obs.items()}

    @property
    def action_dim(self) -> int:
        return self._spec.action.dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- training ---------------------------------------------------------------------------------
    def encode(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs {key: (B, To, *shape)} -> features (B, F). Image keys go to the encoder as they are
        (uint8); it crops them at random in training mode, in the centre in evaluation mode."""
        images = self.image_keys
        return self.encoder({k: obs[k] if k in images else self.normalizer.normalize(f"obs/{k}", obs[k])
                             for k in self.obs_keys})

    def compute_loss(self, obs: Mapping[str, torch.Tensor], action: torch.Tensor, action_mask: torch.Tensor | None = None,
                     weight: torch.Tensor | None = None):
        """Raw obs {key: (B, To, *shape)}, raw action (B, Ta, A), mask (B, Ta), per-row weights (B,) or
        None -> (loss, info); the weights reach the head's loss only when given."""
        features, normalized = self.encode(obs), self.normalizer.normalize("action", action)
        if weight is None:
            return self.head.loss(features, normalized, action_mask)
        return self.head.loss(features, normalized, action_mask, weight)

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_chunk(self, obs: Mapping[str, Any], generator: torch.Generator | None = None,
                      deterministic: bool = False) -> np.ndarray:
        """obs {key: (B, To, *shape)} (NumPy arrays or tensors) -> raw actions (B, Ta, A), a fresh sample.

        ``deterministic`` uses the head's mode (most likely chunk) where it has one. Observations are
        checked as the exported runtime checks them (`imitate.acting.check_window`): every key, the
        expected shapes, one batch size >= 1, finite real values; image keys uint8 (B, To, H, W, C).
        Images get the centred crop of evaluation, whatever the module's mode (no random augmentation).
        """
        window = check_window(obs, self.obs_keys, self.obs_shapes, self.obs_horizon, self.image_keys)
        training = self.encoder.training
        self.encoder.eval()
        try:
            features = self.encode({k: torch.from_numpy(v).to(self.device) for k, v in window.items()})
        finally:
            self.encoder.train(training)
        if deterministic and self.head.has_mode:
            chunk = self.head.mode(features)
        else:
            chunk = self.head.sample(features, generator=generator)
        return self.normalizer.unnormalize("action", chunk).cpu().numpy()

    def act(self, obs: Any, generator: torch.Generator | None = None, deterministic: bool = False) -> np.ndarray:
        """One step: the current observation of one environment (dict of (*shape) arrays, or an array
        for the key ``state``) -> action (A,); of N environments ((N, *shape) per key) -> (N, A).
        Re-plans every ``n_act`` steps (or every step with ``temporal_ensemble``); see `imitate.acting`."""
        return self._act(obs, lambda window: self.predict_chunk(window, generator, deterministic))
