"""A light temporal encoder for feature sequences (text, audio, vision
features of CMU-MOSI / MOSEI)."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import check_number


def steps_mask(lengths: torch.Tensor, num_steps: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, num_steps) bool, True for valid steps."""
    steps = torch.arange(num_steps, device=lengths.device)
    return steps[None] < lengths[:, None]


class TemporalConvBlock(nn.Module):
    """Residual 1D convolution block: Conv1d -> BN -> GELU, with a 1x1
    projection on the skip path when the width changes.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Temporal kernel size (odd). Defaults to 3.
        stride (int): Temporal stride; >1 coarsens the sequence so deeper
            levels see longer spans. Defaults to 1.
        dropout (float): Dropout after the activation. Defaults to 0.1.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2)
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.skip = (
            nn.Identity() if in_channels == out_channels and stride == 1 else
            nn.Conv1d(in_channels, out_channels, 1, stride=stride))

    def forward(self,
                x: torch.Tensor,
                lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, ceil(L / stride)).

        Args:
            x (Tensor): Input (B, C_in, L), zero after each valid length.
            lengths (Tensor, optional): (B,) valid steps of the *output*.
                Steps past them are set to 0, so the next block (and the
                taps) never see values computed from padding.
        """
        out = self.skip(x) + self.drop(self.act(self.norm(self.conv(x))))
        if lengths is not None:
            out = out * steps_mask(lengths, out.shape[-1]).unsqueeze(1)
        return out


@MODELS.register_module()
class TemporalConvEncoder(BaseModule):
    """Three-layer temporal encoder; tap ``layers.0/1/2`` for the levels.

    With ``lengths``, steps past each sample's valid length are zeroed at
    the input and after every layer, so the output does not depend on what
    the padding holds (a kernel at the edge sees zeros, as at the end of an
    unpadded sequence).

    Args:
        in_channels (int): Feature dimension D of the input sequence.
        channels (int): Width of every layer. Defaults to 128.
        strides (tuple[int]): Temporal stride of each layer. Defaults to
            (1, 2, 2): lexical/frame cues, then phrase, then utterance spans.
        kernel_size (int): Temporal kernel size (odd). Defaults to 3.
        dropout (float): Dropout in each block. Defaults to 0.1.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 128,
                 strides: Sequence[int] = (1, 2, 2),
                 kernel_size: int = 3,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        check_number(name, 'in_channels', in_channels, 1, integer=True)
        check_number(name, 'channels', channels, 1, integer=True)
        if isinstance(strides, int) or not strides:
            raise ValueError(f'{name}: strides must be a non-empty sequence '
                             f'of ints >= 1, got {strides!r}')
        for i, stride in enumerate(strides):
            check_number(name, f'strides[{i}]', stride, 1, integer=True)
        check_number(name, 'kernel_size', kernel_size, 1, integer=True)
        if kernel_size % 2 == 0:
            raise ValueError(f'{name}: kernel_size must be odd (the output '
                             f'keeps the input grid), got {kernel_size}')
        check_number(name, 'dropout', dropout, 0, 1, high_open=True)
        self.strides = tuple(strides)
        widths = [in_channels] + [channels] * len(strides)
        self.layers = nn.ModuleList([
            TemporalConvBlock(widths[i], widths[i + 1], kernel_size, s,
                              dropout) for i, s in enumerate(strides)
        ])

    def tap_lengths(self, lengths: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Valid steps of every layer's output.

        Args:
            lengths (Tensor): (B,) valid input steps.

        Returns:
            dict[str, Tensor]: ``'layers.i'`` -> (B,) long valid steps of
            that layer's output: a stride-s layer keeps output step j when
            its centre j*s is a valid input step, i.e. ceil(len / s).
        """
        out = {}
        for i, stride in enumerate(self.strides):
            lengths = torch.div(lengths + stride - 1, stride,
                                rounding_mode='floor')
            out[f'layers.{i}'] = lengths
        return out

    def forward(self,
                x: torch.Tensor,
                lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode a batch of sequences.

        Args:
            x (Tensor): Sequences of shape (B, L, D).
            lengths (Tensor, optional): (B,) valid steps per sample; None
                treats every step as valid.

        Returns:
            Tensor: Deepest features of shape (B, C, L'), channels first.
        """
        x = x.transpose(1, 2)
        if lengths is None:
            for layer in self.layers:
                x = layer(x)
            return x
        lengths = lengths.to(device=x.device, dtype=torch.long)
        x = x * steps_mask(lengths, x.shape[-1]).unsqueeze(1).to(x.dtype)
        for layer, layer_lengths in zip(self.layers,
                                        self.tap_lengths(lengths).values()):
            x = layer(x, layer_lengths)
        return x
