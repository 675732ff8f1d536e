"""CLCR regularisers (spec section 5). Each returns an unweighted scalar
times ``loss_weight``; the recognizer logs each term on its own.

Every term is computed on what the representation carries, so it cannot be
satisfied by a constant: the separation term sees the per-sample pooled
component and one-token levels, the cross-level term is batch-centred (the
anchors, the same for every sample, drop out), and the alignment term
compares batch-centred pooled shared features across modalities.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from clcr_mm.registry import MODELS
from ..utils import masked_mean

TokenDict = Dict[str, Dict[str, torch.Tensor]]
MaskDict = Optional[Dict[str, Dict[str, torch.Tensor]]]


def _check_weight(where: str, loss_weight: float) -> None:
    if isinstance(loss_weight, bool) or not isinstance(
            loss_weight, (int, float)) or not loss_weight >= 0:
        raise ValueError(f'{where}: loss_weight must be a number >= 0, got '
                         f'{loss_weight!r}')


def _valid(token_masks: MaskDict, level: str,
           modality: str) -> Optional[torch.Tensor]:
    return (token_masks or {}).get(level, {}).get(modality)


def _cross_energy(shared: torch.Tensor, private: torch.Tensor,
                  valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``||S^T P||_F^2 / N^2`` per sample, (B, ), of (B, N, d) unit tokens.

    Not centred over tokens: a direction that every token of S and of P
    shares (their pooled mean, which InterCAD reads) counts, and a one-token
    level with S = P costs 1. With fewer tokens than channels the Gram
    identity ``||S^T P||_F^2 = sum_ij (S S^T)_ij (P P^T)_ij`` multiplies
    (N, N) matrices instead of forming the (d, d) cross-covariance (same
    value, 2 N^2 d instead of N d^2 multiply-adds).

    Args:
        shared, private (Tensor): (B, N, d).
        valid (Tensor, optional): Bool (B, N); padding tokens are left out
            and N counts valid tokens only.
    """
    shared, private = F.normalize(shared, dim=-1), F.normalize(private, dim=-1)
    if valid is None:
        num = shared.new_full((shared.shape[0], ), shared.shape[1])
    else:
        weight = valid.to(shared.dtype).unsqueeze(-1)
        shared, private = shared * weight, private * weight
        num = weight.sum((1, 2)).clamp(min=1)
    if shared.shape[1] < shared.shape[2]:
        energy = (shared @ shared.transpose(1, 2)) * (
            private @ private.transpose(1, 2))
    else:
        energy = torch.einsum('bnd,bne->bde', shared, private).pow(2)
    return energy.sum((1, 2)) / num**2


def _centred(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Subtract the weighted batch mean of (B, d) features."""
    mean = (x * weight).sum(0, keepdim=True) / weight.sum().clamp(min=1)
    return (x - mean) * weight


def _unbiased_hsic(gram_x: torch.Tensor, gram_y: torch.Tensor,
                   num: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator (Song et al., 2012) of two (B, B) Gram
    matrices whose rows and columns of absent samples are zero."""
    eye = torch.eye(gram_x.shape[0], dtype=torch.bool, device=gram_x.device)
    gram_x, gram_y = gram_x.masked_fill(eye, 0), gram_y.masked_fill(eye, 0)
    trace = (gram_x * gram_y).sum()
    sum_x, sum_y = gram_x.sum(), gram_y.sum()
    cross = (gram_x.sum(0) * gram_y.sum(0)).sum()
    return (trace + sum_x * sum_y / ((num - 1) * (num - 2)) -
            2 * cross / (num - 2)) / (num * (num - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor,
               present: torch.Tensor) -> torch.Tensor:
    """Debiased linear CKA between (B, d) features over the present samples:
    about 0 when the features are independent across samples (also when
    B < d, where the plain estimator is biased far above 0), 1 when one is
    an orthogonal transform of the other. A batch-level independence
    measure (normalised HSIC), blind to constant offsets. Zero when fewer
    than 4 samples are present.

    Args:
        x, y (Tensor): (B, d) features.
        present (Tensor): Bool (B, ).

    Returns:
        Tensor: Scalar, clamped at 0 from below.
    """
    weight = present.to(x.dtype).unsqueeze(-1)
    x, y = x * weight, y * weight
    num = weight.sum().clamp(min=4)
    gram_x, gram_y = x @ x.transpose(0, 1), y @ y.transpose(0, 1)
    hsic_xy = _unbiased_hsic(gram_x, gram_y, num)
    norm = (_unbiased_hsic(gram_x, gram_x, num) *
            _unbiased_hsic(gram_y, gram_y, num)).clamp(min=1e-12).sqrt()
    enough = (weight.sum() >= 4).to(x.dtype)
    return (hsic_xy / norm).clamp(min=0) * enough


def _present_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of (B, ) values over present samples (0 if none)."""
    weight = present.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1)


@MODELS.register_module()
class SharedPrivateSeparationLoss(nn.Module):
    """Separation of shared and private subspaces, per level and modality.

    Two parts, averaged over levels and modalities:

    * token level, as the difference loss of DSN / MISA:
      ``||S_hat^T P||_F^2 / N^2`` on unit tokens, not centred over tokens,
      so the per-sample pooled component (what InterCAD reads) and one-token
      levels count;
    * batch level (``batch_weight``): debiased linear CKA (HSIC) between
      pooled S_hat_m and pooled P_m over the batch, so a factor that varies
      across samples may not live in both subspaces.

    Zero exactly when every shared token is orthogonal to every private
    token of the same modality and level and the pooled features are
    uncorrelated over the batch.

    Args:
        loss_weight (float): lambda_sep. Defaults to 0.1.
        batch_weight (float): Weight of the batch-level term relative to
            the token-level one. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 0.1,
                 batch_weight: float = 1.0) -> None:
        super().__init__()
        _check_weight('SharedPrivateSeparationLoss', loss_weight)
        _check_weight('SharedPrivateSeparationLoss.batch_weight',
                      batch_weight)
        self.loss_weight = loss_weight
        self.batch_weight = batch_weight

    def forward(self,
                shared: TokenDict,
                private: TokenDict,
                present: torch.Tensor,
                modalities: Sequence[str],
                token_masks: MaskDict = None) -> torch.Tensor:
        """Args:
            shared, private (dict): ``[level][modality]`` (B, N, d).
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.
            token_masks (dict, optional): ``[level][modality]`` bool (B, N).

        Returns:
            Tensor: Weighted scalar loss.
        """
        terms = []
        for level, level_shared in shared.items():
            for i, m in enumerate(modalities):
                valid = _valid(token_masks, level, m)
                energy = _cross_energy(level_shared[m], private[level][m],
                                       valid)
                term = _present_mean(energy, present[:, i])
                if self.batch_weight:
                    term = term + self.batch_weight * linear_cka(
                        masked_mean(level_shared[m], None, valid),
                        masked_mean(private[level][m], None, valid),
                        present[:, i])
                terms.append(term)
        return self.loss_weight * torch.stack(terms).mean()


@MODELS.register_module()
class CrossLevelInterferenceLoss(nn.Module):
    """Penalises what the levels' synchronised representations carry in
    common: the mean squared off-diagonal cosine similarity between
    batch-centred pool(Z_l). Centring over the batch removes whatever is the
    same for every sample (the anchors above all), so large level-orthogonal
    anchors cannot satisfy it; zero when the levels vary across samples in
    orthogonal directions.

    Args:
        loss_weight (float): lambda_cross. Defaults to 0.05.
    """

    def __init__(self, loss_weight: float = 0.05) -> None:
        super().__init__()
        _check_weight('CrossLevelInterferenceLoss', loss_weight)
        self.loss_weight = loss_weight

    def forward(self, level_feats: torch.Tensor) -> torch.Tensor:
        """Args:
            level_feats (Tensor): pool(Z_l), shape (B, L, d).

        Returns:
            Tensor: Weighted scalar loss (zero for a batch of one).
        """
        centred = level_feats - level_feats.mean(0, keepdim=True)
        unit = F.normalize(centred, dim=-1)
        gram = unit @ unit.transpose(1, 2)
        num_levels = gram.shape[-1]
        # a multiplicative mask, not boolean indexing: static shapes
        off = 1 - torch.eye(num_levels, dtype=gram.dtype, device=gram.device)
        return self.loss_weight * (gram.pow(2) * off).sum() / (
            gram.shape[0] * num_levels * (num_levels - 1))


@MODELS.register_module()
class TokenBudgetLoss(nn.Module):
    """A cost on the exchanged tokens: the mean over levels and modalities
    of the expected fraction of shared tokens offered, above ``target``:
    ``mean(relu(used - target))``. With target 0 every offered token costs;
    a target lets a budget up to that fraction be free. Together with the
    task loss it sets the accuracy vs exchanged-tokens trade-off, instead of
    pinning rho to a value.

    Args:
        target (float): Free fraction of tokens, in [0, 1). Defaults to 0.
        loss_weight (float): lambda_budget. Defaults to 0.01.
    """

    def __init__(self, target: float = 0.0, loss_weight: float = 0.01) -> None:
        super().__init__()
        if not 0 <= target < 1:
            raise ValueError(
                f'TokenBudgetLoss: target must be in [0, 1), got {target}')
        _check_weight('TokenBudgetLoss', loss_weight)
        self.target = target
        self.loss_weight = loss_weight

    def forward(self, used: Sequence[torch.Tensor]) -> torch.Tensor:
        """Args:
            used (Sequence[Tensor]): (B, ) fraction of tokens offered, of
                every (level, modality); differentiable in rho in training.

        Returns:
            Tensor: Weighted scalar loss.
        """
        fraction = torch.stack([u.mean() for u in used])
        return self.loss_weight * (fraction - self.target).clamp(min=0).mean()


@MODELS.register_module()
class SharedAlignmentLoss(nn.Module):
    """Cross-modal alignment of the shared subspaces (before the exchange):
    ``1 - cos`` of batch-centred pooled S_m and S_n for every pair of
    modalities present together, per level. What one modality's shared
    subspace carries must then vary across samples as the other's does, so
    a factor only one modality has gets no room in it (it belongs in the
    private subspace). Centring keeps a constant offset from satisfying it.

    Args:
        loss_weight (float): lambda_align. Defaults to 0.1.
    """

    def __init__(self, loss_weight: float = 0.1) -> None:
        super().__init__()
        _check_weight('SharedAlignmentLoss', loss_weight)
        self.loss_weight = loss_weight

    def forward(self,
                shared: TokenDict,
                present: torch.Tensor,
                modalities: Sequence[str],
                token_masks: MaskDict = None) -> torch.Tensor:
        """Args:
            shared (dict): ``[level][modality]`` (B, N, d): S before the
                exchange.
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.
            token_masks (dict, optional): ``[level][modality]`` bool (B, N).

        Returns:
            Tensor: Weighted scalar loss.
        """
        terms = []
        for level, level_shared in shared.items():
            pooled = [
                masked_mean(level_shared[m], None, _valid(token_masks, level,
                                                          m))
                for m in modalities
            ]
            for i in range(len(modalities)):
                for j in range(i + 1, len(modalities)):
                    both = present[:, i] & present[:, j]
                    weight = both.to(pooled[i].dtype).unsqueeze(-1)
                    cos = F.cosine_similarity(
                        _centred(pooled[i], weight),
                        _centred(pooled[j], weight),
                        dim=-1)
                    terms.append(_present_mean(1 - cos, both))
        return self.loss_weight * torch.stack(terms).mean()


@MODELS.register_module()
class LevelWeightEntropyLoss(nn.Module):
    """Keeps InterCAD's level weights from collapsing by accident:
    ``KL(alpha || uniform) = log L - H(alpha)``, averaged over samples.
    Zero when every level gets 1 / L; a model that needs one level must
    earn it against this cost.

    Args:
        loss_weight (float): Weight. Defaults to 0.01.
    """

    def __init__(self, loss_weight: float = 0.01) -> None:
        super().__init__()
        _check_weight('LevelWeightEntropyLoss', loss_weight)
        self.loss_weight = loss_weight

    def forward(self, level_weights: torch.Tensor) -> torch.Tensor:
        """Args:
            level_weights (Tensor): alpha, (B, L), rows summing to 1.

        Returns:
            Tensor: Weighted scalar loss.
        """
        num_levels = level_weights.shape[-1]
        entropy = -(level_weights * level_weights.clamp(min=1e-12).log()).sum(
            -1)
        return self.loss_weight * (
            torch.log(level_weights.new_tensor(float(num_levels))) -
            entropy).mean()


@MODELS.register_module()
class L1Loss(nn.Module):
    """Mean absolute error, the regression loss of MOSI / MOSEI.

    Args:
        loss_weight (float): Weight. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        _check_weight('L1Loss', loss_weight)
        self.loss_weight = loss_weight

    def forward(self, pred: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """(B, 1) predictions and targets -> weighted scalar."""
        return self.loss_weight * F.l1_loss(pred, target)
