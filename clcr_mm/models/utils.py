"""Small tensor helpers and config checks shared by the CLCR modules."""
import math
from numbers import Real
from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

LEVELS = ('shallow', 'mid', 'deep')
# ``levels[level][modality]``: token sets (B, N, d), or their masks (B, N)
Levels = Dict[str, Dict[str, torch.Tensor]]

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
        tokens (Tensor): Tokens of shape (..., N, C), e.g. (B, N, C).
        present (Tensor, optional): Bool of shape (..., ) marking samples
            in which the modality is present. Defaults to all present.
        valid (Tensor, optional): Bool of shape (..., N), False for padding
            tokens. Defaults to all valid.

    Returns:
        Tensor: Pooled features of shape (..., C).
    """
    if valid is None:
        pooled = tokens.mean(dim=-2)
    else:
        weight = valid.to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * weight).sum(-2) / weight.sum(-2).clamp(min=1)
    if present is None:
        return pooled
    return pooled * present.to(pooled.dtype).unsqueeze(-1)


def pad_stack(sets: Sequence[torch.Tensor],
              masks: Optional[Sequence[Optional[torch.Tensor]]] = None
              ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Stack token sets of different lengths into one zero-padded tensor,
    so work on every set runs as a few batched ops instead of a loop.

    Args:
        sets (Sequence[Tensor]): P token sets (B, N_p, d).
        masks (Sequence[Tensor | None], optional): Bool (B, N_p) per set,
            False for padding tokens; None entries mean all valid.

    Returns:
        tuple: Tokens (P, B, N_max, d), zero-padded, and their validity
        (P, B, N_max), or None when every set has N_max tokens and no mask.
    """
    longest = max(t.shape[1] for t in sets)
    masks = list(masks) if masks is not None else [None] * len(sets)
    if all(t.shape[1] == longest for t in sets) and all(
            mask is None for mask in masks):
        return stack(sets), None

    stacked = stack_padded(sets, longest)
    # row n-1 of a lower-triangular matrix holds n leading Trues: every
    # set's static validity from one device-side matrix
    prefix = torch.ones(longest, longest, dtype=torch.bool,
                        device=stacked.device).tril()
    valid = torch.stack([prefix[t.shape[1] - 1] for t in sets])
    valid = valid[:, None, :].expand(-1, stacked.shape[1], -1)
    if any(mask is not None for mask in masks):
        valid = valid & torch.stack([
            _pad_tokens(mask, longest) if mask is not None else valid[i]
            for i, mask in enumerate(masks)
        ])
    return stacked, valid


class _Stack(torch.autograd.Function):
    """``torch.stack`` along dim 0 whose backward is one ``unbind``:
    autograd's own backward of stack selects each input's gradient with
    one op per input, host work that grows with every stacked parameter
    and token set."""

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.stack(tensors)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return grad.unbind(0)


class _StackContiguousGrads(_Stack):
    """:class:`_Stack` that hands every input a contiguous gradient."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return grad.contiguous().unbind(0)


def stack(tensors: Sequence[torch.Tensor],
          contiguous_grads: bool = False) -> torch.Tensor:
    """``torch.stack(tensors)`` (dim 0, same values and gradients) with a
    one-op backward; see :class:`_Stack`.

    Args:
        tensors (Sequence[Tensor]): Tensors of one shape.
        contiguous_grads (bool): Hand every input a contiguous gradient,
            made by one copy of the stacked gradient. For parameters used
            transposed (``x @ W^T``): autograd would otherwise copy each
            one's gradient to the parameter's layout, one copy per
            parameter.

    Returns:
        Tensor: (len(tensors), *shape).
    """
    if len(tensors) == 1:
        # one module's parameter (levels run one by one): a view, where
        # stacking would copy it forward and its gradient backward
        return tensors[0].unsqueeze(0)
    if torch.compiler.is_compiling() or not torch.is_grad_enabled():
        # a compiled graph derives its own backward; and TorchDynamo
        # (torch 2.11) traces an autograd.Function's varargs wrongly when
        # no input needs a gradient (it stacks only the first)
        return torch.stack(list(tensors))
    function = _StackContiguousGrads if contiguous_grads else _Stack
    return function.apply(*tensors)


def _pad_tokens(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dim 1 of (B, N, ...) to ``length``; a full-length set is
    returned as it is (no copy)."""
    extra = length - x.shape[1]
    return F.pad(x, (0, 0) * (x.dim() - 2) + (0, extra)) if extra else x


def stack_padded(sets: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """(P, B, length, ...) of P sets (B, N_p, ...), each zero-padded.

    Args:
        sets (Sequence[Tensor]): Token sets, N_p <= ``length``.
        length (int): Tokens per set after padding.

    Returns:
        Tensor: The stacked sets.
    """
    return stack([_pad_tokens(t, length) for t in sets])


def set_presence(present: torch.Tensor, num_levels: int) -> torch.Tensor:
    """(B, M) modality presence -> (L*M, B) presence of every token set of
    a :class:`StackedLevels` (level-major).

    Args:
        present (Tensor): Bool (B, M).
        num_levels (int): L.

    Returns:
        Tensor: Bool (L*M, B).
    """
    return present.transpose(0, 1).repeat(num_levels, 1)


class StackedLevels(NamedTuple):
    """Every (level, modality) token set of a model in one tensor.

    Attributes:
        tokens (Tensor): (L*M, B, N_max, d), level-major (the M modalities
            of the first level, then of the next), zero-padded.
        valid (Tensor | None): Bool (L*M, B, N_max), False for padding;
            None when nothing is padded.
    """
    tokens: torch.Tensor
    valid: Optional[torch.Tensor]


def stack_levels(tokens: Union['StackedLevels', Levels],
                 modalities: Sequence[str],
                 token_masks: Optional[Levels] = None) -> StackedLevels:
    """``[level][modality]`` token sets as one :class:`StackedLevels`, so
    work on all of them runs as a few batched ops; already stacked tokens
    (IntraCED's own layout) pass through without a copy.

    Args:
        tokens (dict | StackedLevels): ``[level][modality]`` (B, N, d).
        modalities (Sequence[str]): Modality order.
        token_masks (dict, optional): ``[level][modality]`` bool (B, N).

    Returns:
        StackedLevels: Level-major tokens and validity.
    """
    if isinstance(tokens, StackedLevels):
        return tokens
    token_masks = token_masks or {}
    return StackedLevels(*pad_stack(
        [level_tokens[m] for level_tokens in tokens.values()
         for m in modalities],
        [token_masks.get(level, {}).get(m) for level in tokens
         for m in modalities]))


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
