"""InterCAD: Inter-Level Co-Aggregation Domain (CLCR section 3).

Brings the three levels to one semantic scale with learned anchors, fuses
the levels' shared representations with sample-dependent weights, and gates
each modality-level private summary into one compact task representation.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import (LEVELS, Levels, StackedLevels, check_attention,
                     check_positive, masked_mean, modality_presence,
                     set_presence, stack_levels)


@MODELS.register_module()
class InterCAD(BaseModule):
    """Inter-Level Co-Aggregation Domain.

    Args:
        modalities (Sequence[str]): Modality names, in a fixed order.
        embed_dims (int): Token width d. Defaults to 256.
        out_channels (int): Width D of the task representation h.
            Defaults to 256.
        num_anchors (int): Anchors K per level. Defaults to 8.
        num_heads (int): Heads of the anchor attention. Defaults to 4.
        synchronise (bool): Scale synchronisation with anchors; False
            pools each level's shared tokens directly. Defaults to True.
        selective (bool): Sample-dependent level weights alpha; False uses
            uniform weights. Defaults to True.
        gate_private (bool): Learned private gates gamma; False uses
            gamma = 1 for every present modality-level. Defaults to True.
        level_temperature (float): Temperature T of the level weights
            ``alpha = softmax(scores / T)``: T > 1 keeps alpha spread, T < 1
            sharpens it; with :class:`LevelWeightEntropyLoss` it makes
            collapse onto one level a learned result, not an accident of
            initialisation. Defaults to 1.0.
        dropout (float): Dropout on h's projection input. Defaults to 0.1.
        init_cfg (dict, optional): mmengine init config. Defaults to None.

    With ``synchronise``, ``selective`` and ``gate_private`` all False this
    is the "w/o InterCAD" ablation: plain pooling and concatenation.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int = 256,
                 out_channels: int = 256,
                 num_anchors: int = 8,
                 num_heads: int = 4,
                 synchronise: bool = True,
                 selective: bool = True,
                 gate_private: bool = True,
                 level_temperature: float = 1.0,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_positive('InterCAD', embed_dims=embed_dims,
                       out_channels=out_channels, num_anchors=num_anchors,
                       num_heads=num_heads,
                       level_temperature=level_temperature)
        check_attention('InterCAD', embed_dims, num_heads, dropout)
        self.level_temperature = float(level_temperature)
        self.modalities = tuple(modalities)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.synchronise = synchronise
        self.selective = selective
        self.gate_private = gate_private
        num_levels, num_mod = len(LEVELS), len(self.modalities)
        if synchronise:
            self.anchors = nn.Parameter(
                torch.zeros(num_levels, num_anchors, embed_dims))
            nn.init.trunc_normal_(self.anchors, std=0.02)
            self.key_norm = nn.LayerNorm(embed_dims)
            # Queries come from normalised anchors: the anchors' scale
            # cannot sharpen the attention by itself, so neither it nor the
            # residual anchors (removed by batch centring) can make the
            # levels look different to the cross-level term.
            self.anchor_norm = nn.LayerNorm(embed_dims)
            self.q = nn.Linear(embed_dims, embed_dims)
            self.kv = nn.Linear(embed_dims, 2 * embed_dims)
            self.attn_out = nn.Linear(embed_dims, embed_dims)
            self.sync_norm = nn.LayerNorm(embed_dims)
        if selective:
            self.level_scorer = nn.Sequential(
                nn.Linear(num_levels * embed_dims, embed_dims), nn.GELU(),
                nn.Linear(embed_dims, num_levels))
        if gate_private:
            self.gate = nn.Linear(2 * embed_dims, 1)
        # U_{m,l}: one private projection per modality-level, batched.
        self.private_proj = nn.Parameter(
            torch.empty(num_mod * num_levels, embed_dims, embed_dims))
        nn.init.xavier_uniform_(self.private_proj.view(-1, embed_dims))
        self.out = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * embed_dims, out_channels),
            nn.LayerNorm(out_channels))

    def synchronise_levels(self, shared: StackedLevels,
                           present: Optional[torch.Tensor]) -> torch.Tensor:
        """Anchors of each level attend to that level's shared tokens.

        Standard multi-head attention of the K anchors (queries
        ``q(anchors)``) over keys / values ``kv(LN(tokens))``, computed
        without projecting the N tokens: with few queries and many tokens,
        each head's query is mapped back to the token space instead
        (``q_h . (W_k^h x + b_k^h) = (W_k^h^T q_h) . x + const``; the
        constant cancels in the softmax), the attention pools the
        normalised tokens themselves, and the value projection is applied to
        the K pooled vectors (``sum_i a_i (W_v^h x_i + b_v^h) = W_v^h
        (sum_i a_i x_i) + b_v^h``). Same result, O(N K d) instead of
        O(N d^2) work: the key/value projection of every token was most of
        InterCAD's cost.

        All levels run in one attention call over the stacked tokens: each
        level's modalities side by side, padding and absent modalities
        masked; the heads' queries share one attention over the same
        tokens.

        Args:
            shared (StackedLevels): Shared tokens (L*M, B, N, d),
                level-major, and their validity.
            present (Tensor, optional): Bool (B, M). None: every modality
                of every sample is present; with no padding either, the
                attention then runs without a mask (SDPA's fused no-mask
                kernels).

        Returns:
            Tensor: Synchronised levels Z of shape (B, L, K, d).
        """
        tokens, valid = shared
        batch, dims = tokens.shape[1], self.embed_dims
        heads = self.num_heads
        head_dims = dims // heads
        num_levels, num_anchors = self.anchors.shape[:2]
        num_mod, num = len(self.modalities), tokens.shape[2]
        # (B*L, M*N, d): each sample's levels, modalities side by side
        tokens = self.key_norm(
            tokens.view(num_levels, num_mod, batch, num,
                        dims).permute(2, 0, 1, 3, 4).reshape(
                            batch * num_levels, num_mod * num, dims))
        attn_mask = None
        if present is not None or valid is not None:
            attn_mask = self._attention_mask(present, valid, batch,
                                             num)[:, None, None, :]

        w_key, w_value = self.kv.weight.split(dims)
        b_value = self.kv.bias[dims:]
        # Queries in token space, per head: (H, L*K, d_h) @ (H, d_h, d).
        q = self.q(self.anchor_norm(self.anchors)).view(
            num_levels * num_anchors, heads, head_dims).transpose(0, 1)
        q = torch.matmul(q, w_key.view(heads, head_dims, dims))
        # (L, H*K, d): every (head, anchor) pair is one query of one shared
        # attention, scaled as a head_dims-wide head would be.
        q = q.view(heads, num_levels, num_anchors, dims).transpose(0, 1)
        q = q.reshape(1, num_levels, heads * num_anchors, dims).expand(
            batch, -1, -1, -1).flatten(0, 1)
        pooled = F.scaled_dot_product_attention(
            q.unsqueeze(1),
            tokens.unsqueeze(1),
            tokens.unsqueeze(1),
            attn_mask=attn_mask,
            scale=head_dims**-0.5).squeeze(1)
        # Value projection of the pooled tokens, per head:
        # (H, B*L*K, d) @ (H, d, d_h).
        pooled = pooled.view(batch * num_levels, heads, num_anchors,
                             dims).permute(1, 0, 2, 3).reshape(
                                 heads, -1, dims)
        attended = torch.matmul(
            pooled,
            w_value.view(heads, head_dims, dims).transpose(1, 2))
        attended = attended.view(heads, batch, num_levels, num_anchors,
                                 head_dims).permute(1, 2, 3, 0, 4).reshape(
                                     batch, num_levels, num_anchors, dims)
        attended = attended + b_value
        if present is not None:
            any_present = present.any(dim=1).to(attended.dtype)
            attended = attended * any_present[:, None, None, None]
        return self.sync_norm(self.anchors + self.attn_out(attended))

    def _attention_mask(self, present: Optional[torch.Tensor],
                        valid: Optional[torch.Tensor], batch: int,
                        num: int) -> torch.Tensor:
        """(B*L, M*N) bool: the tokens each level's anchors may attend
        (present modality, valid token), in :meth:`synchronise_levels`'
        layout."""
        num_levels, num_mod = len(LEVELS), len(self.modalities)
        if valid is None:
            mask = present[:, None, :, None].expand(-1, num_levels, -1, num)
        else:
            mask = valid.view(num_levels, num_mod, batch,
                              num).permute(2, 0, 1, 3)
            if present is not None:
                mask = mask & present[:, None, :, None]
        mask = mask.reshape(batch * num_levels, num_mod * num)
        # A sample with no modality present keeps its anchors unchanged:
        # let it attend everywhere; its zero-weighted result is discarded.
        return mask | ~mask.any(dim=-1, keepdim=True)

    def forward(self,
                shared: Union[Levels, StackedLevels],
                private: Union[Levels, StackedLevels],
                modality_mask: Optional[torch.Tensor] = None,
                token_masks: Optional[Levels] = None) -> dict:
        """Aggregate three levels into the task representation h.

        Args:
            shared (dict | StackedLevels): ``shared[level][modality]``:
                exchanged shared tokens S_hat (B, N, d) from each level's
                IntraCED, or all of them stacked (IntraCED's own layout).
            private (dict | StackedLevels): ``private[level][modality]``:
                private tokens P (B, N, d), or stacked.
            modality_mask (Tensor, optional): Bool (B, M), True = present.
            token_masks (dict, optional): ``[level][modality]`` bool (B, N),
                False for padding tokens, which no pooling reads (unused
                for stacked inputs, which carry their validity).

        Returns:
            dict: ``feat`` h (B, D); ``level_feats`` pool(Z_l) (B, L, d);
            ``level_weights`` alpha (B, L); ``private_gates`` gamma (B, M, L);
            ``shared_feat`` z_s (B, d); ``private_feat`` z_p (B, d).
        """
        shared = stack_levels(shared, self.modalities, token_masks)
        private = stack_levels(private, self.modalities, token_masks)
        num_mod, num_levels = len(self.modalities), len(LEVELS)
        if shared.tokens.shape[0] != num_mod * num_levels:
            raise ValueError(
                f'InterCAD expects {num_levels} levels x {num_mod} '
                f'modalities = {num_mod * num_levels} token sets, got '
                f'{shared.tokens.shape[0]}')
        batch = shared.tokens.shape[1]
        present = modality_presence(modality_mask, self.modalities, batch,
                                    shared.tokens.device)
        weights = present.to(shared.tokens.dtype)
        present_sets = set_presence(present, num_levels)

        if self.synchronise:
            level_feats = self.synchronise_levels(
                shared, None if modality_mask is None else present).mean(2)
        else:
            count = weights.sum(1).clamp(min=1).unsqueeze(-1)
            level_feats = (masked_mean(
                shared.tokens, present_sets, shared.valid).view(
                    num_levels, num_mod, batch, -1).sum(1) /
                           count).transpose(0, 1)
        if self.selective:
            level_weights = (self.level_scorer(level_feats.flatten(1)) /
                             self.level_temperature).softmax(dim=-1)
        else:
            level_weights = level_feats.new_full(
                level_feats.shape[:2], 1.0 / len(LEVELS))
        shared_feat = (level_weights.unsqueeze(-1) * level_feats).sum(1)

        # pool(P_m^l) for every modality-level: (B, M*L, d), absent -> 0.
        private_pooled = masked_mean(private.tokens, present_sets,
                                     private.valid).view(
                                         num_levels, num_mod, batch,
                                         -1).permute(2, 1, 0, 3).reshape(
                                             batch, num_mod * num_levels,
                                             -1)
        present_ml = weights.repeat_interleave(len(LEVELS), dim=1)
        if self.gate_private:
            gate_in = torch.cat([
                shared_feat.unsqueeze(1).expand_as(private_pooled),
                private_pooled
            ], -1)
            gates = torch.sigmoid(self.gate(gate_in)).squeeze(-1)
        else:
            gates = torch.ones_like(present_ml)
        gates = gates * present_ml
        projected = torch.einsum('bnd,nde->bne', private_pooled,
                                 self.private_proj)
        private_feat = (gates.unsqueeze(-1) * projected).sum(1)
        feat = self.out(torch.cat([shared_feat, private_feat], -1))
        return dict(
            feat=feat,
            level_feats=level_feats,
            level_weights=level_weights,
            private_gates=gates.view(batch, len(self.modalities),
                                     len(LEVELS)),
            shared_feat=shared_feat,
            private_feat=private_feat)
