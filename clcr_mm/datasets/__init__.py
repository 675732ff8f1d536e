"""Datasets and transforms of clcr_mm."""
from . import transforms  # noqa: F401
