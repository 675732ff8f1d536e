"""The defining properties of CLCR's parts (spec sections 2, 3 and 5)."""
import math

import pytest
import torch

from clcr_mm.models import (CrossLevelInterferenceLoss, InterCAD, IntraCED,
                            SharedAlignmentLoss, SharedPrivateSeparationLoss,
                            TokenBudgetLoss)
from clcr_mm.models.losses.regularisers import _cross_energy
from clcr_mm.models.utils import LEVELS


def _tokens(batch=3, sizes=dict(a=10, b=6), dims=16, grad=False):
    return {
        m: torch.randn(batch, n, dims, requires_grad=grad)
        for m, n in sizes.items()
    }


def test_private_subspace_never_reaches_other_modality():
    """d S_hat_b / d X_a flows only through W_s: with a's shared projection
    switched off, b's exchanged shared tokens do not depend on a's tokens at
    all, although a's private tokens do."""
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2, dropout=0.0)
    tokens = _tokens(grad=True)
    out = intra(tokens)
    grad_with_shared, = torch.autograd.grad(out['shared']['b'].sum(),
                                            tokens['a'])
    assert grad_with_shared.abs().sum() > 0  # the exchange is real

    with torch.no_grad():
        intra.shared_proj['a'][0].weight.zero_()
    out = intra(tokens)
    grad_without_shared, = torch.autograd.grad(
        out['shared']['b'].sum(), tokens['a'], allow_unused=True)
    assert grad_without_shared is None or torch.all(grad_without_shared == 0)
    private_grad, = torch.autograd.grad(out['private']['a'].sum(),
                                        tokens['a'])
    assert private_grad.abs().sum() > 0


def test_private_projection_has_zero_gradient_from_other_modality():
    intra = IntraCED(['a', 'b', 'c'], embed_dims=16, num_heads=2)
    out = intra(_tokens(sizes=dict(a=5, b=7, c=4)))
    for m in ('a', 'c'):
        for n in ('b', ):
            grads = torch.autograd.grad(
                out['shared'][n].sum(),
                list(intra.private_proj[m].parameters()),
                allow_unused=True)
            assert all(g is None or torch.all(g == 0) for g in grads)


@pytest.mark.parametrize('ratio', [0.2, 0.5, 0.9])
def test_attention_uses_at_most_the_budgeted_tokens(ratio):
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2,
                     token_budget=dict(init_ratio=ratio)).eval()
    tokens = _tokens(sizes=dict(a=20, b=8))
    out = intra(tokens)
    for m, n in dict(a=20, b=8).items():
        rho = float(intra.budgets[m].ratio.detach())
        assert abs(rho - ratio) < 1e-5
        assert out['num_selected'][m] <= math.ceil(rho * n)
        assert out['num_selected'][m] == max(1, math.ceil(rho * n))

    # Tokens of a outside its budget cannot influence b at all: the
    # gradient of b's exchanged tokens is zero at exactly N - k positions.
    leaf = tokens['a'].clone().requires_grad_(True)
    out = intra(dict(tokens, a=leaf))
    grad, = torch.autograd.grad(out['shared']['b'].sum(), leaf)
    reached = grad.abs().sum(-1) > 0
    assert torch.all(reached.sum(1) == out['num_selected']['a'])
    # The budget ratio itself learns in training.
    intra.train()
    out = intra(tokens)
    out['shared']['b'].pow(2).sum().backward()
    assert intra.budgets['a'].logit.grad is not None
    assert intra.budgets['a'].logit.grad.abs() > 0
    assert intra.budgets['a'].scorer.weight.grad.abs().sum() > 0


def test_no_token_budget_uses_every_token():
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2,
                     token_budget=None)
    out = intra(_tokens(sizes=dict(a=9, b=5)))
    assert out['num_selected'] == dict(a=9, b=5)
    assert out['budget_ratio'] == {}


def test_absent_modality_offers_no_keys():
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2).eval()
    tokens = _tokens()
    mask = torch.tensor([[True, False], [True, True], [True, False]])
    out = intra(tokens, mask)
    changed = {m: t.clone() for m, t in tokens.items()}
    changed['b'] = torch.randn_like(tokens['b']) * 5
    out2 = intra(changed, mask)
    # samples 0 and 2 lack b: a's exchange is unaffected by b's values
    assert torch.allclose(out['shared']['a'][[0, 2]],
                          out2['shared']['a'][[0, 2]], atol=1e-6)
    assert not torch.allclose(out['shared']['a'][1], out2['shared']['a'][1])
    assert torch.isfinite(out['shared']['a']).all()


def _inter_inputs(batch=3, dims=16, modalities=('a', 'b')):
    shared = {l: _tokens(batch, {m: 4 + i for i, m in enumerate(modalities)},
                         dims) for l in LEVELS}
    private = {l: _tokens(batch, {m: 4 + i for i, m in enumerate(modalities)},
                          dims) for l in LEVELS}
    return shared, private


def test_inter_cad_uses_anchors_and_gates():
    inter = InterCAD(['a', 'b'], embed_dims=16, out_channels=8,
                     num_anchors=4, num_heads=2, dropout=0.0)
    shared, private = _inter_inputs()
    out = inter(shared, private)
    assert out['feat'].shape == (3, 8)
    assert out['level_feats'].shape == (3, 3, 16)
    assert torch.allclose(out['level_weights'].sum(-1), torch.ones(3))
    gates = out['private_gates']
    assert gates.shape == (3, 2, 3)
    assert ((gates > 0) & (gates < 1)).all()
    out['feat'].pow(2).sum().backward()
    assert inter.anchors.grad.abs().sum() > 0
    assert inter.gate.weight.grad.abs().sum() > 0
    assert inter.level_scorer[0].weight.grad.abs().sum() > 0

    # Private cues reach h only through the gates: closing them removes
    # every dependence on the private tokens.
    with torch.no_grad():
        inter.gate.bias.fill_(-1e4)
    base = inter(shared, private)['feat']
    other = {l: {m: torch.randn_like(t) for m, t in d.items()}
             for l, d in private.items()}
    assert torch.allclose(base, inter(shared, other)['feat'], atol=1e-5)


def test_inter_cad_masks_absent_modality_private_and_shared():
    inter = InterCAD(['a', 'b'], embed_dims=16, out_channels=8,
                     num_anchors=4, num_heads=2).eval()
    shared, private = _inter_inputs()
    mask = torch.tensor([[True, False], [True, True], [True, False]])
    out = inter(shared, private, mask)
    assert torch.all(out['private_gates'][[0, 2], 1] == 0)
    noisy_shared = {l: dict(d, b=torch.randn_like(d['b']) * 3)
                    for l, d in shared.items()}
    noisy_private = {l: dict(d, b=torch.randn_like(d['b']) * 3)
                     for l, d in private.items()}
    out2 = inter(noisy_shared, noisy_private, mask)
    assert torch.allclose(out['feat'][[0, 2]], out2['feat'][[0, 2]],
                          atol=1e-5)


def test_separation_loss_zero_iff_orthogonal():
    loss = SharedPrivateSeparationLoss(loss_weight=1.0)
    # Over the tokens, shared varies as (+,-,+,-) and private as (+,+,-,-):
    # zero-mean, orthogonal patterns, so S^T P = 0 after centring.
    s_pattern = torch.tensor([1., -1., 1., -1.])
    p_pattern = torch.tensor([1., 1., -1., -1.])
    u, v = torch.randn(8), torch.randn(8)
    shared = (s_pattern[:, None] * u).expand(2, 4, 8)
    private = (p_pattern[:, None] * v).expand(2, 4, 8)
    base = torch.randn(2, 4, 8)
    present = torch.ones(2, 1, dtype=torch.bool)
    value = loss({'deep': {'a': shared}}, {'deep': {'a': private}}, present,
                 ['a'])
    assert value.abs() < 1e-10
    value = loss({'deep': {'a': base}}, {'deep': {'a': base}}, present, ['a'])
    assert value > 0.1
    # an absent sample does not count
    value = loss({'deep': {'a': base}}, {'deep': {'a': base}},
                 torch.zeros(2, 1, dtype=torch.bool), ['a'])
    assert value == 0


@pytest.mark.parametrize('num_tokens,dims', [(5, 12), (12, 5), (8, 8)])
def test_separation_energy_gram_and_covariance_agree(num_tokens, dims):
    """Fewer tokens than channels takes the Gram route, otherwise the
    cross-covariance; both are ||S^T P||_F^2 / N^2 per sample."""
    s = torch.randn(3, num_tokens, dims, dtype=torch.float64)
    p = torch.randn(3, num_tokens, dims, dtype=torch.float64)
    explicit = torch.stack([(a.T @ b).pow(2).sum() for a, b in zip(s, p)])
    assert torch.allclose(_cross_energy(s, p), explicit / num_tokens**2)


def test_cross_level_loss_zero_iff_levels_orthogonal():
    loss = CrossLevelInterferenceLoss(loss_weight=1.0)
    eye = torch.eye(3, 5).unsqueeze(0).repeat(2, 1, 1)
    assert loss(eye) == 0
    same = torch.randn(2, 1, 5).repeat(1, 3, 1)
    assert torch.isclose(loss(same), torch.tensor(1.0))


def test_budget_loss_zero_at_target():
    loss = TokenBudgetLoss(target=0.4, loss_weight=1.0)
    assert loss([torch.tensor(0.4), torch.tensor(0.4)]) == 0
    assert loss([torch.tensor(0.9), torch.tensor(0.4)]) > 0.1


def test_alignment_loss_zero_when_shared_coincide():
    loss = SharedAlignmentLoss(loss_weight=1.0)
    x = torch.randn(2, 4, 8)
    present = torch.ones(2, 2, dtype=torch.bool)
    assert loss({'deep': {'a': x, 'b': x}}, present, ['a', 'b']).abs() < 1e-6
    assert loss({'deep': {'a': x, 'b': -x}}, present, ['a', 'b']) > 1.0
