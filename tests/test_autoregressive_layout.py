"""The autoregressive head's "step" layout (one transformer position per step, a readout per token) against
the "entry" layout (one position per token): causality, cached decoding, noise, log-probabilities, masks,
export, and which layout saved and new configurations mean."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imitate.checkpoint import load_policy, read_run_config
from imitate.settings import head_settings_for
from policy_heads import get_head_class, make_head
from tests.golden.make_golden import HERE, VARIANTS
from tests.tiny import TINY_HEADS

GOLDEN = Path(__file__).parent / "golden"
F_DIM, TA = 6, 4
NVEC = (3, 5)
STEP_DIR = HERE / "autoregressive_step"
STEP_SETTINGS = {**TINY_HEADS["autoregressive"], **VARIANTS["autoregressive_step"][1]}


def step_head(action_dim: int = 2, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = {"d_model": 32, "num_heads": 2, "num_layers": 2, "bins": 8, "layout": "step", **config}
    head = make_head("autoregressive", F_DIM, action_dim, TA, **settings)
    if not head.discrete:
        head.prepare(torch.rand(200, action_dim) * 2 - 1)
    with torch.no_grad():  # break the symmetry of fresh weights: larger logits, distinct per token
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return head.eval()


def actions(head, batch: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if head.discrete:
        nvec = torch.tensor(head.config.discrete_nvec)
        return (torch.rand(batch, TA, len(nvec), generator=g) * nvec).floor()
    return torch.rand(batch, TA, head.action_dim, generator=g) * 2 - 1


CASES = [{}, {"discrete_nvec": NVEC}, {"dims_per_token": 2}, {"binning": "uniform", "ff_mult": 2}]


@pytest.mark.parametrize("config", CASES)
def test_step_layout_logits_depend_only_on_earlier_tokens(config):
    head = step_head(**config)
    features = torch.randn(3, F_DIM)
    tokens = head._tokens(actions(head, 3))
    logits = head._logits(features, tokens)
    k = head.logit_mask.shape[1]
    for p in range(head.num_tokens):
        changed = tokens.clone()
        size = int(torch.isfinite(head.logit_mask[p]).sum())
        changed[:, p] = (changed[:, p] + 1) % size
        other = head._logits(features, changed)
        torch.testing.assert_close(other[:, : p + 1], logits[:, : p + 1], rtol=0, atol=1e-6)  # p's own logits too
        if p + 1 < head.num_tokens:
            assert not torch.allclose(other[:, p + 1:], logits[:, p + 1:]), f"token {p} reaches no later token"
    assert logits.shape == (3, head.num_tokens, k)


@pytest.mark.parametrize("config", CASES)
def test_step_layout_cached_decoding_is_the_teacher_forced_distribution(config):
    head = step_head(**config)
    features = torch.randn(4, F_DIM)
    mode_tokens = head._tokens(head.mode(features))
    assert torch.equal(head._logits(features, mode_tokens).argmax(-1), mode_tokens)
    noise = head.draw_noise(4, torch.Generator().manual_seed(3))
    drawn = head._tokens(head.sample_with_noise(features, noise))
    gumbel = -torch.log(-torch.log(noise["uniform"].clamp(1e-20, 1.0 - 1e-7)))
    assert torch.equal((head._logits(features, drawn) + gumbel).argmax(-1), drawn)  # each draw is Gumbel-max
    assert not torch.equal(drawn, mode_tokens)


@pytest.mark.parametrize("config", CASES)
def test_step_layout_log_prob_is_the_sum_of_token_log_probabilities(config):
    head = step_head(**config)
    features, action = torch.randn(5, F_DIM), actions(head)
    tokens = head._tokens(action)
    log_probs = torch.log_softmax(head._logits(features, tokens), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(head.log_prob(features, action), log_probs.sum(-1))
    loss, info = head.loss(features, action)
    torch.testing.assert_close(loss, -log_probs.mean())
    assert 0.0 <= float(info["token_accuracy"]) <= 1.0


def test_step_layout_probabilities_of_a_small_discrete_space_sum_to_one():
    """Every chunk of a 2-step horizon with categories (2, 3): 6 ** 2 = 36 chunks, probabilities summing to 1."""
    torch.manual_seed(0)
    small = make_head("autoregressive", F_DIM, 2, 2, d_model=32, num_heads=2, num_layers=1, layout="step",
                      discrete_nvec=(2, 3))
    grid = torch.tensor([[a, b] for a in range(2) for b in range(3)], dtype=torch.float32)
    chunks = torch.stack([torch.stack([x, y]) for x in grid for y in grid])  # (36, 2, 2)
    features = torch.randn(1, F_DIM).expand(len(chunks), -1)
    total = small.log_prob(features, chunks).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0))


def test_step_layout_mask_and_weights():
    head = step_head()
    features, action = torch.randn(5, F_DIM), actions(head)
    mask = torch.ones(5, TA, dtype=torch.bool)
    mask[1, 2:] = False
    garbage = action.clone()
    garbage[1, 2:] = float("nan")
    masked = head.loss(features, garbage, mask)[0]
    assert torch.isfinite(masked)
    torch.testing.assert_close(head.loss(features, action, mask)[0], masked)
    unweighted = head.loss(features, action, mask)[0]
    assert torch.equal(head.loss(features, action, mask, torch.ones(5))[0], unweighted)
    alone = torch.zeros(5)
    alone[0] = 1
    torch.testing.assert_close(head.loss(features, action, None, alone)[0], head.loss(features[:1], action[:1])[0])


def test_step_layout_runs_one_transformer_position_per_step():
    entry = make_head("autoregressive", F_DIM, 2, TA, d_model=32, num_heads=2, layout="entry")
    step = make_head("autoregressive", F_DIM, 2, TA, d_model=32, num_heads=2, layout="step")
    assert entry.position.shape[0] == TA * 2 and step.position.shape[0] == TA
    seen = []
    hook = step.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    step.prepare(torch.rand(50, 2) * 2 - 1)
    step.loss(torch.randn(3, F_DIM), torch.rand(3, TA, 2) * 2 - 1)
    hook.remove()
    assert seen == [torch.Size([3, TA, 32])]


def test_bad_layout_fields_are_refused():
    with pytest.raises(ValueError, match="layout"):
        make_head("autoregressive", F_DIM, 2, TA, layout="tokens")
    with pytest.raises(ValueError, match="ff_mult"):
        make_head("autoregressive", F_DIM, 2, TA, ff_mult=0)


def test_a_saved_config_without_layout_loads_as_the_entry_layout():
    saved = read_run_config(GOLDEN / "autoregressive")["policy"]["head_config"]
    assert "layout" not in saved and "ff_mult" not in saved
    head = load_policy(GOLDEN / "autoregressive").head
    assert head.config.layout == "entry" and not head.by_step and head.config.ff_mult == 4
    assert get_head_class("autoregressive").Config().layout == "entry"


def test_new_cpu_and_rl_runs_get_the_step_layout():
    cls = get_head_class("autoregressive")
    settings, _ = head_settings_for("autoregressive", True, "auto", {})
    assert settings["layout"] == "step"
    assert cls.rl_defaults()["layout"] == "step"
    given, _ = head_settings_for("autoregressive", True, "auto", {"layout": "entry"})
    assert given["layout"] == "entry"


def test_step_layout_golden_checkpoint_gives_its_recorded_outputs():
    expected = json.loads((STEP_DIR / "expected.json").read_text())
    saved = read_run_config(STEP_DIR)["policy"]["head_config"]
    assert {k: str(saved[k]) for k in STEP_SETTINGS} == STEP_SETTINGS
    policy = load_policy(STEP_DIR)
    assert policy.head.by_step
    chunk = policy.predict_chunk({k: np.asarray(v, np.float32) for k, v in expected["obs"].items()},
                                 generator=torch.Generator().manual_seed(expected["generator_seed"]))
    np.testing.assert_allclose(chunk, np.asarray(expected["actions"]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("run", [STEP_DIR, GOLDEN / "autoregressive"], ids=["step", "entry"])
def test_both_layouts_export_exactly(tmp_path, run):
    """New runs on a CPU train the step layout (the export tests' tiny runs too); the golden entry run is exported here."""
    from imitate.export.exporter import export_run
    from imitate.export.runtime import load

    export_run(run, tmp_path / "exported", ["onnx"])
    policy, model = load_policy(run), load(tmp_path / "exported", "onnx", threads=1)
    assert policy.head.by_step == (run == STEP_DIR)
    rng = np.random.default_rng(5)
    for batch in (1, 3):
        obs = {k: rng.uniform(-0.5, 0.5, (batch, 2, 2)).astype(np.float32) for k in ("agent_pos", "goal_pos")}
        eager = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(batch))
        noise = {k: v.numpy() for k, v in policy.head.draw_noise(batch, torch.Generator().manual_seed(batch)).items()}
        np.testing.assert_allclose(model.predict_chunk(obs, noise=noise), eager, atol=1e-4, rtol=0)


def test_quantile_bins_decode_to_the_mean_of_their_training_actions():
    """A gripper's two values pile up: quantile edges coincide at -1, and the bin that -1 falls in spans
    -1 to +1. Its centre would decode -1 as 0 (half closed); the bin's mean keeps -1 and +1 exact."""
    torch.manual_seed(0)
    head = make_head("autoregressive", F_DIM, 2, 1, d_model=16, num_heads=2, num_layers=1, bins=16,
                     binning="quantile")
    gripper = torch.where(torch.rand(400) < 0.75, -1.0, 1.0)
    arm = torch.rand(400) * 2 - 1
    actions = torch.stack([arm, gripper], dim=1)
    head.prepare(actions)
    decoded = head._values(head._tokens(actions.unsqueeze(1))).squeeze(1)
    assert torch.equal(decoded[:, 1], gripper)
    centres = 0.5 * (head.edges[1, :-1] + head.edges[1, 1:])
    assert (centres[head._tokens(actions.unsqueeze(1))[:, 1]][gripper < 0] == 0).all()   # what centres gave
    width = (head.edges[0, 1:] - head.edges[0, :-1]).max()
    assert (decoded[:, 0] - arm).abs().max() <= width
    # a checkpoint saved before bin_values existed decodes to its edges' centres, as it was trained
    old = {k: v for k, v in head.state_dict().items() if k != "bin_values"}
    fresh = make_head("autoregressive", F_DIM, 2, 1, d_model=16, num_heads=2, num_layers=1, bins=16,
                      binning="quantile")
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.bin_values, 0.5 * (head.edges[:, :-1] + head.edges[:, 1:]))
    assert bool(fresh.prepared)
