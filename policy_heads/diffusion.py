"""Diffusion head: DDPM training, DDIM sampling of the whole action chunk.

Training (DDPM, diffusers' DDPMScheduler holds the schedule):

    x0 = action (B, Ta, A),  t ~ U{0, ..., T-1},  noise ~ N(0, I)
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise
    loss = || denoiser(x_t, t, features) - target ||^2,   target = noise ("epsilon") or x0 ("sample")

Sampling (DDIM with eta = 0, diffusers' DDIMScheduler built from the same betas, timesteps spaced
"trailing" so the first step sits at the noisiest timestep T-1):

    x = noise (B, Ta, A)
    for t in timesteps:                      # num_inference_steps of them, descending
        out = denoiser(x, t, features)
        x = scheduler.step(out, t, x)        # predicted x0 clipped to [-1, 1] when clip_sample
    return x clamped to [-1, 1]

Given the noise, sampling is deterministic: `_denoise(features, noise)` runs the loop on explicit
noise (`sample_with_noise`), and `sample` only draws that noise from the generator. There is no tractable likelihood
(`has_log_prob` False) and no mode (`has_mode` False): the DDIM output for zero noise is not the
most likely chunk, so the head does not pretend it is.

Denoiser: "mlp" (MLPDenoiser) or "unet" (TemporalUNet), "auto" picks the U-Net when Ta >= 8; the
networks live in policy_heads/denoisers.py, shared with the flow head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from policy_heads.base import PolicyHead, weighted_mean
from policy_heads.denoisers import build_denoiser, check_denoiser_settings


class DiffusionHead(PolicyHead, name="diffusion"):
    """Denoising diffusion over the action chunk, conditioned on the features."""

    has_log_prob = False
    has_mode = False
    step_cost = 2.0

    @classmethod
    def cpu_defaults(cls) -> dict[str, str]:
        return {"denoiser": "mlp"}

    @dataclass
    class Config:
        denoiser: str = "auto"
        """Denoiser network: "mlp", "unet", or "auto" (unet when Ta >= 8, else mlp)."""
        num_train_timesteps: int = 100
        """Number T of DDPM noise levels used in training."""
        num_inference_steps: int = 10
        """Number of DDIM steps when sampling (at most num_train_timesteps)."""
        beta_schedule: str = "squaredcos_cap_v2"
        """Noise schedule passed to diffusers ("squaredcos_cap_v2", "linear", "scaled_linear", ...)."""
        prediction_type: str = "sample"
        """What the denoiser predicts: "sample" (the clean chunk) or "epsilon" (the noise). "sample" is the
        default: with "epsilon" an MLP denoiser reached 0.16 / 0.24 success on Meta-World push / pick-place
        where "sample" reached 0.98 / 0.96 at the same budget (BENCHMARKS.md)."""
        clip_sample: bool = True
        """Clip the predicted clean chunk to [-1, 1] at every sampling step."""
        time_embed_dim: int = 128
        """Width of the timestep embedding."""
        mlp_hidden_dims: tuple[int, ...] = (256, 256, 256)
        """Hidden layer widths of the MLP denoiser."""
        down_dims: tuple[int, ...] = (64, 128, 256)
        """Channels of the U-Net levels, from full temporal resolution down."""
        kernel_size: int = 5
        """Temporal convolution kernel size of the U-Net (odd)."""
        n_groups: int = 8
        """GroupNorm groups in the U-Net (must divide every entry of down_dims)."""

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Config | None = None) -> None:
        super().__init__(feature_dim, action_dim, action_horizon, config)
        cfg = self.config
        self._validate(cfg)
        self.train_scheduler, self.inference_scheduler = _build_schedulers(cfg)
        self.ddim_steps = self._ddim_steps()
        self.denoiser_kind, self.denoiser = build_denoiser(
            cfg.denoiser, action_dim, action_horizon, feature_dim, mlp_hidden_dims=cfg.mlp_hidden_dims,
            down_dims=cfg.down_dims, kernel_size=cfg.kernel_size, n_groups=cfg.n_groups, time_embed_dim=cfg.time_embed_dim,
        )

    @staticmethod
    def _validate(cfg: Config) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"diffusion head: config {message}")

        check_denoiser_settings("diffusion", cfg.denoiser, cfg.down_dims, cfg.n_groups, cfg.kernel_size, cfg.time_embed_dim)
        if cfg.prediction_type not in ("epsilon", "sample"):
            fail(f"field 'prediction_type' must be 'epsilon' or 'sample', got {cfg.prediction_type!r}")
        if not 1 <= cfg.num_inference_steps <= cfg.num_train_timesteps:
            fail(f"needs 1 <= num_inference_steps ({cfg.num_inference_steps}) <= num_train_timesteps ({cfg.num_train_timesteps})")

    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        action, mask = self._check_batch(features, action, mask)
        weight = self._check_weight(features, weight)
        batch = action.shape[0]
        noise = torch.randn_like(action)
        t = torch.randint(0, self.config.num_train_timesteps, (batch,), device=action.device)
        noisy = self.train_scheduler.add_noise(action, noise, t)
        target = noise if self.config.prediction_type == "epsilon" else action
        per_step = (self.denoiser(noisy, t, features) - target).square().mean(-1)  # (B, Ta)
        loss = weighted_mean(per_step, mask, weight)
        return loss, {"mse": loss.detach()}

    def noise_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {"normal": ((self.action_horizon, self.action_dim), "normal")}

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """DDIM from noise["normal"] (B, Ta, A); see `_denoise`."""
        self._check_features(features)
        self._check_noise(features, noise)
        return self._denoise(features, noise["normal"])

    def _denoise(self, features: Tensor, noise: Tensor) -> Tensor:
        """DDIM from the given noise (B, Ta, A) to a chunk (B, Ta, A) in [-1, 1]; deterministic.

        Each step is diffusers' DDIMScheduler.step with eta = 0, its coefficients taken from the
        scheduler once (`ddim_steps`), so the loop is plain tensor arithmetic that exporters unroll.
        """
        x = noise
        for t, sqrt_alpha, sqrt_beta, sqrt_alpha_prev, sqrt_beta_prev in self.ddim_steps:
            out = self.denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device), features)
            if self.config.prediction_type == "epsilon":
                x0, epsilon = (x - sqrt_beta * out) / sqrt_alpha, out
            else:
                x0, epsilon = out, (x - sqrt_alpha * out) / sqrt_beta
            if self.config.clip_sample:
                x0 = x0.clamp(-1.0, 1.0)
            x = sqrt_alpha_prev * x0 + sqrt_beta_prev * epsilon
        return x.clamp(-1.0, 1.0)

    def _ddim_steps(self) -> list[tuple[int, float, float, float, float]]:
        """Per DDIM step: timestep t, sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) and the same two of the
        previous timestep (alpha_bar = 1 past the last), computed in float32 as DDIMScheduler.step does."""
        scheduler = self.inference_scheduler
        stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        steps = []
        for t in scheduler.timesteps.tolist():
            alpha = scheduler.alphas_cumprod[t]
            alpha_prev = scheduler.alphas_cumprod[t - stride] if t - stride >= 0 else scheduler.final_alpha_cumprod
            steps.append((t, float(alpha ** 0.5), float((1 - alpha) ** 0.5), float(alpha_prev ** 0.5),
                          float((1 - alpha_prev) ** 0.5)))
        return steps


def _build_schedulers(cfg: DiffusionHead.Config) -> tuple[object, object]:
    """DDPM scheduler for training and DDIM scheduler (same betas) for sampling."""
    # diffusers is imported here, not at module level: it costs seconds that callers using other heads should not pay.
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    try:
        train = DDPMScheduler(
            num_train_timesteps=cfg.num_train_timesteps,
            beta_schedule=cfg.beta_schedule,
            clip_sample=cfg.clip_sample,
            clip_sample_range=1.0,
            prediction_type=cfg.prediction_type,
        )
    except NotImplementedError:
        raise ValueError(f"diffusion head: config field 'beta_schedule' {cfg.beta_schedule!r} is not known to diffusers") from None
    inference = DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        trained_betas=train.betas.tolist(),
        clip_sample=cfg.clip_sample,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        prediction_type=cfg.prediction_type,
        timestep_spacing="trailing",
    )
    inference.set_timesteps(cfg.num_inference_steps)
    return train, inference
