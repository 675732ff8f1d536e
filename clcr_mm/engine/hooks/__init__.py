from clcr_mm.checkpoint_compat import allow_mmengine_checkpoints

from .modality_mask_counter_hook import ModalityMaskCounterHook
from .nonfinite_loss_hook import NonFiniteLossHook
from .reseed_hook import ReseedHook

# Checkpoints are written and resumed by hooks and the Runner: make
# mmengine's own checkpoints loadable under torch's weights_only=True
# default as soon as clcr_mm is imported (see clcr_mm/checkpoint_compat.py).
allow_mmengine_checkpoints()

__all__ = ['ModalityMaskCounterHook', 'NonFiniteLossHook', 'ReseedHook']
