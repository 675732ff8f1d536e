"""Every schedule in ``configs/_base_/schedules`` trains for any epoch count
set from the command line (``--cfg-options train_cfg.max_epochs=N``)."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from runner_utils import REPO
from torch.utils.data import DataLoader

SCHEDULES = sorted((REPO / 'configs' / '_base_' / 'schedules').glob('*.py'))
ITERS_PER_EPOCH = 3


class LinearRegressor(BaseModel):
    """The smallest model the Runner can train: one linear layer, MSE."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, inputs: torch.Tensor, data_samples=None,
                mode: str = 'loss') -> dict:
        return dict(loss=self.fc(inputs).pow(2).mean())


class LrRecorder(Hook):
    """Record the learning rate each training iteration runs with."""

    def __init__(self) -> None:
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.lrs.append(runner.optim_wrapper.get_lr()['lr'][0])


def train_with(schedule, max_epochs: int, work_dir) -> tuple:
    """Train ``LinearRegressor`` with a schedule file, ``max_epochs`` set as
    ``--cfg-options`` sets it.

    Returns:
        tuple: The trained Runner and the lr of every iteration.
    """
    cfg = Config.fromfile(schedule)
    cfg.merge_from_dict({'train_cfg.max_epochs': max_epochs})
    data = [dict(inputs=torch.randn(4)) for _ in range(2 * ITERS_PER_EPOCH)]
    recorder = LrRecorder()
    runner = Runner(
        model=LinearRegressor(),
        work_dir=str(work_dir),
        train_dataloader=DataLoader(data, batch_size=2),
        train_cfg=cfg.train_cfg,
        optim_wrapper=cfg.optim_wrapper,
        param_scheduler=cfg.param_scheduler,
        default_hooks=dict(checkpoint=None),
        custom_hooks=[recorder],
        default_scope='clcr_mm',
        experiment_name=f'{schedule.stem}_{max_epochs}e_{work_dir.name}')
    runner.train()
    return runner, recorder.lrs


def cosine(base_lr: float, eta_min: float, step: int, total: int) -> float:
    """Closed-form cosine annealing from ``base_lr`` to ``eta_min``."""
    return eta_min + (base_lr - eta_min) * (
        1 + math.cos(math.pi * step / total)) / 2


@pytest.mark.parametrize('max_epochs', [1, 2, 6])
@pytest.mark.parametrize('schedule', SCHEDULES, ids=lambda p: p.stem)
def test_schedule_follows_max_epochs(tmp_path, schedule, max_epochs):
    cfg = Config.fromfile(schedule)
    base_lr = cfg.optim_wrapper.optimizer.lr
    runner, lrs = train_with(schedule, max_epochs, tmp_path)
    assert runner.epoch == max_epochs
    assert len(lrs) == max_epochs * ITERS_PER_EPOCH
    assert all(math.isfinite(lr) and lr > 0 for lr in lrs)
    for spec, scheduler in zip(cfg.param_scheduler, runner.param_schedulers):
        steps_per_epoch = ITERS_PER_EPOCH if spec.get(
            'convert_to_iter_based') else 1
        if spec.type == 'LinearLR':  # warm-up from a fraction of the lr
            assert lrs[0] == pytest.approx(base_lr * spec.start_factor)
        elif spec.type == 'CosineAnnealingLR':
            # The cosine spans the run, whatever max_epochs is, and the
            # last iteration runs at its last step's value (to 1 %: the
            # overlapping warm-up multiplies in a sub-percent offset).
            total = max_epochs * steps_per_epoch
            assert (scheduler.begin, scheduler.end) == (0, total)
            assert scheduler.T_max == total
            assert lrs[-1] == pytest.approx(
                cosine(base_lr, spec.eta_min, total - 1, total), rel=1e-2)
        elif spec.type == 'MultiStepLR':
            assert scheduler.end == max_epochs * steps_per_epoch
            if min(spec.milestones) >= max_epochs:
                assert lrs == pytest.approx([base_lr] * len(lrs))
        else:
            pytest.fail(f'no check written for {spec.type} in {schedule}')


def test_warmup_cosine_shape_at_six_epochs(tmp_path):
    """The 6-epoch default: the lr rises over the warm-up epoch to near the
    configured lr at its last iteration, then only decreases."""
    schedule = REPO / 'configs/_base_/schedules/adamw_short.py'
    base_lr = Config.fromfile(schedule).optim_wrapper.optimizer.lr
    _, lrs = train_with(schedule, 6, tmp_path)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert peak == ITERS_PER_EPOCH - 1
    assert 0.9 * base_lr < lrs[peak] <= base_lr
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
