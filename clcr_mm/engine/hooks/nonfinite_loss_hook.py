"""Stop training at the first non-finite loss term, and say which."""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook

from clcr_mm.registry import HOOKS

from .finite_state import last_checkpoint_status


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise when any logged loss term is NaN or inf.

    mmengine logs every ``loss*`` key of the model's loss dict; this hook
    inspects them after each training iteration and stops the run with the
    iteration, epoch and the terms responsible, before the checkpoint hook
    (which runs later at lower priority) can save this iteration's weights.
    The message says what the last checkpoint holds (it is loaded and
    checked, not assumed intact).

    Args:
        check_all (bool): Also check non-loss statistics. Defaults to False.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, check_all: bool = False) -> None:
        self.check_all = check_all

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Check the loss terms of this iteration."""
        if not outputs:
            return
        values = {
            key: float(value.detach() if torch.is_tensor(value) else value)
            for key, value in outputs.items()
            if self.check_all or key.startswith('loss')
        }
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            terms = ', '.join(f'{k}={v}' for k, v in bad.items())
            raise FloatingPointError(
                f'non-finite loss at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}, batch {batch_idx}): {terms}. '
                f'{last_checkpoint_status(runner.work_dir)} Lower the '
                'learning rate or the weight of that term, or check the '
                'data of this batch.')
