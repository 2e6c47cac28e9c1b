"""Contract tests for every registered policy head, plus head-specific checks.

Heads are built with small widths (SMALL) so the whole file runs in seconds on one thread; a
separate test builds every head with its default config.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import textwrap

import pytest
import torch

import policy_heads
from policy_heads import PolicyHead, available_heads, config_from_dict, config_to_dict, get_head_class, make_head
from policy_heads.base import fill_padding

F_DIM, A_DIM, BATCH = 6, 2, 4
NVEC = (3, 5)
HORIZONS = (1, 5, 16)

SMALL = {
    "deterministic": {"hidden_dims": (32, 32)},
    "gaussian": {"hidden_dims": (32, 32)},
    "gmm": {"hidden_dims": (32, 32), "num_modes": 3},
    "autoregressive": {"bins": 16, "d_model": 32, "num_layers": 2, "num_heads": 2},
    "diffusion": {"time_embed_dim": 16, "mlp_hidden_dims": (32, 32), "down_dims": (16, 32, 64), "n_groups": 4, "num_inference_steps": 4},
    "flow": {"time_embed_dim": 16, "mlp_hidden_dims": (32, 32), "down_dims": (16, 32, 64), "n_groups": 4, "num_inference_steps": 4,
             "shortcut_max_steps": 8},
}
VARIANTS = [(name, {}) for name in available_heads()] + [
    ("gaussian", {"state_dependent_std": False}),
    ("autoregressive", {"discrete_nvec": NVEC}),
    ("autoregressive", {"binning": "quantile"}),
    ("autoregressive", {"dims_per_token": 2}),
    ("autoregressive", {"discrete_nvec": NVEC, "dims_per_token": 2}),
    ("diffusion", {"denoiser": "mlp"}),
    ("diffusion", {"denoiser": "unet"}),
    ("diffusion", {"denoiser": "unet", "prediction_type": "sample"}),
    ("flow", {"objective": "flow"}),
    ("flow", {"objective": "flow", "integrator": "midpoint", "prediction_type": "velocity"}),
    ("flow", {"prediction_type": "velocity"}),
    ("flow", {"denoiser": "mlp"}),
    ("flow", {"denoiser": "unet", "num_inference_steps": 1}),
    ("flow", {"objective": "meanflow"}),
    ("flow", {"objective": "meanflow", "prediction_type": "velocity", "denoiser": "mlp", "num_inference_steps": 1}),
]
CASES = [
    pytest.param(name, overrides, horizon, id=f"{name}{''.join(f'-{k}={v}' for k, v in overrides.items())}-Ta{horizon}")
    for name, overrides in VARIANTS
    for horizon in HORIZONS
]


def is_discrete(overrides: dict) -> bool:
    return bool(overrides.get("discrete_nvec"))


def random_actions(shape: tuple[int, ...], overrides: dict, seed: int) -> torch.Tensor:
    """Normalized continuous actions in [-1, 1], or category indices (as floats) in discrete mode."""
    generator = torch.Generator().manual_seed(seed)
    if is_discrete(overrides):
        return torch.stack([torch.randint(0, n, shape[:-1], generator=generator) for n in NVEC], dim=-1).float()
    return torch.rand(shape, generator=generator) * 2 - 1


def build(name: str, overrides: dict, horizon: int, seed: int = 0) -> PolicyHead:
    torch.manual_seed(seed)
    head = make_head(name, F_DIM, A_DIM, horizon, **{**SMALL.get(name, {}), **overrides})
    head.prepare(random_actions((200, A_DIM), overrides, seed=99))
    return head


def batch(overrides: dict, horizon: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """features (B, F), action (B, Ta, A), mask (B, Ta) with the second half of row 0 padded."""
    features = torch.randn(BATCH, F_DIM, generator=torch.Generator().manual_seed(seed))
    action = random_actions((BATCH, horizon, A_DIM), overrides, seed)
    mask = torch.ones(BATCH, horizon, dtype=torch.bool)
    mask[0, (horizon + 1) // 2 :] = False
    return features, action, mask


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Contract, for every head ---------------------------------------------------------------------


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_loss_is_finite_and_reaches_every_parameter(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, action, mask = batch(overrides, horizon)
    loss, info = head.loss(features, action, mask)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert info and all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in info.values())
    loss.backward()
    for param_name, param in head.named_parameters():
        if param_name == "embed.weight" and getattr(head, "num_tokens", 2) == 1:
            continue  # a one-token chunk never feeds a token back in
        assert param.grad is not None, f"{param_name} received no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} has an all-zero gradient"


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_inputs_are_not_mutated(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, action, mask = batch(overrides, horizon)
    copies = [t.clone() for t in (features, action, mask)]
    head.loss(features, action, mask)
    head.sample(features, seeded(0))
    if head.has_log_prob:
        head.log_prob(features, action)
    if head.has_mode:
        head.mode(features)
    for original, copy in zip((features, action, mask), copies):
        assert torch.equal(original, copy)


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_sample_shape_and_range(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, _, _ = batch(overrides, horizon)
    chunk = head.sample(features, seeded(0))
    assert chunk.shape == (BATCH, horizon, A_DIM)
    assert torch.isfinite(chunk).all() and not chunk.requires_grad
    if is_discrete(overrides):
        assert torch.equal(chunk, chunk.round()) and (chunk >= 0).all()
        assert (chunk < torch.tensor(NVEC, dtype=chunk.dtype)).all()
    elif name in ("diffusion", "flow", "autoregressive"):
        assert chunk.abs().max() <= 1.0


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_sample_is_reproducible_through_the_generator(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, _, _ = batch(overrides, horizon)
    first, again = head.sample(features, seeded(7)), head.sample(features, seeded(7))
    assert torch.equal(first, again)
    if name != "deterministic":
        assert not torch.equal(first, head.sample(features, seeded(8)))


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_log_prob_and_mode_where_defined(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, action, _ = batch(overrides, horizon)
    if head.has_log_prob:
        log_prob = head.log_prob(features, action)
        assert log_prob.shape == (BATCH,) and torch.isfinite(log_prob).all()
    else:
        with pytest.raises(NotImplementedError, match=name):
            head.log_prob(features, action)
    if head.has_mode:
        mode = head.mode(features)
        assert mode.shape == (BATCH, horizon, A_DIM) and torch.equal(mode, head.mode(features))
    else:
        with pytest.raises(NotImplementedError, match=name):
            head.mode(features)


@pytest.mark.parametrize("name, overrides, horizon", [c for c in CASES if c.values[2] > 1])
def test_padded_steps_do_not_change_the_loss(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, action, mask = batch(overrides, horizon)
    changed = action.clone()
    changed[~mask] = random_actions((int((~mask).sum()), A_DIM), overrides, seed=5)
    poisoned = action.clone()
    poisoned[~mask] = float("nan")

    def loss_of(chunk, step_mask):
        torch.manual_seed(3)
        return head.loss(features, chunk, step_mask)[0]

    assert torch.equal(loss_of(action, mask), loss_of(changed, mask))
    assert torch.equal(loss_of(action, mask), loss_of(poisoned, mask))
    assert not torch.equal(loss_of(action, None), loss_of(changed, None)), "without the mask the change must show"
    assert torch.equal(loss_of(action, torch.ones_like(mask)), loss_of(action, None))


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_a_fully_padded_row_contributes_nothing(name, overrides, horizon):
    head = build(name, overrides, horizon)
    features, action, mask = batch(overrides, horizon)
    mask[0] = False
    other_features = features.clone()
    other_features[0] = torch.randn(F_DIM, generator=seeded(6)) * 3

    def loss_of(row_features, step_mask):
        torch.manual_seed(3)
        return head.loss(row_features, action, step_mask)[0]

    torch.testing.assert_close(loss_of(features, mask), loss_of(other_features, mask))
    assert not torch.equal(loss_of(features, None), loss_of(other_features, None))
    assert torch.isfinite(loss_of(features, torch.zeros_like(mask)))


@pytest.mark.parametrize("name, overrides, horizon", CASES)
def test_state_dict_round_trip_gives_identical_outputs(name, overrides, horizon):
    head = build(name, overrides, horizon, seed=0)
    features, action, mask = batch(overrides, horizon)
    torch.optim.SGD(head.parameters(), lr=0.1).zero_grad()
    head.loss(features, action, mask)[0].backward()
    torch.optim.SGD(head.parameters(), lr=0.1).step()

    cls = get_head_class(name)
    fresh = cls(F_DIM, A_DIM, horizon, config_from_dict(cls, json.loads(json.dumps(config_to_dict(head.config)))))
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(head.sample(features, seeded(4)), fresh.sample(features, seeded(4)))
    if head.has_log_prob:
        assert torch.equal(head.log_prob(features, action), fresh.log_prob(features, action))
    torch.manual_seed(2)
    expected = head.loss(features, action, mask)[0]
    torch.manual_seed(2)
    assert torch.equal(expected, fresh.loss(features, action, mask)[0])


def test_default_configs_run_at_a_long_horizon():
    for name in available_heads():
        torch.manual_seed(0)
        head = make_head(name, F_DIM, A_DIM, 16)
        head.prepare(torch.rand(100, A_DIM) * 2 - 1)
        features, action, mask = batch({}, 16)
        assert torch.isfinite(head.loss(features, action, mask)[0])
        assert head.sample(features[:1], seeded(0)).shape == (1, 16, A_DIM)


def test_shape_errors_name_the_head():
    head = build("gaussian", {}, 5)
    features, action, mask = batch({}, 5)
    with pytest.raises(ValueError, match=r"gaussian head: action must have shape"):
        head.loss(features, action[:, :4], mask)
    with pytest.raises(ValueError, match=r"gaussian head: features must have shape"):
        head.sample(features[:, :3])
    with pytest.raises(ValueError, match=r"gaussian head: mask must be a bool tensor"):
        head.loss(features, action, mask.float())


def test_every_config_field_has_a_docstring():
    for name in available_heads():
        config = get_head_class(name).Config
        tree = ast.parse(textwrap.dedent(inspect.getsource(config)))
        body = tree.body[0].body
        for i, statement in enumerate(body):
            if isinstance(statement, ast.AnnAssign):
                following = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                assert documented, f"{name}.Config.{statement.target.id} has no docstring"


# Registry and configuration ----------------------------------------------------------------------


def test_registry_lists_the_six_heads():
    assert {"deterministic", "gaussian", "gmm", "autoregressive", "diffusion", "flow"} <= set(available_heads())
    assert get_head_class("gmm") is policy_heads.MixtureHead


def test_unknown_head_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown policy head 'transformer'.*deterministic.*flow.*gaussian"):
        make_head("transformer", F_DIM, A_DIM, 4)


def test_unknown_config_field_names_field_and_head():
    with pytest.raises(ValueError, match=r"unknown config field 'num_mode' for policy head 'gmm'"):
        make_head("gmm", F_DIM, A_DIM, 4, num_mode=3)


def test_nameless_concrete_subclass_fails_at_definition():
    with pytest.raises(TypeError, match="has no name"):

        class Nameless(PolicyHead):
            def loss(self, features, action, mask=None):
                raise AssertionError

            def sample(self, features, generator=None):
                raise AssertionError


def test_abstract_subclass_needs_no_name_but_duplicate_names_fail():
    class Intermediate(PolicyHead):
        pass

    with pytest.raises(TypeError, match="'gaussian' is already registered"):

        class Impostor(Intermediate, name="gaussian"):
            @dataclasses.dataclass
            class Config:
                pass

            def loss(self, features, action, mask=None):
                raise AssertionError

            def sample(self, features, generator=None):
                raise AssertionError

    assert get_head_class("gaussian") is policy_heads.GaussianHead
    assert "Intermediate" not in available_heads()


def test_string_overrides_are_converted_to_field_types():
    head = make_head("diffusion", F_DIM, A_DIM, 8, num_inference_steps="4", clip_sample="false", down_dims="(32, 64)",
                     prediction_type="sample", time_embed_dim="16")
    assert head.config.num_inference_steps == 4 and head.config.clip_sample is False
    assert head.config.down_dims == (32, 64) and head.config.prediction_type == "sample"
    assert make_head("gaussian", F_DIM, A_DIM, 2, min_log_std="-4.5").config.min_log_std == -4.5
    assert make_head("autoregressive", F_DIM, A_DIM, 2, discrete_nvec="3,5").config.discrete_nvec == NVEC
    assert make_head("deterministic", F_DIM, A_DIM, 2, hidden_dims="").config.hidden_dims == ()
    with pytest.raises(ValueError, match=r"'gmm': config field 'num_modes' expects int, got 'many'"):
        make_head("gmm", F_DIM, A_DIM, 2, num_modes="many")
    with pytest.raises(ValueError, match=r"config field 'clip_sample'"):
        make_head("diffusion", F_DIM, A_DIM, 2, clip_sample="maybe")


def test_config_dict_round_trip_through_json():
    head = make_head("diffusion", F_DIM, A_DIM, 8, down_dims=(32, 64))
    as_json = json.dumps(config_to_dict(head.config))
    assert config_from_dict(get_head_class("diffusion"), json.loads(as_json)) == head.config


def test_invalid_config_values_name_the_field():
    with pytest.raises(ValueError, match="'loss'"):
        make_head("deterministic", F_DIM, A_DIM, 2, loss="huber")
    with pytest.raises(ValueError, match="'discrete_nvec'"):
        make_head("autoregressive", F_DIM, A_DIM, 2, discrete_nvec=(3,))
    with pytest.raises(ValueError, match="'n_groups'"):
        make_head("diffusion", F_DIM, A_DIM, 2, n_groups=5)
    with pytest.raises(ValueError, match="'beta_schedule'"):
        make_head("diffusion", F_DIM, A_DIM, 2, beta_schedule="cubic")


# Head-specific checks -----------------------------------------------------------------------------


def test_fill_padding_repeats_the_last_real_step():
    action = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    filled = fill_padding(action, mask)
    assert torch.equal(filled[0], torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    assert torch.equal(filled[1], action[1])


def test_gaussian_and_mixture_log_prob_match_torch_distributions():
    features, action, _ = batch({}, 3)
    gaussian = build("gaussian", {}, 3)
    mean, log_std = gaussian._distribution(features)
    reference = torch.distributions.Normal(mean, log_std.exp()).log_prob(action.flatten(1)).sum(-1)
    torch.testing.assert_close(gaussian.log_prob(features, action), reference)

    gmm = build("gmm", {}, 3)
    log_weights, means, stds = gmm._mixture(features)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=log_weights),
        torch.distributions.Independent(torch.distributions.Normal(means, stds), 1),
    )
    torch.testing.assert_close(gmm.log_prob(features, action), mixture.log_prob(action.flatten(1)))


def test_gaussian_state_independent_std_is_one_learned_value_per_entry():
    head = build("gaussian", {"state_dependent_std": False, "init_std": 0.6}, 3)
    features, action, _ = batch({}, 3)
    _, log_std = head._distribution(features)
    torch.testing.assert_close(log_std, torch.full_like(log_std, math.log(0.6)))
    with torch.no_grad():
        head.log_std_raw[0] += 1.0
    _, log_std = head._distribution(features)
    assert (log_std[:, 0] > math.log(0.6)).all() and torch.equal(log_std[0], log_std[1])
    head.log_prob(features, action).sum().backward()
    assert head.log_std_raw.grad is not None and head.log_std_raw.grad.abs().sum() > 0
    assert not hasattr(head, "log_std")


def test_autoregressive_cached_decoding_matches_the_teacher_forced_pass():
    head = build("autoregressive", {}, 5)
    features, _, _ = batch({}, 5)
    tokens = head._tokens(head.mode(features))
    assert torch.equal(head._logits(features, tokens).argmax(-1), tokens)


def test_autoregressive_bins_round_trip_and_quantile_edges():
    head = build("autoregressive", {"binning": "uniform"}, 5)
    action = batch({}, 5)[1]
    half_bin = 1.0 / head.config.bins
    assert (head._values(head._tokens(action)) - action).abs().max() <= half_bin + 1e-6

    quantile = make_head("autoregressive", F_DIM, A_DIM, 2, bins=4, binning="quantile")
    with pytest.raises(RuntimeError, match="prepare"):
        quantile.loss(*batch({}, 2))
    data = torch.stack([torch.linspace(-1, 0, 101), torch.linspace(0, 1, 101)], dim=-1)
    quantile.prepare(data)
    torch.testing.assert_close(quantile.edges[0], torch.tensor([-1.0, -0.75, -0.5, -0.25, 1.0]))
    torch.testing.assert_close(quantile.edges[1], torch.tensor([-1.0, 0.25, 0.5, 0.75, 1.0]))


def test_autoregressive_joint_tokens_hold_every_dimension_of_a_step():
    entry = build("autoregressive", {"binning": "uniform"}, 5)
    joint = build("autoregressive", {"binning": "uniform", "dims_per_token": 2}, 5)
    action = batch({}, 5)[1]
    per_entry, tokens = entry._tokens(action), joint._tokens(action)
    assert joint.num_tokens == 5 and tokens.shape == (BATCH, 5) and joint.logit_mask.shape == (5, 16 * 16)
    assert torch.equal(tokens, per_entry[:, 0::2] * 16 + per_entry[:, 1::2])  # first dimension most significant
    assert torch.equal(joint._values(tokens), entry._values(per_entry))
    discrete = build("autoregressive", {"discrete_nvec": NVEC, "dims_per_token": 2}, 3)
    categories = random_actions((BATCH, 3, A_DIM), {"discrete_nvec": NVEC}, seed=2)
    assert torch.equal(discrete._values(discrete._tokens(categories)), categories)
    assert discrete._tokens(categories).max() < NVEC[0] * NVEC[1]
    with pytest.raises(ValueError, match="dims_per_token"):
        make_head("autoregressive", F_DIM, 3, 2, dims_per_token=2)


def test_autoregressive_discrete_prepare_rejects_bad_indices():
    head = make_head("autoregressive", F_DIM, A_DIM, 2, discrete_nvec=NVEC)
    with pytest.raises(ValueError, match="category indices"):
        head.prepare(torch.tensor([[0.0, 5.0]]))
    with pytest.raises(ValueError, match="category indices"):
        head.prepare(torch.tensor([[0.5, 1.0]]))


def test_diffusion_sample_is_denoise_of_generator_noise_and_auto_picks_denoiser():
    head = build("diffusion", {}, 5)
    features = batch({}, 5)[0]
    noise = torch.randn((BATCH, 5, A_DIM), generator=seeded(3))
    assert torch.equal(head.sample(features, seeded(3)), head._denoise(features, noise))
    assert make_head("diffusion", F_DIM, A_DIM, 7).denoiser_kind == "mlp"
    assert make_head("diffusion", F_DIM, A_DIM, 8).denoiser_kind == "unet"


def flow_velocity(head, x, t, condition):
    """The flow head's velocity written out: the network output, or (clipped endpoint - x) / (1 - t)."""
    out = head.denoiser(x, t * 1000, condition)
    return out if head.config.prediction_type == "velocity" else (out.clamp(-1, 1) - x) / (1 - t).view(-1, 1, 1)


@pytest.mark.parametrize("prediction_type", ["velocity", "sample"])
def test_flow_sample_is_euler_or_midpoint_integration_of_the_velocity(prediction_type):
    features = batch({}, 5)[0]
    noise = torch.randn((BATCH, 5, A_DIM), generator=seeded(3))
    for integrator, steps in (("euler", 1), ("euler", 3), ("midpoint", 2)):
        head = build("flow", {"objective": "flow", "integrator": integrator, "num_inference_steps": steps,
                              "prediction_type": prediction_type}, 5)
        x, dt = noise, 1.0 / steps
        for i in range(steps):
            t = torch.full((BATCH,), i * dt)
            velocity = flow_velocity(head, x, t, features)
            if integrator == "midpoint":
                velocity = flow_velocity(head, x + 0.5 * dt * velocity, t + 0.5 * dt, features)
            x = x + dt * velocity
        torch.testing.assert_close(head.sample(features, seeded(3)), x.clamp(-1, 1), rtol=0, atol=1e-5)


def test_flow_sample_prediction_regresses_the_endpoint():
    head = build("flow", {"objective": "flow", "prediction_type": "sample"}, 5)
    features, action, _ = batch({}, 5)
    torch.manual_seed(4)
    loss = head.loss(features, action)[0]
    torch.manual_seed(4)
    noise, t = torch.randn_like(action), torch.rand(BATCH)
    x_t = (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action
    torch.testing.assert_close(loss, (head.denoiser(x_t, t * 1000, features) - action).square().mean())


def test_shortcut_steps_use_their_trained_step_size_level():
    head = build("flow", {"objective": "shortcut", "shortcut_max_steps": 8}, 5)
    levels = {k: head._level(1.0 / k, 1, "cpu") for k in (1, 2, 3, 4, 8, 10)}
    assert {k: float(v) for k, v in levels.items()} == {1: 1.0, 2: 2.0, 3: 0.0, 4: 3.0, 8: 0.0, 10: 0.0}
    assert build("flow", {"objective": "flow"}, 5)._level(0.5, 1, "cpu") is None
    features = batch({}, 5)[0]
    one, ten = (build("flow", {"objective": "shortcut", "num_inference_steps": k}, 5) for k in (1, 10))
    assert not torch.equal(one.sample(features, seeded(0)), ten.sample(features, seeded(0)))


@pytest.mark.parametrize("prediction_type", ["velocity", "sample"])
def test_shortcut_target_is_the_mean_of_two_half_steps_on_the_grid(prediction_type):
    head = build("flow", {"objective": "shortcut", "shortcut_max_steps": 8, "prediction_type": prediction_type}, 5)
    features, action, _ = batch({}, 5)
    noise = torch.randn_like(action)
    torch.manual_seed(0)
    t, level, x_t, target = head._shortcut_rows(noise, action, features)
    full = torch.pow(2.0, -(level - 1))  # level l trains a step of 2^-(l - 1)
    assert set(level.tolist()) <= {1.0, 2.0, 3.0}
    assert torch.equal(torch.remainder(t, full), torch.zeros_like(t)) and (t + full <= 1).all()
    torch.testing.assert_close(x_t, (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action)
    half = full / 2
    half_level = torch.where(level == 3, torch.zeros_like(level), level + 1)  # 1/8 is queried as d = 0
    condition = head._condition(features, half_level)
    with torch.no_grad():
        first = flow_velocity(head, x_t, t, condition)
        second = flow_velocity(head, x_t + half.view(-1, 1, 1) * first, t + half, condition)
    torch.testing.assert_close(target, (first + second) / 2)


def exact_average_velocity(x, t, h):
    """The average velocity over [t, t + h] of the flow dx/dt = x: x (e^h - 1) / h (x where h = 0)."""
    h = h.view(-1, 1, 1)
    return x * torch.where(h > 0, torch.expm1(h) / h.clamp(min=1e-12), torch.ones_like(h))


@pytest.mark.parametrize("prediction_type", ["velocity", "sample"])
def test_meanflow_target_is_a_fixed_point_of_the_exact_average_velocity(prediction_type):
    """Given the exact average velocity of a known flow (dx/dt = x), the MeanFlow target equals the network
    output: the identity u = v + h du/dt with du/dt taken along the path at a fixed end s = t + h."""
    head = build("flow", {"objective": "meanflow", "prediction_type": prediction_type}, 5)
    x = torch.randn((BATCH, 5, A_DIM), generator=seeded(0))
    t = torch.tensor([0.0, 0.2, 0.5, 0.7])
    h = torch.tensor([1.0, 0.5, 0.25, 0.3])

    def network(x, t, h):  # the output the head's parametrization asks for
        u = exact_average_velocity(x, t, h)
        return u if prediction_type == "velocity" else x + (1 - t).view(-1, 1, 1) * u

    target = head._meanflow_target(network, x, t, h, v=x)
    torch.testing.assert_close(target, network(x, t, h), rtol=1e-5, atol=1e-5)
    # The instantaneous velocity (h = 0 everywhere) is no fixed point where h > 0: the target tells them apart.
    instantaneous = lambda x, t, h: x if prediction_type == "velocity" else x + (1 - t).view(-1, 1, 1) * x  # noqa: E731
    assert not torch.allclose(head._meanflow_target(instantaneous, x, t, h, v=x), instantaneous(x, t, h), atol=1e-2)


def test_meanflow_rows_and_step_input():
    head = build("flow", {"objective": "meanflow"}, 5)
    scale = head.time_scale
    assert float(head._level(0.5, 1, "cpu")) == 0.5 * scale and float(head._level(1.0, 1, "cpu")) == scale
    features, action, _ = batch({}, 5)
    noise = torch.randn_like(action)
    torch.manual_seed(0)
    t, step, x_t, target = head._meanflow_rows(noise, action, features)
    h = step / scale
    assert (t >= 0).all() and (h > 0).all() and (t + h <= 1).all() and not target.requires_grad
    torch.testing.assert_close(x_t, (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action)
    one, ten = (build("flow", {"objective": "meanflow", "num_inference_steps": k}, 5) for k in (1, 10))
    assert not torch.equal(one.sample(features, seeded(0)), ten.sample(features, seeded(0)))
    # One step is one network call at t = 0 with h = 1: the clipped endpoint.
    noise = one.draw_noise(BATCH, seeded(2))["normal"]
    expected = one.denoiser(noise, torch.zeros(BATCH), one._condition(features, torch.full((BATCH,), one.time_scale))).clamp(-1, 1)
    torch.testing.assert_close(one.sample_with_noise(features, {"normal": noise}), expected)


def test_flow_config_errors_name_the_field():
    for overrides, field in (({"objective": "consistency"}, "objective"), ({"integrator": "rk4"}, "integrator"),
                             ({"integrator": "midpoint"}, "integrator"),
                             ({"integrator": "midpoint", "objective": "meanflow"}, "integrator"),
                             ({"num_inference_steps": 0}, "num_inference_steps"),
                             ({"shortcut_max_steps": 6}, "shortcut_max_steps"), ({"shortcut_fraction": 1.0}, "shortcut_fraction"),
                             ({"denoiser": "transformer"}, "denoiser"), ({"prediction_type": "epsilon"}, "prediction_type")):
        with pytest.raises(ValueError, match=f"flow head: config.*{field}"):
            make_head("flow", F_DIM, A_DIM, 4, **overrides)


# Learning: each head lowers its loss on a fixed tiny batch ------------------------------------------


@pytest.mark.parametrize(
    "name, overrides, lr",
    [
        ("deterministic", {}, 3e-3),
        ("gaussian", {}, 3e-3),
        ("gmm", {}, 3e-3),
        ("autoregressive", {}, 3e-3),
        ("autoregressive", {"discrete_nvec": NVEC}, 3e-3),
        ("diffusion", {"denoiser": "mlp"}, 1e-2),
        ("diffusion", {"denoiser": "unet"}, 3e-3),
        ("flow", {"objective": "flow", "denoiser": "mlp"}, 1e-2),
        ("flow", {"denoiser": "mlp"}, 1e-2),
        ("flow", {"denoiser": "unet"}, 3e-3),
        ("flow", {"objective": "meanflow", "denoiser": "mlp"}, 1e-2),
    ],
)
def test_head_lowers_its_loss_on_a_fixed_batch(name, overrides, lr):
    horizon = 4
    head = build(name, overrides, horizon)
    features, action, mask = batch(overrides, horizon)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)

    @torch.no_grad()
    def evaluation_loss() -> float:
        torch.manual_seed(11)  # the same timesteps and noise for the diffusion head before and after
        return sum(float(head.loss(features, action, mask)[0]) for _ in range(4)) / 4

    before = evaluation_loss()
    for _ in range(50):
        optimizer.zero_grad()
        head.loss(features, action, mask)[0].backward()
        optimizer.step()
    after = evaluation_loss()
    assert math.isfinite(after) and after < before - 0.2 * abs(before), (before, after)


@pytest.mark.parametrize("kernel,stride,pad", [(5, 1, 2), (3, 1, 1), (3, 2, 1), (1, 1, 0)])
@pytest.mark.parametrize("length", [1, 4, 7, 12])
def test_unet_convolution_matches_torch_conv1d(kernel, stride, pad, length):
    """The U-Net's short-sequence convolution (a matrix product on CPU) equals nn.Conv1d, gradients too."""
    from policy_heads.denoisers import _Conv1d

    torch.manual_seed(0)
    ours = _Conv1d(6, 5, kernel, stride=stride, padding=pad).double()
    ref = torch.nn.Conv1d(6, 5, kernel, stride=stride, padding=pad).double()
    ref.load_state_dict(ours.state_dict())
    x1 = torch.randn(3, 6, length, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,stride,pad", [(5, 1, 2), (3, 1, 1), (3, 2, 1), (1, 1, 0)])
@pytest.mark.parametrize("length", [1, 2, 4, 8])
def test_unet_exported_convolution_and_mish_match_torch(kernel, stride, pad, length, monkeypatch):
    """While exporting, the U-Net writes short convolutions as banded matrix products and Mish in
    closed form; both give nn.Conv1d's and F.mish's results."""
    from policy_heads import denoisers

    torch.manual_seed(0)
    ours = denoisers._Conv1d(6, 5, kernel, stride=stride, padding=pad).double()
    ref = torch.nn.Conv1d(6, 5, kernel, stride=stride, padding=pad).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, length, dtype=torch.float64)
    y = torch.cat([torch.linspace(-40, 40, 801, dtype=torch.float64), torch.tensor([-1e4, 1e4], dtype=torch.float64)])
    monkeypatch.setattr(denoisers, "_exporting", lambda: True)
    steps = ref(x).shape[-1]
    torch.testing.assert_close(ours._banded(x, steps), ref(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(denoisers._Mish()(y), torch.nn.functional.mish(y), rtol=1e-12, atol=1e-12)
