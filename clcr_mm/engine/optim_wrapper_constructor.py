"""An optimizer-wrapper constructor whose parameter groups are merged."""
from typing import Any, Dict, List, Optional

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch.optim import Optimizer

from clcr_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


def merge_param_groups(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Merge parameter groups whose options (everything but ``params``)
    are all equal, in order of first appearance; parameters keep their
    order within and across the merged groups.

    Args:
        groups (list[dict]): Optimizer parameter groups, each with a
            ``params`` list (of tensors, or of the integer ids of a saved
            optimizer state dict).

    Returns:
        list[dict]: The merged groups (new dicts and lists; the input is
        left as it is).
    """
    merged: Dict[tuple, Dict[str, Any]] = {}
    for group in groups:
        # repr: options may be unhashable (lists, tensors); floats' repr
        # is exact, so only equal values share a key
        key = tuple(sorted((name, repr(value))
                           for name, value in group.items()
                           if name != 'params'))
        if key not in merged:
            merged[key] = dict(group, params=[])
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


def _merge_saved_groups(optimizer: Optimizer,
                        state_dict: Dict[str, Any]
                        ) -> Optional[Dict[str, Any]]:
    """``load_state_dict`` pre-hook: a state dict saved with one group per
    parameter (mmengine's default constructor) is merged as this
    optimizer's groups were, so such checkpoints resume; its per-parameter
    state is keyed by id and needs no change."""
    saved = state_dict['param_groups']
    if len(saved) == len(optimizer.param_groups):
        return None
    merged = merge_param_groups(saved)
    if len(merged) != len(optimizer.param_groups):
        return None  # torch's own error names the mismatch
    return dict(state_dict, param_groups=merged)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedParamGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor
                                               ):
    """mmengine's :class:`DefaultOptimWrapperConstructor` with one
    parameter group per distinct set of options instead of one per
    parameter.

    With a ``paramwise_cfg`` the default constructor gives every parameter
    its own group, even where all of them end up with the same lr and
    weight decay. A fused or foreach optimizer runs per group, so a model
    of several hundred small tensors (CLCR: about 290) pays one kernel
    launch and one pass of Python per tensor in every step where it could
    pay one per group. The options of every parameter are the same as the
    default constructor's (the same ``paramwise_cfg`` rules decide them);
    only parameters whose options are all equal share a group.

    Optimizer state dicts saved with the default constructor's groups load
    as well (their groups are merged the same way on load), so runs started
    before switching constructors resume.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='MergedParamGroupsOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=1e-3, fused=True),
        ...     paramwise_cfg=dict(custom_keys={'.logit': dict(
        ...         decay_mult=0.0)}))
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        optim_wrapper.optimizer.register_load_state_dict_pre_hook(
            _merge_saved_groups)
        return optim_wrapper

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '', **kwargs) -> None:
        """The default constructor's groups of ``module``, merged.

        The default implementation recurses into submodules through this
        method with a non-empty ``prefix``; only the outermost call (the
        whole model, ``prefix=''``) merges.
        """
        if prefix:
            super().add_params(params, module, prefix, **kwargs)
            return
        groups: List[dict] = []
        super().add_params(groups, module, prefix, **kwargs)
        params.extend(merge_param_groups(groups))
