"""Camera frames into the float tensors an image trunk reads, with augmentation while training.

    uint8 (B, To, H, W, C) --/255, to (B, To, C, H, W)--> training: random crop (from the frame padded by
    ``random_shift`` pixels) and brightness/contrast jitter; evaluation: centre crop --> (B, To, C, S, S)

Every sample of the batch gets its own crop offset and jitter factors, the same for its To steps (the
history stays aligned). It is batch-wise (one gather for the crops, no Python loop over samples) and
draws its random numbers from torch's default CPU generator, which the trainer seeds and saves in its
checkpoints, so that a resumed run is bit-exact. In evaluation mode (``module.eval()``: the EMA policy,
rollouts, `Policy.predict_chunk` of a loaded policy, exports) the crop is the centred one and nothing is
random: the output does not depend on any generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def crop_size_for(height: int, width: int, crop_size: int) -> int:
    """The crop's side: ``crop_size``, or round(0.9 * min(height, width)) for 0 (84 -> 76)."""
    side = crop_size or int(round(0.9 * min(height, width)))
    return max(1, min(side, height, width))


def gather_crops(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops of side ``size`` at per-sample offsets: x (B, K, H, W), top and left (B,) -> (B, K, size, size)."""
    steps = torch.arange(size, device=x.device)
    rows = (top[:, None] + steps)[:, :, None]                         # (B, S, 1)
    cols = (left[:, None] + steps)[:, None, :]                        # (B, 1, S)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]  # (B, 1, 1)
    return x[batch, :, rows, cols].permute(0, 3, 1, 2)                # (B, S, S, K) -> (B, K, S, S)


class ImageAugment(nn.Module):
    """uint8 frames (B, To, H, W, C) -> float (B, To, C, S, S) in [0, 1]: crop (random while training,
    centred in evaluation), optional random shift and colour jitter while training. No parameters."""

    def __init__(self, height: int, width: int, crop_size: int = 0, random_shift: int = 0, color_jitter: float = 0.0):
        super().__init__()
        self.height, self.width = height, width
        self.size = crop_size_for(height, width, crop_size)
        self.random_shift, self.color_jitter = int(random_shift), float(color_jitter)

    def extra_repr(self) -> str:
        return (f"{self.height}x{self.width} -> {self.size}x{self.size}, random_shift={self.random_shift}, "
                f"color_jitter={self.color_jitter}")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = frames.shape
        x = frames.to(torch.float32).div(255.0).permute(0, 1, 4, 2, 3)      # (B, To, C, H, W)
        s = self.size
        if not self.training:
            top, left = (h - s) // 2, (w - s) // 2
            return x[..., top:top + s, left:left + s]
        x = x.reshape(b, t * c, h, w)
        p = self.random_shift
        if p:
            x = F.pad(x, (p, p, p, p), mode="replicate")
        # offsets on the CPU generator (the one the trainer seeds and checkpoints), then to the device
        top = torch.randint(0, h + 2 * p - s + 1, (b,)).to(x.device)
        left = torch.randint(0, w + 2 * p - s + 1, (b,)).to(x.device)
        x = gather_crops(x, top, left, s).reshape(b, t, c, s, s)
        if self.color_jitter:
            lo, width = 1.0 - self.color_jitter, 2.0 * self.color_jitter
            factors = (lo + width * torch.rand(2, b)).to(x.device)[:, :, None, None, None, None]
            mean = x.mean(dim=(2, 3, 4), keepdim=True)                      # per sample and step
            x = ((x - mean) * factors[1] + mean) * factors[0]               # contrast, then brightness
            x = x.clamp(0.0, 1.0)
        return x
