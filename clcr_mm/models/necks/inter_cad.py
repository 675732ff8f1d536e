"""InterCAD: Inter-Level Co-Aggregation Domain (CLCR section 3).

Brings the three levels to one semantic scale with learned anchors, fuses
the levels' shared representations with sample-dependent weights, and gates
each modality-level private summary into one compact task representation.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import LEVELS, masked_mean, modality_presence


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
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
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

    def synchronise_levels(self, shared: Dict[str, Dict[str, torch.Tensor]],
                           present: torch.Tensor) -> torch.Tensor:
        """Anchors of each level attend to that level's shared tokens.

        All levels run in one attention call: keys of the three levels are
        padded to a common length and masked.

        Args:
            shared (dict): ``shared[level][modality]`` (B, N, d).
            present (Tensor): Bool (B, M).

        Returns:
            Tensor: Synchronised levels Z of shape (B, L, K, d).
        """
        batch, dims = present.shape[0], self.embed_dims
        heads = self.num_heads
        tokens, masks = [], []
        for level in LEVELS:
            level_tokens = [shared[level][m] for m in self.modalities]
            tokens.append(torch.cat(level_tokens, dim=1))
            masks.append(
                torch.cat([
                    present[:, i:i + 1].expand(-1, t.shape[1])
                    for i, t in enumerate(level_tokens)
                ],
                          dim=1))
        longest = max(t.shape[1] for t in tokens)
        keys = torch.stack(
            [F.pad(t, (0, 0, 0, longest - t.shape[1])) for t in tokens], 1)
        mask = torch.stack(
            [F.pad(m, (0, longest - m.shape[1])) for m in masks], 1)
        # A sample with no modality present keeps its anchors unchanged:
        # let it attend everywhere; its zero-weighted result is discarded.
        mask = mask | ~mask.any(dim=-1, keepdim=True)
        num_levels, num_anchors = self.anchors.shape[:2]
        keys = self.key_norm(keys.flatten(0, 1))
        k, v = self.kv(keys).chunk(2, dim=-1)
        q = self.q(self.anchors).unsqueeze(0).expand(batch, -1, -1, -1)
        q = q.flatten(0, 1)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], -1, heads,
                          dims // heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(q),
            split(k),
            split(v),
            attn_mask=mask.flatten(0, 1)[:, None, None, :])
        attended = attended.transpose(1, 2).reshape(batch, num_levels,
                                                    num_anchors, dims)
        any_present = present.any(dim=1).to(attended.dtype)
        attended = attended * any_present[:, None, None, None]
        return self.sync_norm(self.anchors + self.attn_out(attended))

    def forward(self,
                shared: Dict[str, Dict[str, torch.Tensor]],
                private: Dict[str, Dict[str, torch.Tensor]],
                modality_mask: Optional[torch.Tensor] = None) -> dict:
        """Aggregate three levels into the task representation h.

        Args:
            shared (dict): ``shared[level][modality]``: exchanged shared
                tokens S_hat (B, N, d) from each level's IntraCED.
            private (dict): ``private[level][modality]``: private tokens P
                (B, N, d).
            modality_mask (Tensor, optional): Bool (B, M), True = present.

        Returns:
            dict: ``feat`` h (B, D); ``level_feats`` pool(Z_l) (B, L, d);
            ``level_weights`` alpha (B, L); ``private_gates`` gamma (B, M, L);
            ``shared_feat`` z_s (B, d); ``private_feat`` z_p (B, d).
        """
        first = shared[LEVELS[0]][self.modalities[0]]
        batch = first.shape[0]
        present = modality_presence(modality_mask, self.modalities, batch,
                                    first.device)
        weights = present.to(first.dtype)
        if self.synchronise:
            level_feats = self.synchronise_levels(shared, present).mean(2)
        else:
            count = weights.sum(1).clamp(min=1).unsqueeze(-1)
            level_feats = torch.stack([
                sum(
                    masked_mean(shared[level][m], present[:, i])
                    for i, m in enumerate(self.modalities)) / count
                for level in LEVELS
            ], 1)
        if self.selective:
            level_weights = self.level_scorer(level_feats.flatten(1)).softmax(
                dim=-1)
        else:
            level_weights = level_feats.new_full(
                level_feats.shape[:2], 1.0 / len(LEVELS))
        shared_feat = (level_weights.unsqueeze(-1) * level_feats).sum(1)

        # pool(P_m^l) for every modality-level: (B, M*L, d), absent -> 0.
        private_pooled = torch.stack([
            masked_mean(private[level][m], present[:, i])
            for i, m in enumerate(self.modalities) for level in LEVELS
        ], 1)
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
