"""Transforms for pre-extracted feature sequences (CMU-MOSI / CMU-MOSEI).

Feature datasets such as :class:`~clcr_mm.datasets.MMSAFeatureDataset` put a
raw ``(L_raw, D)`` array per modality into ``results``; this module turns it
into the contract's fixed-size ``(V, L, D)`` float32 tensor with a leading
view dimension, so the same transform serves every sequence dataset.
"""
import logging
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from clcr_mm.models.utils import check_number
from clcr_mm.registry import TRANSFORMS

_PAD_SIDES = ('end', 'start')


@TRANSFORMS.register_module()
class PadSequenceFeatures(BaseTransform):
    """Pad or truncate feature sequences to a fixed length.

    Each ``results[key]`` of shape ``(L_raw, D)`` (or ``(V, L_raw, D)``)
    becomes a float32 array of shape ``(V, L, D)`` (``V = 1`` for 2-D
    input), the contract's layout for feature sequences. The valid length in
    ``results['valid_lengths'][key]`` (written by the dataset; the older
    name ``seq_lengths`` is read too) is clipped to the new length, so the
    model masks exactly the steps that are padding.

    Nothing is cut silently: the first sample whose valid steps exceed
    ``seq_len`` logs a warning, and :class:`MMSAFeatureDataset` logs how
    many samples of its split are cut (the same count every epoch).

    Required keys: ``keys``; optional ``valid_lengths`` (or
    ``seq_lengths``), ``sample_id``, ``filename`` (used in messages).
    Modified keys: ``keys``, ``valid_lengths`` (or ``seq_lengths``).

    Args:
        keys (Sequence[str]): Modality names to pad, e.g.
            ``('text', 'audio', 'vision')``.
        seq_len (int | dict[str, int] | None): Target length, one for all
            keys or one per key. A key missing from the dict, or ``None``,
            keeps its stored length (only the view dimension is added; the
            MMSA pickles store every sample at one padded length, so the
            samples still stack into a batch). Defaults to None.
        pad_value (float): Value written into padded steps. Defaults to 0.
        pad_side (str): ``'end'`` keeps the first ``L`` steps and pads after
            them, which suits the MMSA pickles (valid frames first, zero
            padding at the end); ``'start'`` keeps the last ``L`` steps and
            pads before them (front-padded data such as the MulT pickles).
            Defaults to ``'end'``.
    """

    def __init__(self,
                 keys: Sequence[str],
                 seq_len: Union[int, Dict[str, int], None] = None,
                 pad_value: float = 0.,
                 pad_side: str = 'end') -> None:
        if isinstance(keys, str):
            keys = (keys, )
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError('PadSequenceFeatures needs at least one key.')
        if isinstance(seq_len, dict):
            unknown = set(seq_len) - set(self.keys)
            if unknown:
                raise ValueError(
                    f'seq_len has entries {sorted(unknown)} that are not in '
                    f'keys {self.keys}.')
            self.seq_len = {k: seq_len.get(k) for k in self.keys}
        else:
            self.seq_len = {k: seq_len for k in self.keys}
        name = type(self).__name__
        for key, length in self.seq_len.items():
            if length is not None:
                check_number(name, f'seq_len[{key!r}]', length, 1,
                             integer=True)
        check_number(name, 'pad_value', pad_value, -np.inf, np.inf)
        if pad_side not in _PAD_SIDES:
            raise ValueError(
                f'pad_side must be one of {_PAD_SIDES}, got {pad_side!r}.')
        self.pad_value = float(pad_value)
        self.pad_side = pad_side
        self._warned = False

    def count_truncated(
        self, lengths: Dict[str, np.ndarray]
    ) -> Dict[str, Tuple[int, int]]:
        """How many samples lose valid steps, per modality.

        Args:
            lengths (dict[str, np.ndarray]): (N,) valid steps per modality.

        Returns:
            dict[str, tuple[int, int]]: Modality -> (number of samples cut,
            ``seq_len``), for the modalities that lose steps.
        """
        out = {}
        for key, target in self.seq_len.items():
            if target is None or key not in lengths:
                continue
            count = int((np.asarray(lengths[key]) > target).sum())
            if count:
                out[key] = (count, target)
        return out

    @staticmethod
    def _where(results: Dict) -> str:
        """Describe the sample for error messages (file and sample id)."""
        return (f"sample {results.get('sample_id', '?')!r} of "
                f"{results.get('filename', '<unknown file>')}")

    def _pad_one(self, feat: np.ndarray, length: Optional[int]) -> np.ndarray:
        """Pad/truncate one ``(V, L_raw, D)`` array along the time axis.

        Args:
            feat (np.ndarray): Features of shape ``(V, L_raw, D)``.
            length (int, optional): Target length ``L``; None keeps
                ``L_raw``.

        Returns:
            np.ndarray: New float32 array of shape ``(V, L, D)``.
        """
        num_views, raw_len, dim = feat.shape
        if length is None:
            # Always copy: the dataset may hand out read-only views.
            return np.array(feat, dtype=np.float32, copy=True)
        out = np.full((num_views, length, dim),
                      self.pad_value,
                      dtype=np.float32)
        keep = min(raw_len, length)
        if self.pad_side == 'end':
            out[:, :keep] = feat[:, :keep]
        else:
            out[:, length - keep:] = feat[:, raw_len - keep:]
        return out

    def transform(self, results: Dict) -> Dict:
        """Pad or truncate every configured modality.

        Args:
            results (dict): Result dict holding ``(L_raw, D)`` or
                ``(V, L_raw, D)`` arrays under ``self.keys``.

        Returns:
            dict: ``results`` with ``(V, L, D)`` float32 arrays and clipped
            ``valid_lengths``.
        """
        lengths_key = ('seq_lengths' if 'valid_lengths' not in results
                       and 'seq_lengths' in results else 'valid_lengths')
        seq_lengths = results.get(lengths_key)
        for key in self.keys:
            if key not in results:
                raise KeyError(
                    f'PadSequenceFeatures: modality {key!r} is missing from '
                    f'{self._where(results)}; available keys: '
                    f'{sorted(results)}.')
            feat = np.asarray(results[key])
            if feat.ndim == 2:
                feat = feat[None]
            if feat.ndim != 3:
                raise ValueError(
                    f'PadSequenceFeatures: {key!r} of {self._where(results)} '
                    f'must have shape (L, D) or (V, L, D), got {feat.shape}.')
            length = self.seq_len[key]
            results[key] = self._pad_one(feat, length)
            valid = feat.shape[1]
            if isinstance(seq_lengths, dict) and key in seq_lengths:
                valid = seq_lengths[key]
                seq_lengths[key] = int(min(valid, results[key].shape[1]))
            if length is not None and valid > length and not self._warned:
                self._warned = True
                print_log(
                    f'{type(self).__name__}: seq_len={length} cuts {key!r} '
                    f'of {self._where(results)} from {valid} valid steps '
                    f'(and maybe other samples; the dataset logs the '
                    f'count). Set seq_len to None to keep every step.',
                    logger='current',
                    level=logging.WARNING)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(keys={self.keys}, '
                f'seq_len={self.seq_len}, pad_value={self.pad_value}, '
                f"pad_side='{self.pad_side}')")
