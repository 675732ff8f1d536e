"""Helpers of tests/test_reliability.py: tiny MMSA pickles of any size, a
tiny CLCR-on-MOSI config written next to them, a hook that kills its own
process, one that gives chosen steps NaN gradients, and runners of
tools/train.py / torchrun as subprocesses."""
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
# runner_from and RUNNER_KEYS are imported from here by the tests.
from runner_utils import REPO, RUNNER_KEYS, runner_from  # noqa: F401

from clcr_mm.datasets.mmsa_dataset import clear_mmsa_cache
from clcr_mm.registry import HOOKS

TESTS = Path(__file__).resolve().parent
MOSI_DIMS = dict(text=768, audio=5, vision=20)
CRASH_ENV = 'CLCR_TEST_KILL_AFTER_ITER'
# Fields of a log line that measure time, not the run.
TIMING_KEYS = ('time', 'data_time', 'eta', 'memory')


def write_mmsa_pickle(root: Path, sizes: Dict[str, int] = None,
                      seq_len: int = 8, edit=None, seed: int = 0) -> Path:
    """``<root>/aligned_50.pkl`` in the MMSA layout with ``sizes`` samples
    per split (MOSI feature dims, ``seq_len`` steps, all valid).

    ``edit(data)`` may modify the dict before it is written.
    """
    sizes = sizes or dict(train=8, valid=5, test=5)
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in sizes.items():
        data[split] = {
            name: rng.standard_normal((n, seq_len, dim)).astype(np.float32)
            for name, dim in MOSI_DIMS.items()
        }
        data[split].update(
            id=[f'{split}{i}$_$0' for i in range(n)],
            raw_text=[f'{split} sentence {i}' for i in range(n)],
            regression_labels=rng.uniform(-3, 3, n).astype(np.float32))
    if edit is not None:
        edit(data)
    root.mkdir(parents=True, exist_ok=True)
    path = root / 'aligned_50.pkl'
    with open(path, 'wb') as f:
        pickle.dump(data, f)
    return path


def tiny_mosi_config(path: Path, data_root: Path, seq_len: int = 8,
                     shuffle: bool = True, checkpoint: dict = None,
                     extra: str = '') -> Path:
    """Write a config that is ``configs/clcr_mosi.py`` with a tiny model
    (8 channels, 16-d tokens), batch 2, no workers, 2 epochs, a fixed seed
    and deterministic algorithms.

    ``shuffle`` is the training sampler's; ``checkpoint`` updates the
    CheckpointHook; ``extra`` is appended verbatim."""
    checkpoint = dict(checkpoint or {})
    text = f'''\
_base_ = [{str(REPO / 'configs' / 'clcr_mosi.py')!r}]
data_root = {str(data_root)!r}
seq = dict(text={seq_len}, audio={seq_len}, vision={seq_len})
pipe = [
    dict(type='PadSequenceFeatures', keys=('text', 'audio', 'vision'),
         seq_len=seq),
    dict(type='PackMultiModalInputs',
         collect_keys=('text', 'audio', 'vision'),
         algorithm_keys=('modality_mask', ), meta_keys=('sample_id', ))
]


def enc(c):
    return dict(
        backbone=dict(type='TemporalConvEncoder', in_channels=c, channels=8,
                      strides=(1, 2, 2), dropout=0.1),
        taps=('layers.0', 'layers.1', 'layers.2'), tap_channels=(8, 8, 8),
        layout='sequence', grids=((4, 1, 1), (2, 1, 1), (1, 1, 1)))


model = dict(
    backbone=dict(embed_dims=16, modalities=dict(
        text=enc(768), audio=enc(5), vision=enc(20))),
    intra_ced=dict(num_heads=2),
    inter_cad=dict(out_channels=16, num_anchors=2, num_heads=2),
    cls_head=dict(in_channels=16))
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, sampler=dict(shuffle={shuffle}),
                        dataset=dict(data_root=data_root, pipeline=pipe))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                             pipeline=pipe))
test_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                              pipeline=pipe))
train_cfg = dict(max_epochs=2)  # the base's cosine follows
default_hooks = dict(logger=dict(interval=1), checkpoint={checkpoint!r})
randomness = dict(seed=0, deterministic=True)
'''
    path.write_text(text + extra)
    return path


@HOOKS.register_module(force=True)
class KillAfterIterHook(Hook):
    """SIGKILL the own process after training iteration ``$CLCR_TEST_KILL_
    AFTER_ITER`` (1-based), like the OOM killer or a pre-empted node: no
    cleanup, no checkpoint. Without the variable it does nothing, so the
    killed and the resumed run share one config."""

    priority = 'LOWEST'  # after the LoggerHook has logged the iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        target = os.environ.get(CRASH_ENV)
        if target and runner.iter + 1 == int(target):
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module(force=True)
class NaNGradientAtHook(Hook):
    """At the given training iterations (1-based), the backward pass gives
    one weight a NaN gradient while the loss stays finite: an overflow in
    the backward pass, the same on every CPU (where an exploding learning
    rate overflows at a step that depends on the machine's kernels).

    Args:
        iterations (Sequence[int]): Where to inject.
    """

    priority = 'VERY_HIGH'

    def __init__(self, iterations) -> None:
        self.iterations = set(iterations)
        self._handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 in self.iterations:
            weight = next(p for p in runner.model.parameters()
                          if p.requires_grad)
            self._handle = weight.register_hook(
                lambda grad: torch.full_like(grad, float('nan')))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def subprocess_env() -> dict:
    """Environment of the child runs: this checkout and tests/ importable,
    CPU only, one thread per process (the inputs are tiny; on a loaded
    2-core machine OpenMP threads spin-waiting on each other cost 5-10x)."""
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    paths = [str(REPO), str(TESTS)]
    if env.get('PYTHONPATH'):
        paths.append(env['PYTHONPATH'])
    # CPU only, also on a GPU machine: exact comparisons need the
    # deterministic CPU kernels, and two ranks cannot share one GPU (NCCL).
    env.update(PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               CUDA_VISIBLE_DEVICES='')
    return env


def start_train(config: Path, work_dir: Path, *args: str,
                env: Optional[dict] = None) -> subprocess.Popen:
    """Start ``python tools/train.py config --work-dir work_dir *args``;
    its output goes to ``<work_dir>.out`` (``proc.log_path``)."""
    cmd = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config),
           '--work-dir', str(work_dir), *args]
    log_path = work_dir.parent / f'{work_dir.name}.out'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            cmd, cwd=str(work_dir.parent), env=env or subprocess_env(),
            stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log_path
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for ``proc`` started by :func:`start_train`; return its
    output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return proc.log_path.read_text()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scalars(work_dir: Path) -> List[List[dict]]:
    """The ``vis_data/scalars.json`` lines of every run in ``work_dir``
    (one list per run, oldest run first), timing fields removed."""
    runs = []
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        runs.append([{k: v for k, v in line.items() if k not in TIMING_KEYS}
                     for line in lines])
    return runs


@pytest.fixture(autouse=True)
def fresh_mmsa_cache_one_thread():
    """Each test reads its own pickle, and runs torch single-threaded: the
    inputs are tiny, and on a loaded 2-core machine OpenMP threads waiting
    for each other made in-process runs several times slower. (Subprocess
    runs get OMP_NUM_THREADS=1 from subprocess_env.)"""
    clear_mmsa_cache()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    clear_mmsa_cache()
