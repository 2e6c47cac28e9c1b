"""The policy-head contract and the registry of heads.

A head turns encoded observations into a distribution over normalized action chunks:

    features (B, F) --head--> action chunk (B, Ta, A), every continuous value in [-1, 1]

    loss(features, action, mask, weight)  training objective, averaged over real (unmasked) entries;
                                   with weight (B,): a weighted mean over rows (`weighted_mean`)
    sample(features, generator)    one fresh chunk per row, all randomness from `generator`
    noise_spec()                   the randomness of one sample: name -> (shape per row, distribution)
    sample_with_noise(features, noise)  the sampler on explicit noise (B, *shape) per name; deterministic
    log_prob(features, action)     (B,) where the head defines one (`has_log_prob`)
    mode(features)                 the most likely / mean chunk where one exists (`has_mode`)
    prepare(actions)               optional data-dependent set-up before training
    cpu_defaults(), rl_defaults()  Config overrides: sized for a CPU; for RL from scratch (classmethods)
    discrete_actions, step_cost    class attributes: models Discrete action spaces; relative step cost

Every concrete head registers itself by name when its class is defined:

    class GaussianHead(PolicyHead, name="gaussian"): ...

and `make_head("gaussian", feature_dim, action_dim, action_horizon, min_log_std="-4")` builds one,
converting string overrides (from a command line `--set key=value`) to the field types.

Explicit noise: a head implements `noise_spec` and `sample_with_noise`; the shared `sample` draws
the tensors that `noise_spec()` describes (`draw_noise`, in the spec's order) and hands them to
`sample_with_noise`, so the same noise gives the same chunk in PyTorch and in an exported model
(imitate.export), where the noise is an input of the graph.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from policy_heads.fields import config_to_dict, convert_fields, convert_value  # noqa: F401 (re-exported)

_REGISTRY: dict[str, type[PolicyHead]] = {}

NOISE_DISTRIBUTIONS = ("normal", "uniform", "exponential")
"""Distributions a noise input may have: standard normal, uniform on [0, 1), exponential with rate 1."""


class PolicyHead(nn.Module):
    """Base class of every head; see the module docstring for the contract."""

    name: ClassVar[str]
    has_log_prob: ClassVar[bool] = False
    has_mode: ClassVar[bool] = False
    discrete_actions: ClassVar[bool] = False
    """True for a head that also models discrete action spaces: its Config then has a field
    ``discrete_nvec`` (categories per action dimension), which `make_head` fills from the action space."""
    step_cost: ClassVar[float] = 1.0
    """Rough cost of a training step relative to the deterministic head (schedulers start costly runs first)."""
    Config: ClassVar[type]

    @classmethod
    def cpu_defaults(cls) -> dict[str, str]:
        """Config overrides that size the head for a CPU (chosen when no GPU is present); default: none."""
        return {}

    @classmethod
    def rl_defaults(cls) -> dict[str, Any]:
        """Config overrides for a policy trained by RL from scratch (small networks); default: none."""
        return {}

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        abstract = [n for n in dir(cls) if getattr(getattr(cls, n, None), "__isabstractmethod__", False)]
        if name is None:
            if abstract:
                return
            raise TypeError(
                f"policy head {cls.__module__}.{cls.__qualname__} is concrete but has no name: "
                f"declare it as `class {cls.__name__}(PolicyHead, name=\"...\")`"
            )
        if abstract:
            raise TypeError(f"policy head '{name}' ({cls.__qualname__}) leaves abstract methods {abstract}")
        if not (isinstance(cls.__dict__.get("Config"), type) and dataclasses.is_dataclass(cls.Config)):
            raise TypeError(f"policy head '{name}' ({cls.__qualname__}) must define its own `Config` dataclass")
        previous = _REGISTRY.get(name)
        same_class = previous is not None and (previous.__module__, previous.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if previous is not None and not same_class:
            raise TypeError(
                f"policy head name '{name}' is already registered by "
                f"{previous.__module__}.{previous.__qualname__}; choose another name for {cls.__qualname__}"
            )
        cls.name = name
        _REGISTRY[name] = cls

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Any = None) -> None:
        super().__init__()
        for label, value in (("feature_dim", feature_dim), ("action_dim", action_dim), ("action_horizon", action_horizon)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.name} head: {label} must be a positive int, got {value!r}")
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} head: config must be a {self.Config.__qualname__}, got {type(config).__name__}")
        self.feature_dim = feature_dim
        self.action_dim = action_dim
        self.action_horizon = action_horizon
        self.config = config

    @abstractmethod
    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss.

        features (B, F); action (B, Ta, A) normalized; mask (B, Ta) bool, True = real step, False =
        padding after the episode end; weight (B,) finite, >= 0, one per row (None: every row 1).
        Returns the scalar loss and a dict of detached 0-dim tensors to log.

        The loss is a mean over the real entries of the batch (an entry is a step, a step's action
        value or a token, as the head defines its per-entry loss l_it); with weights each row counts
        w_i times (see `weighted_mean`):

            loss = sum_i w_i sum_t m_it l_it / sum_i w_i sum_t m_it

        With weight None the computation is exactly the unweighted one; with all-ones weights the
        result is the same number. Advantage-weighted regression (`imitate.algos`) passes exp(beta * A).
        """

    @torch.no_grad()
    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One fresh action chunk (B, Ta, A) per row of features (B, F); no gradient is tracked.

        `generator` (on the features' device) is the only source of randomness: `draw_noise` draws
        the head's `noise_spec` from it and `sample_with_noise` turns that noise into the chunk, the
        same function an exported graph runs.
        """
        self._check_features(features)
        return self.sample_with_noise(features, self.draw_noise(len(features), generator, features.device, features.dtype))

    def noise_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """The randomness of one sample: name -> (shape of one row, distribution in NOISE_DISTRIBUTIONS).

        Empty for a head without randomness. `draw_noise` draws the entries in this order.
        """
        return {}

    def draw_noise(self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """Noise for `sample_with_noise`: name -> (batch, *shape), drawn from `generator` in spec order."""
        noise = {}
        for name, (shape, distribution) in self.noise_spec().items():
            size = (batch, *shape)
            if distribution == "normal":
                noise[name] = torch.randn(size, generator=generator, device=device, dtype=dtype)
            elif distribution == "uniform":
                noise[name] = torch.rand(size, generator=generator, device=device, dtype=dtype)
            elif distribution == "exponential":
                noise[name] = torch.empty(size, device=device, dtype=dtype).exponential_(generator=generator)
            else:
                raise ValueError(f"{self.name} head: noise {name!r} has unknown distribution {distribution!r}; "
                                 f"choose one of {NOISE_DISTRIBUTIONS}")
        return noise

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """Chunk (B, Ta, A) for features (B, F) and explicit noise {name: (B, *shape)} (see `noise_spec`).

        Deterministic given its inputs; `sample` is this function on noise drawn by `draw_noise`.
        """
        raise NotImplementedError(f"the '{self.name}' head has no sample_with_noise(); it cannot be exported")

    def _check_noise(self, features: Tensor, noise: dict[str, Tensor]) -> None:
        for name, (shape, _) in self.noise_spec().items():
            if name not in noise:
                raise ValueError(f"{self.name} head: noise lacks {name!r}; it needs {list(self.noise_spec())}")
            if tuple(noise[name].shape[1:]) != tuple(shape) or noise[name].dim() != len(shape) + 1:
                raise ValueError(f"{self.name} head: noise {name!r} must have shape (B, {', '.join(map(str, shape))}), "
                                 f"got {tuple(noise[name].shape)}")

    def log_prob(self, features: Tensor, action: Tensor) -> Tensor:
        """Log-probability (B,) of action (B, Ta, A) given features (B, F)."""
        with_one = [n for n, c in sorted(_REGISTRY.items()) if c.has_log_prob]
        raise NotImplementedError(
            f"the '{self.name}' head defines no log-probability (has_log_prob=False); heads that do: {with_one}"
        )

    def mode(self, features: Tensor) -> Tensor:
        """The most likely (or mean) chunk (B, Ta, A) for features (B, F)."""
        with_one = [n for n, c in sorted(_REGISTRY.items()) if c.has_mode]
        raise NotImplementedError(
            f"the '{self.name}' head defines no mode (has_mode=False); use sample() with a seeded generator, "
            f"or a head that has one: {with_one}"
        )

    def prepare(self, actions: Tensor) -> None:
        """Data-dependent set-up before training from all normalized actions (N, A); default: nothing."""

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, action_dim={self.action_dim}, action_horizon={self.action_horizon}"

    # Shared checks and reductions -------------------------------------------------------------

    def _check_features(self, features: Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"{self.name} head: features must have shape (B, {self.feature_dim}), got {tuple(features.shape)}"
            )

    def _check_action(self, features: Tensor, action: Tensor) -> None:
        self._check_features(features)
        expected = (features.shape[0], self.action_horizon, self.action_dim)
        if tuple(action.shape) != expected:
            raise ValueError(f"{self.name} head: action must have shape (B, Ta, A) = {expected}, got {tuple(action.shape)}")

    def _check_batch(self, features: Tensor, action: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Validate shapes; return the action with padded steps overwritten by the last real step.

        Overwriting makes the loss independent of whatever the padding holds (even inf or nan).
        """
        self._check_action(features, action)
        if mask is None:
            return action, None
        if tuple(mask.shape) != tuple(action.shape[:2]) or mask.dtype != torch.bool:
            raise ValueError(
                f"{self.name} head: mask must be a bool tensor of shape (B, Ta) = {tuple(action.shape[:2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        return fill_padding(action, mask), mask

    def _check_weight(self, features: Tensor, weight: Tensor | None) -> Tensor | None:
        """Validate per-row weights (B,) (floating point); return them in the features' dtype."""
        if weight is None:
            return None
        if not torch.is_tensor(weight) or tuple(weight.shape) != (features.shape[0],) or not weight.is_floating_point():
            raise ValueError(f"{self.name} head: weight must be a float tensor of shape (B,) = ({features.shape[0]},), "
                             f"got {getattr(weight, 'dtype', type(weight).__name__)} "
                             f"{tuple(getattr(weight, 'shape', ()))}")
        return weight.to(features.dtype)


def fill_padding(action: Tensor, mask: Tensor) -> Tensor:
    """Copy of action (B, Ta, A) where each padded step (mask (B, Ta) False) repeats the last real step.

    Steps before the first real step of a row become zero. This is the edge padding the data
    sampler applies after an episode end, so a head sees the same kind of chunk in both cases.
    """
    steps = torch.arange(action.shape[1], device=action.device)
    last_real = torch.where(mask, steps, -1).cummax(dim=1).values  # (B, Ta)
    gathered = action.gather(1, last_real.clamp_min(0).unsqueeze(-1).expand_as(action))
    return torch.where((last_real >= 0).unsqueeze(-1), gathered, torch.zeros_like(action))


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of values (B, N) over the entries where mask (B, N) is True (all when mask is None)."""
    if mask is None:
        return values.mean()
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() / mask.sum().clamp_min(1).to(values.dtype)


def weighted_mean(values: Tensor, mask: Tensor | None, weight: Tensor | None) -> Tensor:
    """Mean of values (B, N) over the real entries (mask (B, N) True; all when None), row i counting
    weight[i] times: sum_i w_i sum_n m_in v_in / sum_i w_i sum_n m_in (0 when that sum is 0).

    With weight None this is `masked_mean` itself; with all-ones weights it gives the same number
    (the products by 1 are exact and the sums run in the same order).
    """
    if weight is None:
        return masked_mean(values, mask)
    w = weight.to(values.dtype).unsqueeze(1)
    if mask is None:
        total = (values * w).sum()
        count = w.sum() * values.shape[1]
    else:
        kept = torch.where(mask, values, torch.zeros_like(values))
        total = (kept * w).sum()
        count = (mask.to(values.dtype) * w).sum()
    return total / torch.where(count > 0, count, torch.ones_like(count))


def step_mask_to_entries(mask: Tensor | None, action_dim: int) -> Tensor | None:
    """Expand a step mask (B, Ta) to the flattened chunk entries (B, Ta * A), step-major."""
    if mask is None:
        return None
    return mask.repeat_interleave(action_dim, dim=1)


def mlp_trunk(in_dim: int, hidden_dims: tuple[int, ...], activation: type[nn.Module] = nn.Mish) -> tuple[nn.Sequential, int]:
    """Hidden layers in_dim -> *hidden_dims, each followed by `activation`, and their output width."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    return nn.Sequential(*layers), in_dim


def mlp(in_dim: int, hidden_dims: tuple[int, ...], out_dim: int, activation: type[nn.Module] = nn.Mish) -> nn.Sequential:
    """Linear layers in_dim -> *hidden_dims -> out_dim with `activation` between them."""
    trunk, width = mlp_trunk(in_dim, hidden_dims, activation)
    return nn.Sequential(*trunk, nn.Linear(width, out_dim))


# Registry --------------------------------------------------------------------------------------


def registered_heads() -> list[str]:
    """Registered head names in the order they were registered (the shipped heads first, simplest first)."""
    import policy_heads

    policy_heads.load_heads()
    return list(_REGISTRY)


def available_heads() -> list[str]:
    """Registered head names, sorted."""
    return sorted(registered_heads())


def get_head_class(name: str) -> type[PolicyHead]:
    """The head class registered under `name`; ValueError listing the available ones otherwise."""
    if name not in _REGISTRY:
        registered_heads()
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy head '{name}'; available heads: {', '.join(available_heads())}")
    return _REGISTRY[name]


def make_head(name: str, feature_dim: int, action_dim: int, action_horizon: int,
              discrete_nvec: tuple[int, ...] = (), **config_overrides: Any) -> PolicyHead:
    """Build the head `name` with its default Config updated by `config_overrides`.

    Override values may be strings (from `--set key=value`); they are converted to the field type.
    ``discrete_nvec`` (categories per action dimension) makes the actions discrete; only heads with
    ``discrete_actions`` model them.
    """
    cls = get_head_class(name)
    try:
        discrete_nvec = convert_value(discrete_nvec, tuple[int, ...])
    except (TypeError, ValueError) as error:
        raise ValueError(f"policy head '{name}': discrete_nvec expects ints, got {discrete_nvec!r} ({error})") from None
    if discrete_nvec:
        if not cls.discrete_actions:
            with_one = [n for n in registered_heads() if _REGISTRY[n].discrete_actions]
            raise ValueError(f"policy head '{name}' models continuous actions only; discrete actions "
                             f"(categories {tuple(discrete_nvec)}) need one of: {', '.join(with_one)}")
        config_overrides = {**config_overrides, "discrete_nvec": discrete_nvec}
    config = config_from_dict(cls, config_overrides)
    return cls(feature_dim, action_dim, action_horizon, config)


def config_from_dict(cls: type[PolicyHead], values: dict[str, Any]) -> Any:
    """`cls.Config` from a (possibly partial) dict; missing fields keep their defaults.

    Strings are parsed into the field type (int, float, bool, str, tuple[...]); lists become tuples.
    An unknown field raises ValueError naming the field and the head.
    """
    return cls.Config(**convert_fields(cls.Config, values, f"policy head '{cls.name}'"))
