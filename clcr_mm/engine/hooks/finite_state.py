"""Find non-finite tensors in a training state, and say truthfully what the
last checkpoint of a work dir holds.

Shared by :class:`NonFiniteLossHook`, :class:`NonFiniteGradHook` and
:class:`FiniteCheckpointHook`.
"""
import os.path as osp
from typing import Any, List

import torch


def nonfinite_tensors(state: Any, prefix: str = '') -> List[str]:
    """Names of the floating-point tensors in ``state`` that hold NaN/inf.

    Args:
        state (Any): A tensor, or dicts / lists / tuples of them (a model or
            optimizer state dict, a checkpoint); other leaves are ignored.
        prefix (str): Name of ``state`` itself; nested names are joined with
            dots, e.g. ``'optimizer.state.3.exp_avg'``.

    Returns:
        list[str]: The names, in the order of ``state``.
    """
    if torch.is_tensor(state):
        finite = (not state.is_floating_point() and not state.is_complex()
                  ) or bool(torch.isfinite(state).all())
        return [] if finite else [prefix]
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    names = []
    for key, value in items:
        names += nonfinite_tensors(value,
                                   f'{prefix}.{key}' if prefix else str(key))
    return names


def summarize(names: List[str], limit: int = 5) -> str:
    """``'a, b, c (and 7 more)'``: the first ``limit`` names of a list."""
    more = len(names) - limit
    return ', '.join(names[:limit]) + (f' (and {more} more)'
                                       if more > 0 else '')


def last_checkpoint_status(work_dir: str) -> str:
    """One sentence on the checkpoint ``last_checkpoint`` points at.

    Loads it (``weights_only=True``, on CPU) and checks its weights and
    optimizer state, so that an error message never claims a checkpoint is
    intact without looking. Called only when a run is stopping.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str: Whether there is a last checkpoint, and whether it holds only
        finite values (then ``--resume`` continues from it).
    """
    # read as mmengine's find_latest_checkpoint does, without its log line
    # about resuming
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return f'No checkpoint has been saved in {work_dir} yet.'
    with open(pointer) as f:
        path = f.read().strip()
    if not osp.isfile(path):
        return (f'last_checkpoint in {work_dir} names {path}, which does '
                'not exist.')
    checkpoint = torch.load(path, map_location='cpu')
    bad = nonfinite_tensors(
        {key: checkpoint.get(key)
         for key in ('state_dict', 'optimizer')})
    if bad:
        return (f'The last checkpoint {path} holds non-finite values '
                f'({summarize(bad)}); do not resume from it.')
    return (f'The last checkpoint {path} holds only finite weights and '
            'optimizer state; `tools/train.py --resume` continues from it.')
