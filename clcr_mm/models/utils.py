"""Small tensor helpers and config checks shared by the CLCR modules."""
import math
from numbers import Real
from typing import Dict, Optional, Sequence, Union

import torch

LEVELS = ('shallow', 'mid', 'deep')

Number = Union[int, float]


def check_number(owner: str,
                 field: str,
                 value: Number,
                 low: Number,
                 high: Number = math.inf,
                 integer: bool = False,
                 low_open: bool = False,
                 high_open: bool = False) -> None:
    """Raise a ValueError naming ``owner.field`` and the allowed range.

    Used at build time so a bad config value fails at once with a message,
    not later as a reshape error deep inside a forward pass.

    Args:
        owner (str): Module or transform name, for the message.
        field (str): Config field name.
        value (int | float): The value to check.
        low (int | float): Lower bound.
        high (int | float): Upper bound. Defaults to infinity.
        integer (bool): The value must be an int. Defaults to False.
        low_open (bool): Exclude ``low``. Defaults to False.
        high_open (bool): Exclude ``high``. Defaults to False.
    """
    kind = 'an int' if integer else 'a number'
    is_number = isinstance(value, int if integer else (int, float))
    if (not is_number or isinstance(value, bool)
            or not math.isfinite(value)):
        ok = False
    else:
        ok = ((value > low if low_open else value >= low)
              and (value < high if high_open else value <= high))
    if not ok:
        interval = (('(' if low_open else '[') + f'{low}, {high}' +
                    (')' if high_open or high == math.inf else ']'))
        raise ValueError(f'{owner}: {field} must be {kind} in {interval}, '
                         f'got {value!r}')


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
        check_number(where, name, value, 0, low_open=True)


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
    check_number(where, 'dropout', dropout, 0, 1, high_open=True)
