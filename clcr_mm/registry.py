"""Registries of clcr_mm, children of mmaction2's.

Each registry here is a child of the registry of the same name in
``mmaction.registry``, so a config under ``default_scope='clcr_mm'`` builds
our modules by their bare names (``type='IntraCED'``) and still reaches every
mmaction2 and mmengine module (``type='ResNet'`` or ``type='mmaction.ResNet'``).
mmaction2 users reach ours with ``custom_imports=dict(imports=['clcr_mm'])``
and ``type='clcr_mm.IntraCED'``.
"""
from mmengine.registry import Registry

from . import checkpoint_compat  # noqa: F401  (allow-lists checkpoints)
from .compat import patch_mmaction

patch_mmaction()

from mmaction import registry as mmaction_registry  # noqa: E402


def _child(name: str, location: str = None) -> Registry:
    parent = getattr(mmaction_registry, name)
    locations = [location] if location else []
    return Registry(
        parent.name, parent=parent, scope='clcr_mm', locations=locations)


RUNNERS = _child('RUNNERS')
RUNNER_CONSTRUCTORS = _child('RUNNER_CONSTRUCTORS')
LOOPS = _child('LOOPS')
HOOKS = _child('HOOKS', 'clcr_mm.engine')
DATASETS = _child('DATASETS', 'clcr_mm.datasets')
DATA_SAMPLERS = _child('DATA_SAMPLERS')
TRANSFORMS = _child('TRANSFORMS', 'clcr_mm.datasets.transforms')
MODELS = _child('MODELS', 'clcr_mm.models')
MODEL_WRAPPERS = _child('MODEL_WRAPPERS')
WEIGHT_INITIALIZERS = _child('WEIGHT_INITIALIZERS')
OPTIMIZERS = _child('OPTIMIZERS')
OPTIM_WRAPPERS = _child('OPTIM_WRAPPERS')
OPTIM_WRAPPER_CONSTRUCTORS = _child('OPTIM_WRAPPER_CONSTRUCTORS', 'clcr_mm.engine')
PARAM_SCHEDULERS = _child('PARAM_SCHEDULERS')
METRICS = _child('METRICS', 'clcr_mm.evaluation')
EVALUATOR = _child('EVALUATOR')
TASK_UTILS = _child('TASK_UTILS')
VISUALIZERS = _child('VISUALIZERS')
VISBACKENDS = _child('VISBACKENDS')
LOG_PROCESSORS = _child('LOG_PROCESSORS')
INFERENCERS = _child('INFERENCERS')
FUNCTION = _child('FUNCTION')
