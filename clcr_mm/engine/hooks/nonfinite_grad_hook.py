"""Skip (or stop at) optimizer steps whose gradients are not finite."""
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from clcr_mm.registry import HOOKS

from .finite_state import last_checkpoint_status, summarize

SKIPS_KEY = 'train/nonfinite_grad_skips'


@HOOKS.register_module()
class NonFiniteGradHook(Hook):
    """Keep NaN/inf gradients out of the weights.

    A step is skipped or stopped when the total gradient norm (the one
    ``clip_grad`` computes and logs as ``grad_norm``) is NaN or inf. A
    finite loss can still have non-finite gradients (an overflow in the
    backward pass, e.g. after an exploding learning rate); mmengine's
    ``OptimWrapper`` would step with them and write NaN into every weight.
    This hook registers a step pre-hook on each optimizer
    (``torch.optim.Optimizer.register_step_pre_hook``), so it sees the
    gradients after all-reduction (identical on every rank) and after
    ``clip_grad``, right before the update:

    - ``action='skip'``: the step is skipped, as AMP's loss scaler does:
      the gradients are dropped (``grad = None``), and torch's optimizers
      leave parameters without a gradient and their state untouched. Each
      skip is logged as a warning and counted in the message hub
      (``train/nonfinite_grad_skips``, logged with the iteration and kept
      in checkpoints). After ``max_consecutive_skips`` skips in a row the
      run stops: nothing is learning.
    - ``action='raise'``: the run stops at the first such step, naming the
      iteration and the tensors, before the weights change.

    With ``AmpOptimWrapper``, PyTorch's ``GradScaler`` already skips steps
    with inf/NaN gradients before the optimizer is called; this hook then
    never fires.

    Args:
        action (str): ``'skip'`` or ``'raise'``. Defaults to ``'skip'``.
        max_consecutive_skips (int, optional): Stop after this many skipped
            steps in a row; None never stops. Defaults to 10.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 action: str = 'skip',
                 max_consecutive_skips: Optional[int] = 10) -> None:
        if action not in ('skip', 'raise'):
            raise ValueError(
                f"NonFiniteGradHook: action must be 'skip' or 'raise', got "
                f'{action!r}')
        if max_consecutive_skips is not None and max_consecutive_skips < 1:
            raise ValueError(
                'NonFiniteGradHook: max_consecutive_skips must be >= 1 or '
                f'None, got {max_consecutive_skips}')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self._handles: List = []
        self._skips = 0
        self._consecutive = 0

    def before_train(self, runner) -> None:
        """Attach the check to every optimizer of the run."""
        wrapper = runner.optim_wrapper
        wrappers = (wrapper.values() if isinstance(wrapper, OptimWrapperDict)
                    else [wrapper])
        hub = runner.message_hub
        # a resumed run continues the count of its checkpoint
        self._skips = int(hub.get_scalar(SKIPS_KEY).current()
                          ) if SKIPS_KEY in hub.log_scalars else 0
        self._consecutive = 0
        for optim_wrapper in wrappers:
            self._handles.append(
                optim_wrapper.optimizer.register_step_pre_hook(
                    lambda optimizer, args, kwargs: self._check(
                        runner, optimizer)))

    def after_train(self, runner) -> None:
        """Detach from the optimizers."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check(self, runner, optimizer: torch.optim.Optimizer) -> None:
        params = [
            p for group in optimizer.param_groups for p in group['params']
            if p.grad is not None
        ]
        if not params:
            return
        # one fused norm over all gradients (what clip_grad computes); the
        # per-tensor scan below only runs to name the culprits
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if torch.isfinite(norm):
            self._consecutive = 0
            return
        names = {id(p): n for n, p in runner.model.named_parameters()}
        bad = [
            names.get(id(p), '<unnamed>') for p in params
            if not torch.isfinite(p.grad).all()
        ]
        where = (f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                 f'gradient norm {float(norm)}, non-finite gradients in '
                 f'{len(bad)} of {len(params)} parameters ({summarize(bad)})')
        if self.action == 'raise':
            raise FloatingPointError(
                f'{where}; stopped before the optimizer step, so the weights '
                f'are unchanged. {last_checkpoint_status(runner.work_dir)} '
                'Lower the learning rate, clip gradients (optim_wrapper.'
                'clip_grad) or check the data of this batch.')
        self._skips += 1
        self._consecutive += 1
        runner.message_hub.update_scalar(SKIPS_KEY, self._skips)
        runner.logger.warning(
            f'{where}; optimizer step skipped ({self._skips} skipped so '
            'far).')
        if (self.max_consecutive_skips is not None
                and self._consecutive >= self.max_consecutive_skips):
            raise FloatingPointError(
                f'{self._consecutive} optimizer steps in a row skipped for '
                f'non-finite gradients, the last at {where}: the run is not '
                f'learning. {last_checkpoint_status(runner.work_dir)} Lower '
                'the learning rate or clip gradients (optim_wrapper.'
                'clip_grad).')
        for p in params:
            p.grad = None
