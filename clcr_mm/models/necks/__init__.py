from .baseline_fusion import ConcatFusion, LateFusion
from .inter_cad import InterCAD
from .intra_ced import IntraCED, TokenBudget

__all__ = ['IntraCED', 'TokenBudget', 'InterCAD', 'ConcatFusion', 'LateFusion']
