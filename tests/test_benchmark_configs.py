"""The real benchmark configs train one iteration and evaluate through
mmengine's Runner on tiny replicas of the official data layouts."""
import json
import math

import pytest
from mmsa_replica import write_pickle
from runner_utils import tiny_runner
from tool_loader import load_tool
from ucf101_replica import make_download

from clcr_mm.datasets.mmsa_dataset import clear_mmsa_cache


@pytest.mark.parametrize('dataset', ['mosi', 'mosei'])
@pytest.mark.parametrize('variant', ['', '_late_fusion'])
def test_mmsa_configs_train_and_evaluate(tmp_path, dataset, variant):
    if dataset == 'mosei' and variant:
        pytest.skip('one baseline variant is enough')
    clear_mmsa_cache()
    write_pickle(tmp_path / dataset, dataset)
    # MOSI's tiny replica has no non-finite values; MOSEI's config zero-fills
    # audio -inf as the published pickles need.
    runner = tiny_runner(f'clcr_{dataset}{variant}.py', tmp_path / 'work',
                         data_root=str(tmp_path / dataset))
    runner.train()
    metrics = runner.test()
    for key in ('mae', 'corr', 'acc2_has0', 'acc2_non0', 'acc7', 'f1_has0'):
        assert key in metrics, key
    assert math.isfinite(metrics['mae']) and metrics['mae'] >= 0
    logs = (tmp_path / 'work').rglob('*.json')
    scalars = [json.loads(line) for f in logs for line in open(f)]
    train_logs = [s for s in scalars if 'loss_cls' in s]
    assert train_logs, 'training iteration was not logged'
    if not variant:
        assert {'loss_sep', 'loss_cross', 'loss_budget'} <= set(train_logs[0])
    clear_mmsa_cache()


def test_ucf101_config_trains_and_evaluates(tmp_path):
    root = tmp_path / 'ucf101'
    make_download(str(root))
    load_tool('data/ucf101/prepare.py').prepare(str(root), workers=1,
                                                   val_groups=1)
    runner = tiny_runner('clcr_ucf101.py', tmp_path / 'work',
                         data_root=str(root))
    runner.train()
    metrics = runner.val()
    assert 0 <= metrics['acc/top1'] <= 1
