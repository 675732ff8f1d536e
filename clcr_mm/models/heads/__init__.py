from .clcr_fusion_head import CLCRFusionHead
from .clcr_head import CLCRHead, LateFusionHead

__all__ = ['CLCRHead', 'LateFusionHead', 'CLCRFusionHead']
