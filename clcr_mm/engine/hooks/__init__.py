from .finite_checkpoint_hook import FiniteCheckpointHook
from .modality_mask_counter_hook import ModalityMaskCounterHook
from .nonfinite_grad_hook import NonFiniteGradHook
from .nonfinite_loss_hook import NonFiniteLossHook
from .reseed_hook import ReseedHook

__all__ = [
    'FiniteCheckpointHook', 'ModalityMaskCounterHook', 'NonFiniteGradHook',
    'NonFiniteLossHook', 'ReseedHook'
]
