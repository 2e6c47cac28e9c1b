"""Flow head: rectified-flow matching over the action chunk, sampled in K steps (K = 1 allowed).

Straight paths from Gaussian noise (time 0) to the normalized action chunk (time 1):

    x0 = noise (B, Ta, A) ~ N(0, I),  x1 = action (B, Ta, A),  t ~ U[0, 1)
    x_t = (1 - t) x0 + t x1,  velocity target v = x1 - x0           objective "flow"
    prediction_type "sample" (default): out = denoiser(x_t, t, features) estimates x1,
        loss = || out - x1 ||^2,  velocity v(x_t, t) = (clip(out, -1, 1) - x_t) / (1 - t)
    prediction_type "velocity": out estimates v,  loss = || out - v ||^2

Predicting the endpoint and clipping it to the action range is what the diffusion head's
prediction_type=sample does; on ForkedPath3 it took the ten-step flow head from 0.75 to 0.99
success at the same budget (BENCHMARKS.md, "Flow matching").

Sampling integrates dx/dt = v(x, t) from t = 0 to 1 in K = num_inference_steps equal steps
(Euler, or midpoint: two network calls per step), then clamps to [-1, 1]:

    x = noise
    for i in range(K):  x = x + v(x, i / K) / K      # Euler
    return x clamped to [-1, 1]

Objective "shortcut" (Frans et al. 2024, "One Step Diffusion via Shortcut Models") also gives the
network the step size d it will be used with, s(x_t, t, d), and teaches it where a step of size d
lands, so few large steps (K = 1, 2, 4, ...) follow the curved flow instead of cutting across it:

    rows 1 - shortcut_fraction of the batch:  flow matching with d = 0, as above
    the others (self-consistency):  D = 2^-k, k uniform in {0, ..., log2(shortcut_max_steps) - 1},
        t uniform on the grid {0, D, 2D, ..., 1 - D}, h = D / 2
        s1 = s(x_t, t, h);  s2 = s(x_t + h s1, t + h, h)     (no gradient; h = 1/shortcut_max_steps is queried as d = 0)
        loss = || s(x_t, t, D) - (s1 + s2) / 2 ||^2    ("sample": on the endpoints x_t + (1 - t) s)

At sampling, K a power of two below shortcut_max_steps uses d = 1 / K; any other K uses d = 0,
the instantaneous velocity, so the head is also an ordinary flow model. d enters as the sinusoidal
embedding of its level (0 for d = 0, 1 + log2(1 / d) otherwise), concatenated to the features.

Objective "meanflow" (the default; Geng et al. 2025, "Mean Flows for One-step Generative Modeling") has the
network give the average velocity u(x_t, t, h) over the interval [t, t + h] instead, so that one
step of any size lands where the flow goes, x_{t+h} = x_t + h u. h enters like shortcut's step size
(the same step-size embedding, of h * MEANFLOW_TIME_SCALE: continuous, any K is a trained step; t too is
scaled by MEANFLOW_TIME_SCALE, not TIME_SCALE). Along a
path (s = t + h fixed, dx_t/dt = v) the average velocity obeys u = v + h du/dt; the target is
the right-hand side with du/dt = v d_x u + d_t u - d_h u, a Jacobian-vector product of the network
(torch.func.jvp, tangents (v, 1, -1) for (x, t, h), no gradient):

    rows 1 - shortcut_fraction of the batch:  flow matching with h = 0, as above
    the others:  t, s = the smaller and the larger of two uniforms on [0, 1), h = s - t
        "velocity": out = u,  target v + h du/dt
        "sample":   out = e, the endpoint the average velocity points to from x_t,
                    u = (e - x_t) / (1 - t)  (the sampler's velocity from an endpoint);
                    target x_t + (1 - t) (v + h du/dt)
                      = x_t + (1 - t - h) v + h de/dt + h / (1 - t) (e - x_t)

The sampler is the same Euler loop, with h = 1 / K given to the network.

Why meanflow by default (BENCHMARKS.md, "Flow matching: MeanFlow against shortcut"; 3 seeds, 50
rollouts each): at K = 1 it succeeds as often as shortcut (ForkedPath3 0.88 against 0.91, BlockPush
0.61 against 0.61) with a smaller mode-share gap (7 against 10 and 9 against 13 points), at K = 2 it
succeeds more often on BlockPush (0.80 against 0.66), at K = 10 at least as often; any K is a trained
step, not only powers of two. It costs 1.3-1.5x shortcut's training time per step (the
Jacobian-vector product). Saved configs name their objective, so shortcut runs load as shortcut.

Given the noise, sampling is deterministic (`sample_with_noise`): the whole loop is plain tensor
arithmetic with constant times, which exporters unroll. No likelihood (`has_log_prob` False) and no
mode (`has_mode` False). Denoiser networks: policy_heads/denoisers.py, shared with the diffusion head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from policy_heads.base import PolicyHead, weighted_mean
from policy_heads.denoisers import TimestepEmbedding, build_denoiser, check_denoiser_settings

TIME_SCALE = 1000.0
"""Flow time t in [0, 1] is given to the denoiser's sinusoidal embedding as t * TIME_SCALE (objectives flow, shortcut)."""

MEANFLOW_TIME_SCALE = 10.0
"""The same for objective meanflow, for t and the interval h: its target holds the network's derivative in t and
h, which grows with the scale (at 1000 training on ForkedPath3 diverged within a few hundred steps)."""


class FlowHead(PolicyHead, name="flow"):
    """Conditional flow matching over the action chunk; shortcut- or MeanFlow-trained for 1-2 step sampling."""

    has_log_prob = False
    has_mode = False

    @dataclass
    class Config:
        objective: str = "meanflow"
        """Training objective: "flow" (plain flow matching), "shortcut" (also trains steps of size d, for K = 1-2) or
        "meanflow" (the network gives the average velocity over an interval: any K, 1 included)."""
        prediction_type: str = "sample"
        """What the network outputs: "velocity" v, or "sample", the endpoint x1 (clipped to [-1, 1]; v = (x1 - x_t) / (1 - t))."""
        num_inference_steps: int = 10
        """Number K of integration steps when sampling (1 allowed)."""
        integrator: str = "euler"
        """"euler" (one network call per step) or "midpoint" (two; objective "flow" only)."""
        shortcut_fraction: float = 0.25
        """Share of each batch trained on steps of nonzero size: the self-consistency target (objective "shortcut")
        or intervals h > 0 (objective "meanflow")."""
        shortcut_max_steps: int = 16
        """Finest step grid 1 / shortcut_max_steps of the shortcut objective (a power of two >= 2)."""
        denoiser: str = "auto"
        """Network: "mlp", "unet", or "auto" (unet when Ta >= 8, else mlp)."""
        time_embed_dim: int = 128
        """Width of the time embedding (and of the step-size embedding)."""
        mlp_hidden_dims: tuple[int, ...] = (256, 256, 256)
        """Hidden layer widths of the MLP denoiser."""
        down_dims: tuple[int, ...] = (64, 128, 256)
        """Channels of the U-Net levels, from full temporal resolution down."""
        kernel_size: int = 5
        """Temporal convolution kernel size of the U-Net (odd)."""
        n_groups: int = 8
        """GroupNorm groups in the U-Net (must divide every entry of down_dims)."""

    step_cost = 3.0

    @classmethod
    def cpu_defaults(cls) -> dict[str, str]:
        """Settings for a CPU: the MLP network."""
        return {"denoiser": "mlp"}

    def __init__(self, feature_dim: int, action_dim: int, action_horizon: int, config: Config | None = None) -> None:
        super().__init__(feature_dim, action_dim, action_horizon, config)
        cfg = self.config
        self._validate(cfg)
        self.shortcut = cfg.objective == "shortcut"
        self.meanflow = cfg.objective == "meanflow"
        self.time_scale = MEANFLOW_TIME_SCALE if self.meanflow else TIME_SCALE
        self.levels = int(math.log2(cfg.shortcut_max_steps)) if self.shortcut else 0
        condition_dim = feature_dim
        if self.shortcut or self.meanflow:
            self.step_embedding = TimestepEmbedding(cfg.time_embed_dim)
            condition_dim += cfg.time_embed_dim
        self.denoiser_kind, self.denoiser = build_denoiser(
            cfg.denoiser, action_dim, action_horizon, condition_dim, mlp_hidden_dims=cfg.mlp_hidden_dims,
            down_dims=cfg.down_dims, kernel_size=cfg.kernel_size, n_groups=cfg.n_groups, time_embed_dim=cfg.time_embed_dim,
        )

    @staticmethod
    def _validate(cfg: Config) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"flow head: config {message}")

        check_denoiser_settings("flow", cfg.denoiser, cfg.down_dims, cfg.n_groups, cfg.kernel_size, cfg.time_embed_dim)
        if cfg.objective not in ("flow", "shortcut", "meanflow"):
            fail(f"field 'objective' must be 'flow', 'shortcut' or 'meanflow', got {cfg.objective!r}")
        if cfg.prediction_type not in ("velocity", "sample"):
            fail(f"field 'prediction_type' must be 'velocity' or 'sample', got {cfg.prediction_type!r}")
        if cfg.integrator not in ("euler", "midpoint"):
            fail(f"field 'integrator' must be 'euler' or 'midpoint', got {cfg.integrator!r}")
        if cfg.integrator == "midpoint" and cfg.objective != "flow":
            fail(f"field 'integrator' must be 'euler' with objective {cfg.objective!r} (its steps are trained as Euler steps)")
        if cfg.num_inference_steps < 1:
            fail(f"field 'num_inference_steps' must be >= 1, got {cfg.num_inference_steps}")
        if not 0.0 <= cfg.shortcut_fraction < 1.0:
            fail(f"field 'shortcut_fraction' must be in [0, 1), got {cfg.shortcut_fraction}")
        steps = cfg.shortcut_max_steps
        if steps < 2 or steps & (steps - 1):
            fail(f"field 'shortcut_max_steps' must be a power of two >= 2, got {steps}")

    # Network --------------------------------------------------------------------------------

    def _condition(self, features: Tensor, level: Tensor | None) -> Tensor:
        """Features (B, F), with the step-size embedding of level (B,) appended (objectives shortcut and meanflow)."""
        return features if level is None else torch.cat([features, self.step_embedding(level)], dim=-1)

    def _velocity(self, x: Tensor, t: Tensor | float, condition: Tensor) -> Tensor:
        """Velocity (B, Ta, A) at x (B, Ta, A), flow time t (B,) or one float in [0, 1), condition (B, F [+ E]).

        A float time (the sampler's) stays a constant of the arithmetic, which exported graphs fold."""
        if isinstance(t, float):
            out = self.denoiser(x, torch.full((x.shape[0],), t * self.time_scale, device=x.device, dtype=x.dtype), condition)
            remaining = 1.0 - t
        else:
            out = self.denoiser(x, t * self.time_scale, condition)
            remaining = (1 - t).view(-1, 1, 1)
        if self.config.prediction_type == "velocity":
            return out
        return (out.clamp(-1.0, 1.0) - x) / remaining

    def _level(self, step: float, batch: int, device: torch.device) -> Tensor | None:
        """Step-size input (B,) for a step of size `step` (0 = instantaneous): shortcut's level, meanflow's
        step * MEANFLOW_TIME_SCALE; None for plain flow matching."""
        if self.meanflow:
            return torch.full((batch,), step * self.time_scale, device=device)
        if not self.shortcut:
            return None
        inverse = round(1.0 / step) if step > 0 else 0
        exact = inverse >= 1 and abs(inverse * step - 1.0) < 1e-9 and inverse & (inverse - 1) == 0
        level = 1 + int(math.log2(inverse)) if exact and inverse <= self.config.shortcut_max_steps // 2 else 0
        return torch.full((batch,), float(level), device=device)

    # Training -------------------------------------------------------------------------------

    def loss(self, features: Tensor, action: Tensor, mask: Tensor | None = None,
             weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        action, mask = self._check_batch(features, action, mask)
        weight = self._check_weight(features, weight)
        batch = action.shape[0]
        noise = torch.randn_like(action)
        t = torch.rand(batch, device=action.device, dtype=action.dtype)
        x_t = (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action
        target = action - noise
        level = None
        if self.shortcut:
            level = torch.zeros(batch, device=action.device, dtype=action.dtype)
            n_boot = round(batch * self.config.shortcut_fraction)
            if n_boot:
                boot = self._shortcut_rows(noise[:n_boot], action[:n_boot], features[:n_boot])
                t, level, x_t, target = (torch.cat([b, rest[n_boot:]]) for b, rest in zip(boot, (t, level, x_t, target)))
        elif self.meanflow:  # targets in the network's output space from here on
            level = torch.zeros(batch, device=action.device, dtype=action.dtype)
            if self.config.prediction_type == "sample":
                target = x_t + (1 - t).view(-1, 1, 1) * target
            n_mean = round(batch * self.config.shortcut_fraction)
            if n_mean:
                rows = self._meanflow_rows(noise[:n_mean], action[:n_mean], features[:n_mean])
                t, level, x_t, target = (torch.cat([b, rest[n_mean:]]) for b, rest in zip(rows, (t, level, x_t, target)))
        prediction = self.denoiser(x_t, t * self.time_scale, self._condition(features, level))
        if self.config.prediction_type == "sample" and not self.meanflow:  # the endpoint the target velocity reaches
            target = x_t + (1 - t).view(-1, 1, 1) * target
        per_step = (prediction - target).square().mean(-1)  # (B, Ta), row i still row i of the batch
        loss = weighted_mean(per_step, mask, weight)
        return loss, {"mse": loss.detach()}

    def _shortcut_rows(self, noise: Tensor, action: Tensor, features: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Self-consistency rows: t (n,), level (n,), x_t (n, Ta, A) and the two-half-step target (n, Ta, A).

        noise, action (n, Ta, A), features (n, F). A step D = 2^-k is taught to land where two steps
        of D / 2 land; the half steps are evaluated without gradient.
        """
        n, device, dtype = action.shape[0], action.device, action.dtype
        k = torch.randint(0, self.levels, (n,), device=device)  # full step D = 2^-k
        full = torch.pow(2.0, -k.to(dtype))
        half = full / 2
        t = torch.floor(torch.rand(n, device=device, dtype=dtype) / full) * full  # on the grid {0, D, ..., 1 - D}
        x_t = (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action
        # The finest half step (1 / shortcut_max_steps) is queried as the instantaneous velocity (level 0).
        half_level = torch.where(k + 1 >= self.levels, torch.zeros_like(full), (k + 2).to(dtype))
        with torch.no_grad():
            condition = self._condition(features, half_level)
            first = self._velocity(x_t, t, condition)
            second = self._velocity(x_t + half.view(-1, 1, 1) * first, t + half, condition)
        return t, (k + 1).to(dtype), x_t, (first + second) / 2

    def _meanflow_rows(self, noise: Tensor, action: Tensor, features: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """MeanFlow rows: t (n,), step input h * MEANFLOW_TIME_SCALE (n,), x_t (n, Ta, A) and the target (n, Ta, A) in
        the network's output space (average velocity, or endpoint for "sample"); no gradient through the target.

        noise, action (n, Ta, A), features (n, F). t and s = t + h are the smaller and the larger of two uniforms.
        """
        n, device, dtype = action.shape[0], action.device, action.dtype
        a, b = torch.rand(n, device=device, dtype=dtype), torch.rand(n, device=device, dtype=dtype)
        t, h = torch.minimum(a, b), (a - b).abs()
        x_t = (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action
        features = features.detach()

        def network(x: Tensor, time: Tensor, step: Tensor) -> Tensor:
            return self.denoiser(x, time * self.time_scale, self._condition(features, step * self.time_scale))

        target = self._meanflow_target(network, x_t, t, h, action - noise)
        return t, h * self.time_scale, x_t, target

    def _meanflow_target(self, network, x: Tensor, t: Tensor, h: Tensor, v: Tensor) -> Tensor:
        """The MeanFlow target (no gradient) of `network(x, t, h)` (the network's output: average velocity over
        [t, t + h], or for "sample" the endpoint e with u = (e - x) / (1 - t)) at x (n, Ta, A) moving with
        velocity v (n, Ta, A), t and h (n,). d/dt along the path with s = t + h fixed: tangents (v, 1, -1)."""
        with torch.no_grad():
            out, d_out = torch.func.jvp(network, (x, t, h), (v, torch.ones_like(t), -torch.ones_like(h)))
        step = h.view(-1, 1, 1)
        if self.config.prediction_type == "velocity":
            return v + step * d_out
        remaining = (1 - t).view(-1, 1, 1)  # > 0 and >= h: t + h <= 1
        return x + (remaining - step) * v + step * d_out + (step / remaining) * (out - x)

    # Sampling -------------------------------------------------------------------------------

    def noise_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {"normal": ((self.action_horizon, self.action_dim), "normal")}

    def sample_with_noise(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """Integrate from noise["normal"] (B, Ta, A) to a chunk (B, Ta, A) in [-1, 1]; see `_integrate`."""
        self._check_features(features)
        self._check_noise(features, noise)
        return self._integrate(features, noise["normal"])

    def _integrate(self, features: Tensor, noise: Tensor) -> Tensor:
        """K Euler or midpoint steps from noise (B, Ta, A) at t = 0 to t = 1; deterministic."""
        steps = self.config.num_inference_steps
        dt = 1.0 / steps
        batch, device = noise.shape[0], noise.device
        condition = self._condition(features, self._level(dt, batch, device))
        x = noise
        for i in range(steps):
            velocity = self._velocity(x, i * dt, condition)
            if self.config.integrator == "midpoint":
                velocity = self._velocity(x + 0.5 * dt * velocity, (i + 0.5) * dt, condition)
            x = x + dt * velocity
        return x.clamp(-1.0, 1.0)
