from .bert_encoder import BertTextEncoder
from .hierarchy_encoder import (CLCRHierarchyEncoder, LevelAligner,
                                ModalityEncoder)
from .temporal_encoder import TemporalConvEncoder

__all__ = ['BertTextEncoder', 'CLCRHierarchyEncoder', 'LevelAligner',
           'ModalityEncoder', 'TemporalConvEncoder']
