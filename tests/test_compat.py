"""clcr_mm.compat: the published mmaction2 wheel's missing DRN, its VindLU
models beside a transformers they cannot use, and mmcv-lite's import-time
warning."""
import os
import subprocess
import sys

import pytest
from mmaction.registry import MODELS as MMACTION_MODELS
from runner_utils import REPO

from clcr_mm.compat import (UPSTREAM_DRN_ISSUE, VINDLU_DEPENDENCIES,
                            missing_imports, mmaction_models_path)


def test_missing_drn_is_a_registered_placeholder_that_explains():
    with pytest.raises(ImportError, match=UPSTREAM_DRN_ISSUE):
        MMACTION_MODELS.build(dict(type='DRN'))


def test_import_silences_only_the_mmcv_lite_warning():
    # A fresh interpreter: this process imported mmcv long ago. Every
    # warning is shown, so an unrelated one would still appear.
    code = ('import warnings; warnings.simplefilter("always"); '
            'import clcr_mm; warnings.warn("still shown")')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'MultiScaleDeformableAttention' not in result.stderr
    assert 'still shown' in result.stderr


def test_missing_imports_reads_module_level_imports_without_running_them(
        tmp_path):
    (tmp_path / 'models.py').write_text(
        'import json\n'
        'from json import loads, no_such_name\n'
        'from no_such_package_xyz.sub import thing\n'
        'from . import sibling\n'
        "raise SystemExit('a module under inspection ran')\n"
        'def build():\n'
        '    from json import not_at_module_level\n')
    assert missing_imports(str(tmp_path), ('json', )) == ['json.no_such_name']
    assert missing_imports(str(tmp_path), ('json', 'no_such_package_xyz')) \
        == ['json.no_such_name', 'no_such_package_xyz.sub']
    assert missing_imports(str(tmp_path), ('os', )) == []


def test_vindlu_is_on_exactly_where_its_imports_resolve():
    from mmaction.utils import dependency
    resolves = not missing_imports(
        mmaction_models_path('multimodal', 'vindlu'), VINDLU_DEPENDENCIES)
    assert dependency.WITH_MULTIMODAL == (
        resolves and dependency.satisfy_requirement('transformers>=4.28.0'))
    vindlu_model = MMACTION_MODELS.get('VindLURetrieval')
    assert (vindlu_model.__module__.startswith('mmaction.models.multimodal')
            and isinstance(vindlu_model, type)) == dependency.WITH_MULTIMODAL


def test_import_works_beside_a_transformers_that_vindlu_cannot_use(tmp_path):
    # A transformers release that has dropped names VindLU imports (as 4.56
    # dropped modeling_utils.apply_chunking_to_forward): without the check,
    # `import mmaction.models` fails inside VindLU's modeling_bert.
    package = tmp_path / 'transformers'
    package.mkdir()
    (package / '__init__.py').write_text("__version__ = '99.0.0'\n")
    (package / 'modeling_utils.py').write_text('class PreTrainedModel:\n'
                                               '    pass\n')
    info = tmp_path / 'transformers-99.0.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: transformers\nVersion: 99.0.0\n')
    code = (
        'import clcr_mm.models\n'
        'from mmaction.registry import MODELS\n'
        'from mmaction.utils import dependency\n'
        'assert dependency.satisfy_requirement("transformers>=4.28.0")\n'
        'assert not dependency.WITH_MULTIMODAL\n'
        'try:\n'
        '    MODELS.build(dict(type="VindLURetrieval"))\n'
        'except ImportError as err:\n'
        '    print("placeholder:", err)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), str(REPO), os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'placeholder: VindLURetrieval requires extra multi-modal' in \
        result.stdout
