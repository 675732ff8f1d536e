"""CMU-MOSI / CMU-MOSEI sentiment regression metrics, as MMSA reports them.

Definitions follow ``MetricsTop.__eval_mosei_regression`` of the MMSA toolkit
(github.com/thuiar/MMSA, ``src/MMSA/utils/metricsTop.py``), which MOSI also
uses:

- ``mae``: mean |pred - label|.
- ``corr``: Pearson correlation (``np.corrcoef``); NaN when predictions or
  labels are constant.
- ``acc7`` / ``acc5``: clip both to [-3, 3] / [-2, 2], round with
  ``np.round`` (half to even, so 0.5 -> 0 and 2.5 -> 2), compare.
- ``acc2_has0`` / ``f1_has0`` ("Has0"): negative (< 0) vs non-negative
  (>= 0) on all samples.
- ``acc2_non0`` / ``f1_non0`` ("Non0"): drop samples whose label is exactly
  0, then positive (> 0) vs not (<= 0; a prediction of exactly 0 counts as
  negative, as in MMSA).
- F1 is sklearn's ``average='weighted'`` F1 (per-class F1 weighted by the
  class's true count).

MMSA rounds every value to 4 decimals; we do not, so numbers compare
exactly when rounded the same way.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from clcr_mm.registry import METRICS
from .classification import f1_score


def _field(sample: Any, key: str) -> Any:
    """Read ``key`` from a data sample given as dict or data element."""
    value = sample.get(key) if hasattr(sample, 'get') else None
    if value is None:
        raise KeyError(f'SentimentRegressionMetric needs {key!r} in every '
                       f'data sample; got keys {sorted(sample.keys())}.')
    return value


def _scalar(value: Any, key: str) -> float:
    """Turn a size-1 tensor / array / number into a float."""
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1:
        raise ValueError(f'{key} must hold one value per sample for '
                         f'regression, got shape {tuple(arr.shape)}.')
    return float(arr[0])


def _multiclass_acc(preds: np.ndarray, truths: np.ndarray) -> float:
    """MMSA's ``__multiclass_acc``: fraction with equal rounded values."""
    return float(np.mean(np.round(preds) == np.round(truths)))


def sentiment_regression_metrics(preds: np.ndarray,
                                 labels: np.ndarray) -> Dict[str, float]:
    """Compute the MMSA MOSI/MOSEI regression metrics.

    Args:
        preds (np.ndarray): Predicted sentiment, shape (N,).
        labels (np.ndarray): Ground-truth sentiment in [-3, 3], shape (N,).

    Returns:
        dict[str, float]: ``mae``, ``corr``, ``acc2_has0``, ``f1_has0``,
        ``acc2_non0``, ``f1_non0``, ``acc5``, ``acc7``. ``acc2_non0`` and
        ``f1_non0`` are NaN when every label is 0.
    """
    preds = np.asarray(preds, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if preds.shape != labels.shape or preds.size == 0:
        raise ValueError(f'preds {preds.shape} and labels {labels.shape} must '
                         'be non-empty and of equal length.')

    results = dict()
    results['mae'] = float(np.mean(np.abs(preds - labels)))
    with np.errstate(divide='ignore', invalid='ignore'):
        # Constant predictions (early training) make the std 0: NaN, as MMSA.
        results['corr'] = (float(np.corrcoef(preds, labels)[0, 1])
                           if preds.size > 1 else float('nan'))

    # Has0: negative vs non-negative over all samples.
    truth_has0, pred_has0 = labels >= 0, preds >= 0
    results['acc2_has0'] = float(np.mean(truth_has0 == pred_has0))
    results['f1_has0'] = f1_score(truth_has0, pred_has0, average='weighted')

    # Non0: neutral (label exactly 0) samples excluded, then > 0 vs <= 0.
    non_zero = labels != 0
    truth_non0, pred_non0 = labels[non_zero] > 0, preds[non_zero] > 0
    results['acc2_non0'] = (float(np.mean(truth_non0 == pred_non0))
                            if non_zero.any() else float('nan'))
    results['f1_non0'] = f1_score(truth_non0, pred_non0, average='weighted')

    results['acc5'] = _multiclass_acc(
        np.clip(preds, -2., 2.), np.clip(labels, -2., 2.))
    results['acc7'] = _multiclass_acc(
        np.clip(preds, -3., 3.), np.clip(labels, -3., 3.))
    return results


@METRICS.register_module()
class SentimentRegressionMetric(BaseMetric):
    """MOSI / MOSEI sentiment metrics: MAE, Corr, Acc-2, F1, Acc-5, Acc-7.

    Reads ``pred_score`` (shape (1,)) and ``gt_label`` (float, shape (1,))
    from each data sample. Per-sample values are gathered across ranks by
    :class:`mmengine.evaluator.BaseMetric`; everything is computed once, in
    :meth:`compute_metrics`, on the full set. See the module docstring (and
    :func:`sentiment_regression_metrics`) for the exact definitions.

    Output keys: ``mae`` (lower is better: use ``rule='less'`` with
    ``save_best``), ``corr``, ``acc2_has0``, ``f1_has0``, ``acc2_non0``,
    ``f1_non0``, ``acc5``, ``acc7``, each preceded by ``'<prefix>/'`` when a
    prefix is given.

    Args:
        collect_device (str): Device used to gather results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Key prefix. Defaults to None (bare keys).
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._warned_int_label = False

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store (prediction, label) of every sample of a batch.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict | ActionDataSample]): Model outputs
                holding ``pred_score`` and ``gt_label``.
        """
        for sample in data_samples:
            label = _field(sample, 'gt_label')
            if (isinstance(label, torch.Tensor)
                    and not label.is_floating_point()
                    and not self._warned_int_label):
                # mmaction's format_label casts numpy labels to long; a
                # regression label that went through it lost its fraction.
                print_log(
                    'SentimentRegressionMetric: gt_label is an integer '
                    'tensor, so regression labels were probably truncated '
                    '(numpy labels are cast to long by mmaction '
                    'format_label; pass a float tensor instead).',
                    logger='current',
                    level=logging.WARNING)
                self._warned_int_label = True
            self.results.append(
                dict(
                    pred=_scalar(_field(sample, 'pred_score'), 'pred_score'),
                    label=_scalar(label, 'gt_label')))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Compute the metrics over all gathered samples.

        Args:
            results (list[dict]): ``{'pred': float, 'label': float}`` per
                sample, from every rank.

        Returns:
            dict[str, float]: See the class docstring.
        """
        preds = np.array([r['pred'] for r in results], dtype=np.float64)
        labels = np.array([r['label'] for r in results], dtype=np.float64)
        return sentiment_regression_metrics(preds, labels)
