"""Transforms of clcr_mm."""
