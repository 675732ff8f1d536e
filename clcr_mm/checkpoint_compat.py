"""Let mmengine checkpoints load under torch's ``weights_only=True`` default.

Since PyTorch 2.6, ``torch.load`` defaults to ``weights_only=True``: it
unpickles only tensors, containers and explicitly allowed globals.
mmengine 0.10.7 still calls ``torch.load(filename, map_location=...)``
without ``weights_only`` (``mmengine/runner/checkpoint.py``), and its
checkpoints hold more than weights: ``message_hub`` stores
:class:`mmengine.logging.HistoryBuffer` objects with numpy arrays and
scalars. So ``tools/train.py --resume`` (and ``load_from``) fail with
``UnpicklingError: ... Unsupported global: GLOBAL
mmengine.logging.history_buffer.HistoryBuffer`` (upstream issue
open-mmlab/mmengine#1655; the proposed upstream fix, PR #1650, passes
``weights_only=False``, which would allow arbitrary code execution from a
checkpoint file).

We keep ``weights_only=True`` and allow exactly what mmengine writes:

- ``HistoryBuffer`` itself;
- numpy arrays and scalars of numeric dtypes (``_reconstruct``,
  ``scalar``, ``ndarray`` and the numeric dtype classes). ``numpy.dtype``
  itself would build any dtype a file names, object (``'O'``) included,
  whose elements are arbitrary objects: the name is bound to
  :func:`_numeric_dtype`, which builds bool, integer, float and complex
  dtypes only and refuses everything else;
- ``builtins.getattr``, which pickle uses for ``HistoryBuffer``'s
  ``_statistics_methods`` (``getattr(HistoryBuffer, 'min')``). A general
  ``getattr`` would let a crafted file reach any attribute of any allowed
  object, so the name is bound to :func:`_history_buffer_getattr`, which
  only returns public methods of ``HistoryBuffer`` and raises otherwise.

Nothing here executes code from a checkpoint: every allowed callable builds
plain data.

This module is the one place where clcr_mm widens torch's allow-list, and
it does so when it is imported: ``clcr_mm/registry.py`` imports it (next to
the mmaction2 repairs of ``clcr_mm/compat.py``), so ``import clcr_mm`` is
all a script needs before ``tools/train.py --resume`` or ``load_from``.
:func:`allow_mmengine_checkpoints` is idempotent.
"""
import pickle

import numpy as np
import torch

_APPLIED = False
# dtype kinds a checkpoint may contain: bool, signed/unsigned int, float,
# complex. Never object ('O'), whose elements would be arbitrary pickles.
_NUMERIC_DTYPES = ('?', 'b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q', 'Q',
                   'e', 'f', 'd', 'g', 'F', 'D', 'G')


def _history_buffer_getattr(obj, name: str):
    """``getattr`` limited to the public methods of ``HistoryBuffer``.

    Registered under the pickle name ``builtins.getattr`` for
    ``weights_only`` loading only; ordinary code never calls it.
    """
    from mmengine.logging import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str)
            and not name.startswith('_')
            and callable(getattr(HistoryBuffer, name, None))):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint '
        'with weights_only=True: only HistoryBuffer statistics methods are '
        'allowed (clcr_mm.checkpoint_compat)')


def _numeric_dtype(spec, align: bool = False, copy: bool = False):
    """``numpy.dtype`` limited to the numeric kinds of ``_NUMERIC_DTYPES``.

    Registered under the pickle name ``numpy.dtype`` for ``weights_only``
    loading only; ordinary code never calls it.
    """
    if isinstance(spec, str):
        dtype = np.dtype(spec, align, copy)
        if dtype.char in _NUMERIC_DTYPES:
            return dtype
    raise pickle.UnpicklingError(
        f'refusing numpy dtype {spec!r} while loading a checkpoint with '
        'weights_only=True: only bool, integer, float and complex arrays '
        'are allowed (clcr_mm.checkpoint_compat)')


def _numpy_globals() -> list:
    core = getattr(np, '_core', None) or np.core  # numpy 2 / numpy 1
    multiarray = core.multiarray
    allowed = [multiarray._reconstruct, multiarray.scalar, np.ndarray,
               (_numeric_dtype, 'numpy.dtype')]
    for code in _NUMERIC_DTYPES:
        allowed.append(type(np.dtype(code)))
    # Pickles written under numpy 1.x name 'numpy.core.multiarray.*';
    # numpy 2 names 'numpy._core.multiarray.*'. Allow both spellings.
    for name in ('_reconstruct', 'scalar'):
        func = getattr(multiarray, name)
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            allowed.append((func, f'{module}.{name}'))
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Allow-list the globals of mmengine checkpoints for ``torch.load``.

    Safe to call more than once; a no-op on a torch without
    ``torch.serialization.add_safe_globals`` (< 2.4, where
    ``weights_only`` defaults to False anyway).
    """
    global _APPLIED
    if _APPLIED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        *_numpy_globals(),
    ])
    _APPLIED = True


# Applied on import, see the module docstring.
allow_mmengine_checkpoints()
