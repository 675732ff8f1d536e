"""Untrusted input: checkpoints load under ``weights_only=True`` with numeric
numpy values only, and revisions given to the benchmark tools are checked
before they reach git."""
import io
import pickle

import numpy as np
import pytest
import torch
from tool_loader import load_tool

import clcr_mm  # noqa: F401  (applies clcr_mm.checkpoint_compat)


class _CraftedDType:
    """Pickles as ``numpy.dtype('O8', False, True)``, the first call of a
    crafted object-array payload."""

    def __reduce__(self):
        return np.dtype, ('O8', False, True)


def _round_trip(obj, weights_only: bool = True):
    blob = io.BytesIO()
    torch.save({'x': obj}, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=weights_only)['x']


@pytest.mark.parametrize('value', [
    np.array([True, False]),
    np.arange(3, dtype=np.int8),
    np.arange(3, dtype=np.uint64),
    np.linspace(0, 1, 4, dtype=np.float16),
    np.linspace(0, 1, 4),
    np.array([1 + 2j], dtype=np.complex64),
    np.float64(1.25),
    np.int64(7),
])
def test_numeric_numpy_values_load(value):
    loaded = _round_trip(value)
    assert loaded.dtype == value.dtype
    np.testing.assert_array_equal(loaded, value)


@pytest.mark.parametrize(
    'value', [np.array([1, 'x', None], dtype=object),
              _CraftedDType(),
              np.array([(1, 2.0)], dtype=[('a', 'i4'), ('b', 'f8')]),
              np.array(['text'])],
    ids=['object-array', 'crafted-object-dtype', 'structured', 'str-array'])
def test_non_numeric_numpy_values_are_refused(value):
    """Object arrays (whose elements are arbitrary pickles), structured and
    string arrays are refused with the reason; the same bytes load without
    the allow-list (``weights_only=False``), so the file itself is fine."""
    with pytest.raises(pickle.UnpicklingError) as err:
        _round_trip(value)
    assert 'refusing numpy dtype' in str(err.value)
    assert 'clcr_mm.checkpoint_compat' in str(err.value)
    assert _round_trip(value, weights_only=False) is not None


@pytest.mark.parametrize('rev', ['--output=/tmp/pwned', '-p', ''])
def test_reference_rev_option_like_values_are_refused(rev):
    bench_utils = load_tool('benchmark/bench_utils.py')
    with pytest.raises(ValueError, match="starts with '-'"):
        bench_utils.validate_rev(rev)
    with pytest.raises(ValueError, match='is not a git revision'):
        bench_utils.load_reference_classes(rev)


def test_reference_rev_must_name_a_commit():
    bench_utils = load_tool('benchmark/bench_utils.py')
    for rev in ('no-such-revision', 'HEAD:README.md'):
        with pytest.raises(ValueError, match='names no commit'):
            bench_utils.validate_rev(rev)
    commit = bench_utils.validate_rev('HEAD')
    assert len(commit) == 40 and int(commit, 16) >= 0
    assert bench_utils.resolve_rev('HEAD') == commit[:7]
