"""Tests of ClassificationMetric and SentimentRegressionMetric against
numbers computed by hand (in the comments)."""
import math

import numpy as np
import pytest
import torch
from mmaction.structures import ActionDataSample

from clcr_mm.evaluation.metrics import (ClassificationMetric,
                                        SentimentRegressionMetric,
                                        f1_from_confusion, f1_score)
from clcr_mm.registry import METRICS

# Sentiment case. Labels hold a 0 (Has0 and Non0 then differ) and two .5
# values (np.round rounds half to even: 1.5 -> 2, 2.5 -> 2, -0.5 -> -0).
LABELS = [1.5, -0.5, 0.0, 2.5, -3.0]
PREDS = [1.2, 0.3, -0.4, 2.4, -2.3]
EXPECTED = dict(
    # |err| = .3 .8 .4 .1 .7 -> 2.3 / 5
    mae=0.46,
    # centred t = [1.4 -.6 -.1 2.4 -3.1], p = [.96 .06 -.64 2.16 -2.54]:
    # sum tp = 14.43, sum tt = 17.7, sum pp = 12.452
    corr=14.43 / math.sqrt(17.7 * 12.452),
    # truth >= 0: T F T T F ; pred >= 0: T T F T F -> 3 / 5 agree
    acc2_has0=0.6,
    # class T: tp 2 fp 1 fn 1 -> F1 2/3, support 3;
    # class F: tp 1 fp 1 fn 1 -> F1 1/2, support 2 -> (2 + 1) / 5
    f1_has0=0.6,
    # label 0 dropped; truth > 0: T F T F ; pred > 0: T T T F -> 3 / 4
    acc2_non0=0.75,
    # class T: tp 2 fp 1 fn 0 -> 4/5 ; class F: tp 1 fp 0 fn 1 -> 2/3;
    # supports 2 and 2
    f1_non0=(0.8 + 2 / 3) / 2,
    # clip [-2, 2], round: truth 2 -0 0 2 -2 ; pred 1 0 -0 2 -2 -> 4 / 5
    acc5=0.8,
    # clip [-3, 3], round: truth 2 -0 0 2 -3 ; pred 1 0 -0 2 -2 -> 3 / 5
    acc7=0.6)


def _regression_samples(preds, labels, as_dict=True):
    samples = []
    for p, t in zip(preds, labels):
        sample = ActionDataSample()
        sample.set_gt_label(torch.tensor([t], dtype=torch.float32))
        sample.set_field(torch.tensor([p]), 'pred_score')
        samples.append(sample.to_dict() if as_dict else sample)
    return samples


def test_sentiment_regression_metric_hand_computed():
    metric = METRICS.build(dict(type='SentimentRegressionMetric'))
    assert isinstance(metric, SentimentRegressionMetric)
    samples = _regression_samples(PREDS, LABELS)
    # Two batches, the second with data-element objects, not dicts.
    metric.process({}, samples[:2])
    metric.process({}, _regression_samples(PREDS[2:], LABELS[2:], False))
    results = metric.evaluate(size=len(LABELS))
    assert set(results) == set(EXPECTED)
    for key, value in EXPECTED.items():
        # float32 storage of labels/preds: compare at 1e-6
        assert results[key] == pytest.approx(value, abs=1e-6), key
    # The two Acc-2 conventions differ on this case.
    assert results['acc2_has0'] != results['acc2_non0']


def test_sentiment_regression_edge_cases():
    metric = SentimentRegressionMetric(prefix='mosi')
    metric.process({}, _regression_samples([0.2, 0.2], [0.0, 0.0]))
    results = metric.evaluate(size=2)
    # All labels 0: Non0 has no samples; constant preds: corr undefined.
    assert math.isnan(results['mosi/acc2_non0'])
    assert math.isnan(results['mosi/f1_non0'])
    assert math.isnan(results['mosi/corr'])
    assert results['mosi/acc2_has0'] == 1.0  # 0 >= 0 and 0.2 >= 0
    assert results['mosi/mae'] == pytest.approx(0.2)

    # An integer gt_label (a numpy label cast to long by mmaction) is
    # still evaluated, with a warning.
    ints = SentimentRegressionMetric()
    ints.process({}, [dict(pred_score=torch.tensor([0.5]),
                           gt_label=torch.tensor([1]))])
    assert ints._warned_int_label
    assert ints.evaluate(size=1)['mae'] == pytest.approx(0.5)

    bad = SentimentRegressionMetric()
    with pytest.raises(ValueError, match='one value per sample'):
        bad.process({}, [dict(pred_score=torch.zeros(3),
                              gt_label=torch.zeros(1))])
    with pytest.raises(KeyError, match='pred_score'):
        bad.process({}, [dict(gt_label=torch.zeros(1))])


def _classification_samples():
    # 6 classes. argmax: 0 2 2 1 4 ; labels: 0 1 2 2 5.
    # Sample 4's label (5) has the lowest score, so it misses top-5; the
    # other samples' labels are in their top 5.
    scores = np.array([
        [.50, .10, .10, .10, .10, .10],
        [.05, .30, .40, .10, .10, .05],
        [.10, .10, .50, .10, .10, .10],
        [.10, .40, .30, .05, .10, .05],
        [.20, .20, .10, .10, .38, .02],
    ])
    labels = [0, 1, 2, 2, 5]
    samples = []
    for s, t in zip(scores, labels):
        sample = ActionDataSample().set_gt_label(t)
        sample.set_pred_score(torch.from_numpy(s).float())
        samples.append(sample.to_dict())
    return samples


def test_classification_metric_hand_computed():
    metric = METRICS.build(dict(type='ClassificationMetric'))
    assert isinstance(metric, ClassificationMetric)
    metric.process({}, _classification_samples())
    results = metric.evaluate(size=5)
    assert set(results) == {'acc/top1', 'acc/top5', 'acc/mean1',
                            'acc/macro_f1'}
    assert results['acc/top1'] == pytest.approx(2 / 5)
    assert results['acc/top5'] == pytest.approx(4 / 5)
    # Classes in labels or predictions: 0 1 2 4 5 (3 never appears).
    # F1: c0 tp1 -> 1; c1 tp0 fp1 fn1 -> 0; c2 tp1 fp1 fn1 -> 1/2;
    # c4 fp1 -> 0; c5 fn1 -> 0  => (1 + .5) / 5 = 0.3 (not 1.5/6 = 0.25).
    assert results['acc/macro_f1'] == pytest.approx(0.3)
    # mmaction's mean class accuracy on the same class set:
    # recalls 1, 0, 1/2, 0 (no true sample of class 4), 0 -> 0.3.
    assert results['acc/mean1'] == pytest.approx(0.3)


def test_classification_metric_options():
    metric = ClassificationMetric(topk=1, mean_class_accuracy=False,
                                  prefix='ave')
    metric.process({}, _classification_samples())
    assert metric.evaluate(size=5) == pytest.approx(
        {'ave/top1': 0.4, 'ave/macro_f1': 0.3})
    with pytest.raises(ValueError, match='topk'):
        ClassificationMetric(topk=(0, ))


def test_f1_helpers_by_hand():
    # rows = truth, columns = prediction
    cm = np.array([[3, 1], [2, 4]])
    # class 0: 2*3 / (2*3 + 2 + 1) = 6/9 ; class 1: 8 / (8 + 1 + 2) = 8/11
    assert f1_from_confusion(cm, 'macro') == pytest.approx(
        (6 / 9 + 8 / 11) / 2)
    # supports 4 and 6
    assert f1_from_confusion(cm, 'weighted') == pytest.approx(
        (4 * 6 / 9 + 6 * 8 / 11) / 10)
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    assert f1_score(truth, pred, 'weighted') == pytest.approx(
        f1_from_confusion(cm, 'weighted'))
    assert math.isnan(f1_score(np.array([]), np.array([])))
    with pytest.raises(ValueError, match='average'):
        f1_from_confusion(cm, 'micro')
