from .hierarchy_encoder import CLCRHierarchyEncoder, LevelAligner, ModalityEncoder
from .temporal_encoder import TemporalConvEncoder

__all__ = ['CLCRHierarchyEncoder', 'LevelAligner', 'ModalityEncoder',
           'TemporalConvEncoder']
