"""Metrics of clcr_mm."""
from . import metrics  # noqa: F401
