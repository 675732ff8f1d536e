"""MergedParamGroupsOptimWrapperConstructor: every parameter gets the
options mmengine's default constructor gives it, in a few groups; training
follows the same trajectory; optimizer states saved with the default
constructor's groups resume."""
from copy import deepcopy

import pytest
import torch
from conftest import tiny_inputs, tiny_model_cfg, tiny_samples
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from clcr_mm.engine import merge_param_groups
from clcr_mm.registry import MODELS

SCHEDULES = ('adamw_short', 'adam_mmsa', 'sgd_100e')


def schedule_cfg(schedule: str, constructor: str) -> dict:
    cfg = Config.fromfile(f'configs/_base_/schedules/{schedule}.py')
    optim = deepcopy(cfg.optim_wrapper.to_dict())
    optim['constructor'] = constructor
    # a gradient clip would be the same either way; without it the test
    # compares the optimizer alone
    optim.pop('clip_grad', None)
    return optim


def options(wrapper) -> dict:
    """id(param) -> its options (every group entry but ``params``)."""
    return {
        id(p): {k: v for k, v in group.items() if k != 'params'}
        for group in wrapper.optimizer.param_groups for p in group['params']
    }


def train(model, wrapper, steps: int, seed: int = 0) -> None:
    torch.manual_seed(seed)
    for _ in range(steps):
        losses = model(tiny_inputs(), tiny_samples(), mode='loss')
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)


@pytest.mark.parametrize('schedule', SCHEDULES)
def test_merged_groups_keep_every_parameters_options(schedule):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg())
    default = build_optim_wrapper(
        model, schedule_cfg(schedule, 'DefaultOptimWrapperConstructor'))
    merged = build_optim_wrapper(
        model,
        schedule_cfg(schedule, 'MergedParamGroupsOptimWrapperConstructor'))
    params = list(model.parameters())
    # one group per parameter before; decayed and not-decayed after
    assert len(default.optimizer.param_groups) == len(params)
    assert len(merged.optimizer.param_groups) == 2
    assert options(merged) == options(default)
    order = [id(p) for g in merged.optimizer.param_groups for p in g['params']]
    assert sorted(order) == sorted(id(p) for p in params)


def test_merged_groups_train_like_per_parameter_groups():
    """Same updates, step for step (AdamW, SGD with momentum)."""
    for schedule in ('adamw_short', 'sgd_100e'):
        torch.manual_seed(0)
        model = MODELS.build(tiny_model_cfg())
        twin = deepcopy(model)
        default = build_optim_wrapper(
            model, schedule_cfg(schedule, 'DefaultOptimWrapperConstructor'))
        merged = build_optim_wrapper(
            twin,
            schedule_cfg(schedule,
                         'MergedParamGroupsOptimWrapperConstructor'))
        train(model, default, 3)
        train(twin, merged, 3)
        for (name, a), b in zip(model.named_parameters(), twin.parameters()):
            torch.testing.assert_close(a, b, msg=f'{schedule}: {name}')


def test_default_constructor_state_resumes_in_merged_groups():
    """A checkpoint of a run with mmengine's per-parameter groups resumes
    with the merged constructor exactly as with the default one."""
    schedule = 'adamw_short'
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg())
    default = build_optim_wrapper(
        model, schedule_cfg(schedule, 'DefaultOptimWrapperConstructor'))
    train(model, default, 2)
    saved_model = deepcopy(model.state_dict())
    saved_optim = deepcopy(default.state_dict())
    train(model, default, 2, seed=1)  # the run goes on as it was

    resumed = MODELS.build(tiny_model_cfg())
    resumed.load_state_dict(saved_model)
    merged = build_optim_wrapper(
        resumed,
        schedule_cfg(schedule, 'MergedParamGroupsOptimWrapperConstructor'))
    merged.load_state_dict(saved_optim)
    assert len(merged.optimizer.param_groups) == 2
    train(resumed, merged, 2, seed=1)
    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, msg=name)


def test_merge_param_groups_merges_equal_options_only():
    a, b, c = (torch.nn.Parameter(torch.zeros(1)) for _ in range(3))
    groups = [
        dict(params=[a], lr=0.1, betas=(0.9, 0.99)),
        dict(params=[b], lr=0.1 + 1e-12, betas=(0.9, 0.99)),
        dict(params=[c], lr=0.1, betas=(0.9, 0.99)),
    ]
    merged = merge_param_groups(groups)
    assert [[id(p) for p in g['params']] for g in merged] == [
        [id(a), id(c)], [id(b)]]
    assert [len(g['params']) for g in groups] == [1, 1, 1]  # untouched
