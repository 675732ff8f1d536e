from .baseline_fusion import ConcatFusion, LateFusion
from .inter_cad import InterCAD
from .intra_ced import (IntraCED, IntraCEDLevels, TokenBudget,
                        factorisation_layers, feed_forward, gate_bias)
from .mmaction_necks import CLCRFusionNeck, clcr_regularisers

__all__ = [
    'IntraCED', 'IntraCEDLevels', 'TokenBudget', 'factorisation_layers',
    'feed_forward',
    'gate_bias', 'InterCAD',
    'ConcatFusion', 'LateFusion', 'CLCRFusionNeck', 'clcr_regularisers'
]
