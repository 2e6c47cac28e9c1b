"""Policy heads: interchangeable distributions over normalized action chunks.

    head = make_head("diffusion", feature_dim=64, action_dim=2, action_horizon=16, num_inference_steps="8")
    loss, info = head.loss(features, action, mask)   # features (B, F), action (B, Ta, A), mask (B, Ta)
    chunk = head.sample(features, generator)         # (B, Ta, A)

Importing the package registers every head shipped with it; `available_heads()` lists them.
"""

from policy_heads.base import (
    PolicyHead,
    available_heads,
    config_from_dict,
    config_to_dict,
    get_head_class,
    make_head,
)
from policy_heads.deterministic import DeterministicHead
from policy_heads.gaussian import GaussianHead
from policy_heads.mixture import MixtureHead
from policy_heads.autoregressive import AutoregressiveHead
from policy_heads.diffusion import DiffusionHead
from policy_heads.flow import FlowHead

__all__ = [
    "AutoregressiveHead",
    "DeterministicHead",
    "DiffusionHead",
    "FlowHead",
    "GaussianHead",
    "MixtureHead",
    "PolicyHead",
    "available_heads",
    "config_from_dict",
    "config_to_dict",
    "get_head_class",
    "make_head",
]
