"""Denoiser networks shared by the diffusion and flow heads.

Both map a noisy chunk, its time and the observation features to a chunk of the same shape (the
predicted noise or clean chunk for diffusion, the velocity for flow matching):

    denoiser(x (B, Ta, A), t (B,), features (B, F)) -> (B, Ta, A)

t is the diffusion timestep (an integer in [0, T)) or the flow time scaled to [0, 1000]; either
enters through the same sinusoidal embedding. `build_denoiser` makes one from a head's settings.

MLPDenoiser    short chunks: [flattened chunk, timestep embedding, features] -> MLP -> chunk.
TemporalUNet   longer chunks: a 1-D U-Net along time (channels = A, length = Ta). Every residual
               block is conditioned by FiLM: a per-channel scale and bias predicted from
               [timestep embedding, features].

    length:   L ------------------------------------------------> L
    channels: A -> d0 --skip------------------------------> d0 -> A
                    |down                             up|
                   L/2: d1 --skip---------------> d1
                          |down             up|
                         L/4: d2 -- middle -- d2

Down-sampling is a stride-2 convolution; up-sampling repeats each step twice, then convolves.
The sequence is edge-padded to a multiple of 2^(levels - 1) and cropped back, so any Ta works.

Every U-Net convolution is a `_Conv1d`: an nn.Conv1d (same parameters, same result) that on CPU
computes outputs of at most `MATMUL_MAX_LENGTH` steps as one matrix product over the unfolded
windows. For such short sequences oneDNN's direct convolution is several times slower (a 4-step,
1024-channel layer: about 3x in training, 2.5x at batch 1); from 16 steps on it is as fast or
faster. benchmarks/diffusion_vs_reference.py measures the whole network. Graphs traced for export
(`_exporting`) write such a convolution instead as one matrix product with a banded weight built
from the kernel, which onnxruntime folds into a constant and computes about 2x faster than its
Conv at batch 64, or keep the built-in convolution where that matrix would be large (8 steps, see
`BANDED_MAX_GROWTH`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from policy_heads.base import mlp


DENOISERS = ("auto", "mlp", "unet")
"""Values of a head's `denoiser` setting: "auto" picks the U-Net when Ta >= 8, else the MLP."""


def check_denoiser_settings(head: str, denoiser: str, down_dims: tuple[int, ...], n_groups: int, kernel_size: int,
                            time_embed_dim: int) -> None:
    """ValueError naming `head` and the config field when the denoiser settings cannot build a network."""
    def fail(message: str) -> None:
        raise ValueError(f"{head} head: config {message}")

    if denoiser not in DENOISERS:
        fail(f"field 'denoiser' must be 'auto', 'mlp' or 'unet', got {denoiser!r}")
    if not down_dims or any(d % n_groups for d in down_dims):
        fail(f"field 'n_groups' ({n_groups}) must divide every entry of 'down_dims' {down_dims}")
    if kernel_size % 2 == 0:
        fail(f"field 'kernel_size' must be odd, got {kernel_size}")
    if time_embed_dim < 2:
        fail(f"field 'time_embed_dim' must be >= 2, got {time_embed_dim}")


def build_denoiser(denoiser: str, action_dim: int, action_horizon: int, feature_dim: int, *, mlp_hidden_dims: tuple[int, ...],
                   down_dims: tuple[int, ...], kernel_size: int, n_groups: int, time_embed_dim: int) -> tuple[str, nn.Module]:
    """The denoiser network ("mlp", "unet", or "auto": unet when action_horizon >= 8) and its resolved kind."""
    kind = denoiser if denoiser != "auto" else ("unet" if action_horizon >= 8 else "mlp")
    if kind == "unet":
        return kind, TemporalUNet(action_dim, action_horizon, feature_dim, down_dims, kernel_size, n_groups, time_embed_dim)
    return kind, MLPDenoiser(action_dim, action_horizon, feature_dim, mlp_hidden_dims, time_embed_dim)


def sinusoidal_frequencies(dim: int, device: torch.device | str | None = None) -> Tensor:
    """The dim // 2 frequencies of `sinusoidal_embedding`, from 1 down to 1/10000 (float32)."""
    half = dim // 2
    return torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half - 1, 1))


def sinusoidal_embedding(t: Tensor, dim: int, frequencies: Tensor | None = None) -> Tensor:
    """Sine/cosine embedding (B, dim) of timesteps t (B,); `frequencies` (dim // 2,) as sinusoidal_frequencies gives."""
    if frequencies is None:
        frequencies = sinusoidal_frequencies(dim, t.device)
    angles = t.to(torch.float32).unsqueeze(-1) * frequencies
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return embedding if dim % 2 == 0 else F.pad(embedding, (0, 1))


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of the timestep followed by a small MLP: t (B,) -> (B, dim).

    The frequencies are computed once (a buffer outside the state dict): a sampler calls this at
    every step, and at batch 1 the per-call cost of recomputing them is visible."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("frequencies", sinusoidal_frequencies(dim), persistent=False)
        self.net = nn.Sequential(nn.Linear(dim, 4 * dim), _Mish(), nn.Linear(4 * dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.net(sinusoidal_embedding(t, self.dim, self.frequencies))


class MLPDenoiser(nn.Module):
    """MLP over the flattened noisy chunk, the timestep embedding and the features."""

    def __init__(self, action_dim: int, action_horizon: int, feature_dim: int, hidden_dims: tuple[int, ...], time_embed_dim: int) -> None:
        super().__init__()
        self.action_horizon = action_horizon
        self.time = TimestepEmbedding(time_embed_dim)
        chunk = action_horizon * action_dim
        self.net = mlp(chunk + time_embed_dim + feature_dim, hidden_dims, chunk)

    def forward(self, x: Tensor, t: Tensor, features: Tensor) -> Tensor:
        """x (B, Ta, A), t (B,), features (B, F) -> (B, Ta, A)."""
        inputs = torch.cat([rearrange(x, "b t a -> b (t a)"), self.time(t), features], dim=-1)
        return rearrange(self.net(inputs), "b (t a) -> b t a", t=self.action_horizon)


MATMUL_MAX_LENGTH = 8
"""Longest output (steps) that `_Conv1d` computes as a matrix product on CPU."""

BANDED_MAX_GROWTH = 4
"""Exported graphs compute a short convolution as one banded matrix product when that matrix has at
most this many times the entries of the kernel (input steps * output steps <= this * kernel size)."""


class _Conv1d(nn.Conv1d):
    """nn.Conv1d with zero padding, computed as unfold + matrix product for short outputs on CPU.

    While exporting, short convolutions become one banded matrix product (`_banded`) when
    ``banded_export`` is true: right for onnxruntime, which folds the banded matrix into a constant
    once; a torch.export program would rebuild it at every call, so its exporter turns it off."""

    banded_export = True

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C_in, L) -> (B, C_out, L_out)."""
        (k,), (stride,), (pad,) = self.kernel_size, self.stride, self.padding
        length = (x.shape[-1] + 2 * pad - k) // stride + 1
        if x.device.type != "cpu" or length > MATMUL_MAX_LENGTH:
            return super().forward(x)
        if _exporting():
            small = x.shape[-1] * length <= BANDED_MAX_GROWTH * k
            return self._banded(x, length) if self.banded_export and small else super().forward(x)
        windows = F.pad(x, (pad, pad)).unfold(2, k, stride)  # (B, C_in, L_out, k)
        columns = windows.transpose(1, 2).reshape(x.shape[0] * length, -1)  # (B * L_out, C_in * k)
        out = F.linear(columns, self.weight.flatten(1), self.bias)  # (B * L_out, C_out)
        return out.view(x.shape[0], length, -1).transpose(1, 2).contiguous()

    def _banded(self, x: Tensor, length: int) -> Tensor:
        """The convolution as x (B, C_in * L) @ banded.T with banded (C_out * L_out, C_in * L):
        banded[o * L_out + t, i * L + s] = weight[o, i, s - stride * t + pad] where that tap exists.
        The banded matrix depends on the parameters only, so exported graphs compute it once."""
        (k,), (stride,), (pad,) = self.kernel_size, self.stride, self.padding
        c_in, steps = x.shape[1], x.shape[-1]
        taps = torch.arange(steps).view(steps, 1) - stride * torch.arange(length).view(1, length) + pad
        shift = (taps == torch.arange(k).view(k, 1, 1)).to(self.weight.dtype)  # (k, L, L_out): tap j joins s to t
        banded = torch.einsum("oij,jst->otis", self.weight, shift).reshape(-1, c_in * steps)
        out = (x.reshape(x.shape[0], c_in * steps) @ banded.t()).view(x.shape[0], -1, length)
        return out if self.bias is None else out + self.bias.view(-1, 1)


def _exporting() -> bool:
    """True while torch.export or torch.onnx traces (see `_Conv1d`)."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


class _Mish(nn.Mish):
    """nn.Mish; exported graphs write it as x * n / (n + 2) with n = e^x (e^x + 2), which equals
    x * tanh(softplus(x)), with x capped at 20 inside the exponential (from there on Mish is x in
    float32). onnxruntime runs the ONNX Mish as Softplus, Tanh and Mul, several times slower."""

    def forward(self, x: Tensor) -> Tensor:
        if not _exporting():
            return F.mish(x)
        e = torch.exp(x.clamp(max=20.0))
        n = e * (e + 2)
        return x * n / (n + 2)


class _ConvNormMish(nn.Sequential):
    """Conv1d (same length) -> GroupNorm -> Mish on (B, C, L)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            _Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            _Mish(),
        )


class _FiLMResidualBlock(nn.Module):
    """Two conv blocks; between them the features are scaled and shifted per channel from cond."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.first = _ConvNormMish(in_channels, out_channels, kernel_size, n_groups)
        self.second = _ConvNormMish(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(_Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.skip = _Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (B, C_in, L), cond (B, C_cond) -> (B, C_out, L)."""
        scale, shift = rearrange(self.film(cond), "b (two c) -> two b c 1", two=2)
        h = self.first(x) * (1 + scale) + shift
        return self.second(h) + self.skip(x)


class TemporalUNet(nn.Module):
    """1-D U-Net over the action sequence with FiLM conditioning in every residual block."""

    def __init__(
        self,
        action_dim: int,
        action_horizon: int,
        feature_dim: int,
        down_dims: tuple[int, ...],
        kernel_size: int,
        n_groups: int,
        time_embed_dim: int,
    ) -> None:
        super().__init__()
        self.multiple = 2 ** (len(down_dims) - 1)
        self.time = TimestepEmbedding(time_embed_dim)
        cond = time_embed_dim + feature_dim

        def block(c_in: int, c_out: int) -> _FiLMResidualBlock:
            return _FiLMResidualBlock(c_in, c_out, cond, kernel_size, n_groups)

        channels = [action_dim, *down_dims]
        self.down = nn.ModuleList(nn.ModuleList([block(c_in, c_out), block(c_out, c_out)]) for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.downsample = nn.ModuleList(_Conv1d(c, c, 3, stride=2, padding=1) for c in down_dims[:-1])
        self.middle = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        # Up level i brings dims[i + 1] back to the length of level i and merges that level's skip.
        self.upsample = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _Conv1d(c, c, 3, padding=1)) for c in down_dims[1:]
        )
        self.up = nn.ModuleList(
            nn.ModuleList([block(c_deep + c_skip, c_skip), block(c_skip, c_skip)]) for c_skip, c_deep in zip(down_dims[:-1], down_dims[1:])
        )
        self.final = nn.Sequential(
            _ConvNormMish(down_dims[0], down_dims[0], kernel_size, n_groups), _Conv1d(down_dims[0], action_dim, 1)
        )

    def forward(self, x: Tensor, t: Tensor, features: Tensor) -> Tensor:
        """x (B, Ta, A), t (B,), features (B, F) -> (B, Ta, A)."""
        length = x.shape[1]
        padded = -length % self.multiple
        h = rearrange(x, "b t a -> b a t")
        if padded:
            h = F.pad(h, (0, padded), mode="replicate")
        cond = torch.cat([self.time(t), features], dim=-1)

        skips = []
        for level, (first, second) in enumerate(self.down):
            h = second(first(h, cond), cond)
            if level < len(self.downsample):
                skips.append(h)
                h = self.downsample[level](h)
        for middle in self.middle:
            h = middle(h, cond)
        for level in reversed(range(len(self.up))):
            first, second = self.up[level]
            h = torch.cat([self.upsample[level](h), skips.pop()], dim=1)
            h = second(first(h, cond), cond)
        return rearrange(self.final(h)[..., :length], "b a t -> b t a")
