"""IntraCED: Intra-Level Co-Exchange Domain (CLCR section 2).

One IntraCED works on one semantic level. It factorises every modality's
tokens into a shared and a private subspace, and lets modalities exchange
information over the shared subspace only, through a learnable token budget.
Private tokens never enter another modality's keys or values, so
d(S_hat_n) / d(P_m) = 0 for n != m by construction.

Every shape in the forward pass is static: the budget selects tokens with an
attention bias over all N shared tokens instead of a top-k gather whose size
would be read from the device, so there is no host sync, no graph break
under ``torch.compile`` and one attention call per level.
"""
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import (Levels, StackedLevels, check_attention,
                     check_modalities, check_positive, modality_presence,
                     pad_stack, stack, stack_levels, stack_padded)


class TokenBudget(nn.Module):
    """Learnable token budget: which shared tokens a modality offers.

    A scorer rates every shared token; the budget ratio
    ``rho = rho_min + (rho_max - rho_min) * sigmoid(theta)`` says which
    fraction of the N (valid) tokens the other modalities may attend to.
    Tokens are ranked by score (rank r = 0 for the best) and each gets a key
    gate g_r:

    * evaluation: the hard top-k, ``g_r = [r < rho N]``, i.e. exactly
      ``k = ceil(rho N)`` tokens (at least one; rho N within 1e-4 above an
      integer counts as that integer);
    * training: a linear ramp ``g_r = clip((rho N - r - 1/2) / w + 1/2, 0,
      1)`` of width ``w = temperature * N`` ranks centred on the budget edge,
      so every token near the edge takes part with a weight tied to rho and
      the task gradient says whether opening more tokens helps (rho rises)
      or not (rho falls). ``sum_r g_r = rho N`` while the ramp lies inside
      the ranks; the ramp narrows near rho = 1 so that a saturated budget
      gives ``g = 1`` for every token, the same as evaluation.

    The gate enters attention as a log-bias, so a closed token takes no
    attention at all; values are scaled by ``sigmoid(score)`` in training
    and evaluation alike, which lets the scorer learn.

    Args:
        embed_dims (int): Token width d.
        init_ratio (float): Initial rho. Defaults to 0.5.
        ratio_range (tuple[float, float]): (rho_min, rho_max). Defaults to
            (0.1, 1.0).
        temperature (float): Ramp width as a fraction of N (in (0, 1]).
            Defaults to 0.25.
    """

    def __init__(self,
                 embed_dims: int,
                 init_ratio: float = 0.5,
                 ratio_range: Tuple[float, float] = (0.1, 1.0),
                 temperature: float = 0.25) -> None:
        super().__init__()
        low, high = ratio_range
        if not 0 < low < high <= 1 or not low < init_ratio < high:
            raise ValueError(
                f'token_budget: need 0 < rho_min < init_ratio < rho_max <= 1, '
                f'got ratio_range={ratio_range}, init_ratio={init_ratio}')
        if not 0 < temperature <= 1:
            raise ValueError('token_budget.temperature is the ramp width as '
                             f'a fraction of N, in (0, 1]; got {temperature}')
        self.ratio_range = (float(low), float(high))
        self.temperature = float(temperature)
        self.scorer = nn.Linear(embed_dims, 1)
        p = (init_ratio - low) / (high - low)
        self.logit = nn.Parameter(torch.tensor(math.log(p / (1 - p))))

    @property
    def ratio(self) -> torch.Tensor:
        """The budget ratio rho, a scalar tensor in [rho_min, rho_max]."""
        return budget_ratio(self.logit, self.ratio_range)

    def forward(self,
                shared: torch.Tensor,
                valid: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Gate the shared tokens.

        Args:
            shared (Tensor): Shared tokens of shape (B, N, d).
            valid (Tensor, optional): Bool (B, N), False for padding tokens,
                which are never offered and do not count in N.

        Returns:
            dict[str, Tensor]: ``gate`` (B, N) key gates in [0, 1] (hard in
            evaluation), ``value_weight`` (B, N) = sigmoid(score),
            ``used`` (B, ) the fraction of valid tokens offered (sum of
            gates / N; differentiable in rho in training) and ``num_selected``
            (B, ) the tokens offered (k in evaluation, sum of gates in
            training).
        """
        return budget_gates(
            self.scorer(shared).squeeze(-1), self.ratio, valid,
            self.training, self.temperature)


def budget_ratio(logit: torch.Tensor,
                 ratio_range: Tuple[float, float]) -> torch.Tensor:
    """``rho = rho_min + (rho_max - rho_min) * sigmoid(logit)``, elementwise.

    Args:
        logit (Tensor): Budget logits theta, any shape.
        ratio_range (tuple[float, float]): (rho_min, rho_max).

    Returns:
        Tensor: rho, the shape of ``logit``.
    """
    low, high = ratio_range
    return low + (high - low) * torch.sigmoid(logit)


def budget_gates(scores: torch.Tensor, ratio: torch.Tensor,
                 valid: Optional[torch.Tensor], training: bool,
                 temperature: float) -> Dict[str, torch.Tensor]:
    """The key gates of :class:`TokenBudget` for token scores of any
    leading shape (one budget, or every level and modality's at once).

    Args:
        scores (Tensor): (..., N) token scores.
        ratio (Tensor): rho, broadcastable to (..., 1).
        valid (Tensor, optional): Bool (..., N), False for padding tokens.
        training (bool): The soft ramp (True) or the hard top-k.
        temperature (float): Ramp width as a fraction of N.

    Returns:
        dict[str, Tensor]: ``gate`` (..., N), ``value_weight`` (..., N),
        ``used`` (..., ) and ``num_selected`` (..., ), as
        :meth:`TokenBudget.forward` describes.
    """
    num = scores.new_full((*scores.shape[:-1], 1), scores.shape[-1])
    if valid is not None:
        scores = scores.masked_fill(~valid, float('-inf'))
        num = valid.sum(-1, keepdim=True).to(scores.dtype).clamp(min=1)
    # rank 0 = best; two sorts keep the shape static (no top-k of a
    # device-dependent k); stable, so tied tokens (e.g. identical
    # padding) rank by position, the same in every run
    ranks = scores.argsort(dim=-1, descending=True, stable=True).argsort(
        dim=-1, stable=True)
    ranks = ranks.to(scores.dtype)
    edge = ratio.to(scores.dtype) * num
    if training:
        width = (temperature * num).clamp(min=1.0)
        # narrow the ramp near saturation so rho = 1 opens every token
        width = torch.minimum(width, 1.0 + 2.0 * (num - edge))
        gate = ((edge - ranks - 0.5) / width + 0.5).clamp(0.0, 1.0)
    else:
        # k = ceil(rho N), robust to rho N landing a rounding error
        # above an integer
        gate = (ranks < edge - 1e-4).to(scores.dtype)
    # at least the best token is always offered, as k >= 1
    gate = torch.where(ranks == 0, torch.ones_like(gate), gate)
    if valid is not None:
        gate = gate * valid.to(gate.dtype)
    num_selected = gate.sum(-1)
    return dict(
        gate=gate,
        value_weight=torch.sigmoid(scores),
        used=num_selected / num.squeeze(-1),
        num_selected=num_selected)


def factorisation_layers(
    modalities: Sequence[str], embed_dims: int, tie_shared: bool,
    token_budget: Optional[dict]
) -> Tuple[nn.ModuleDict, nn.ModuleDict, Optional[nn.ModuleDict]]:
    """The shared/private factorisation of one level, per modality.

    ``S_m = LN(W_s X_m)`` and ``P_m = LN(W_p X_m)`` (W_s optionally tied
    across modalities, W_p never), and a :class:`TokenBudget` per modality.
    Shared by IntraCED and by exchange modules that replace it (e.g.
    ``projects/bottleneck_exchange``), so their parameters keep the same
    names and shapes.

    Args:
        modalities (Sequence[str]): Modality names.
        embed_dims (int): Token width d.
        tie_shared (bool): One W_s for every modality.
        token_budget (dict, optional): Keyword arguments of
            :class:`TokenBudget`; None for no budget.

    Returns:
        tuple: ``shared_proj`` and ``private_proj`` (modality -> Linear +
        LayerNorm) and ``budgets`` (modality -> TokenBudget, or None).
    """

    def projection() -> nn.Module:
        return nn.Sequential(
            nn.Linear(embed_dims, embed_dims), nn.LayerNorm(embed_dims))

    tied = projection() if tie_shared else None
    shared_proj = nn.ModuleDict(
        {m: tied or projection()
         for m in modalities})
    private_proj = nn.ModuleDict({m: projection() for m in modalities})
    budgets = nn.ModuleDict({
        m: TokenBudget(embed_dims, **token_budget)
        for m in modalities
    }) if token_budget is not None else None
    return shared_proj, private_proj, budgets


def feed_forward(embed_dims: int, ffn_ratio: float,
                 dropout: float) -> nn.Sequential:
    """Pre-norm feed-forward block ``LN -> Linear -> GELU -> Linear``.

    Args:
        embed_dims (int): Token width d.
        ffn_ratio (float): Hidden width in units of d.
        dropout (float): Dropout after the activation and the output.

    Returns:
        nn.Sequential: The block (residual added by the caller).
    """
    hidden = int(embed_dims * ffn_ratio)
    return nn.Sequential(
        nn.LayerNorm(embed_dims), nn.Linear(embed_dims, hidden), nn.GELU(),
        nn.Dropout(dropout), nn.Linear(hidden, embed_dims),
        nn.Dropout(dropout))


def gate_bias(gate: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Attention log-bias of key gates: ``log(g)``, -inf for closed keys.

    Args:
        gate (Tensor): (B, N) gates in [0, 1].
        dtype (torch.dtype): dtype of the attention logits.

    Returns:
        Tensor: (B, N) bias.
    """
    # where(): no 1/g from log's backward reaches closed keys
    return torch.where(gate <= 0, float('-inf'),
                       gate.clamp(min=1e-6).log()).to(dtype)


def exchange_bias(segments: torch.Tensor, key_gate: Optional[torch.Tensor],
                  key_present: Optional[torch.Tensor],
                  dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias of the joint cross-modal exchange.

    Queries and keys of a level are all its modalities' tokens side by side
    (a row), plus one null key in front. A query may not attend to its own
    modality's keys, nor to a closed (gate 0) or absent key; a partly open
    key is down-weighted by ``log(gate)``.

    Args:
        segments (Tensor): Long (L, T), the modality index of every token of
            each level's row; -1 for padding at the end of a shorter row.
        key_gate (Tensor, optional): (L, B, T) gates in [0, 1] (0 for
            padding).
        key_present (Tensor, optional): Bool (L, B or 1, T), False for keys
            of absent modalities or padding tokens.
        dtype (torch.dtype): dtype of the attention logits.

    Returns:
        Tensor: Bias of shape (T, 1 + T) (one level, nothing per sample),
        (L, 1, T, 1 + T) or (L * B, 1, T, 1 + T).
    """
    # the null key in front as segment -2, which no query has; padding the
    # ids, not the bool mask, also keeps Inductor's CPU vectoriser (torch
    # 2.11) off a bool pad it cannot compile
    own = segments[:, :, None] == F.pad(segments, (1, 0), value=-2)[:, None]
    bias = torch.zeros(own.shape, dtype=dtype,
                       device=segments.device).masked_fill(own, float('-inf'))
    if key_gate is None and key_present is None:
        return bias[0] if bias.shape[0] == 1 else bias.unsqueeze(1)
    key_bias = gate_bias(key_gate, dtype) if key_gate is not None else \
        bias.new_zeros(key_present.shape)
    if key_present is not None:
        key_bias = key_bias.masked_fill(~key_present, float('-inf'))
    key_bias = F.pad(key_bias, (1, 0), value=0.0)
    bias = bias[:, None] + key_bias[:, :, None, :]  # (L, B, T, 1 + T)
    return bias.flatten(0, 1).unsqueeze(1)


@MODELS.register_module()
class IntraCED(BaseModule):
    """Intra-Level Co-Exchange Domain for one semantic level.

    Args:
        modalities (Sequence[str]): Modality names, in a fixed order.
        embed_dims (int): Token width d. Defaults to 256.
        num_heads (int): Attention heads. Defaults to 4.
        tie_shared (bool): Share the shared-subspace projection W_s across
            modalities (W_p is never tied). Defaults to False.
        exchange (bool): Run cross-modal attention. False gives the
            "w/o IntraCED exchange" ablation: factorisation only (and no
            token budget, which would have nothing to select for).
            Defaults to True.
        token_budget (dict, optional): Keyword arguments of
            :class:`TokenBudget`; None gives the "w/o token budget" ablation
            in which every shared token is a key. Defaults to ``dict()``.
        ffn_ratio (float): Hidden width of the feed-forward block, in d.
            Defaults to 2.0.
        dropout (float): Dropout on attention and FFN. Defaults to 0.1.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int = 256,
                 num_heads: int = 4,
                 tie_shared: bool = False,
                 exchange: bool = True,
                 token_budget: Optional[dict] = dict(),
                 ffn_ratio: float = 2.0,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_positive('IntraCED', embed_dims=embed_dims,
                       num_heads=num_heads, ffn_ratio=ffn_ratio)
        check_attention('IntraCED', embed_dims, num_heads, dropout)
        if len(set(modalities)) < 2:
            raise ValueError('IntraCED needs at least two distinct '
                             f'modalities, got {tuple(modalities)}')
        self.modalities = tuple(modalities)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.exchange = exchange
        self.dropout = dropout

        self.shared_proj, self.private_proj, self.budgets = \
            factorisation_layers(self.modalities, embed_dims, tie_shared,
                                 token_budget if exchange else None)
        if exchange:
            self.query_norm = nn.LayerNorm(embed_dims)
            self.q = nn.Linear(embed_dims, embed_dims)
            self.kv = nn.Linear(embed_dims, 2 * embed_dims)
            self.out = nn.Linear(embed_dims, embed_dims)
            # A learned null key with a zero value: a query whose every
            # other modality is absent attends to it and receives nothing,
            # instead of a softmax over an empty set.
            self.null_key = nn.Parameter(torch.zeros(1, 1, embed_dims))
            self.ffn = feed_forward(embed_dims, ffn_ratio, dropout)

    def batch_layout(self) -> tuple:
        """What must agree for IntraCEDs to run as one batched computation
        (:class:`IntraCEDLevels`): everything but the parameters' values."""
        budget = next(iter(self.budgets.values())) if self.budgets else None
        return (type(self).forward, self.modalities, self.embed_dims,
                self.num_heads, self.exchange, self.dropout,
                None if budget is None else
                (budget.ratio_range, budget.temperature),
                self.ffn[1].out_features if self.exchange else None)

    def forward(self,
                tokens: Dict[str, torch.Tensor],
                modality_mask: Optional[torch.Tensor] = None,
                token_masks: Optional[Dict[str, torch.Tensor]] = None
                ) -> dict:
        """Factorise and exchange.

        Args:
            tokens (dict[str, Tensor]): Aligned tokens X_m of shape
                (B, N_m, d) for every modality.
            modality_mask (Tensor, optional): Bool (B, M), True where the
                modality is present. Absent modalities offer no keys. None
                means every modality is present.
            token_masks (dict[str, Tensor], optional): Bool (B, N_m) per
                modality, False for padding tokens, which are never keys
                (and whose outputs downstream modules ignore).

        Returns:
            dict: ``shared`` (dict m -> S_hat_m (B, N_m, d)), ``private``
            (dict m -> P_m (B, N_m, d)), ``shared_in`` (dict m -> S_m before
            the exchange), ``budget_ratio`` (dict m -> rho, a scalar
            tensor), ``budget_used`` (dict m -> (B, ) fraction of tokens
            offered, differentiable in rho in training) and
            ``num_selected`` (dict m -> (B, ) tokens offered).
        """
        return intra_ced_batched([self], [tokens], modality_mask,
                                 [token_masks], stack_shared=False)[0][0]


def _stack(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """One tensor of a parameter of every module (a leading module axis):
    one op forward and one backward, where per-module layers cost several
    each."""
    return stack(list(params), contiguous_grads=True)


def _linear(x: torch.Tensor, linears: Sequence[nn.Linear]) -> torch.Tensor:
    """Per-group linear layers, one grouped product: x (G, R, C_in) and the
    G groups' ``nn.Linear`` in order, k per group whose outputs are
    concatenated (e.g. ``[W_s; W_p]``) -> (G, R, k * C_out)."""
    if len(linears) == 1:
        # one module's layer (a level run alone): its own product, no
        # stacked copy of the weight and a gradient in the weight's layout
        return linears[0](x)
    groups, channels = x.shape[0], x.shape[-1]
    weight = _stack(lin.weight for lin in linears).view(groups, -1, channels)
    bias = _stack(lin.bias for lin in linears).view(groups, 1, -1)
    return torch.baddbmm(bias, x, weight.transpose(1, 2))


def _layer_norm(x: torch.Tensor,
                norms: Sequence[nn.LayerNorm]) -> torch.Tensor:
    """Per-group LayerNorms over the last dim: x (G, R, *S) and the G
    groups' ``nn.LayerNorm`` in order, prod(S[:-1]) per group (one per
    slice of the last dim)."""
    if len(norms) == 1:
        return norms[0](x)
    groups, shape = x.shape[0], x.shape[2:]
    weight = _stack(norm.weight for norm in norms).view(groups, 1, *shape)
    bias = _stack(norm.bias for norm in norms).view(groups, 1, *shape)
    return torch.addcmul(
        bias, F.layer_norm(x, x.shape[-1:], eps=norms[0].eps), weight)


def _unstack(stacked: torch.Tensor, sizes: Sequence[Sequence[int]],
             modalities: Sequence[str]) -> List[Dict[str, torch.Tensor]]:
    """(L, M, B, N_max, ...) -> per level, modality -> (B, N_m, ...)."""
    out = []
    for level, level_sizes in zip(stacked.unbind(0), sizes):
        parts = level.unbind(0)
        out.append({
            m: part if n == part.shape[1] else part[:, :n]
            for m, part, n in zip(modalities, parts, level_sizes)
        })
    return out


def intra_ced_batched(
        modules: Sequence[IntraCED],
        tokens: Sequence[Dict[str, torch.Tensor]],
        modality_mask: Optional[torch.Tensor] = None,
        token_masks: Optional[Sequence[Optional[Dict[str,
                                                    torch.Tensor]]]] = None,
        stack_shared: bool = True) -> Tuple[List[dict], dict]:
    """Run L IntraCEDs of one layout (``batch_layout``) on their levels'
    tokens as one computation: the L x M token sets are zero-padded into
    one (L*M, B, N, d) tensor, each kind of parameter is stacked across
    modules and modalities, and every projection, norm, budget and the
    exchange attention runs once for all levels. Each module's result is
    what it computes alone (tested), with a few dozen ops instead of a few
    hundred per level.

    Args:
        modules (Sequence[IntraCED]): L modules with equal
            ``batch_layout()``.
        tokens (Sequence[dict[str, Tensor]]): Per module, modality ->
            (B, N_lm, d).
        modality_mask (Tensor, optional): Bool (B, M), True = present.
        token_masks (Sequence[dict | None], optional): Per module, modality
            -> bool (B, N_lm), False for padding.
        stack_shared (bool): Also stack the exchanged shared tokens (a copy
            of all of them); False when only the per-level outputs are read
            (one IntraCED alone), which leaves ``stacked['shared']`` None.

    Returns:
        tuple: Per module, the output of :meth:`IntraCED.forward`; and the
        same stacked level-major for the modules that read every level at
        once (InterCAD, the regularisers): ``shared``, ``private`` and
        ``shared_in`` (:class:`StackedLevels`), ``budget_ratio`` (L*M, ),
        ``budget_used`` and ``num_selected`` (L*M, B) (the budget entries
        None without a budget).
    """
    first = modules[0]
    mods, dims = first.modalities, first.embed_dims
    name = type(first).__name__
    for level_tokens in tokens:
        check_modalities(level_tokens, mods, name)
    num_levels, num_mod = len(modules), len(mods)
    token_masks = [tm or {} for tm in (token_masks or [None] * num_levels)]
    sizes = [[level_tokens[m].shape[1] for m in mods] for level_tokens in tokens]
    x, valid = pad_stack(
        [level_tokens[m] for level_tokens in tokens for m in mods],
        [tm.get(m) for tm in token_masks for m in mods])
    sets, batch, num = x.shape[:3]
    present = None if modality_mask is None else modality_presence(
        modality_mask, mods, batch, x.device)

    # factorisation: S = LN(W_s X), P = LN(W_p X) of every (level,
    # modality) as one grouped product with [W_s; W_p] stacked
    layers = [layer for module in modules for m in mods
              for layer in (module.shared_proj[m], module.private_proj[m])]
    factors = _linear(x.view(sets, batch * num, dims),
                      [layer[0] for layer in layers])
    factors = _layer_norm(factors.view(sets, batch * num, 2, dims),
                          [layer[1] for layer in layers])
    shared_in, private = factors.view(sets, batch, num, 2, dims).unbind(3)
    levels = (num_levels, num_mod, batch, num)
    outs = [
        dict(shared=s, private=p, shared_in=s, budget_ratio={},
             budget_used={}, num_selected={})
        for s, p in zip(
            _unstack(shared_in.view(*levels, dims), sizes, mods),
            _unstack(private.view(*levels, dims), sizes, mods))
    ]
    stacked = dict(shared=StackedLevels(shared_in, valid),
                   private=StackedLevels(private, valid),
                   shared_in=StackedLevels(shared_in, valid),
                   budget_ratio=None, budget_used=None, num_selected=None)
    if not first.exchange:
        return outs, stacked

    key_gate = value_weight = None
    if first.budgets is None:
        count = (valid.sum(-1).to(x.dtype) if valid is not None else
                 x.new_full((sets, batch), num))
        for out, level_count in zip(outs,
                                    count.view(num_levels, num_mod,
                                               batch).unbind(0)):
            out['num_selected'] = dict(zip(mods, level_count.unbind(0)))
        stacked['num_selected'] = count
    else:
        budgets = [module.budgets[m] for module in modules for m in mods]
        scores = (shared_in * _stack(b.scorer.weight for b in budgets).view(
            sets, 1, 1, dims)).sum(-1) + _stack(
                b.scorer.bias for b in budgets).view(sets, 1, 1)
        ratio = budget_ratio(_stack(b.logit for b in budgets),
                             budgets[0].ratio_range)
        gates = budget_gates(scores, ratio.view(sets, 1, 1), valid,
                             first.training, budgets[0].temperature)
        key_gate, value_weight = gates['gate'], gates['value_weight']
        stacked.update(budget_ratio=ratio, budget_used=gates['used'],
                       num_selected=gates['num_selected'])
        per_level = zip(
            outs,
            ratio.view(num_levels, num_mod).unbind(0),
            gates['used'].view(num_levels, num_mod, batch).unbind(0),
            gates['num_selected'].view(num_levels, num_mod,
                                       batch).unbind(0))
        for out, level_ratio, used, selected in per_level:
            out['budget_ratio'] = dict(zip(mods, level_ratio.unbind(0)))
            out['budget_used'] = dict(zip(mods, used.unbind(0)))
            out['num_selected'] = dict(zip(mods, selected.unbind(0)))
    rows = _to_rows(shared_in, sizes)
    segments = _row_segments(sizes, x.device)
    keys = None  # (L, B or 1, T): padding, absent modalities, masked tokens
    if any(sum(level_sizes) < rows.shape[2] for level_sizes in sizes):
        keys = (segments >= 0)[:, None, :]
    if valid is not None and key_gate is None:
        # with a budget the gates already close padding keys
        row_valid = _to_rows(valid.unsqueeze(-1), sizes).squeeze(-1)
        keys = row_valid if keys is None else keys & row_valid
    if present is not None:
        row_present = present[:, segments.clamp(min=0)].transpose(0, 1)
        keys = row_present if keys is None else keys & row_present
    if key_gate is not None:
        # gates and value weights into rows together: one conversion
        key_gate, value_weight = _to_rows(
            torch.stack([key_gate, value_weight], -1), sizes).unbind(-1)
    exchanged = _exchange(modules, rows, segments, key_gate, value_weight,
                          keys)
    per_set = []
    for out, row, level_sizes in zip(outs, exchanged.unbind(0), sizes):
        parts = row[:, :sum(level_sizes)].split(list(level_sizes), dim=1)
        out['shared'] = dict(zip(mods, parts))
        per_set += parts
    stacked['shared'] = StackedLevels(stack_padded(per_set, num),
                                      valid) if stack_shared else None
    return outs, stacked


def _to_rows(x: torch.Tensor,
             sizes: Sequence[Sequence[int]]) -> torch.Tensor:
    """(L*M, B, N, C) padded token sets -> (L, B, T, C) level rows: each
    level's modalities side by side without their padding, rows padded to
    the longest level (T = max_l sum_m N_lm), as one attention sees them.
    One level is one row with no padding at all."""
    num_mod, longest = len(sizes[0]), max(sum(s) for s in sizes)
    # one unbind, whose backward is one stack, where indexing each set
    # costs a full-size zero gradient per set
    sets = x.unbind(0)
    rows = []
    for level, level_sizes in enumerate(sizes):
        parts = [
            sets[level * num_mod + i][:, :n]
            for i, n in enumerate(level_sizes)
        ]
        row = torch.cat(parts, 1)
        if row.shape[1] < longest:
            row = F.pad(row, (0, 0, 0, longest - row.shape[1]))
        rows.append(row)
    return stack(rows) if len(rows) > 1 else rows[0].unsqueeze(0)


def _row_segments(sizes: Sequence[Sequence[int]],
                  device: torch.device) -> torch.Tensor:
    """Long (L, T): the modality index of every position of each level's
    row, -1 for the padding of a shorter row."""
    longest = max(sum(s) for s in sizes)

    def row(level_sizes: Sequence[int]) -> torch.Tensor:
        ids = list(range(len(level_sizes))) + [-1]
        counts = list(level_sizes) + [longest - sum(level_sizes)]
        return torch.cat([
            torch.full((n, ), i, dtype=torch.long, device=device)
            for i, n in zip(ids, counts) if n
        ])

    return torch.stack([row(level_sizes) for level_sizes in sizes])


def _exchange(modules: Sequence[IntraCED], rows: torch.Tensor,
              segments: torch.Tensor, key_gate: Optional[torch.Tensor],
              value_weight: Optional[torch.Tensor],
              key_present: Optional[torch.Tensor]) -> torch.Tensor:
    """Cross-attention of every modality's shared queries to the other
    modalities' gated shared tokens of the same level (plus the null key),
    for all levels in one attention call with a block bias, then the
    feed-forward block.

    Args:
        modules (Sequence[IntraCED]): L modules (one per level).
        rows (Tensor): S of shape (L, B, T, d), level rows (see
            :func:`_to_rows`).
        segments (Tensor): Long (L, T) modality index per position, -1 for
            row padding.
        key_gate (Tensor, optional): (L, B, T) gates; None = open.
        value_weight (Tensor, optional): (L, B, T) value scales.
        key_present (Tensor, optional): Bool (L, B or 1, T), False for keys
            that are padding or of absent modalities.

    Returns:
        Tensor: S_hat of shape (L, B, T, d).
    """
    first = modules[0]
    num_levels, batch, num, dims = rows.shape
    heads = first.num_heads
    head_dims = dims // heads
    queries = rows.reshape(num_levels, batch * num, dims)
    q = _linear(
        _layer_norm(queries, [m.query_norm for m in modules]),
        [m.q for m in modules])
    k, v = _linear(queries, [m.kv for m in modules]).chunk(2, dim=-1)
    k = k.reshape(num_levels * batch, num, dims)
    v = v.reshape(num_levels * batch, num, dims)
    if value_weight is not None:
        v = v * value_weight.reshape(num_levels * batch, num, 1)
    null_key = _stack(m.null_key for m in modules).expand(
        -1, batch, -1, -1).reshape(num_levels * batch, 1, dims)
    k = torch.cat([null_key, k], dim=1)
    v = F.pad(v, (0, 0, 1, 0))
    bias = exchange_bias(segments, key_gate, key_present, q.dtype)
    if bias.dim() == 4 and bias.shape[0] != num_levels * batch:
        bias = bias.repeat_interleave(batch, dim=0)

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(num_levels * batch, -1, heads,
                         head_dims).transpose(1, 2)

    attended = F.scaled_dot_product_attention(
        split(q), split(k), split(v), attn_mask=bias,
        dropout_p=first.dropout if first.training else 0.0)
    attended = attended.transpose(1, 2).reshape(num_levels, -1, dims)
    exchanged = queries + _linear(attended, [m.out for m in modules])
    ffn = [module.ffn for module in modules]
    hidden = _linear(_layer_norm(exchanged, [f[0] for f in ffn]),
                     [f[1] for f in ffn])
    hidden = F.dropout(F.gelu(hidden), first.dropout, first.training)
    hidden = _linear(hidden, [f[4] for f in ffn])
    exchanged = exchanged + F.dropout(hidden, first.dropout, first.training)
    return exchanged.view(num_levels, batch, num, dims)


class IntraCEDLevels(nn.ModuleDict):
    """One IntraCED per level, run as one batched computation.

    A ``ModuleDict`` of level name -> exchange module (state dict keys
    ``<level>.<param>``, as a plain ``ModuleDict`` of the levels has).
    When every level's module is an :class:`IntraCED` of one layout
    (``batch_layout``: same modalities, widths, heads, budget settings),
    :func:`intra_ced_batched` can run them together: a few dozen kernels
    for all levels instead of a few hundred per level. The price is
    padding: the levels' token sets are padded to the longest one, so the
    fusion's FLOPs grow (about 2x for IntraCED at the shipped token grids,
    +1.6 % of a ResNet-18 audio-visual model's). On an accelerator, where
    each kernel launch costs host time whatever its size, that trade pays;
    on a CPU, where FLOPs are the cost, it does not, so by default the
    levels are batched on accelerators only. Other exchange modules (e.g.
    ``projects/bottleneck_exchange``) run level by level.

    Args:
        modules (dict[str, nn.Module]): Level name -> exchange module.
        batch_levels (bool | str): True batches the levels on every
            device, False never; ``'auto'`` batches them on every device but
            the CPU. Outputs are the same either way (tested). Defaults to
            ``'auto'``.
    """

    def __init__(self,
                 modules: Dict[str, nn.Module],
                 batch_levels: Union[bool, str] = 'auto') -> None:
        super().__init__(modules)
        if batch_levels not in (True, False, 'auto'):
            raise ValueError('batch_levels must be True, False or "auto", '
                             f'got {batch_levels!r}')
        self.batch_levels = batch_levels

    def forward(self,
                levels: Levels,
                modality_mask: Optional[torch.Tensor] = None,
                token_masks: Optional[Levels] = None
                ) -> Tuple[Dict[str, dict], dict]:
        """Args:
            levels (dict): ``levels[level][modality]`` tokens (B, N, d).
            modality_mask (Tensor, optional): Bool (B, M), True = present.
            token_masks (dict, optional): ``[level][modality]`` bool
                (B, N), False for padding tokens.

        Returns:
            tuple: level -> that level's exchange output (see
            :meth:`IntraCED.forward`); and the same stacked level-major for
            the modules that read every level at once (see
            :func:`intra_ced_batched`).
        """
        names = list(self.keys())
        modules = [self[name] for name in names]
        batch = self.batch_levels
        if batch == 'auto':
            first = next(iter(levels[names[0]].values()))
            batch = first.device.type != 'cpu'
        if batch and all(isinstance(m, IntraCED) for m in modules) and len(
                {m.batch_layout() for m in modules}) == 1:
            outs, stacked = intra_ced_batched(
                modules, [levels[name] for name in names], modality_mask,
                None if token_masks is None else
                [token_masks.get(name) for name in names])
            return dict(zip(names, outs)), stacked
        # token masks only where there are any, so exchange modules
        # without padding support plug in unchanged
        outs = {
            name: self[name](levels[name], modality_mask)
            if token_masks is None else self[name](
                levels[name], modality_mask, token_masks=token_masks[name])
            for name in names
        }
        mods = modules[0].modalities
        stacked = {
            key: stack_levels({name: outs[name][key] for name in names},
                              mods, token_masks)
            for key in ('shared', 'private', 'shared_in')
        }
        for key in ('budget_ratio', 'budget_used', 'num_selected'):
            values = [outs[name][key].get(m) for name in names for m in mods]
            stacked[key] = None if any(v is None for v in values) else \
                torch.stack(values)
        return outs, stacked
