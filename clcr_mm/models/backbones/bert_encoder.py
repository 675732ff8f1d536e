"""A fine-tuned BERT text encoder over MMSA's ``text_bert`` token ids."""
import os.path as osp
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..utils import check_number
from .temporal_encoder import steps_mask


class _LevelTap(nn.Module):
    """Identity module whose output a :class:`ModalityEncoder` hook reads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@MODELS.register_module()
class BertTextEncoder(BaseModule):
    """BERT from a local directory, tapped at three hidden layers.

    Input is MMSA's ``text_bert`` served time-major by
    :class:`~clcr_mm.datasets.MMSAFeatureDataset` (modality key
    ``'text_bert'``): (B, L, 3) with token ids, attention mask and segment
    ids along the last axis. Three hidden states (``tap_layers``) become the
    shallow, mid and deep levels through the submodules ``levels.0/1/2``
    (tap these), each (B, H, L) channels first like
    :class:`TemporalConvEncoder`. Padded steps are zeroed, so with the valid
    lengths the level poolings never see them; BERT itself attends only to
    the steps its attention mask keeps.

    The weights come from ``pretrained``, a directory written by
    ``BertModel.save_pretrained`` (or a downloaded ``bert-base-uncased``
    folder): nothing is downloaded. They are fine-tuned with the model; give
    them their own learning rate through the optimizer wrapper's
    ``paramwise_cfg.custom_keys`` (see ``configs/clcr_mosi_bert.py``).

    Args:
        pretrained (str): Local directory with ``config.json`` and the
            weights.
        tap_layers (Sequence[int]): Hidden states for shallow, mid and deep,
            0 being the embeddings and ``num_hidden_layers`` the last layer.
            Defaults to (4, 8, 12), for a 12-layer BERT-base.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 pretrained: str,
                 tap_layers: Sequence[int] = (4, 8, 12),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        try:
            from transformers import BertModel
        except ImportError as e:
            raise ImportError(
                f'{name} needs transformers: pip install "clcr_mm[bert]"'
            ) from e
        if not osp.isfile(osp.join(str(pretrained), 'config.json')):
            raise FileNotFoundError(
                f'{name}: pretrained must be a local directory holding a '
                f'BERT config.json and weights (BertModel.save_pretrained); '
                f'got {pretrained!r}')
        self.bert = BertModel.from_pretrained(
            pretrained, local_files_only=True, add_pooling_layer=False)
        depth = self.bert.config.num_hidden_layers
        tap_layers = tuple(tap_layers)
        if len(tap_layers) != 3:
            raise ValueError(f'{name}: tap_layers needs 3 entries (shallow, '
                             f'mid, deep), got {tap_layers}')
        for i, layer in enumerate(tap_layers):
            check_number(name, f'tap_layers[{i}]', layer, 0, depth,
                         integer=True)
        self.tap_layers = tap_layers
        self.levels = nn.ModuleList([_LevelTap() for _ in tap_layers])

    def init_weights(self) -> None:
        """Keep the loaded weights.

        ``BaseModule.init_weights`` would call ``BertModel.init_weights``,
        which re-initialises every layer and would discard ``pretrained``.
        """

    def tap_lengths(self, lengths: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every level keeps the token grid: ``levels.i`` -> ``lengths``."""
        return {f'levels.{i}': lengths for i in range(len(self.levels))}

    def forward(self,
                x: torch.Tensor,
                lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode token ids.

        Args:
            x (Tensor): (B, L, 3) token ids, attention mask, segment ids (any
                dtype; ids are rounded to integers).
            lengths (Tensor, optional): (B,) valid tokens; replaces the
                attention mask of ``x`` when given (the dataset derives it
                from that mask).

        Returns:
            Tensor: Deep level (B, H, L).
        """
        ids = x[..., 0].round().long()
        segments = x[..., 2].round().long()
        if lengths is None:
            mask = x[..., 1] > 0.5
        else:
            mask = steps_mask(lengths.to(x.device), x.shape[1])
        hidden = self.bert(
            input_ids=ids * mask,
            attention_mask=mask.long(),
            token_type_ids=segments * mask,
            output_hidden_states=True).hidden_states
        keep = mask.unsqueeze(1).to(hidden[0].dtype)
        out = None
        for tap, layer in zip(self.levels, self.tap_layers):
            out = tap(hidden[layer].transpose(1, 2) * keep)
        return out
