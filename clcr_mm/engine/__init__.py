"""Hooks of clcr_mm."""
from . import hooks  # noqa: F401
