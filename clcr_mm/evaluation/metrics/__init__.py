"""Metrics of clcr_mm."""
from .classification import ClassificationMetric, f1_from_confusion, f1_score
from .regression import (SentimentRegressionMetric,
                         sentiment_regression_metrics)

__all__ = [
    'ClassificationMetric', 'SentimentRegressionMetric', 'f1_from_confusion',
    'f1_score', 'sentiment_regression_metrics'
]
