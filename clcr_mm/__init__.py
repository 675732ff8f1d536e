"""clcr_mm: CLCR (Cross-Level Semantic Collaborative Representation) for
OpenMMLab.

Importing this package registers every CLCR component in the ``clcr_mm``
scope, whose registries are children of mmaction2's.
"""
from .version import __version__
from .registry import MODELS  # noqa: F401  (applies the mmaction2 patches)
from .setup_env import register_all_modules  # noqa: E402

# Our registries are children of mmaction2's; mmengine looks names up in a
# parent's table without importing the parent's modules, so mmaction2's
# modules (transforms, visualizer, metrics, ...) must be imported here.
register_all_modules(init_default_scope=False)

__all__ = ['__version__', 'register_all_modules']
