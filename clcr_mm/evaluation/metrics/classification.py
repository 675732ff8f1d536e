"""Single-label classification metric: top-k accuracy, mean class accuracy
and macro-F1."""
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from mmaction.evaluation import AccMetric
from mmaction.evaluation.functional import confusion_matrix

from clcr_mm.registry import METRICS


def f1_from_confusion(cm: np.ndarray, average: str = 'macro') -> float:
    """F1 from a confusion matrix, as ``sklearn.metrics.f1_score`` does.

    Only the classes that index ``cm`` take part, i.e. (with mmaction's
    :func:`confusion_matrix`) the union of true and predicted labels, which
    is sklearn's default label set. A class with no true positive scores 0
    (sklearn's ``zero_division`` result).

    Args:
        cm (np.ndarray): Confusion matrix (C, C), rows = truth,
            columns = prediction.
        average (str): ``'macro'`` (unweighted mean over classes) or
            ``'weighted'`` (mean weighted by each class's true count, as in
            the MMSA sentiment F1).

    Returns:
        float: The averaged F1; NaN when ``cm`` is empty.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.size == 0:
        return float('nan')
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is 0 instead of 0/0
    # when TP = 0. The denominator is > 0 for every class in the union.
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    if average == 'macro':
        return float(f1.mean())
    if average == 'weighted':
        total = support.sum()
        return float((f1 * support).sum() / total) if total > 0 else 0.
    raise ValueError(
        f"average must be 'macro' or 'weighted', got {average!r}.")


def f1_score(y_true: np.ndarray,
             y_pred: np.ndarray,
             average: str = 'macro') -> float:
    """F1 of integer (or boolean) label vectors.

    Args:
        y_true (np.ndarray): Ground truth labels, shape (N,).
        y_pred (np.ndarray): Predicted labels, shape (N,).
        average (str): ``'macro'`` or ``'weighted'``.

    Returns:
        float: The averaged F1; NaN when N is 0.
    """
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_true.size == 0:
        return float('nan')
    return f1_from_confusion(confusion_matrix(y_pred, y_true), average)


@METRICS.register_module()
class ClassificationMetric(AccMetric):
    """Top-k accuracy, mean class accuracy and macro-F1.

    A drop-in for mmaction's :class:`AccMetric` (same ``process``, same
    ``'acc/'`` prefix and ``top{k}`` / ``mean1`` keys, so
    ``save_best='acc/top1'`` keeps working) that also reports macro-F1 over
    the classes present in the labels or predictions (sklearn's default).
    Reads ``pred_score`` (num_classes,) and ``gt_label`` (1,) from each data
    sample. ``top{k}`` is trivially 1.0 when ``k >= num_classes``.

    Output keys (with the default prefix): ``acc/top1``, ``acc/top5``, ...
    (one per ``topk``), ``acc/mean1``, ``acc/macro_f1``.

    Args:
        topk (int | tuple[int]): The k of top-k accuracy. Defaults to
            ``(1, 5)``.
        mean_class_accuracy (bool): Also report ``mean1``. Defaults to True.
        collect_device (str): Device used to gather results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Key prefix; None uses ``'acc'``.
    """

    def __init__(self,
                 topk: Union[int, Tuple[int, ...]] = (1, 5),
                 mean_class_accuracy: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        if isinstance(topk, int):
            topk = (topk, )
        topk = tuple(topk)
        if not topk or any(not isinstance(k, int) or k < 1 for k in topk):
            raise ValueError(
                f'topk must be positive ints, got {topk!r}.')
        metric_list = ('top_k_accuracy', )
        if mean_class_accuracy:
            metric_list += ('mean_class_accuracy', )
        super().__init__(
            metric_list=metric_list,
            collect_device=collect_device,
            metric_options=dict(top_k_accuracy=dict(topk=topk)),
            prefix=prefix)

    def compute_metrics(self, results: List) -> Dict:
        """Compute the metrics over all gathered samples.

        Args:
            results (list[dict]): ``{'pred': (C,) scores, 'label': int}``
                per sample, as stored by :meth:`AccMetric.process`.

        Returns:
            dict[str, float]: ``top{k}``, ``mean1`` (optional), ``macro_f1``.
        """
        if results and not np.isscalar(results[0]['label']):
            raise ValueError('ClassificationMetric expects single-label '
                             'samples (gt_label of size 1).')
        return super().compute_metrics(results)

    def calculate(self, preds: List[np.ndarray],
                  labels: List[int]) -> Dict:
        """Add macro-F1 to :meth:`AccMetric.calculate`.

        Args:
            preds (list[np.ndarray]): Scores of shape (C,) per sample.
            labels (list[int]): Class index per sample.

        Returns:
            dict[str, float]: The metrics.
        """
        eval_results = OrderedDict(super().calculate(preds, labels))
        pred_labels = np.argmax(np.stack(preds), axis=1)
        eval_results['macro_f1'] = f1_score(
            np.asarray(labels), pred_labels, average='macro')
        return eval_results

