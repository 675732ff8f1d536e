"""Baseline fusions on the same hierarchy encoder, for honest comparison."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import LEVELS, masked_mean, modality_presence

TokenMasks = Dict[str, Dict[str, torch.Tensor]]


class _PooledLevel(BaseModule):
    """Pools each modality's tokens of one level (absent modality -> 0).

    Args:
        modalities (Sequence[str]): Modality names, in a fixed order.
        embed_dims (int): Token width d, checked against the input.
            Defaults to 256.
        level (str): Which level to fuse. Defaults to ``'deep'``, as in the
            usual late/concat baselines that fuse final features.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int = 256,
                 level: str = 'deep',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        if level not in LEVELS:
            raise ValueError(f'level must be one of {LEVELS}, got {level!r}')
        self.modalities = tuple(modalities)
        self.level = level

    def pooled(
        self,
        levels: Dict[str, Dict[str, torch.Tensor]],
        modality_mask: Optional[torch.Tensor],
        token_masks: Optional[TokenMasks] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pool every modality's tokens of the fused level.

        Args:
            levels (dict): ``levels[level][modality]`` tokens (B, N, d).
            modality_mask (Tensor, optional): (B, M) bool presence.
            token_masks (dict, optional): ``token_masks[level][modality]``
                (B, N) bool, True for valid tokens; only those are pooled.

        Returns:
            tuple[Tensor, Tensor]: (B, M, d) pooled features and (B, M)
            presence.
        """
        tokens = levels[self.level]
        valid = (token_masks or {}).get(self.level, {})
        first = tokens[self.modalities[0]]
        if first.shape[-1] != self.embed_dims:
            raise ValueError(
                f'{type(self).__name__} was built for width {self.embed_dims}'
                f' but the {self.level} tokens have width {first.shape[-1]}')
        present = modality_presence(modality_mask, self.modalities,
                                    first.shape[0], first.device)
        feats = torch.stack([
            masked_mean(tokens[m], present[:, i], valid.get(m))
            for i, m in enumerate(self.modalities)
        ], 1)
        return feats, present


@MODELS.register_module()
class ConcatFusion(_PooledLevel):
    """Concatenation fusion: h = LN(W [pool(X_1); ...; pool(X_M)]).

    Args:
        modalities (Sequence[str]): Modality names.
        embed_dims (int): Token width d. Defaults to 256.
        out_channels (int): Width D of h. Defaults to 256.
        level (str): Fused level. Defaults to ``'deep'``.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int = 256,
                 out_channels: int = 256,
                 level: str = 'deep',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(modalities, embed_dims, level, init_cfg)
        self.proj = nn.Sequential(
            nn.Linear(len(self.modalities) * embed_dims, out_channels),
            nn.LayerNorm(out_channels))

    def forward(self,
                levels: Dict[str, Dict[str, torch.Tensor]],
                modality_mask: Optional[torch.Tensor] = None,
                token_masks: Optional[TokenMasks] = None) -> dict:
        """Returns ``dict(feat=(B, D))``; see :meth:`pooled` for the
        arguments."""
        feats, _ = self.pooled(levels, modality_mask, token_masks)
        return dict(feat=self.proj(feats.flatten(1)))


@MODELS.register_module()
class LateFusion(_PooledLevel):
    """Late fusion: pooled features per modality, classified separately by
    :class:`LateFusionHead`, whose logits are averaged."""

    def forward(self,
                levels: Dict[str, Dict[str, torch.Tensor]],
                modality_mask: Optional[torch.Tensor] = None,
                token_masks: Optional[TokenMasks] = None) -> dict:
        """Returns ``dict(modality_feats=(B, M, d), present=(B, M))``; see
        :meth:`pooled` for the arguments."""
        feats, present = self.pooled(levels, modality_mask, token_masks)
        return dict(modality_feats=feats, present=present)
