"""PolicySpec: the one typed description of a policy, without torch.

    PolicySpec
      obs            {key: ObsSpec(shape, dtype, norm)}     per-step shape, the file's dtype, normalization
      action         ActionSpec(dim, discrete_nvec, low, high, norm)
      obs_horizon    To          action_horizon   Ta          n_act   actions executed per chunk
      head           a registered head name      head_config   its full Config as JSON values
      encoder_config the observation encoder's settings         temporal_ensemble   ACT's k, or None

It is what ``config.json`` stores under ``policy`` (`to_json` / `from_json`, which also reads the
layout of ``imitate-run/1`` directories), what `imitate.policy.Policy.from_spec` builds a module from,
and what every algorithm (BC, PPO generators, GAIL/AIRL, DAgger, compare, export) describes its
policy with. Discrete actions are a property of the action space (``discrete_nvec``), not of a head:
a head that models them says so (`policy_heads.PolicyHead.discrete_actions`).

The head's typed ``Config`` lives with the head (it needs torch); here it travels as its JSON
values, checked against the head's Config when the module is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from imitate.errors import ImitateError

#: Normalization modes of a key (see `imitate.data.normalizer`).
NORM_MODES = ("minmax", "meanstd", "identity")


@dataclass(frozen=True)
class ObsSpec:
    """One observation key."""

    shape: tuple[int, ...]
    """Per-step shape (the policy reads (B, To, *shape))."""
    dtype: str = "float32"
    """dtype of the key in the demonstration file (the policy computes in float32)."""
    norm: str = "meanstd"
    """Normalization: meanstd, minmax or identity (image keys: identity, the encoder scales them)."""

    @property
    def is_image(self) -> bool:
        """Camera images: per-step shape (H, W, C) with C in {1, 3} and dtype uint8 (channel-last, as
        robomimic stores them; `imitate.data.checks.is_image` decides the same for a file's key)."""
        return len(self.shape) == 3 and self.shape[-1] in (1, 3) and self.dtype == "uint8"


@dataclass(frozen=True)
class ActionSpec:
    """The action space: continuous (A values, optionally bounded) or discrete (one index per entry)."""

    dim: int
    """A: entries per action."""
    discrete_nvec: tuple[int, ...] = ()
    """Categories per entry for discrete actions (indices stored as floats); empty: continuous."""
    low: tuple[float, ...] | None = None
    """Lower bounds of a continuous action space where known (an environment's Box); None: from the data."""
    high: tuple[float, ...] | None = None
    """Upper bounds, as ``low``."""
    norm: str = "minmax"
    """Normalization of continuous actions: minmax (onto [-1, 1], what the heads expect) or identity."""

    @property
    def discrete(self) -> bool:
        return bool(self.discrete_nvec)


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to build a policy module (its weights and statistics live in safetensors)."""

    obs: Mapping[str, ObsSpec]
    """Observation keys in the encoder's order."""
    action: ActionSpec
    obs_horizon: int = 2
    action_horizon: int = 16
    n_act: int = 8
    head: str = "diffusion"
    head_config: Mapping[str, Any] = field(default_factory=dict)
    """Head settings (JSON values; a partial dict gets the Config's defaults for the rest)."""
    encoder_config: Mapping[str, Any] = field(default_factory=dict)
    temporal_ensemble: float | None = None

    def __post_init__(self) -> None:
        where = "policy description"
        if not self.obs:
            raise ImitateError(f"{where}: no observation keys")
        for key, o in self.obs.items():
            if not key or "/" in key:
                raise ImitateError(f"{where}: observation key {key!r} must be non-empty and free of '/'")
            if not o.shape or any(not isinstance(d, int) or d < 1 for d in o.shape):
                raise ImitateError(f"{where}: observation {key!r} has shape {o.shape}; every size must be >= 1")
            if o.norm not in NORM_MODES:
                raise ImitateError(f"{where}: observation {key!r} has normalization {o.norm!r}; choose {NORM_MODES}")
            if o.is_image and o.norm != "identity":
                raise ImitateError(f"{where}: observation {key!r} holds images {o.shape} uint8 and takes normalization "
                                   f"'identity' (the image encoder scales it to [0, 1]), not {o.norm!r}")
        a = self.action
        if a.dim < 1 or (a.discrete and (len(a.discrete_nvec) != a.dim or min(a.discrete_nvec) < 1)):
            raise ImitateError(f"{where}: action dim {a.dim} with categories {a.discrete_nvec} (one count >= 1 per entry)")
        if a.norm not in NORM_MODES or a.norm == "meanstd":
            raise ImitateError(f"{where}: action normalization {a.norm!r}; choose minmax or identity")
        for name in ("obs_horizon", "action_horizon", "n_act"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ImitateError(f"{where}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.n_act > self.action_horizon:
            raise ImitateError(f"{where}: n_act {self.n_act} exceeds action_horizon {self.action_horizon}")

    @property
    def obs_keys(self) -> list[str]:
        return list(self.obs)

    @property
    def image_keys(self) -> list[str]:
        """The observation keys that hold camera images (`ObsSpec.is_image`), in the encoder's order."""
        return [k for k, o in self.obs.items() if o.is_image]

    def normalizer_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Normalizer keys ``obs/<key>`` and ``action`` -> (per-step shape, mode); discrete actions stay
        indices. Image keys are left out: the image encoder turns uint8 into [0, 1] itself."""
        specs = {f"obs/{k}": (o.shape, o.norm) for k, o in self.obs.items() if not o.is_image}
        specs["action"] = ((self.action.dim,), "identity" if self.action.discrete else self.action.norm)
        return specs

    def replace(self, **changes: Any) -> "PolicySpec":
        return dataclasses.replace(self, **changes)

    # -- JSON ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        a = self.action
        return {"obs": {k: {"shape": list(o.shape), "dtype": o.dtype, "norm": o.norm} for k, o in self.obs.items()},
                "action": {"dim": a.dim, "discrete_nvec": list(a.discrete_nvec),
                           "low": None if a.low is None else list(a.low),
                           "high": None if a.high is None else list(a.high), "norm": a.norm},
                "obs_horizon": self.obs_horizon, "action_horizon": self.action_horizon, "n_act": self.n_act,
                "temporal_ensemble": self.temporal_ensemble, "head": self.head,
                "head_config": dict(self.head_config), "encoder_config": dict(self.encoder_config)}

    @classmethod
    def from_json(cls, data: Any, where: str = "policy description") -> "PolicySpec":
        """From `to_json`'s layout, or the ``policy`` section of an ``imitate-run/1`` config.json.

        Raises:
            ImitateError: naming ``where`` and the field, for a missing or malformed field.
        """
        from imitate.formats import require

        if not isinstance(data, dict):
            raise ImitateError(f"{where}: the policy section must be an object, found {type(data).__name__}")
        if "obs" not in data and "obs_keys" in data:
            data = _from_run_v1(data, where)
        obs = require(data, "obs", dict, where)
        act = require(data, "action", dict, where)
        try:
            obs_specs = {str(k): ObsSpec(_shape(require(v, "shape", list, f"{where}: obs {k!r}")),
                                         str(v.get("dtype", "float32")), str(v.get("norm", "meanstd")))
                         for k, v in obs.items() if _is_obj(v, f"{where}: obs {k!r}")}
            bounds = {b: None if act.get(b) is None else tuple(float(x) for x in act[b]) for b in ("low", "high")}
            action = ActionSpec(int(require(act, "dim", int, f"{where}: action")),
                                tuple(int(n) for n in act.get("discrete_nvec") or ()), bounds["low"], bounds["high"],
                                str(act.get("norm", "minmax")))
            te = data.get("temporal_ensemble")
            return cls(obs_specs, action, *(int(require(data, k, int, where)) for k in ("obs_horizon", "action_horizon",
                                                                                       "n_act")),
                       str(require(data, "head", str, where)), dict(data.get("head_config") or {}),
                       dict(data.get("encoder_config") or {}), None if te is None else float(te))
        except (TypeError, ValueError) as e:
            raise ImitateError(f"{where}: malformed ({e})") from None


def _is_obj(value: Any, where: str) -> bool:
    if not isinstance(value, dict):
        raise ImitateError(f"{where}: must be an object with 'shape', found {type(value).__name__}")
    return True


def _shape(values: list) -> tuple[int, ...]:
    if any(isinstance(d, bool) or not isinstance(d, int) for d in values):
        raise ValueError(f"shape {values} must hold ints")
    return tuple(values)


def _from_run_v1(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``imitate-run/1`` policy section (obs_keys, obs_shapes, action_dim, normalizer, and the
    autoregressive head's ``discrete_nvec``) in `PolicySpec.to_json`'s layout."""
    from imitate.formats import require

    keys = require(data, "obs_keys", list, where)
    shapes = require(data, "obs_shapes", dict, where)
    norm = require(data, "normalizer", dict, where)
    missing = [k for k in keys if k not in shapes]
    if missing:
        raise ImitateError(f"{where}: observation key(s) {missing} have no entry in 'obs_shapes'")
    head_config = dict(data.get("head_config") or {})
    nvec = list(head_config.pop("discrete_nvec", None) or ())
    return {"obs": {k: {"shape": shapes[k], "norm": (norm.get(f"obs/{k}") or {}).get("mode", "meanstd")} for k in keys},
            "action": {"dim": require(data, "action_dim", int, where), "discrete_nvec": nvec,
                       "norm": (norm.get("action") or {}).get("mode", "minmax")},
            **{k: data.get(k) for k in ("obs_horizon", "action_horizon", "n_act", "temporal_ensemble", "head")},
            "head_config": head_config, "encoder_config": data.get("encoder_config") or {}}
