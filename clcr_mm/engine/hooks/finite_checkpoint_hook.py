"""Never checkpoint non-finite weights or optimizer state."""
from typing import Optional

from mmengine.hooks import CheckpointHook, Hook

from clcr_mm.registry import HOOKS

from .finite_state import last_checkpoint_status, nonfinite_tensors, summarize


@HOOKS.register_module()
class FiniteCheckpointHook(Hook):
    """Stop the run before a checkpoint with NaN/inf values is written.

    Where mmengine's CheckpointHook is about to save after a training
    iteration or epoch (decided with its own ``interval``, ``save_begin``
    and ``by_epoch``), this hook, at a higher priority, checks the model's
    parameters and buffers and the optimizer state first: the
    CheckpointHook may delete its oldest checkpoint before it saves, so
    checking only the checkpoint being written would be too late. Any other
    checkpoint (``save_best`` after validation, a user's
    ``runner.save_checkpoint``) is checked as a whole in
    ``before_save_checkpoint``. Either way the run stops with the tensors
    named, nothing is written or deleted, and ``last_checkpoint`` keeps
    pointing at the last checkpoint written, which therefore resumes.
    """

    priority = 'LOW'  # before the CheckpointHook (VERY_LOW)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Check the training state if an iteration checkpoint follows."""
        ckpt = self._checkpoint_hook(runner)
        if ckpt is not None and not ckpt.by_epoch and (
                self.every_n_train_iters(runner, ckpt.interval,
                                         ckpt.save_begin)
                or self.is_last_train_iter(runner)):
            self._check_training_state(
                runner, f'after iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1})')

    def after_train_epoch(self, runner) -> None:
        """Check the training state if an epoch checkpoint follows."""
        ckpt = self._checkpoint_hook(runner)
        if ckpt is not None and ckpt.by_epoch and (
                self.every_n_epochs(runner, ckpt.interval, ckpt.save_begin)
                or self.is_last_train_epoch(runner)):
            self._check_training_state(
                runner, f'after epoch {runner.epoch + 1} (iteration '
                f'{runner.iter})')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write a checkpoint holding non-finite values."""
        bad = nonfinite_tensors(
            {key: checkpoint.get(key)
             for key in ('state_dict', 'optimizer')})
        if bad:
            self._stop(runner, bad, 'in the checkpoint about to be saved')

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        return next(
            (h for h in runner.hooks if isinstance(h, CheckpointHook)), None)

    def _check_training_state(self, runner, where: str) -> None:
        bad = nonfinite_tensors(runner.model.state_dict(), 'state_dict')
        bad += nonfinite_tensors(runner.optim_wrapper.state_dict(),
                                 'optimizer')
        if bad:
            self._stop(runner, bad, where)

    @staticmethod
    def _stop(runner, bad: list, where: str) -> None:
        raise FloatingPointError(
            f'non-finite weights or optimizer state {where}: {len(bad)} '
            f'tensors ({summarize(bad)}); nothing was saved. '
            f'{last_checkpoint_status(runner.work_dir)} Lower the learning '
            'rate or clip gradients (optim_wrapper.clip_grad).')
