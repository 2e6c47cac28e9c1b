"""Per-row weights in the head contract: loss(features, action, mask, weight).

    loss = sum_i w_i sum_t m_it l_it / sum_i w_i sum_t m_it

Every registered head is checked: weight None and all-ones weights give the same number bit for bit
(with and without a mask), and weights combine the rows' own losses as the formula says. The heads
that draw noise in their loss (diffusion, flow) are called with the same seed each time, so every
call sees the same noise.
"""
import pytest
import torch

from policy_heads import make_head, registered_heads
from tests.tiny import TINY_HEADS

B, F, TA, A = 5, 16, 4, 2
# Every registered head with its tiny settings, and the flow head's other objectives.
CASES = [pytest.param(name, {}, id=name) for name in registered_heads()] + [
    pytest.param("flow", {"objective": objective}, id=f"flow-{objective}") for objective in ("flow", "shortcut", "meanflow")]


def _head(name, overrides=None):
    torch.manual_seed(0)
    head = make_head(name, F, A, TA, **{**TINY_HEADS.get(name, {}), **(overrides or {})})
    head.prepare(torch.rand(256, A) * 2 - 1)
    return head


def _batch():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(B, F, generator=g)
    action = torch.rand(B, TA, A, generator=g) * 1.8 - 0.9
    mask = torch.ones(B, TA, dtype=torch.bool)
    mask[1, 2:] = False   # row 1 has 2 real steps
    mask[3, 1:] = False   # row 3 has 1
    return features, action, mask


def _loss(head, *args):
    torch.manual_seed(123)   # the same noise in every call (diffusion, flow)
    return head.loss(*args)[0]


@pytest.mark.parametrize("name, overrides", CASES)
def test_ones_equal_none_bit_for_bit(name, overrides):
    head = _head(name, overrides)
    features, action, mask = _batch()
    ones = torch.ones(B)
    for m in (None, mask):
        plain, weighted = _loss(head, features, action, m), _loss(head, features, action, m, ones)
        assert torch.equal(plain, weighted), (name, m is None, plain.item(), weighted.item())


@pytest.mark.parametrize("name, overrides", CASES)
def test_ones_equal_none_gradients(name, overrides):
    head = _head(name, overrides)
    features, action, mask = _batch()
    grads = []
    for weight in (None, torch.ones(B)):
        head.zero_grad()
        _loss(head, features, action, mask, weight).backward()
        grads.append([p.grad.clone() for p in head.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name, overrides", CASES)
def test_weights_combine_rows_as_documented(name, overrides):
    head = _head(name, overrides)
    features, action, mask = _batch()
    # each row's own loss: the mean over its real entries (every other row masked out)
    row_loss = []
    for i in range(B):
        only = torch.zeros_like(mask)
        only[i] = mask[i]
        row_loss.append(_loss(head, features, action, only))
    row_loss = torch.stack(row_loss)
    steps = mask.sum(1).to(row_loss.dtype)            # entries per row are proportional to real steps
    weight = torch.tensor([0.5, 3.0, 0.0, 1.25, 2.0])
    expected = (weight * steps * row_loss).sum() / (weight * steps).sum()
    got = _loss(head, features, action, mask, weight)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # a weight of zero removes a row: [1, 0, 0, 0, 0] is row 0's own loss
    alone = _loss(head, features, action, mask, torch.tensor([1.0, 0, 0, 0, 0]))
    torch.testing.assert_close(alone, row_loss[0], rtol=1e-5, atol=1e-6)
    # scaling every weight changes nothing (a weighted mean, not a weighted sum)
    torch.testing.assert_close(_loss(head, features, action, mask, weight * 7), got, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["deterministic", "gaussian", "gmm", "autoregressive"])
def test_weight_one_zero_is_row_zero_alone(name):
    """Heads without noise in their loss: weight [1, 0, ...] is the loss of the batch made of row 0 only."""
    head = _head(name)
    features, action, _ = _batch()
    weight = torch.zeros(B)
    weight[0] = 1
    torch.testing.assert_close(head.loss(features, action, None, weight)[0],
                               head.loss(features[:1], action[:1])[0], rtol=1e-6, atol=1e-7)


def test_bad_weight_shape_is_refused():
    head = _head("deterministic")
    features, action, _ = _batch()
    with pytest.raises(ValueError, match=r"weight must be a float tensor of shape \(B,\) = \(5,\)"):
        head.loss(features, action, None, torch.ones(B, 1))
    with pytest.raises(ValueError, match="weight"):
        head.loss(features, action, None, torch.ones(B, dtype=torch.long))


def test_policy_compute_loss_passes_the_weight():
    from imitate.policy import Policy
    from imitate.spec import ActionSpec, ObsSpec, PolicySpec

    spec = PolicySpec({"state": ObsSpec((3,), "float32", "identity")}, ActionSpec(2, (), norm="identity"), 1, 2, 1,
                      "deterministic", {"hidden_dims": (8,)}, {"hidden_dims": (8,), "feature_dim": 8})
    torch.manual_seed(0)
    policy = Policy(spec)
    obs = {"state": torch.randn(3, 1, 3)}
    action = torch.rand(3, 2, 2) * 2 - 1
    plain = policy.compute_loss(obs, action)[0]
    assert torch.equal(plain, policy.compute_loss(obs, action, None, torch.ones(3))[0])
    first = policy.compute_loss(obs, action, None, torch.tensor([1.0, 0.0, 0.0]))[0]
    torch.testing.assert_close(first, policy.compute_loss({"state": obs["state"][:1]}, action[:1])[0])
