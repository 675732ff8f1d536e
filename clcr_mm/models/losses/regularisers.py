"""CLCR regularisers (spec section 5). Each returns an unweighted scalar
times ``loss_weight``; the recognizer logs each term on its own.

Every term is computed on what the representation carries, so it cannot be
satisfied by a constant: the separation term sees the per-sample pooled
component and one-token levels, the cross-level term is batch-centred (the
anchors, the same for every sample, drop out), and the alignment term
compares batch-centred pooled shared features across modalities.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from clcr_mm.registry import MODELS
from ..utils import (Levels, StackedLevels, check_number, masked_mean,
                     set_presence, stack_levels)

# ``[level][modality]`` token sets, or the same already stacked
TokenDict = Union[Levels, StackedLevels]
MaskDict = Optional[Levels]


def _check_weight(where: str, loss_weight: float) -> None:
    check_number(where, 'loss_weight', loss_weight, 0)


def _cross_energy(pairs: torch.Tensor,
                  valid: Optional[torch.Tensor] = None,
                  eps: float = 1e-6) -> torch.Tensor:
    """``||S^T P||_F^2 / N^2`` per token set, of unit tokens.

    Not centred over tokens: a direction that every token of S and of P
    shares (their pooled mean, which InterCAD reads) counts, and a one-token
    level with S = P costs 1. Tokens are made unit through their inverse
    norms ``a`` (of S) and ``b`` (of P), which enter as ``c = a * b``:
    ``||S^T P||^2 = sum_ij (S S^T)_ij (P P^T)_ij c_i c_j`` with fewer tokens
    than channels ((N, N) Grams, whose diagonals give the norms), else
    ``||(c * S)^T P||^2`` ((d, d) cross-covariance). Either way no
    normalised (N, d) copy of the tokens is made: every element-wise op
    works on (N, N) or (N, ) tensors, a few times fewer elements.

    Args:
        pairs (Tensor): S and P stacked, (2, ..., N, d).
        valid (Tensor, optional): Bool (..., N); padding tokens are left
            out and N counts valid tokens only.
        eps (float): Smallest norm. Defaults to 1e-6, not
            ``F.normalize``'s 1e-12: a zero token (an absent modality's
            LN(0) = beta, zero at init) then gets ``c <= 1e12``, whose
            products ``c_i c_j`` stay finite in float32.

    Returns:
        Tensor: Energy of shape (..., ).
    """
    num_tokens, dims = pairs.shape[-2:]
    if num_tokens < dims:
        grams = pairs @ pairs.transpose(-1, -2)  # (2, ..., N, N)
        inv_norms = grams.diagonal(dim1=-2, dim2=-1).clamp(
            min=eps**2).rsqrt()
    else:
        inv_norms = torch.linalg.vector_norm(
            pairs, dim=-1).clamp(min=eps).reciprocal()
    scale = inv_norms[0] * inv_norms[1]  # (..., N)
    if valid is None:
        num = pairs.new_full(pairs.shape[1:-2], num_tokens)
    else:
        scale = scale * valid.to(scale.dtype)
        num = valid.sum(-1).to(pairs.dtype).clamp(min=1)
    if num_tokens < dims:
        energy = (grams[0] * grams[1] * scale.unsqueeze(-1) *
                  scale.unsqueeze(-2)).sum((-2, -1))
    else:
        energy = ((pairs[0] * scale.unsqueeze(-1)).transpose(-1, -2)
                  @ pairs[1]).pow(2).sum((-2, -1))
    return energy / num**2


def _unbiased_hsic(gram_x: torch.Tensor, gram_y: torch.Tensor,
                   num: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator (Song et al., 2012) of (..., B, B) Gram
    matrices whose rows and columns of absent samples are zero; ``num``
    (..., ) counts the present samples."""
    eye = torch.eye(gram_x.shape[-1], dtype=torch.bool, device=gram_x.device)
    gram_x, gram_y = gram_x.masked_fill(eye, 0), gram_y.masked_fill(eye, 0)
    trace = (gram_x * gram_y).sum((-2, -1))
    sum_x, sum_y = gram_x.sum((-2, -1)), gram_y.sum((-2, -1))
    cross = (gram_x.sum(-2) * gram_y.sum(-2)).sum(-1)
    return (trace + sum_x * sum_y / ((num - 1) * (num - 2)) -
            2 * cross / (num - 2)) / (num * (num - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor,
               present: torch.Tensor) -> torch.Tensor:
    """Debiased CKA (cosine kernel) between (..., B, d) features over the
    present samples: about 0 when the features are independent across samples (also
    when B < d, where the plain estimator is biased far above 0), 1 when one
    is an orthogonal transform of the other. A batch-level independence
    measure (normalised HSIC), blind to constant offsets. Zero when fewer
    than 4 samples are present.

    Args:
        x, y (Tensor): (..., B, d) features.
        present (Tensor): Bool (..., B).

    Returns:
        Tensor: (..., ), clamped at 0 from below.
    """
    weight = present.to(x.dtype).unsqueeze(-1)
    # unit rows: the kernel (cosine) cannot overflow whatever the scale;
    # x and y stacked, so each step is one kernel for both
    units = F.normalize(torch.stack([x, y]), dim=-1) * weight
    count = weight.sum((-2, -1))
    num = count.clamp(min=4)
    grams = units @ units.transpose(-1, -2)  # (2, ..., B, B)
    # HSIC(x, y), HSIC(x, x) and HSIC(y, y) in one call
    hsic = _unbiased_hsic(torch.cat([grams[:1], grams]),
                          torch.cat([grams[1:], grams]), num)
    cka = (hsic[0] / (hsic[1] * hsic[2]).clamp(min=1e-12).sqrt()).clamp(min=0)
    return torch.where(count >= 4, cka, torch.zeros_like(cka))


def _centred(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Subtract the weighted batch mean of (..., B, d) features; weight
    (..., B, 1)."""
    mean = (x * weight).sum(-2, keepdim=True) / weight.sum(
        -2, keepdim=True).clamp(min=1)
    return (x - mean) * weight


def _present_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of (..., B) values over present samples (0 if none): (..., )."""
    weight = present.to(values.dtype)
    return (values * weight).sum(-1) / weight.sum(-1).clamp(min=1)


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
        check_number('SharedPrivateSeparationLoss', 'batch_weight',
                     batch_weight, 0)
        self.loss_weight = loss_weight
        self.batch_weight = batch_weight

    def forward(self,
                shared: TokenDict,
                private: TokenDict,
                present: torch.Tensor,
                modalities: Sequence[str],
                token_masks: MaskDict = None) -> torch.Tensor:
        """Args:
            shared, private (dict | StackedLevels): ``[level][modality]``
                (B, N, d), or stacked (then ``token_masks`` is unused).
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.
            token_masks (dict, optional): ``[level][modality]`` bool (B, N).

        Returns:
            Tensor: Weighted scalar loss.
        """
        shared_t, valid = stack_levels(shared, modalities, token_masks)
        private_t, _ = stack_levels(private, modalities, token_masks)
        present_t = set_presence(present,
                                   shared_t.shape[0] // len(modalities))
        # float32 whatever the autocast: Gram sums over the batch overflow
        # float16
        with torch.autocast(shared_t.device.type, enabled=False):
            # S and P as one tensor: every step below is one op for both
            pairs = torch.stack([shared_t, private_t]).float()
            terms = _present_mean(_cross_energy(pairs, valid), present_t)
            if self.batch_weight:
                pooled = masked_mean(pairs, None, valid)
                terms = terms + self.batch_weight * linear_cka(
                    pooled[0], pooled[1], present_t)
        return self.loss_weight * terms.mean()


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

    def forward(self, used: Union[Sequence[torch.Tensor], torch.Tensor]
                ) -> torch.Tensor:
        """Args:
            used (Sequence[Tensor] | Tensor): (B, ) fraction of tokens
                offered, of every (level, modality), or all of them stacked
                (P, B); differentiable in rho in training.

        Returns:
            Tensor: Weighted scalar loss.
        """
        fraction = used.mean(-1) if isinstance(used, torch.Tensor) else \
            torch.stack([u.mean() for u in used])
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
            shared (dict | StackedLevels): ``[level][modality]``
                (B, N, d): S before the exchange; or stacked.
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.
            token_masks (dict, optional): ``[level][modality]`` bool (B, N).

        Returns:
            Tensor: Weighted scalar loss.
        """
        tokens, valid = stack_levels(shared, modalities, token_masks)
        num_mod = len(modalities)
        num_levels = tokens.shape[0] // num_mod
        # (L, M, B, d), each modality centred over the samples it is in
        weight = set_presence(present, num_levels).to(
            tokens.dtype).unsqueeze(-1)
        pooled = _centred(masked_mean(tokens, None, valid), weight)
        unit = F.normalize(pooled, dim=-1).view(num_levels, num_mod,
                                                 *pooled.shape[1:])
        cos = torch.einsum('lmbd,lnbd->lmnb', unit, unit)
        both = present.transpose(0, 1)
        both = both[:, None, :] & both[None, :, :]  # (M, M, B)
        pairs = torch.ones(num_mod, num_mod, dtype=torch.bool,
                           device=both.device).triu(1)
        pair_loss = _present_mean(1 - cos, both.expand_as(cos))  # (L, M, M)
        pairs = pairs.to(pair_loss.dtype)
        return self.loss_weight * (pair_loss * pairs).sum() / (
            num_levels * pairs.sum())


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


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by ``-scale`` backward,
    so one backward pass trains an adversary and, through this, opposes it
    in the features it reads (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def _standardised(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per channel over the present samples of
    (..., B, d) features (weight (..., B, 1)); absent samples -> 0. What a
    linear probe sees, so a factor kept at a tiny scale counts in full."""
    centred = _centred(x, weight)
    var = centred.pow(2).sum(-2, keepdim=True) / weight.sum(
        -2, keepdim=True).clamp(min=1)
    return centred * torch.rsqrt(var + 1e-5)


@MODELS.register_module()
class PrivateLeakageAdversaryLoss(nn.Module):
    """An adversary that reads other modalities' private features from each
    modality's exchanged shared features; the model is trained against it.

    For every level and ordered pair (reader n, source m != n), a small
    MLP predicts the standardised pooled private features P_m from the
    standardised pooled S_hat_n (after the exchange), given n's own pooled
    S_n and P_n as well (detached): it can only gain from S_hat_n what
    the exchange brought in beyond n's own view of the sample. Its mean
    squared error (1 when it reads nothing) is minimised by the adversary
    and, through a gradient-reversal layer scaled by ``loss_weight``,
    maximised by the model. Unlike alignment costs, which a factor kept at
    a tiny scale and amplified downstream can satisfy, the adversary sees
    standardised features, as a linear probe does.

    Args:
        modalities (Sequence[str]): Modality names (filled in by the
            recognizer).
        embed_dims (int): Token width d (filled in by the recognizer).
        num_levels (int): Levels L. Defaults to 3.
        hidden_dims (int): Hidden width of the adversary. Defaults to 64.
        loss_weight (float): lambda_adv, the reversed-gradient scale into
            S_hat. Defaults to 0.1.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int,
                 num_levels: int = 3,
                 hidden_dims: int = 64,
                 loss_weight: float = 0.1) -> None:
        super().__init__()
        _check_weight('PrivateLeakageAdversaryLoss', loss_weight)
        num_mod = len(modalities)
        if num_mod < 2:
            raise ValueError('PrivateLeakageAdversaryLoss needs at least two '
                             f'modalities, got {tuple(modalities)}')
        self.loss_weight = loss_weight
        self.hidden = nn.Parameter(
            torch.empty(num_levels, num_mod, 3 * embed_dims, hidden_dims))
        nn.init.xavier_uniform_(self.hidden.view(-1, hidden_dims))
        self.hidden_bias = nn.Parameter(
            torch.zeros(num_levels, num_mod, 1, hidden_dims))
        # zero output: the adversary starts reading nothing (error 1)
        self.readout = nn.Parameter(
            torch.zeros(num_levels, num_mod, hidden_dims,
                        num_mod * embed_dims))
        self.readout_bias = nn.Parameter(
            torch.zeros(num_levels, num_mod, 1, num_mod * embed_dims))

    def forward(self,
                shared: TokenDict,
                shared_in: TokenDict,
                private: TokenDict,
                present: torch.Tensor,
                modalities: Sequence[str],
                token_masks: MaskDict = None) -> torch.Tensor:
        """Args:
            shared (dict | StackedLevels): ``[level][modality]``
                (B, N, d): S_hat after the exchange; or stacked.
            shared_in (dict): The same for S before the exchange.
            private (dict): The same for P.
            present (Tensor): Bool (B, M).
            modalities (Sequence[str]): Order of ``present``'s columns.
            token_masks (dict, optional): ``[level][modality]`` bool (B, N).

        Returns:
            Tensor: The adversary's mean squared error over pairs and
            present samples (about 1 when it reads nothing; it is trained
            to lower it, the model through the reversed gradient to raise
            it).
        """
        num_mod = len(modalities)
        num_levels = self.hidden.shape[0]
        weight = set_presence(present, num_levels).float().unsqueeze(-1)

        def features(tokens: TokenDict) -> torch.Tensor:
            stacked, valid = stack_levels(tokens, modalities, token_masks)
            pooled = masked_mean(stacked.float(), None, valid)
            z = _standardised(pooled, weight)
            return z.view(num_levels, num_mod, *z.shape[1:])  # (L, M, B, d)

        read = _ReverseGradient.apply(features(shared), self.loss_weight)
        target = features(private).detach()
        x = torch.cat([read, features(shared_in).detach(), target], -1)
        hidden = F.gelu(torch.einsum('lnbk,lnkh->lnbh', x, self.hidden) +
                        self.hidden_bias)
        pred = torch.einsum('lnbh,lnhe->lnbe', hidden,
                            self.readout) + self.readout_bias
        pred = pred.view(*pred.shape[:3], num_mod, -1)  # (L, n, B, m, d)
        error = (pred - target.permute(0, 2, 1, 3).unsqueeze(1)).pow(2).mean(
            -1)  # (L, n, B, m)
        both = present[:, :, None] & present[:, None, :]  # (B, n, m)
        others = ~torch.eye(num_mod, dtype=torch.bool, device=present.device)
        valid = (both & others).permute(1, 0, 2).unsqueeze(0).to(error.dtype)
        return (error * valid).sum() / (valid.sum() * num_levels).clamp(min=1)
