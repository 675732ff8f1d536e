"""The defining properties of CLCR's parts (spec sections 2, 3 and 5)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from clcr_mm.models import (CrossLevelInterferenceLoss, InterCAD, IntraCED,
                            LevelWeightEntropyLoss,
                            PrivateLeakageAdversaryLoss, SharedAlignmentLoss,
                            SharedPrivateSeparationLoss, TokenBudget,
                            TokenBudgetLoss)
from clcr_mm.models.losses.regularisers import _cross_energy
from clcr_mm.models.necks import IntraCEDLevels
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
    # S and P of a modality come out of one grouped product: keep the
    # graph for the private gradient below
    grad_without_shared, = torch.autograd.grad(
        out['shared']['b'].sum(), tokens['a'], allow_unused=True,
        retain_graph=True)
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
                allow_unused=True, retain_graph=True)
            assert all(g is None or torch.all(g == 0) for g in grads)


@pytest.mark.parametrize('ratio', [0.2, 0.5, 0.9])
def test_evaluation_uses_exactly_the_budgeted_tokens(ratio):
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2,
                     token_budget=dict(init_ratio=ratio)).eval()
    tokens = _tokens(sizes=dict(a=20, b=8))
    out = intra(tokens)
    for m, n in dict(a=20, b=8).items():
        rho = float(intra.budgets[m].ratio.detach())
        assert abs(rho - ratio) < 1e-5
        k = max(1, math.ceil(rho * n - 1e-4))
        assert torch.all(out['num_selected'][m] == k)
        assert torch.allclose(out['budget_used'][m], torch.tensor(k / n))

    # Tokens of a outside its budget cannot influence b at all: the
    # gradient of b's exchanged tokens is zero at exactly N - k positions.
    leaf = tokens['a'].clone().requires_grad_(True)
    out = intra(dict(tokens, a=leaf))
    grad, = torch.autograd.grad(out['shared']['b'].sum(), leaf)
    reached = grad.abs().sum(-1) > 0
    assert torch.all(reached.sum(1) == out['num_selected']['a'])


def test_training_gate_is_soft_and_tied_to_the_ratio():
    """In training tokens near the budget edge are partly open and the
    fraction offered follows rho, so d(used)/d(rho) > 0 (the budget cost
    reaches rho) and the task gradient reaches every token near the edge,
    not only the top-k."""
    budget = TokenBudget(16, init_ratio=0.5).train()
    shared = torch.randn(4, 32, 16)
    out = budget(shared)
    assert ((out['gate'] > 0) & (out['gate'] < 1)).any()
    assert torch.allclose(out['used'], torch.full((4, ), 0.5), atol=1e-6)
    out['used'].sum().backward()
    assert budget.logit.grad > 0
    assert budget.scorer.weight.grad is None  # ranks carry no gradient


def test_saturated_budget_gives_the_same_output_in_training_and_eval():
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2, dropout=0.0,
                     token_budget=dict(init_ratio=0.5))
    with torch.no_grad():
        for budget in intra.budgets.values():
            budget.logit.fill_(40.0)  # rho = 1 in float32
    tokens = _tokens(sizes=dict(a=13, b=7))
    train = intra.train()(tokens)
    evaluation = intra.eval()(tokens)
    for m in ('a', 'b'):
        assert torch.all(train['num_selected'][m] == tokens[m].shape[1])
        assert torch.allclose(train['shared'][m], evaluation['shared'][m],
                              atol=1e-6)


def _budget_toy(kind: str, budget_cost: float, steps: int = 300) -> float:
    """Train IntraCED on a planted toy with Adam; return the final rho of
    the modality whose tokens hold the answer."""
    torch.manual_seed(0)
    dims = 16
    intra = IntraCED(['a', 'b'], embed_dims=dims, num_heads=2, dropout=0.0)
    head = torch.nn.Linear(dims, 1)
    optim = torch.optim.Adam(
        list(intra.parameters()) + list(head.parameters()), lr=1e-2)
    cost = TokenBudgetLoss(loss_weight=budget_cost)
    rows = torch.arange(32)
    for _ in range(steps):
        xa, xb = torch.randn(32, 16, dims), torch.randn(32, 4, dims)
        if kind == 'spread':
            # every token of a carries part of the answer
            target = xa[..., 0].mean(1, keepdim=True) * 4
        else:
            # one flagged token of a carries all of it
            where = torch.randint(16, (32, ))
            xa[rows, where, 1] = 5.0
            target = xa[rows, where, 0].unsqueeze(1)
        out = intra(dict(a=xa, b=xb))
        loss = (head(out['shared']['b'].mean(1)) - target).pow(2).mean()
        if budget_cost:
            loss = loss + cost(list(out['budget_used'].values()))
        optim.zero_grad()
        loss.backward()
        optim.step()
    return float(intra.budgets['a'].ratio)


def test_budget_opens_when_the_answer_is_spread_over_all_tokens():
    assert _budget_toy('spread', budget_cost=0.0) >= 0.65


def test_budget_closes_when_one_token_suffices_and_tokens_cost():
    assert _budget_toy('one', budget_cost=1.0) <= 0.35


def test_private_noise_never_reaches_other_modalities_shared_tokens():
    """The property itself, not a proxy: noise in m's private projection
    (so P_m changes arbitrarily) changes nothing of S_hat_n for n != m,
    while the same noise in m's shared projection does."""
    torch.manual_seed(0)
    intra = IntraCED(['a', 'b', 'c'], embed_dims=16, num_heads=2,
                     dropout=0.0).eval()
    tokens = _tokens(sizes=dict(a=5, b=7, c=4))
    clean = intra(tokens)

    for proj, changes_others in ((intra.private_proj['a'], False),
                                 (intra.shared_proj['a'], True)):
        saved = {k: v.clone() for k, v in proj.state_dict().items()}
        with torch.no_grad():
            for param in proj.parameters():
                param.add_(3 * torch.randn_like(param))
        noisy = intra(tokens)
        proj.load_state_dict(saved)
        subspace = 'shared' if changes_others else 'private'
        assert not torch.allclose(noisy[subspace]['a'],
                                  clean[subspace]['a'], atol=1e-3)
        for n in ('b', 'c'):
            same = torch.allclose(noisy['shared'][n], clean['shared'][n],
                                  atol=1e-6)
            assert same != changes_others, (proj, n)


def test_exchange_matches_plain_multi_head_attention():
    """Without a budget, every query of a modality attends to the null key
    and all other modalities' shared tokens: the joint block-masked call
    equals per-modality multi-head attention written out plainly."""
    torch.manual_seed(0)
    dims, heads = 16, 4
    intra = IntraCED(['a', 'b', 'c'], embed_dims=dims, num_heads=heads,
                     token_budget=None, dropout=0.0).eval()
    with torch.no_grad():
        intra.null_key.normal_()
    tokens = _tokens(sizes=dict(a=5, b=7, c=4), dims=dims)
    out = intra(tokens)
    for m in ('a', 'b', 'c'):
        s_m = out['shared_in'][m]
        others = torch.cat([out['shared_in'][n] for n in ('a', 'b', 'c')
                            if n != m], 1)
        q = intra.query_norm(s_m)
        # reference per head with the null value set to zero
        ref = _reference_attention(q, others, intra, heads)
        expected = s_m + intra.out(ref)
        expected = expected + intra.ffn(expected)
        assert torch.allclose(out['shared'][m], expected, atol=1e-5)


def _reference_attention(q_in: torch.Tensor, others: torch.Tensor,
                         intra: IntraCED, heads: int) -> torch.Tensor:
    """softmax(QK^T / sqrt(d_h)) V per head, written out, over the learned
    null key (a key already in key space, with a zero value) and the
    projected shared tokens of the other modalities."""
    dims = q_in.shape[-1]
    head_dims = dims // heads
    q = intra.q(q_in)
    k, v = intra.kv(others).chunk(2, dim=-1)
    k = torch.cat([intra.null_key.expand(k.shape[0], -1, -1), k], 1)
    v = torch.cat([torch.zeros_like(v[:, :1]), v], 1)
    outs = []
    for h in range(heads):
        sl = slice(h * head_dims, (h + 1) * head_dims)
        attn = (q[..., sl] @ k[..., sl].transpose(1, 2) /
                math.sqrt(head_dims)).softmax(-1)
        outs.append(attn @ v[..., sl])
    return torch.cat(outs, -1)


@pytest.mark.parametrize('budget', [dict(), None])
@pytest.mark.parametrize('training', [True, False])
def test_levels_run_together_as_each_level_alone(budget, training):
    """IntraCEDLevels runs the three levels' IntraCEDs as one batched
    computation over zero-padded token sets of different lengths; every
    level's outputs and every parameter's gradient equal what that level's
    module computes alone, with padding tokens and an absent modality."""
    torch.manual_seed(0)
    sizes = dict(shallow=dict(a=6, b=6, c=3), mid=dict(a=6, b=2, c=1),
                 deep=dict(a=2, b=4, c=5))
    levels = IntraCEDLevels({
        level: IntraCED(['a', 'b', 'c'], embed_dims=16, num_heads=2,
                        dropout=0.0, token_budget=budget)
        for level in sizes
    }, batch_levels=True).train(training)
    tokens = {level: _tokens(sizes=s) for level, s in sizes.items()}
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    lengths = torch.tensor([[6], [2], [4]])
    token_masks = {
        'shallow': dict(a=torch.arange(6)[None] < lengths),
        'deep': dict(c=torch.arange(5)[None] < lengths.clamp(max=5))
    }
    together, stacked = levels(tokens, mask, token_masks)
    grads_together = torch.autograd.grad(
        sum(out['shared'][m].sum() + out['private'][m].pow(2).sum()
            for out in together.values() for m in 'abc'),
        list(levels.parameters()), allow_unused=True)
    alone = {
        level: levels[level](tokens[level], mask, token_masks.get(level))
        for level in sizes
    }
    grads_alone = torch.autograd.grad(
        sum(out['shared'][m].sum() + out['private'][m].pow(2).sum()
            for out in alone.values() for m in 'abc'),
        list(levels.parameters()), allow_unused=True)
    for level, out in together.items():
        for key in ('shared', 'private', 'shared_in', 'budget_ratio',
                    'budget_used', 'num_selected'):
            assert out[key].keys() == alone[level][key].keys()
            for m, value in out[key].items():
                assert value.shape == alone[level][key][m].shape
                torch.testing.assert_close(value, alone[level][key][m])
        for m in 'abc':
            assert out['shared'][m].shape[1] == sizes[level][m]
    assert any(g is not None and g.abs().sum() > 0 for g in grads_together)
    for a, b in zip(grads_together, grads_alone):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def test_levels_of_other_exchange_modules_run_one_by_one():
    """Modules of different layouts (here: heads) cannot be batched; they
    run level by level and give the same result."""
    torch.manual_seed(0)
    modules = {
        level: IntraCED(['a', 'b'], embed_dims=16, num_heads=heads,
                        dropout=0.0)
        for level, heads in zip(LEVELS, (2, 4, 2))
    }
    levels = IntraCEDLevels(modules, batch_levels=True).eval()
    tokens = {level: _tokens() for level in LEVELS}
    out, _ = levels(tokens)
    for level in LEVELS:
        torch.testing.assert_close(out[level]['shared']['a'],
                                   modules[level](tokens[level])['shared']['a'])


def test_batch_levels_must_be_a_known_choice():
    with pytest.raises(ValueError, match='batch_levels'):
        IntraCEDLevels({}, batch_levels='gpu')


def test_padding_tokens_are_never_keys():
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2).eval()
    tokens = _tokens(sizes=dict(a=10, b=6))
    valid_a = torch.arange(10)[None].expand(3, -1) < torch.tensor(
        [[4], [10], [7]])
    out = intra(tokens, token_masks=dict(a=valid_a))
    noisy = dict(tokens, a=torch.where(valid_a[..., None], tokens['a'],
                                       100 * torch.randn_like(tokens['a'])))
    out2 = intra(noisy, token_masks=dict(a=valid_a))
    assert torch.allclose(out['shared']['b'], out2['shared']['b'], atol=1e-5)
    # k counts valid tokens only
    assert out['num_selected']['a'].tolist() == [2, 5, 4]


def test_no_token_budget_uses_every_token():
    intra = IntraCED(['a', 'b'], embed_dims=16, num_heads=2,
                     token_budget=None)
    out = intra(_tokens(sizes=dict(a=9, b=5)))
    assert out['num_selected']['a'].tolist() == [9, 9, 9]
    assert out['num_selected']['b'].tolist() == [5, 5, 5]
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


class _AttentionMasks(TorchDispatchMode):
    """Records the mask of every fused-attention call."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if 'scaled_dot_product' in str(func.overloadpacket) and \
                'backward' not in str(func.overloadpacket):
            self.masks.append(kwargs.get('attn_mask'))
        return func(*args, **kwargs)


@pytest.mark.parametrize('sizes', [dict(a=4, b=4), dict(a=4, b=5)])
def test_inter_cad_attends_without_a_mask_when_nothing_is_masked(sizes):
    """No modality mask and no padding: the anchors' attention gets no
    mask (SDPA's fused no-mask kernels), with the output and gradients of
    an all-present mask. With padding the padding tokens stay masked."""
    inter = InterCAD(['a', 'b'], embed_dims=16, out_channels=8,
                     num_anchors=4, num_heads=2, dropout=0.0)
    shared = {l: _tokens(3, sizes, 16) for l in LEVELS}
    private = {l: _tokens(3, sizes, 16) for l in LEVELS}
    results = []
    for mask in (None, torch.ones(3, 2, dtype=torch.bool)):
        inter.zero_grad()
        with _AttentionMasks() as seen:
            out = inter(shared, private, mask)['feat']
        out.pow(2).sum().backward()
        results.append((out, [p.grad.clone() for p in inter.parameters()]))
        padded = sizes['a'] != sizes['b']
        assert len(seen.masks) == 1
        assert (seen.masks[0] is None) == (mask is None and not padded)
    (out, grads), (ref, ref_grads) = results
    assert torch.allclose(out, ref, atol=1e-6)
    for grad, ref_grad in zip(grads, ref_grads):
        assert torch.allclose(grad, ref_grad, atol=1e-6)


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
    # Shared tokens lie along u, private along v, u orthogonal to v, and
    # both vary as zero-mean patterns over the tokens (pooled features 0).
    s_pattern = torch.tensor([1., -1., 1., -1.])
    p_pattern = torch.tensor([1., 1., -1., -1.])
    u, v = torch.eye(8)[0], torch.eye(8)[1]
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
    explicit = torch.stack([(a.T @ b).pow(2).sum() for a, b in zip(
        F.normalize(s, dim=-1), F.normalize(p, dim=-1))])
    assert torch.allclose(_cross_energy(torch.stack([s, p])),
                          explicit / num_tokens**2)
    # padding tokens are left out and N counts the valid ones
    valid = torch.ones(3, num_tokens, dtype=torch.bool)
    valid[1, num_tokens // 2:] = False
    padded = torch.stack([s, p]).masked_fill(~valid[..., None], 7.0)
    half = num_tokens // 2
    short = (F.normalize(s[1, :half], dim=-1).T @
             F.normalize(p[1, :half], dim=-1)).pow(2).sum() / half**2
    energy = _cross_energy(padded, valid)
    assert torch.allclose(energy[1], short)
    assert torch.allclose(energy[[0, 2]], explicit[[0, 2]] / num_tokens**2)



@pytest.mark.parametrize('dims', [16, 4])
def test_separation_energy_of_zero_tokens_is_finite(dims):
    """An absent modality's tokens are LN(0) = beta, exactly zero at init,
    in S and P alike: energy 0 and a finite gradient on both routes."""
    pairs = torch.randn(2, 2, 8, dims)
    pairs[:, 0] = 0
    pairs.requires_grad_()
    energy = _cross_energy(pairs)
    energy.sum().backward()
    assert energy[0] == 0 and energy[1] > 0
    assert torch.isfinite(pairs.grad).all()

def test_cross_level_loss_zero_iff_levels_orthogonal():
    loss = CrossLevelInterferenceLoss(loss_weight=1.0)
    eye = torch.eye(3, 5).unsqueeze(0).repeat(2, 1, 1)
    assert loss(eye) == 0
    same = torch.randn(2, 1, 5).repeat(1, 3, 1)
    assert torch.isclose(loss(same), torch.tensor(1.0))


def test_budget_loss_is_a_cost_on_the_fraction_used():
    loss = TokenBudgetLoss(loss_weight=1.0)
    low = loss([torch.full((4, ), 0.2), torch.full((4, ), 0.2)])
    high = loss([torch.full((4, ), 0.8), torch.full((4, ), 0.2)])
    assert torch.isclose(low, torch.tensor(0.2))
    assert torch.isclose(high, torch.tensor(0.5))
    # a free allowance: nothing below the target costs
    free = TokenBudgetLoss(target=0.3, loss_weight=1.0)
    assert free([torch.full((4, ), 0.2)]) == 0
    assert torch.isclose(free([torch.full((4, ), 0.8)]), torch.tensor(0.5))
    with pytest.raises(ValueError, match='target'):
        TokenBudgetLoss(target=1.0)


def test_separation_loss_sees_one_token_levels_and_pooled_signals():
    loss = SharedPrivateSeparationLoss(loss_weight=1.0)
    present = torch.ones(16, 1, dtype=torch.bool)

    def value(shared, private):
        return loss({'deep': {'a': shared}}, {'deep': {'a': private}},
                    present, ['a'])

    torch.manual_seed(0)
    one = torch.randn(16, 1, 32)
    assert value(one, one) > 0.5  # one token, S = P

    # 6 tokens of noise around a per-sample pooled signal, common to S and
    # P, or independent between them.
    signal, other = torch.randn(16, 1, 32), torch.randn(16, 1, 32)
    noise = lambda: 0.5 * torch.randn(16, 6, 32)  # noqa: E731
    common = value(signal + noise(), signal + noise())
    independent = value(signal + noise(), other + noise())
    assert common > 2 * independent


def test_cross_level_loss_cannot_be_fooled_by_anchors():
    """Levels that carry the same thing keep the term at or above a floor
    of 0.5 whatever the anchors are: the term is computed on batch-centred
    pool(Z_l), from which the anchors (the same for every sample) drop."""
    torch.manual_seed(0)
    inter = InterCAD(['a', 'b'], embed_dims=16, out_channels=8,
                     num_anchors=4, num_heads=2, dropout=0.0)
    loss = CrossLevelInterferenceLoss(loss_weight=1.0)
    tokens = _tokens(batch=8, sizes=dict(a=6, b=6), dims=16)
    same = {level: tokens for level in LEVELS}
    base = loss(inter(same, same)['level_feats'])
    with torch.no_grad():
        # large, level-orthogonal anchors: the old loss went to ~0 here
        eye = torch.eye(16)[:3].view(3, 1, 16) * 100
        inter.anchors.copy_(eye.expand_as(inter.anchors))
    fooled = loss(inter(same, same)['level_feats'])
    assert base >= 0.5 and fooled >= 0.5


def test_level_weight_entropy_loss_zero_iff_uniform():
    loss = LevelWeightEntropyLoss(loss_weight=1.0)
    assert loss(torch.full((4, 3), 1 / 3)).abs() < 1e-6
    collapsed = torch.tensor([[1.0, 0.0, 0.0]]).expand(4, -1)
    assert torch.isclose(loss(collapsed), torch.log(torch.tensor(3.0)))


def test_level_temperature_spreads_the_level_weights():
    torch.manual_seed(0)
    shared, private = _inter_inputs(batch=8)
    spreads = []
    for temperature in (0.2, 5.0):
        torch.manual_seed(1)
        inter = InterCAD(['a', 'b'], embed_dims=16, out_channels=8,
                         num_anchors=4, num_heads=2,
                         level_temperature=temperature).eval()
        spreads.append(inter(shared, private)['level_weights'].max(-1)[0])
    assert torch.all(spreads[1] < spreads[0])


def test_alignment_loss_zero_when_shared_coincide():
    loss = SharedAlignmentLoss(loss_weight=1.0)
    x = torch.randn(2, 4, 8)
    present = torch.ones(2, 2, dtype=torch.bool)
    assert loss({'deep': {'a': x, 'b': x}}, present, ['a', 'b']).abs() < 1e-6
    assert loss({'deep': {'a': x, 'b': -x}}, present, ['a', 'b']) > 1.0
    # a constant offset common to both does not align what varies
    offset = 100 * torch.randn(1, 1, 8)
    y = torch.randn(2, 4, 8)
    assert loss({'deep': {'a': x + offset, 'b': y + offset}}, present,
                ['a', 'b']) > 0.2


def _linear_probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Logistic-regression probe (L-BFGS) on standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(train_x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optim = torch.optim.LBFGS([weight, bias], max_iter=200)

    def closure():
        optim.zero_grad()
        loss = F.binary_cross_entropy_with_logits(
            train_x @ weight + bias, train_y) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    with torch.no_grad():
        return ((test_x @ weight + bias > 0).float() == test_y).float().mean(
        ).item()


def _leakage_toy(regularise: bool) -> dict:
    """Modalities a and b share a factor s; a alone has f_a, b alone f_b.
    IntraCED is trained to predict all three from its pooled shared and
    private outputs; returns probe accuracies on pooled S_hat_b."""
    torch.manual_seed(0)
    dims, tokens, batch = 16, 8, 64
    u_a, v_a, u_b, v_b = torch.linalg.qr(torch.randn(dims, dims))[0][:4]

    def sample(size):
        s, f_a, f_b = (torch.randint(2, (3, size)) * 2 - 1).float()
        x_a = (s[:, None, None] * u_a + f_a[:, None, None] * v_a).expand(
            size, tokens, dims) + 0.5 * torch.randn(size, tokens, dims)
        x_b = (s[:, None, None] * u_b + f_b[:, None, None] * v_b).expand(
            size, tokens, dims) + 0.5 * torch.randn(size, tokens, dims)
        return dict(a=x_a, b=x_b), torch.stack([s, f_a, f_b], 1).gt(0).float()

    intra = IntraCED(['a', 'b'], embed_dims=dims, num_heads=2, dropout=0.0)
    head = torch.nn.Linear(4 * dims, 3)
    sep = SharedPrivateSeparationLoss(loss_weight=1.0)
    align = SharedAlignmentLoss(loss_weight=1.0)
    optim = torch.optim.Adam(
        list(intra.parameters()) + list(head.parameters()), lr=3e-3)
    present = torch.ones(batch, 2, dtype=torch.bool)
    for _ in range(300):
        x, y = sample(batch)
        out = intra(x)
        pooled = torch.cat([out[k][m].mean(1) for k in ('shared', 'private')
                            for m in ('a', 'b')], -1)
        loss = F.binary_cross_entropy_with_logits(head(pooled), y)
        if regularise:
            loss = loss + sep({'l': out['shared']}, {'l': out['private']},
                              present, ['a', 'b']) + align(
                                  {'l': out['shared_in']}, present,
                                  ['a', 'b'])
        optim.zero_grad()
        loss.backward()
        optim.step()
    intra.eval()
    with torch.no_grad():
        (x_tr, y_tr), (x_te, y_te) = sample(512), sample(512)
        f_tr = intra(x_tr)['shared']['b'].mean(1)
        f_te = intra(x_te)['shared']['b'].mean(1)
    return {
        name: _linear_probe_accuracy(f_tr, y_tr[:, i], f_te, y_te[:, i])
        for i, name in enumerate(('s', 'f_a'))
    }


def test_shared_subspace_holds_only_what_modalities_share():
    """With the alignment and independence terms, a factor planted only in
    modality a cannot be read from b's exchanged shared features (chance +-
    10 points) while the shared factor can (>= 90 %); without them, the
    exchange copies a's private factor into b's shared subspace."""
    regularised = _leakage_toy(regularise=True)
    assert regularised['s'] >= 0.9
    assert abs(regularised['f_a'] - 0.5) <= 0.1
    plain = _leakage_toy(regularise=False)
    assert plain['f_a'] >= 0.7


def _adversary_inputs(batch=16, dims=8, grad=False):
    return [{
        level: _tokens(batch, dict(a=4, b=3), dims, grad=grad)
        for level in LEVELS
    } for _ in range(3)]


def test_leakage_adversary_starts_blind_and_reads_what_leaks():
    """Zero readout: error 1 (standardised targets). After training the
    adversary alone, it reads a's private features from b's exchanged
    shared ones when they are copied there, and not when they are not."""
    torch.manual_seed(0)
    present = torch.ones(16, 2, dtype=torch.bool)

    def trained_error(leak: bool) -> float:
        adversary = PrivateLeakageAdversaryLoss(['a', 'b'], 8,
                                                loss_weight=1.0)
        shared, shared_in, private = _adversary_inputs()
        assert adversary(shared, shared_in, private, present,
                         ['a', 'b']).item() == pytest.approx(1.0, abs=1e-3)
        optim = torch.optim.Adam(adversary.parameters(), lr=1e-2)
        for _ in range(150):
            shared, shared_in, private = _adversary_inputs()
            if leak:
                for level in LEVELS:
                    copied = 3 * private[level]['a'].mean(1, keepdim=True)
                    shared[level]['b'] = shared[level]['b'] + copied
            loss = adversary(shared, shared_in, private, present, ['a', 'b'])
            optim.zero_grad()
            loss.backward()
            optim.step()
        return loss.item()

    assert trained_error(leak=True) < 0.6
    assert trained_error(leak=False) > 0.9


def test_leakage_adversary_reverses_the_gradient_into_shared():
    """A step along the gradient the model receives raises the adversary's
    error (the model works against it), scaled by loss_weight; the absent
    modality's samples do not count."""
    torch.manual_seed(0)
    adversary = PrivateLeakageAdversaryLoss(['a', 'b'], 8, loss_weight=1.0)
    torch.nn.init.normal_(adversary.readout, std=0.1)
    present = torch.ones(16, 2, dtype=torch.bool)
    shared, shared_in, private = _adversary_inputs(grad=True)
    loss = adversary(shared, shared_in, private, present, ['a', 'b'])
    loss.backward()
    grads = {m: shared['mid'][m].grad.clone() for m in 'ab'}
    with torch.no_grad():
        for m in 'ab':
            shared['mid'][m] -= 1e-2 * grads[m]
    assert adversary(shared, shared_in, private, present,
                     ['a', 'b']) > loss
    adversary.loss_weight = 2.0
    for m in 'ab':
        shared['mid'][m].grad = None
    adversary(shared, shared_in, private, present, ['a', 'b']).backward()
    assert torch.allclose(shared['mid']['a'].grad, 2 * grads['a'],
                          rtol=1e-2, atol=1e-6)
    present[:, 1] = False
    assert adversary(shared, shared_in, private, present,
                     ['a', 'b']).item() == 0


@pytest.mark.parametrize('build,message', [
    (lambda: IntraCED(['a', 'b'], embed_dims=0),
     r'IntraCED: embed_dims must be a number in \(0, inf\), got 0'),
    (lambda: IntraCED(['a', 'b'], embed_dims=16, num_heads=3),
     'embed_dims=16 must be divisible by num_heads=3'),
    (lambda: IntraCED(['a', 'b'], embed_dims=16, dropout=1.0),
     r'IntraCED: dropout must be a number in \[0, 1\), got 1.0'),
    (lambda: InterCAD(['a', 'b'], embed_dims=16, level_temperature=-1),
     r'InterCAD: level_temperature must be a number in \(0, inf\)'),
    (lambda: SharedAlignmentLoss(loss_weight='0.1'),
     r"SharedAlignmentLoss: loss_weight must be a number in \[0, inf\), "
     r"got '0.1'"),
    (lambda: SharedPrivateSeparationLoss(batch_weight=-1),
     'SharedPrivateSeparationLoss: batch_weight must be a number'),
    (lambda: PrivateLeakageAdversaryLoss(['a'], 16),
     'needs at least two modalities'),
])
def test_bad_config_values_fail_at_build_naming_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize('contiguous_grads', [False, True])
def test_stack_equals_torch_stack_with_a_one_op_backward(contiguous_grads):
    """``models.utils.stack``: torch.stack's values and gradients (also
    for parameters used transposed, as the batched IntraCED uses its
    weights), with one unbind backward instead of a select per input, and
    the same under torch.compile with or without gradients (TorchDynamo
    once stacked only the first input of the autograd.Function)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from clcr_mm.models.utils import stack

    class Ops(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    weights = [torch.randn(5, 3, requires_grad=True) for _ in range(4)]
    x = torch.randn(4, 2, 3)
    grads, backward_ops = [], []
    for fn in (torch.stack, lambda t: stack(t, contiguous_grads)):
        out = torch.bmm(x, fn(weights).transpose(1, 2))
        assert out.shape == (4, 2, 5)
        ops = Ops()
        with ops:
            out.pow(2).sum().backward()
        grads.append([w.grad.clone() for w in weights])
        backward_ops.append(ops.names)
        for w in weights:
            w.grad = None
    for expected, got in zip(*grads):
        assert torch.allclose(got, expected)
        assert got.is_contiguous() or not contiguous_grads
    theirs, ours = backward_ops
    assert theirs.count('aten.select') == len(weights)
    assert ours.count('aten.unbind') == 1 and 'aten.select' not in ours
    compiled = torch.compile(lambda *t: stack(t, contiguous_grads),
                             fullgraph=True, backend='eager')
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            assert torch.equal(compiled(*weights), torch.stack(weights))
    torch._dynamo.reset()
