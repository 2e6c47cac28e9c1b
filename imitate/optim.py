"""The optimizer pieces that behaviour cloning (`imitate.train`) and PPO (`imitate.algos.ppo`) share.

    make_optimizer   Adam / AdamW, fused into one kernel per step where torch supports it
    lr_at            linear warm-up, then cosine decay to zero
    clip_grad_norm   global-norm gradient clipping for parameters on one device
    ema_update       the exponential moving average of the weights

`clip_grad_norm` and `ema_update` are the only places that use torch's multi-tensor kernels
(``torch._foreach_*``): on CPU, torch's `clip_grad_norm_` costs 0.34-0.44 ms per step against 0.16 ms
here, most of it grouping tensors by device (BENCHMARKS.md, trainer overhead).
"""
from __future__ import annotations

import math

import torch


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float = 0.0, kind: str = "adamw",
                   eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam (``kind="adam"``) or AdamW, fused into one kernel per step where torch supports it (CPU and
    CUDA), else multi-tensor."""
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[kind]
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=lr, weight_decay=weight_decay, eps=eps, foreach=True)


def lr_at(step: int, lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``lr``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their global norm is at most ``max_norm`` (0: no clipping); return
    the norm before clipping (inf or NaN when a gradient is not finite: then nothing is scaled)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm > 0:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


@torch.no_grad()
def ema_update(ema_params: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * params, for every pair at once."""
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
