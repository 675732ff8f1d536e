from .clcr_head import CLCRHead, LateFusionHead

__all__ = ['CLCRHead', 'LateFusionHead']
