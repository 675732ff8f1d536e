"""IntraCED: Intra-Level Co-Exchange Domain (CLCR section 2).

One IntraCED works on one semantic level. It factorises every modality's
tokens into a shared and a private subspace, and lets modalities exchange
information over the shared subspace only, through a learnable token budget.
Private tokens never enter another modality's keys or values, so
d(S_hat_n) / d(P_m) = 0 for n != m by construction.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import check_modalities, modality_presence


class TokenBudget(nn.Module):
    """Learnable token budget: which shared tokens a modality offers.

    A scorer rates every shared token; the budget ratio
    ``rho = rho_min + (rho_max - rho_min) * sigmoid(theta)`` sets
    ``k = ceil(rho * N)``. The top-k tokens become keys/values for the other
    modalities. Values are scaled by ``sigmoid(score)`` so the scorer learns,
    and in training by a soft rank gate ``sigmoid((rho * N - rank + 0.5) /
    tau)`` so rho itself gets a gradient (tokens near the budget edge are
    half-open); in evaluation the selection is hard.

    Args:
        embed_dims (int): Token width d.
        init_ratio (float): Initial rho. Defaults to 0.5.
        ratio_range (tuple[float, float]): (rho_min, rho_max). Defaults to
            (0.1, 1.0).
        temperature (float): tau of the soft rank gate, in ranks. Defaults
            to 1.0.
    """

    def __init__(self,
                 embed_dims: int,
                 init_ratio: float = 0.5,
                 ratio_range: Tuple[float, float] = (0.1, 1.0),
                 temperature: float = 1.0) -> None:
        super().__init__()
        low, high = ratio_range
        if not 0 < low < high <= 1 or not low < init_ratio < high:
            raise ValueError(
                f'need 0 < rho_min < init_ratio < rho_max <= 1, got '
                f'ratio_range={ratio_range}, init_ratio={init_ratio}')
        self.ratio_range = (float(low), float(high))
        self.temperature = temperature
        self.scorer = nn.Linear(embed_dims, 1)
        p = (init_ratio - low) / (high - low)
        self.logit = nn.Parameter(torch.tensor(math.log(p / (1 - p))))

    @property
    def ratio(self) -> torch.Tensor:
        """The budget ratio rho, a scalar tensor in [rho_min, rho_max]."""
        low, high = self.ratio_range
        return low + (high - low) * torch.sigmoid(self.logit)

    def budget(self, num_tokens: int) -> int:
        """k = ceil(rho * N), at least one token."""
        return max(1, min(num_tokens,
                          math.ceil(float(self.ratio.detach()) * num_tokens)))

    def forward(self, shared: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Select the budgeted tokens.

        Args:
            shared (Tensor): Shared tokens of shape (B, N, d).

        Returns:
            tuple[Tensor, Tensor]: Selected tokens (B, k, d) and their value
            weights (B, k, 1).
        """
        num_tokens = shared.shape[1]
        k = self.budget(num_tokens)
        scores = self.scorer(shared).squeeze(-1)
        top_scores, index = scores.topk(k, dim=1)
        selected = shared.gather(
            1, index.unsqueeze(-1).expand(-1, -1, shared.shape[-1]))
        weight = torch.sigmoid(top_scores)
        if self.training:
            ranks = torch.arange(k, device=shared.device, dtype=shared.dtype)
            edge = self.ratio * num_tokens - ranks + 0.5
            weight = weight * torch.sigmoid(edge / self.temperature)
        return selected, weight.unsqueeze(-1)


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


def prenorm_ffn(embed_dims: int, ffn_ratio: float,
                dropout: float) -> nn.Sequential:
    """The pre-norm feed-forward block that follows an exchange.

    ``LN -> Linear(d, r*d) -> GELU -> Dropout -> Linear(r*d, d) -> Dropout``;
    the caller adds its output to the input (residual). Shared by IntraCED
    and by exchange modules that replace it, like
    :func:`factorisation_layers`.

    Args:
        embed_dims (int): Token width d.
        ffn_ratio (float): Hidden width r, in d.
        dropout (float): Dropout after the activation and the output.

    Returns:
        nn.Sequential: Maps (..., d) to (..., d).
    """
    hidden = int(embed_dims * ffn_ratio)
    return nn.Sequential(
        nn.LayerNorm(embed_dims), nn.Linear(embed_dims, hidden), nn.GELU(),
        nn.Dropout(dropout), nn.Linear(hidden, embed_dims),
        nn.Dropout(dropout))


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
            "w/o IntraCED exchange" ablation: factorisation only.
            Defaults to True.
        token_budget (dict, optional): Keyword arguments of
            :class:`TokenBudget`; None gives the "w/o token budget" ablation
            in which every shared token is a key. Defaults to ``dict()``.
        ffn_ratio (float): Hidden width of the feed-forward block, in d.
            Defaults to 2.0.
        dropout (float): Dropout on attention output and FFN. Defaults to
            0.1.
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
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} must be divisible by '
                             f'num_heads={num_heads}')
        self.modalities = tuple(modalities)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.exchange = exchange
        self.dropout = dropout

        self.shared_proj, self.private_proj, self.budgets = \
            factorisation_layers(self.modalities, embed_dims, tie_shared,
                                 token_budget)
        if exchange:
            self.query_norm = nn.LayerNorm(embed_dims)
            self.q = nn.Linear(embed_dims, embed_dims)
            self.kv = nn.Linear(embed_dims, 2 * embed_dims)
            self.out = nn.Linear(embed_dims, embed_dims)
            # A learned null key with a zero value: a query whose every
            # other modality is absent attends to it and receives nothing,
            # instead of a softmax over an empty set.
            self.null_key = nn.Parameter(torch.zeros(1, 1, embed_dims))
            self.ffn = prenorm_ffn(embed_dims, ffn_ratio, dropout)

    def forward(self,
                tokens: Dict[str, torch.Tensor],
                modality_mask: Optional[torch.Tensor] = None) -> dict:
        """Factorise and exchange.

        Args:
            tokens (dict[str, Tensor]): Aligned tokens X_m of shape
                (B, N_m, d) for every modality.
            modality_mask (Tensor, optional): Bool (B, M), True where the
                modality is present. Absent modalities offer no keys.

        Returns:
            dict: ``shared`` (dict m -> S_hat_m (B, N_m, d)), ``private``
            (dict m -> P_m (B, N_m, d)), ``shared_in`` (dict m -> S_m before
            the exchange), ``budget_ratio`` (dict m -> rho as a scalar
            tensor) and ``num_selected`` (dict m -> k, an int).
        """
        check_modalities(tokens, self.modalities, type(self).__name__)
        first = tokens[self.modalities[0]]
        # No mask means every modality is present: the exchange then needs
        # no attention mask at all (fast fused kernels stay available).
        present = None if modality_mask is None else modality_presence(
            modality_mask, self.modalities, first.shape[0], first.device)
        shared_in = {m: self.shared_proj[m](tokens[m]) for m in self.modalities}
        private = {m: self.private_proj[m](tokens[m]) for m in self.modalities}
        keys, weights, num_selected, ratios = [], [], {}, {}
        for m in self.modalities:
            if self.budgets is None:
                selected = shared_in[m]
                weight = selected.new_ones(*selected.shape[:2], 1)
            else:
                selected, weight = self.budgets[m](shared_in[m])
                ratios[m] = self.budgets[m].ratio
            keys.append(selected)
            weights.append(weight)
            num_selected[m] = selected.shape[1]
        shared = (
            self._exchange(shared_in, keys, weights, present)
            if self.exchange else shared_in)
        return dict(
            shared=shared,
            private=private,
            shared_in=shared_in,
            budget_ratio=ratios,
            num_selected=num_selected)

    def _exchange(self, shared_in: Dict[str, torch.Tensor],
                  keys: Sequence[torch.Tensor],
                  weights: Sequence[torch.Tensor],
                  present: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Cross-attention of every modality's queries to the budgeted keys
        of the other modalities (plus the null key).

        Projections run once on all modalities' tokens together; attention
        runs per modality over only the keys it may see, so no work is spent
        on query-key pairs a block mask would discard (for M modalities a
        joint masked call computes M / (M - 1) times the needed scores) and
        no (B, N_q, N_k) mask is built. When every modality has as many
        queries and keys as the others, the M attentions are stacked into one
        call along the batch dim.

        Args:
            present (Tensor, optional): Bool (B, M); None when every
                modality is present, which skips masking altogether.
        """
        batch, dims = shared_in[self.modalities[0]].shape[0], self.embed_dims
        heads, head_dims = self.num_heads, dims // self.num_heads
        num_mod = len(self.modalities)
        q_sizes = [shared_in[m].shape[1] for m in self.modalities]
        k_sizes = [k.shape[1] for k in keys]
        queries = torch.cat([shared_in[m] for m in self.modalities], dim=1)
        q = self.q(self.query_norm(queries)).split(q_sizes, dim=1)
        k_all, v_all = self.kv(torch.cat(keys, dim=1)).chunk(2, dim=-1)
        v_all = v_all * torch.cat(weights, dim=1)
        k_own = k_all.split(k_sizes, dim=1)
        v_own = v_all.split(k_sizes, dim=1)
        null_k = self.null_key.expand(batch, -1, -1)
        null_v = v_all.new_zeros(batch, 1, dims)

        q_list, k_list, v_list, mask_list = [], [], [], []
        for i in range(num_mod):
            others = [j for j in range(num_mod) if j != i]
            q_list.append(q[i])
            k_list.append(torch.cat([null_k] + [k_own[j] for j in others], 1))
            v_list.append(torch.cat([null_v] + [v_own[j] for j in others], 1))
            if present is not None:
                # Key mask (B, 1 + sum_j k_j): the null key is always
                # visible; other keys only if their modality is present.
                mask_list.append(
                    torch.cat([present.new_ones(batch, 1)] + [
                        present[:, j:j + 1].expand(-1, k_sizes[j])
                        for j in others
                    ], 1))

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], -1, heads, head_dims).transpose(1, 2)

        def attend(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor,
                   mask: Optional[torch.Tensor]) -> torch.Tensor:
            out = F.scaled_dot_product_attention(
                split(q_),
                split(k_),
                split(v_),
                attn_mask=None if mask is None else mask[:, None, None, :],
                dropout_p=self.dropout if self.training else 0.0)
            return out.transpose(1, 2).reshape(q_.shape[0], -1, dims)

        same_shapes = len(set(q_sizes)) == 1 and len(
            set(k.shape[1] for k in k_list)) == 1
        if same_shapes and num_mod > 1:
            attended = attend(
                torch.cat(q_list, 0), torch.cat(k_list, 0),
                torch.cat(v_list, 0),
                torch.cat(mask_list, 0) if mask_list else None)
            attended = torch.cat(attended.split(batch, dim=0), dim=1)
        else:
            attended = torch.cat([
                attend(q_list[i], k_list[i], v_list[i],
                       mask_list[i] if mask_list else None)
                for i in range(num_mod)
            ], dim=1)
        exchanged = queries + self.out(attended)
        exchanged = exchanged + self.ffn(exchanged)
        return dict(zip(self.modalities, exchanged.split(q_sizes, dim=1)))
