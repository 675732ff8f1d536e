"""Never checkpoint non-finite weights or optimizer state."""
from typing import Optional

from mmengine.hooks import Hook

from clcr_mm.registry import HOOKS

from .finite_state import last_checkpoint_status, nonfinite_tensors, summarize


@HOOKS.register_module()
class FiniteCheckpointHook(Hook):
    """Stop the run before a checkpoint with NaN/inf values is written.

    After every training iteration (before mmengine's CheckpointHook, which
    runs at the lowest priority and may already delete an older checkpoint
    before saving a new one) the model's parameters and buffers and the
    optimizer state are checked; a checkpoint about to be written by any
    other path (``save_best`` after validation, a user's
    ``runner.save_checkpoint``) is checked as a whole in
    ``before_save_checkpoint``. Either way the run stops with the tensors
    named, nothing is written, and ``last_checkpoint`` keeps pointing at
    the last checkpoint that was written, which therefore resumes.
    """

    priority = 'LOW'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Check the weights and optimizer state after this step."""
        bad = nonfinite_tensors(runner.model.state_dict(), 'state_dict')
        bad += nonfinite_tensors(runner.optim_wrapper.state_dict(),
                                 'optimizer')
        if bad:
            self._stop(runner, bad, f'after iteration {runner.iter + 1} '
                       f'(epoch {runner.epoch + 1})')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write a checkpoint holding non-finite values."""
        bad = nonfinite_tensors(
            {key: checkpoint.get(key)
             for key in ('state_dict', 'optimizer')})
        if bad:
            self._stop(runner, bad, 'in the checkpoint about to be saved')

    @staticmethod
    def _stop(runner, bad: list, where: str) -> None:
        raise FloatingPointError(
            f'non-finite weights or optimizer state {where}: {len(bad)} '
            f'tensors ({summarize(bad)}); nothing was saved. '
            f'{last_checkpoint_status(runner.work_dir)} Lower the learning '
            'rate or clip gradients (optim_wrapper.clip_grad).')
