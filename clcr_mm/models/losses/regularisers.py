"""CLCR regularisers (spec section 5). Each returns an unweighted scalar
times ``loss_weight``; the recognizer logs each term on its own."""
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clcr_mm.registry import MODELS

TokenDict = Dict[str, Dict[str, torch.Tensor]]


def _centred_unit(tokens: torch.Tensor) -> torch.Tensor:
    """Centre over tokens and L2-normalise each token: (B, N, d)."""
    return F.normalize(tokens - tokens.mean(dim=1, keepdim=True), dim=-1)


def _cross_energy(shared: torch.Tensor,
                  private: torch.Tensor) -> torch.Tensor:
    """``||S^T P||_F^2 / N^2`` per sample, (B, ), of (B, N, d) tokens.

    With fewer tokens than channels the Gram identity
    ``||S^T P||_F^2 = sum_ij (S S^T)_ij (P P^T)_ij`` multiplies (N, N)
    matrices instead of forming the (d, d) cross-covariance: the same value
    at 2N^2 d instead of N d^2 multiply-adds, and half the CPU time of the
    loss at the synthetic preset's sizes (docs/performance.md).
    """
    num_tokens = shared.shape[1]
    if num_tokens < shared.shape[2]:
        energy = (shared @ shared.transpose(1, 2)) * (
            private @ private.transpose(1, 2))
    else:
        energy = torch.einsum('bnd,bne->bde', shared, private).pow(2)
    return energy.sum((1, 2)) / num_tokens**2


def _present_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of (B, ) values over present samples (0 if none)."""
    weight = present.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1)


@MODELS.register_module()
class SharedPrivateSeparationLoss(nn.Module):
    """Soft orthogonality of shared and private subspaces, as the difference
    loss of DSN / MISA: ``||S_hat^T P||_F^2 / N^2`` on centred, unit tokens,
    averaged over levels, modalities and present samples.

    Zero exactly when every shared token is orthogonal to every private
    token of the same modality and level.

    Args:
        loss_weight (float): lambda_sep. Defaults to 0.1.
    """

    def __init__(self, loss_weight: float = 0.1) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, shared: TokenDict, private: TokenDict,
                present: torch.Tensor,
                modalities: Sequence[str]) -> torch.Tensor:
        """Args:
            shared, private (dict): ``[level][modality]`` (B, N, d).
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.

        Returns:
            Tensor: Weighted scalar loss.
        """
        terms = []
        for level, level_shared in shared.items():
            for i, m in enumerate(modalities):
                energy = _cross_energy(
                    _centred_unit(level_shared[m]),
                    _centred_unit(private[level][m]))
                terms.append(_present_mean(energy, present[:, i]))
        return self.loss_weight * torch.stack(terms).mean()


@MODELS.register_module()
class CrossLevelInterferenceLoss(nn.Module):
    """Penalises similarity between the levels' synchronised representations
    (mean squared off-diagonal cosine similarity of pool(Z_l)), so each level
    keeps its own information. Zero when the levels are orthogonal.

    Args:
        loss_weight (float): lambda_cross. Defaults to 0.05.
    """

    def __init__(self, loss_weight: float = 0.05) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, level_feats: torch.Tensor) -> torch.Tensor:
        """Args:
            level_feats (Tensor): pool(Z_l), shape (B, L, d).

        Returns:
            Tensor: Weighted scalar loss.
        """
        unit = F.normalize(level_feats, dim=-1)
        gram = unit @ unit.transpose(1, 2)
        num_levels = gram.shape[-1]
        off = ~torch.eye(num_levels, dtype=torch.bool, device=gram.device)
        return self.loss_weight * gram[:, off].pow(2).mean()


@MODELS.register_module()
class TokenBudgetLoss(nn.Module):
    """Keeps each learnable budget ratio rho near a target selection rate:
    ``mean((rho - target)^2)``; zero when every rho equals the target.

    Args:
        target (float): Target mean selection rate. Defaults to 0.5.
        loss_weight (float): lambda_budget. Defaults to 0.01.
    """

    def __init__(self, target: float = 0.5, loss_weight: float = 0.01) -> None:
        super().__init__()
        if not 0 < target <= 1:
            raise ValueError(f'target must be in (0, 1], got {target}')
        self.target = target
        self.loss_weight = loss_weight

    def forward(self, ratios: Sequence[torch.Tensor]) -> torch.Tensor:
        """Args:
            ratios (Sequence[Tensor]): Scalar rho of every (level, modality).

        Returns:
            Tensor: Weighted scalar loss.
        """
        rho = torch.stack(list(ratios))
        return self.loss_weight * (rho - self.target).pow(2).mean()


@MODELS.register_module()
class SharedAlignmentLoss(nn.Module):
    """Optional alignment of the shared subspaces across modalities:
    ``1 - cos`` of pooled shared features for every pair of modalities
    present together, per level. Zero when they coincide.

    Args:
        loss_weight (float): lambda_align. Defaults to 0.1.
    """

    def __init__(self, loss_weight: float = 0.1) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, shared: TokenDict, present: torch.Tensor,
                modalities: Sequence[str]) -> torch.Tensor:
        """Args:
            shared (dict): ``[level][modality]`` (B, N, d).
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.

        Returns:
            Tensor: Weighted scalar loss.
        """
        terms = []
        for level_shared in shared.values():
            pooled = [level_shared[m].mean(1) for m in modalities]
            for i in range(len(modalities)):
                for j in range(i + 1, len(modalities)):
                    cos = F.cosine_similarity(pooled[i], pooled[j], dim=-1)
                    terms.append(_present_mean(1 - cos,
                                               present[:, i] & present[:, j]))
        return self.loss_weight * torch.stack(terms).mean()


@MODELS.register_module()
class L1Loss(nn.Module):
    """Mean absolute error, the regression loss of MOSI / MOSEI.

    Args:
        loss_weight (float): Weight. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """(B, 1) predictions and targets -> weighted scalar."""
        return self.loss_weight * F.l1_loss(pred, target)
