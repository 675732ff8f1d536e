"""Runs end cleanly and never checkpoint what cannot be resumed:
2-process ``torchrun`` jobs exit with 0, exploding learning rates never put
NaN/inf into a checkpoint (``last_checkpoint`` always resumes), and
``tools/train.py --test-after`` tests the checkpoint chosen on validation."""
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from reliability_helpers import (REPO, finish, free_port, runner_from,
                                 scalars, start_train, subprocess_env,
                                 tiny_mosi_config, write_mmsa_pickle)
from reliability_helpers import \
    fresh_mmsa_cache_one_thread  # noqa: F401  (autouse fixture)
from runner_utils import tiny_runner
from tool_loader import load_tool

from clcr_mm.engine.hooks.finite_state import nonfinite_tensors


@pytest.fixture(scope='module')
def synthetic_av(tmp_path_factory) -> Path:
    """4 training clips (2 batches of 2), 2 validation, 2 test."""
    root = tmp_path_factory.mktemp('data') / 'synthetic_av'
    load_tool('data/synthetic_av/generate.py').generate(
        str(root), num_train=4, num_val=2, num_test=2, seed=0, workers=1,
        progress=False)
    return root


def _default_custom_hooks(*drop: str) -> list:
    cfg = Config.fromfile(str(REPO / 'configs/_base_/default_runtime.py'))
    return [dict(h) for h in cfg.custom_hooks if h['type'] not in drop]


def _checkpoints_all_finite(work_dir: Path) -> list:
    """Names of the checkpoints in ``work_dir``; asserts each holds only
    finite weights and optimizer state."""
    names = []
    for path in sorted(work_dir.glob('*.pth')):
        state = torch.load(path, map_location='cpu')
        assert nonfinite_tensors(state['state_dict']) == [], path
        assert nonfinite_tensors(state.get('optimizer')) == [], path
        names.append(path.name)
    return names


def _last_checkpoint(work_dir: Path) -> str:
    return Path((work_dir / 'last_checkpoint').read_text()).name


# ----------------------------------------------------------------------
# 1. distributed runs exit cleanly
# ----------------------------------------------------------------------
@pytest.mark.parametrize('config, options', [
    # find_unused_parameters: late fusion leaves parameters without
    # gradients under DDP until its configs set it themselves.
    ('clcr_synthetic_av_late_fusion.py', ['find_unused_parameters=True']),
    ('ablations/clcr_synthetic_av_wo_budget.py', []),
])
def test_torchrun_two_processes_exit_zero_three_times(
        tmp_path, synthetic_av, config, options):
    """``torchrun --nproc_per_node=2 tools/train.py ... --launcher pytorch``
    trains, validates, saves and exits with 0 every time: tools/train.py
    destroys the process group after the Runner (before, one rank could
    abort at exit with SIGABRT, failing the job)."""
    tiny = tmp_path / 'tiny.py'
    tiny.write_text(
        f'_base_ = [{str(REPO / "configs" / config)!r}]\n'
        f'data_root = {str(synthetic_av)!r}\n'
        'loader = dict(batch_size=1, num_workers=0, '
        'persistent_workers=False)\n'
        'train_dataloader = dict(**loader, dataset=dict(data_root='
        'data_root))\n'
        'val_dataloader = dict(**loader, dataset=dict(data_root='
        'data_root))\n'
        'test_dataloader = val_dataloader\n'
        'train_cfg = dict(max_epochs=1)\n'
        'param_scheduler = []\n'
        'default_hooks = dict(checkpoint=dict(save_best=None))\n')
    for attempt in range(3):
        work = tmp_path / f'run{attempt}'
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=1',
               '--nproc_per_node=2', '--master_addr=127.0.0.1',
               f'--master_port={free_port()}',
               str(REPO / 'tools' / 'train.py'), str(tiny), '--work-dir',
               str(work), '--launcher', 'pytorch']
        if options:
            cmd += ['--cfg-options', *options]
        proc = subprocess.run(cmd, cwd=str(tmp_path), env=subprocess_env(),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=300)
        out = proc.stdout
        assert proc.returncode == 0, f'attempt {attempt}: {out[-4000:]}'
        assert 'terminate called' not in out
        assert 'Distributed training: True' in out
        assert 'Epoch(val) [1][1/1]' in out
        assert (work / 'epoch_1.pth').is_file()


@pytest.mark.parametrize('fails', [False, True])
def test_process_group_destroyed_after_success_and_error(tmp_path, fails):
    """The tools' process group ends with the run, and an error in the run
    still propagates (after the group is destroyed, without the barrier
    that the other ranks might never reach)."""
    import torch.distributed as dist

    process_group_destroyed_at_exit = load_tool(
        'train_test_setup.py').process_group_destroyed_at_exit
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match='run failed') if fails \
                else contextlib.nullcontext():
            with process_group_destroyed_at_exit():
                assert dist.is_initialized()
                if fails:
                    raise RuntimeError('run failed')
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_runner_cycles_collected_before_process_group_is_destroyed(
        tmp_path):
    """A Runner sits in reference cycles (its loops and hooks point back at
    it), so its DDP wrapper would outlive the process group until
    interpreter shutdown. The tools' exit collects it while every rank is
    still connected (automatic collection is off here, so only that
    explicit collection can free it)."""
    import gc
    import weakref

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    process_group_destroyed_at_exit = load_tool(
        'train_test_setup.py').process_group_destroyed_at_exit
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    gc.disable()
    try:
        with process_group_destroyed_at_exit():
            runner_like = {'model': DistributedDataParallel(
                torch.nn.Linear(2, 2))}
            runner_like['loop'] = {'runner': runner_like}
            ddp_alive = weakref.ref(runner_like['model'])
            del runner_like
            assert ddp_alive() is not None
        assert ddp_alive() is None
        assert not dist.is_initialized()
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------
# 2. exploding learning rates never reach a checkpoint
# ----------------------------------------------------------------------
def _two_epoch_runner(work: Path, data_root: Path, hooks: list, **options):
    return tiny_runner(
        'clcr_synthetic_av.py', work, data_root=str(data_root), **{
            'train_cfg.max_epochs': 2,
            'custom_hooks': hooks,
            'default_hooks.checkpoint.max_keep_ckpts': -1,
            **options
        })


def _nan_gradient_at(*iterations: int) -> dict:
    return dict(type='NaNGradientAtHook', iterations=list(iterations))


def test_nonfinite_gradient_at_epoch_end_is_skipped_not_saved(
        tmp_path, synthetic_av):
    """The issue's case: the second (last) step of epoch 1 has a finite
    loss but NaN gradients (an overflow in the backward pass, injected by
    NaNGradientAtHook). Without NonFiniteGradHook the step writes NaN into
    the weights and FiniteCheckpointHook stops the run before epoch_1.pth is
    written. With the default hooks the step is skipped, counted and
    logged; every checkpoint is finite and the last one resumes."""
    unguarded = tmp_path / 'unguarded'
    runner = _two_epoch_runner(
        unguarded, synthetic_av,
        _default_custom_hooks('NonFiniteGradHook') + [_nan_gradient_at(2)])
    with pytest.raises(FloatingPointError) as err:
        runner.train()
    msg = err.value.args[0]
    assert 'non-finite weights or optimizer state after epoch 1 ' \
        '(iteration 2)' in msg
    assert 'nothing was saved' in msg
    assert f'No checkpoint has been saved in {unguarded} yet' in msg
    assert not list(unguarded.glob('*.pth'))
    # any other save of these weights is refused too (e.g. save_best)
    with pytest.raises(FloatingPointError, match='in the checkpoint about '
                       'to be saved'):
        runner.save_checkpoint(str(unguarded), 'best.pth')
    assert not list(unguarded.glob('*.pth'))

    guarded = tmp_path / 'guarded'
    runner = _two_epoch_runner(guarded, synthetic_av,
                               _default_custom_hooks() +
                               [_nan_gradient_at(2, 3)])
    runner.train()
    assert _checkpoints_all_finite(guarded) == ['epoch_1.pth', 'epoch_2.pth']
    assert _last_checkpoint(guarded) == 'epoch_2.pth'
    (log, ) = scalars(guarded)
    skips = {s['iter']: s['nonfinite_grad_skips'] for s in log
             if 'nonfinite_grad_skips' in s}
    # counted from step 2 on, once per skipped step
    assert min(skips) == 2 and skips[2] == 1 and skips[3] == 2
    assert max(skips.values()) == 2
    (log_file, ) = guarded.glob('*/*.log')
    text = log_file.read_text()
    assert 'iteration 2 (epoch 1): gradient norm nan, non-finite ' \
        'gradients in' in text
    assert 'iteration 3 (epoch 2): gradient norm nan' in text
    assert runner.message_hub.get_scalar(
        'train/nonfinite_grad_skips').current() == 2

    # last_checkpoint resumes, the count goes on from the checkpoint's and
    # training goes on to the end
    runner = _two_epoch_runner(guarded, synthetic_av,
                               _default_custom_hooks() +
                               [_nan_gradient_at(5)], resume=True,
                               **{'train_cfg.max_epochs': 3})
    runner.train()
    assert runner.epoch == 3 and runner.iter == 6
    assert runner.message_hub.get_scalar(
        'train/nonfinite_grad_skips').current() == 3
    assert 'epoch_3.pth' in _checkpoints_all_finite(guarded)


def test_exploding_lr_with_per_iteration_checkpoints(tmp_path,
                                                     synthetic_av):
    """lr=1e6, a checkpoint after every iteration: step 1 explodes the
    weights (finite) and later steps have non-finite gradients. Those steps
    are skipped and counted; whether the run then ends or a NaN loss stops
    it (truthfully naming what the last checkpoint holds), every checkpoint
    written holds only finite values, ``last_checkpoint`` names the newest,
    and it resumes."""
    work = tmp_path / 'work'
    options = {'default_hooks.checkpoint.by_epoch': False,
               'default_hooks.checkpoint.interval': 1}
    runner = _two_epoch_runner(work, synthetic_av, _default_custom_hooks(),
                               **{'optim_wrapper.optimizer.lr': 1e6},
                               **options)
    try:
        runner.train()
    except FloatingPointError as err:
        assert 'non-finite loss at iteration' in err.args[0]
        assert 'holds only finite weights and optimizer state' in \
            err.args[0]
    saved = _checkpoints_all_finite(work)
    assert 'iter_1.pth' in saved
    assert _last_checkpoint(work) == f'iter_{runner.iter}.pth'
    assert runner.message_hub.get_scalar(
        'train/nonfinite_grad_skips').current() >= 1

    # It resumes from the last checkpoint and steps on (or stops again
    # with the same clear message rather than crashing inside the model).
    last = runner.iter
    runner = _two_epoch_runner(work, synthetic_av, _default_custom_hooks(),
                               resume=True,
                               **{'optim_wrapper.optimizer.lr': 1e-3},
                               **options)
    try:
        runner.train()
    except FloatingPointError as err:
        assert 'holds only finite' in err.args[0]
    assert runner.iter >= last
    _checkpoints_all_finite(work)


def test_nonfinite_gradient_can_stop_the_run(tmp_path, synthetic_av):
    """``action='raise'`` stops at the first non-finite gradient, before the
    optimizer step: the weights stay those of step 1."""
    hooks = _default_custom_hooks('NonFiniteGradHook') + [
        dict(type='NonFiniteGradHook', action='raise'),
        _nan_gradient_at(2)
    ]
    runner = _two_epoch_runner(tmp_path / 'work', synthetic_av, hooks)
    with pytest.raises(FloatingPointError) as err:
        runner.train()
    msg = err.value.args[0]
    assert 'iteration 2 (epoch 1): gradient norm nan' in msg
    assert 'stopped before the optimizer step' in msg
    assert nonfinite_tensors(runner.model.state_dict()) == []


# ----------------------------------------------------------------------
# 3. tools/train.py --test-after
# ----------------------------------------------------------------------
def test_train_test_after_tests_best_then_last(tmp_path):
    """``--test-after`` tests the best_*.pth that save_best chose on the
    validation split and writes the test metrics to test_after.json; with
    validation off there is no best, so the last checkpoint is tested,
    with a warning."""
    data = tmp_path / 'mosi'
    # batches of 2: validation in 2 iterations, test in 3
    write_mmsa_pickle(data, sizes=dict(train=4, valid=4, test=5))
    config = tiny_mosi_config(tmp_path / 'tiny_mosi.py', data)

    work = tmp_path / 'best'
    proc = start_train(config, work, '--test-after')
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    (best, ) = work.glob('best_mae_epoch_*.pth')
    result = json.loads((work / 'test_after.json').read_text())
    assert result['checkpoint'] == str(best)
    assert set(result['metrics']) >= {'mae', 'corr'}
    assert f'--test-after: testing {best}' in out
    assert 'Epoch(test) [3/3]' in out  # the test split
    # tools/test.py on the same checkpoint reports the same numbers
    proc = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(config),
         str(best), '--work-dir', str(tmp_path / 'test')],
        cwd=str(tmp_path), env=subprocess_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    mae = re.search(r'Epoch\(test\) \[3/3\].*  mae: (\S+)', proc.stdout)
    assert float(mae.group(1)) == pytest.approx(result['metrics']['mae'],
                                                abs=1e-4)

    # no validation, so no best: the last checkpoint (in-process: the
    # command line is covered above)
    train = load_tool('train.py')
    cfg = Config.fromfile(str(config))
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    work = tmp_path / 'last'
    runner = runner_from(cfg, work)
    runner.train()
    metrics = train.test_after_training(runner)
    result = json.loads((work / 'test_after.json').read_text())
    assert result == dict(checkpoint=str(work / 'epoch_2.pth'),
                          metrics=pytest.approx(metrics))
    (log_file, ) = work.glob('*/*.log')
    assert '--test-after: no best checkpoint' in log_file.read_text()
    assert 'Epoch(test) [3/3]' in log_file.read_text()
