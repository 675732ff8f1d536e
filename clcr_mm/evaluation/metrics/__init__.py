"""Metrics of clcr_mm."""
