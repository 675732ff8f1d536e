"""Small tensor helpers shared by the CLCR modules."""
from numbers import Real
from typing import Dict, Optional, Sequence

import torch

LEVELS = ('shallow', 'mid', 'deep')


def masked_mean(tokens: torch.Tensor,
                present: Optional[torch.Tensor] = None,
                valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over valid tokens, zero for samples whose modality is absent.

    Args:
        tokens (Tensor): Tokens of shape (B, N, C).
        present (Tensor, optional): Bool of shape (B, ) marking samples in
            which the modality is present. Defaults to all present.
        valid (Tensor, optional): Bool of shape (B, N), False for padding
            tokens. Defaults to all valid.

    Returns:
        Tensor: Pooled features of shape (B, C).
    """
    if valid is None:
        pooled = tokens.mean(dim=1)
    else:
        weight = valid.to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * weight).sum(1) / weight.sum(1).clamp(min=1)
    if present is None:
        return pooled
    return pooled * present.to(pooled.dtype).unsqueeze(-1)


def check_positive(where: str, **values: Real) -> None:
    """Raise a ValueError naming the field when a config value is not > 0.

    Args:
        where (str): Module name, for the message.
        **values: Field name -> value; each must be a positive number.
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, Real) or \
                not value > 0:
            raise ValueError(f'{where}: {name} must be a positive number, '
                             f'got {value!r}')


def modality_presence(modality_mask: Optional[torch.Tensor],
                      modalities: Sequence[str], batch_size: int,
                      device: torch.device) -> torch.Tensor:
    """Return a (B, M) bool mask, all True when no mask is given.

    Args:
        modality_mask (Tensor, optional): Bool tensor of shape (B, M).
        modalities (Sequence[str]): Modality names, in the mask's order.
        batch_size (int): B.
        device (torch.device): Device of the returned mask.

    Returns:
        Tensor: Bool mask of shape (B, M).
    """
    if modality_mask is None:
        return torch.ones(
            batch_size, len(modalities), dtype=torch.bool, device=device)
    if modality_mask.shape != (batch_size, len(modalities)):
        raise ValueError(
            f'modality_mask has shape {tuple(modality_mask.shape)} but '
            f'{batch_size} samples and modalities {tuple(modalities)} need '
            f'({batch_size}, {len(modalities)})')
    return modality_mask.to(device=device, dtype=torch.bool)


def check_modalities(tokens: Dict[str, torch.Tensor],
                     modalities: Sequence[str], where: str) -> None:
    """Raise a clear error when a dict of tokens lacks a configured modality.

    Args:
        tokens (dict[str, Tensor]): Per-modality tensors.
        modalities (Sequence[str]): The modalities a module was built for.
        where (str): Name of the module, for the message.
    """
    missing = [m for m in modalities if m not in tokens]
    if missing:
        raise KeyError(
            f'{where} was configured with modalities {tuple(modalities)} but '
            f'got no input for {missing}; inputs present: {sorted(tokens)}. '
            'Check that the pipeline produces every modality the model '
            'names (PackActionInputs collect_keys).')


def check_attention(where: str, embed_dims: int, num_heads: int,
                    dropout: float) -> None:
    """Raise a ValueError naming the field for an attention block whose
    width does not split into its heads or whose dropout is not in [0, 1).

    Args:
        where (str): Module name, for the message.
        embed_dims (int): Token width d.
        num_heads (int): Attention heads.
        dropout (float): Dropout probability.
    """
    if embed_dims % num_heads:
        raise ValueError(f'{where}: embed_dims={embed_dims} must be '
                         f'divisible by num_heads={num_heads}')
    if not 0 <= dropout < 1:
        raise ValueError(f'{where}: dropout must be in [0, 1), got '
                         f'{dropout}')
