"""Policy heads: interchangeable distributions over normalized action chunks.

    head = make_head("diffusion", feature_dim=64, action_dim=2, action_horizon=16, num_inference_steps="8")
    loss, info = head.loss(features, action, mask)   # features (B, F), action (B, Ta, A), mask (B, Ta)
    chunk = head.sample(features, generator)         # (B, Ta, A)

Importing the package is light (no torch): the names below load the heads on first use, and
`load_heads()` registers every head shipped with the package; `available_heads()` lists them.
`policy_heads.fields` (typed config fields) never imports torch.
"""

import importlib

#: The modules of the shipped heads, simplest first (the registration order).
HEAD_MODULES = ("deterministic", "gaussian", "mixture", "autoregressive", "diffusion", "flow")
_FROM_BASE = ("PolicyHead", "available_heads", "config_from_dict", "config_to_dict", "get_head_class", "make_head",
              "registered_heads")
_CLASSES = {"DeterministicHead": "deterministic", "GaussianHead": "gaussian", "MixtureHead": "mixture",
            "AutoregressiveHead": "autoregressive", "DiffusionHead": "diffusion", "FlowHead": "flow"}

__all__ = [*_FROM_BASE, *_CLASSES, "load_heads"]


def load_heads() -> None:
    """Import (and so register) every shipped head."""
    for module in HEAD_MODULES:
        importlib.import_module(f"policy_heads.{module}")


def __getattr__(name: str):
    if name in _FROM_BASE:
        load_heads()
        return getattr(importlib.import_module("policy_heads.base"), name)
    if name in _CLASSES:
        return getattr(importlib.import_module(f"policy_heads.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'policy_heads' has no attribute {name!r}")
