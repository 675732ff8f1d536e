"""setup.py asks for ranges that keep a user's torch, and the tested set in
requirements/constraints.txt satisfies them (else the README's and CI's
``pip install -e ".[tests]" -c requirements/constraints.txt`` cannot
resolve)."""
import runpy
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# the stack a user's environment brings: a range each, never one version
RANGED = ('torch', 'torchvision', 'torchaudio', 'mmengine', 'mmcv-lite',
          'mmaction2')


@pytest.fixture(scope='module')
def setup_kwargs() -> dict:
    """What setup.py passes to setuptools.setup, without installing."""
    captured = {}
    real = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(REPO / 'setup.py'), run_name='__main__')
    finally:
        setuptools.setup = real
    return captured


def _requirements(kwargs: dict) -> list:
    reqs = list(kwargs['install_requires'])
    for extra in kwargs['extras_require'].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def _constraints() -> dict:
    pins = {}
    path = REPO / 'requirements' / 'constraints.txt'
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split('#')[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == '==', (
            f'{path}:{number}: expected NAME==VERSION, got {line!r}')
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def test_core_stack_is_ranged(setup_kwargs):
    reqs = {canonicalize_name(r.name): r
            for r in map(Requirement, setup_kwargs['install_requires'])}
    for name in RANGED:
        ops = {s.operator for s in reqs[name].specifier}
        assert '>=' in ops and ops & {'<', '<='}, (name, str(reqs[name]))
        assert '==' not in ops, name


def test_constraints_satisfy_every_requirement(setup_kwargs):
    pins = _constraints()
    for name in RANGED:
        assert canonicalize_name(name) in pins, f'{name} is not pinned'
    for req in _requirements(setup_kwargs):
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is not None:
            assert req.specifier.contains(pinned, prereleases=True), (
                f'requirements/constraints.txt pins {req.name}=={pinned}, '
                f'but setup.py asks for {req}')
