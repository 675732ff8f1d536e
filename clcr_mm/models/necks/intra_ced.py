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
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import (check_attention, check_modalities, check_positive,
                     modality_presence)


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
        low, high = self.ratio_range
        return low + (high - low) * torch.sigmoid(self.logit)

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
        scores = self.scorer(shared).squeeze(-1)
        num = shared.new_full((shared.shape[0], 1), shared.shape[1])
        if valid is not None:
            scores = scores.masked_fill(~valid, float('-inf'))
            num = valid.sum(1, keepdim=True).to(shared.dtype).clamp(min=1)
        # rank 0 = best; two sorts keep the shape static (no top-k of a
        # device-dependent k); stable, so tied tokens (e.g. identical
        # padding) rank by position, the same in every run
        ranks = scores.argsort(dim=1, descending=True, stable=True).argsort(
            dim=1, stable=True)
        ranks = ranks.to(shared.dtype)
        edge = self.ratio.to(shared.dtype) * num
        if self.training:
            width = (self.temperature * num).clamp(min=1.0)
            # narrow the ramp near saturation so rho = 1 opens every token
            width = torch.minimum(width, 1.0 + 2.0 * (num - edge))
            gate = ((edge - ranks - 0.5) / width + 0.5).clamp(0.0, 1.0)
        else:
            # k = ceil(rho N), robust to rho N landing a rounding error
            # above an integer
            gate = (ranks < edge - 1e-4).to(shared.dtype)
        # at least the best token is always offered, as k >= 1
        gate = torch.where(ranks == 0, torch.ones_like(gate), gate)
        if valid is not None:
            gate = gate * valid.to(gate.dtype)
        num_selected = gate.sum(1)
        return dict(
            gate=gate,
            value_weight=torch.sigmoid(scores),
            used=num_selected / num.squeeze(1),
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

    Queries and keys are all modalities' tokens concatenated, plus one null
    key in front. A query may not attend to its own modality's keys, nor to
    a closed (gate 0) or absent key; a partly open key is down-weighted by
    ``log(gate)``.

    Args:
        segments (Tensor): Long (T, ), the modality index of every token.
        key_gate (Tensor, optional): (B, T) gates in [0, 1].
        key_present (Tensor, optional): Bool (B, T), False for keys of
            absent modalities or padding tokens.
        dtype (torch.dtype): dtype of the attention logits.

    Returns:
        Tensor: Bias of shape (T, 1 + T) or (B, 1, T, 1 + T).
    """
    own = segments[:, None] == segments[None, :]
    own = F.pad(own, (1, 0), value=False)
    bias = torch.zeros(own.shape, dtype=dtype,
                       device=segments.device).masked_fill(own, float('-inf'))
    if key_gate is None and key_present is None:
        return bias
    batch = (key_gate if key_gate is not None else key_present).shape[0]
    key_bias = bias.new_zeros(batch, segments.shape[0])
    if key_gate is not None:
        key_bias = gate_bias(key_gate, dtype)
    if key_present is not None:
        key_bias = key_bias.masked_fill(~key_present, float('-inf'))
    key_bias = F.pad(key_bias, (1, 0), value=0.0)
    return (bias + key_bias[:, None, :]).unsqueeze(1)


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
        check_modalities(tokens, self.modalities, type(self).__name__)
        first = tokens[self.modalities[0]]
        present = None if modality_mask is None else modality_presence(
            modality_mask, self.modalities, first.shape[0], first.device)
        token_masks = token_masks or {}
        shared_in = {m: self.shared_proj[m](tokens[m]) for m in self.modalities}
        private = {m: self.private_proj[m](tokens[m]) for m in self.modalities}
        out = dict(shared=shared_in, private=private, shared_in=shared_in,
                   budget_ratio={}, budget_used={}, num_selected={})
        if not self.exchange:
            return out
        gates, value_weights = [], []
        for m in self.modalities:
            valid = token_masks.get(m)
            if self.budgets is None:
                num = shared_in[m].shape[1]
                gate = None if valid is None else valid.to(first.dtype)
                out['num_selected'][m] = (
                    first.new_full((first.shape[0], ), num)
                    if valid is None else valid.sum(1).to(first.dtype))
            else:
                budget = self.budgets[m](shared_in[m], valid)
                gate, weight = budget['gate'], budget['value_weight']
                value_weights.append(weight)
                out['budget_ratio'][m] = self.budgets[m].ratio
                out['budget_used'][m] = budget['used']
                out['num_selected'][m] = budget['num_selected']
            gates.append(gate)
        out['shared'] = self._exchange(shared_in, gates, value_weights,
                                       present, token_masks)
        return out

    def _exchange(self, shared_in: Dict[str, torch.Tensor],
                  gates: Sequence[Optional[torch.Tensor]],
                  value_weights: Sequence[torch.Tensor],
                  present: Optional[torch.Tensor],
                  token_masks: Dict[str, torch.Tensor]
                  ) -> Dict[str, torch.Tensor]:
        """Cross-attention of every modality's shared queries to the other
        modalities' gated shared tokens (plus the null key), as one
        attention call over all modalities with a block bias.

        Args:
            gates (list[Tensor | None]): (B, N_m) key gates per modality;
                None entries mean fully open.
            value_weights (list[Tensor]): (B, N_m) value scales; empty
                without a budget.
            present (Tensor, optional): Bool (B, M); None when every
                modality is present.
            token_masks (dict[str, Tensor]): Bool (B, N_m) validity.
        """
        mods = self.modalities
        batch, dims = shared_in[mods[0]].shape[0], self.embed_dims
        heads, head_dims = self.num_heads, dims // self.num_heads
        sizes = [shared_in[m].shape[1] for m in mods]
        queries = torch.cat([shared_in[m] for m in mods], dim=1)
        q = self.q(self.query_norm(queries))
        k, v = self.kv(queries).chunk(2, dim=-1)
        if value_weights:
            v = v * torch.cat(value_weights, dim=1).unsqueeze(-1)
        k = torch.cat([self.null_key.expand(batch, -1, -1), k], dim=1)
        v = F.pad(v, (0, 0, 1, 0))

        segments = torch.cat([
            queries.new_full((n, ), i, dtype=torch.long)
            for i, n in enumerate(sizes)
        ])
        key_gate = None
        if any(g is not None for g in gates):
            key_gate = torch.cat([
                g if g is not None else queries.new_ones(batch, n)
                for g, n in zip(gates, sizes)
            ], dim=1)
        key_present = None
        if present is not None:
            key_present = present[:, segments]
        bias = exchange_bias(segments, key_gate, key_present, q.dtype)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, head_dims).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(batch, -1, dims)
        exchanged = queries + self.out(attended)
        exchanged = exchanged + self.ffn(exchanged)
        return dict(zip(mods, exchanged.split(sizes, dim=1)))
