"""A light temporal encoder for feature sequences (text, audio, vision
features of CMU-MOSI / MOSEI)."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, L // stride)."""
        return self.skip(x) + self.drop(self.act(self.norm(self.conv(x))))


@MODELS.register_module()
class TemporalConvEncoder(BaseModule):
    """Three-layer temporal encoder; tap ``layers.0/1/2`` for the levels.

    Args:
        in_channels (int): Feature dimension D of the input sequence.
        channels (int): Width of every layer. Defaults to 128.
        strides (tuple[int]): Temporal stride of each layer. Defaults to
            (1, 2, 2): lexical/frame cues, then phrase, then utterance spans.
        kernel_size (int): Temporal kernel size. Defaults to 3.
        dropout (float): Dropout in each block. Defaults to 0.1.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 128,
                 strides: tuple = (1, 2, 2),
                 kernel_size: int = 3,
                 dropout: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        widths = [in_channels] + [channels] * len(strides)
        self.layers = nn.Sequential(*[
            TemporalConvBlock(widths[i], widths[i + 1], kernel_size, s,
                              dropout) for i, s in enumerate(strides)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch of sequences.

        Args:
            x (Tensor): Sequences of shape (B, L, D).

        Returns:
            Tensor: Deepest features of shape (B, C, L'), channels first.
        """
        return self.layers(x.transpose(1, 2))
