"""clcr_mm: CLCR (Cross-Level Semantic Collaborative Representation) for
OpenMMLab.

Importing this package registers every CLCR component in the ``clcr_mm``
scope, whose registries are children of mmaction2's.
"""
from .version import __version__
from .registry import MODELS  # noqa: F401  (applies the mmaction2 patches)
from . import datasets, engine, evaluation, models  # noqa: F401,E402
from .utils import register_all_modules  # noqa: E402

__all__ = ['__version__', 'register_all_modules']
