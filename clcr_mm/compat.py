"""Compatibility shims for the published ``mmaction2==1.2.0`` wheel and
``mmcv-lite``.

The wheel on the package registry breaks ``import mmaction.models`` in three
known ways, all repaired here, once, before anything imports it:

1. ``mmaction/utils/dependency.py`` imports ``importlib_metadata`` without
   declaring it as a requirement. We declare it in ``setup.py`` and fall back
   to the standard library's ``importlib.metadata`` when it is absent.
2. The wheel omits ``mmaction/models/localizers/drn`` although
   ``mmaction/models/localizers/__init__.py`` imports ``DRN`` from it
   (upstream open-mmlab/mmaction2 issue #2714), so ``import mmaction.models``
   raises ``ModuleNotFoundError``. We put a stand-in module in its place
   and register its ``DRN`` in mmaction2's ``MODELS``, as mmaction2 itself
   registers placeholders for models whose dependencies are missing
   (``register_multimodal_placeholder``): building ``type='DRN'`` raises an
   ``ImportError`` that explains the problem. Nothing in CLCR uses DRN (a
   temporal-grounding localizer).
3. ``mmaction.utils.dependency.WITH_MULTIMODAL`` turns on the VindLU models
   whenever ``transformers`` is installed, and then ``import
   mmaction.models`` fails in two common environments: without ``timm`` or
   ``einops``, which VindLU imports but mmaction2 does not declare, and with a
   ``transformers`` that no longer has a name VindLU imports from it (4.56
   dropped ``apply_chunking_to_forward`` from ``modeling_utils``), as a
   researcher's CUDA environment often has. In either case we switch the
   flag off, so mmaction2 registers its VindLU placeholders as it does
   without ``transformers``; CLCR never uses VindLU.

When the real modules exist (a source install of mmaction2), nothing is
replaced.

``mmaction.models`` also imports ``mmcv.cnn.bricks.transformer``, which
warns on every run that ``mmcv-lite`` lacks the compiled
``MultiScaleDeformableAttention`` op. That import is done here first with
exactly that warning ignored; every other warning still shows.
"""
import ast
import glob
import importlib
import importlib.util
import os.path as osp
import sys
import types
import warnings
from typing import List, Optional, Sequence

UPSTREAM_DRN_ISSUE = 'https://github.com/open-mmlab/mmaction2/issues/2714'
# what mmaction2 1.2's VindLU imports beyond its declared requirements
VINDLU_DEPENDENCIES = ('transformers', 'timm', 'einops')


def _ensure_importlib_metadata() -> None:
    if importlib.util.find_spec('importlib_metadata') is None:
        import importlib.metadata as stdlib_metadata
        sys.modules['importlib_metadata'] = stdlib_metadata


class _MissingDRN:
    """Stand-in for ``mmaction.models.localizers.drn.drn.DRN``."""

    def __init__(self, *args, **kwargs) -> None:
        raise ImportError(
            'DRN is missing from the published mmaction2 1.2.0 wheel '
            f'({UPSTREAM_DRN_ISSUE}); install mmaction2 from source to use '
            'it.')


def mmaction_models_path(*parts: str) -> Optional[str]:
    """A path under the installed ``mmaction/models``, found on disk
    without importing ``mmaction.models`` (importing it is what fails);
    None without mmaction2.

    Args:
        *parts (str): Path components below ``mmaction/models``.

    Returns:
        str | None: The path (it need not exist).
    """
    spec = importlib.util.find_spec('mmaction')
    if spec is None or spec.origin is None:
        return None
    return osp.join(osp.dirname(spec.origin), 'models', *parts)


def _ensure_drn_localizer() -> None:
    name = 'mmaction.models.localizers.drn'
    if name in sys.modules:
        return
    drn = mmaction_models_path('localizers', 'drn')
    if drn is None or osp.isdir(drn):
        return
    package = types.ModuleType(name)
    package.__path__ = []
    package.__doc__ = f'Stand-in for a module missing upstream: {UPSTREAM_DRN_ISSUE}'
    module = types.ModuleType(f'{name}.drn')
    module.DRN = _MissingDRN
    package.drn = module
    sys.modules[name] = package
    sys.modules[f'{name}.drn'] = module
    # mmaction.registry imports only mmengine, not mmaction.models.
    from mmaction.registry import MODELS
    MODELS.register_module(name='DRN', module=_MissingDRN)


def _import_mmcv_transformer_quietly() -> None:
    # mmcv-lite (mmcv without compiled ops, pinned in setup.py) warns at
    # import that a detection op is absent. CLCR never uses it, so
    # the warning only teaches users to ignore warnings. Python imports a
    # module once, so ignoring it at this first import silences it for good
    # without a process-wide filter.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            'ignore',
            message='Fail to import ``MultiScaleDeformableAttention``',
            category=UserWarning)
        importlib.import_module('mmcv.cnn.bricks.transformer')


def missing_imports(source_dir: str, packages: Sequence[str]) -> List[str]:
    """What the modules in ``source_dir`` import at module level from
    ``packages`` (``import p.x`` or ``from p.x import a``) and the installed
    packages lack, found without importing those modules.

    Args:
        source_dir (str): A folder of Python modules.
        packages (Sequence[str]): Top-level package names, e.g.
            ``('transformers', 'timm')``.

    Returns:
        list[str]: ``'module'`` for every module that does not import and
        ``'module.name'`` for every name it lacks; empty when all resolve.
    """
    wanted = {}  # module -> names imported from it
    for path in sorted(glob.glob(osp.join(source_dir, '*.py'))):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    wanted.setdefault(alias.name, set())
            elif isinstance(node, ast.ImportFrom) and not node.level:
                wanted.setdefault(node.module, set()).update(
                    alias.name for alias in node.names)
    missing = []
    for name in sorted(wanted):
        if name.split('.')[0] not in packages:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:  # whatever it raises, importing VindLU would too
            missing.append(name)
            continue
        missing += [
            f'{name}.{attr}' for attr in sorted(wanted[name])
            if not hasattr(module, attr)
        ]
    return missing


def _ensure_multimodal_dependencies() -> None:
    vindlu = mmaction_models_path('multimodal', 'vindlu')
    if vindlu is None:
        return
    from mmaction.utils import dependency
    if dependency.WITH_MULTIMODAL and missing_imports(
            vindlu, VINDLU_DEPENDENCIES):
        dependency.WITH_MULTIMODAL = False


def patch_mmaction() -> None:
    """Make ``import mmaction.models`` work on the published wheel, without
    mmcv-lite's warning about an op CLCR does not use."""
    _ensure_importlib_metadata()
    _ensure_drn_localizer()
    _ensure_multimodal_dependencies()
    _import_mmcv_transformer_quietly()
