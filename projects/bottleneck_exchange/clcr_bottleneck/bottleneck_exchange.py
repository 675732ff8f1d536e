"""BottleneckExchange: an IntraCED replacement that exchanges through a few
fusion-bottleneck tokens.

CLCR's IntraCED lets every shared token of modality ``m`` attend to the
budgeted shared tokens of every other modality: cost O(N_m * k * M) per
level. Multimodal Bottleneck Transformers (MBT, Nagrani et al., NeurIPS
2021) instead route all cross-modal traffic through ``B`` learned bottleneck
tokens. This module keeps everything CLCR asks of an intra-level exchange
and swaps only the exchange itself:

1. Factorise with IntraCED's own layers (``factorisation_layers``):
   ``S_m = LN(W_s X_m)``, ``P_m = LN(W_p X_m)``.
2. Budget (CLCR's :class:`~clcr_mm.models.necks.TokenBudget`, reused as is):
   each modality offers its top-k shared tokens, value-weighted by their
   scores.
3. Write: per modality, the bottleneck tokens attend to that modality's
   budgeted shared tokens, giving ``Z_m`` of shape (B, n_b, d).
4. Read: modality ``m`` attends to the mean of ``Z_n`` over the *other*,
   present modalities (never its own ``Z_m``, so the exchange stays
   strictly cross-modal, as in IntraCED), then a pre-norm feed-forward
   block: ``S_hat_m = S_m + Attn(S_m, Z_{-m}) + FFN(...)``.

Private tokens never enter the write step, so ``d S_hat_n / d P_m = 0`` for
``n != m`` still holds by construction, and a modality that is absent in a
sample contributes nothing to the others' context.

The module follows the interface :class:`~clcr_mm.models.CLCRRecognizer`
expects from ``intra_ced``; nothing else of CLCR changes, and the CLCR
regularisers (separation, budget) work on its outputs unchanged.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
# Registering in mmaction2's own registry is enough: the CLCR recognizer
# builds its parts through clcr_mm's MODELS, a child of this one, so it
# finds the module from either default scope.
from mmaction.registry import MODELS
from mmengine.model import BaseModule

from clcr_mm.models.necks import (factorisation_layers, feed_forward,
                                  gate_bias)
from clcr_mm.models.utils import check_modalities, modality_presence


class _Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs.

    Args:
        embed_dims (int): Width d.
        num_heads (int): Heads; must divide ``embed_dims``.
        dropout (float): Attention dropout in training.
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query_norm = nn.LayerNorm(embed_dims)
        self.q = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.out = nn.Linear(embed_dims, embed_dims)

    def forward(self,
                query: torch.Tensor,
                context: torch.Tensor,
                value_weight: Optional[torch.Tensor] = None,
                key_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attend from ``query`` to ``context``.

        Args:
            query (Tensor): (B, Nq, d).
            context (Tensor): Keys and values, (B, Nk, d).
            value_weight (Tensor, optional): (B, Nk, 1) scale of each value
                (the token budget's scores).
            key_bias (Tensor, optional): (B, Nk) additive attention bias
                (the token budget's gates, as ``gate_bias``).

        Returns:
            Tensor: The attended update (B, Nq, d), not yet added to
            ``query``.
        """
        batch, dims = query.shape[0], query.shape[-1]
        heads = self.num_heads
        k, v = self.kv(context).chunk(2, dim=-1)
        if value_weight is not None:
            v = v * value_weight
        q = self.q(self.query_norm(query))

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, dims // heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(q),
            split(k),
            split(v),
            attn_mask=None if key_bias is None else key_bias[:, None, None],
            dropout_p=self.dropout if self.training else 0.0)
        return self.out(attended.transpose(1, 2).reshape(batch, -1, dims))


@MODELS.register_module()
class BottleneckExchange(BaseModule):
    """Intra-level exchange through fusion-bottleneck tokens (MBT-style).

    Drop-in replacement for :class:`~clcr_mm.models.IntraCED` in
    ``CLCRRecognizer(intra_ced=...)``; one instance is built per level.

    Args:
        modalities (Sequence[str]): Modality names, in a fixed order (filled
            in by the recognizer from its encoder).
        embed_dims (int): Token width d (filled in by the recognizer).
            Defaults to 256.
        num_heads (int): Attention heads. Defaults to 4.
        num_bottlenecks (int): Bottleneck tokens n_b per level: the width of
            the only channel between modalities. Defaults to 4.
        tie_shared (bool): One shared projection W_s for all modalities.
            Defaults to False.
        token_budget (dict, optional): Keyword arguments of CLCR's
            ``TokenBudget``; None lets every shared token write into the
            bottleneck. Defaults to ``dict()``.
        ffn_ratio (float): Hidden width of the feed-forward block, in d.
            Defaults to 2.0.
        dropout (float): Dropout in attention and FFN. Defaults to 0.1.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int = 256,
                 num_heads: int = 4,
                 num_bottlenecks: int = 4,
                 tie_shared: bool = False,
                 token_budget: Optional[dict] = dict(),
                 ffn_ratio: float = 2.0,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} must be divisible by '
                             f'num_heads={num_heads}')
        if len(modalities) < 2:
            raise ValueError('BottleneckExchange needs at least two '
                             f'modalities, got {tuple(modalities)}')
        if num_bottlenecks < 1:
            raise ValueError(
                f'num_bottlenecks must be >= 1, got {num_bottlenecks}')
        self.modalities = tuple(modalities)
        self.embed_dims = embed_dims
        self.shared_proj, self.private_proj, self.budgets = \
            factorisation_layers(self.modalities, embed_dims, tie_shared,
                                 token_budget)
        self.bottleneck = nn.Parameter(
            torch.zeros(1, num_bottlenecks, embed_dims))
        nn.init.trunc_normal_(self.bottleneck, std=0.02)
        self.write = _Attention(embed_dims, num_heads, dropout)
        self.read = _Attention(embed_dims, num_heads, dropout)
        self.ffn = feed_forward(embed_dims, ffn_ratio, dropout)

    def forward(self,
                tokens: Dict[str, torch.Tensor],
                modality_mask: Optional[torch.Tensor] = None) -> dict:
        """Factorise, write into the bottleneck, read from it.

        Args:
            tokens (dict[str, Tensor]): Aligned tokens X_m of shape
                (B, N_m, d) for every modality.
            modality_mask (Tensor, optional): Bool (B, M), True where the
                modality is present; None means all present.

        Returns:
            dict: The IntraCED interface: ``shared`` (m -> S_hat_m
            (B, N_m, d)), ``private`` (m -> P_m (B, N_m, d)), ``shared_in``
            (m -> S_m before the exchange), ``budget_ratio`` (m -> scalar
            rho; empty without a budget), ``budget_used`` (m -> (B, )
            fraction of tokens offered) and ``num_selected`` (m -> (B, )
            tokens each modality offered).
        """
        check_modalities(tokens, self.modalities, type(self).__name__)
        first = tokens[self.modalities[0]]
        batch = first.shape[0]
        present = modality_presence(modality_mask, self.modalities, batch,
                                    first.device)
        shared_in = {
            m: self.shared_proj[m](tokens[m])
            for m in self.modalities
        }
        private = {m: self.private_proj[m](tokens[m]) for m in self.modalities}

        # Write: each modality fills its own copy of the bottleneck from its
        # budgeted shared tokens only.
        bottleneck = self.bottleneck.expand(batch, -1, -1)
        written, ratios, used, num_selected = [], {}, {}, {}
        for m in self.modalities:
            if self.budgets is None:
                weight = bias = None
                num_selected[m] = first.new_full((batch, ),
                                                 shared_in[m].shape[1])
            else:
                budget = self.budgets[m](shared_in[m])
                weight = budget['value_weight'].unsqueeze(-1)
                bias = gate_bias(budget['gate'], first.dtype)
                ratios[m] = self.budgets[m].ratio
                used[m] = budget['used']
                num_selected[m] = budget['num_selected']
            written.append(bottleneck + self.write(bottleneck, shared_in[m],
                                                   weight, bias))
        written = torch.stack(written, 1)  # (B, M, n_b, d)

        # Read: m sees the mean bottleneck of the other present modalities.
        # A sample with no other modality gets no update at all.
        weight = present.to(written.dtype)  # (B, M)
        total = (written * weight[..., None, None]).sum(1)
        shared = {}
        for i, m in enumerate(self.modalities):
            others = weight.sum(1) - weight[:, i]
            context = (total - written[:, i] * weight[:, i, None, None]) / \
                others.clamp(min=1)[:, None, None]
            has_other = (others > 0).to(written.dtype)[:, None, None]
            exchanged = shared_in[m] + has_other * self.read(
                shared_in[m], context)
            shared[m] = exchanged + self.ffn(exchanged)
        return dict(
            shared=shared,
            private=private,
            shared_in=shared_in,
            budget_ratio=ratios,
            budget_used=used,
            num_selected=num_selected)
