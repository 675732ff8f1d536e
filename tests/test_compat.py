"""clcr_mm.compat: the published mmaction2 wheel's missing DRN and
mmcv-lite's import-time warning."""
import subprocess
import sys

import pytest
from mmaction.registry import MODELS as MMACTION_MODELS
from runner_utils import REPO

from clcr_mm.compat import UPSTREAM_DRN_ISSUE


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
