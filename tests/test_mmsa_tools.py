"""tools/data/mmsa/generate_planted.py, tools/analysis/seed_aggregate.py and
the random missing rates of tools/analysis/robustness.py, on tiny planted
MMSA pickles."""
import json
import pickle

import numpy as np
import pytest
import torch

from clcr_mm.datasets.mmsa_dataset import clear_mmsa_cache
from runner_utils import REPO
from tool_loader import load_tool

# Small loaders, no worker processes: tools get these as --cfg-options.
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def loader_options(root) -> list:
    opts = []
    for loader in LOADERS:
        opts += [f'{loader}.dataset.data_root={root}',
                 f'{loader}.batch_size=4', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    return opts


def planted(root, *extra) -> str:
    path = root / 'aligned_50.pkl'
    load_tool('data/mmsa/generate_planted.py').main([
        str(path), '--num-train', '8', '--num-valid', '4', '--num-test', '4',
        *extra
    ])
    return path


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_mmsa_cache()
    yield
    clear_mmsa_cache()


def test_planted_pickle_layout_factors_and_determinism(tmp_path):
    path = planted(tmp_path / 'a', '--label-noise', '0')
    data = pickle.load(open(path, 'rb'))
    train = data['train']
    assert train['text'].shape == (8, 50, 768)
    assert train['audio'].shape == (8, 50, 5)
    assert train['text_bert'].shape == (8, 3, 50)
    t, a, v = (train[f'planted_{m}'] for m in ('text', 'audio', 'vision'))
    np.testing.assert_allclose(
        train['regression_labels'], np.clip(3 * (0.5 * t + 0.5 * a * v), -3,
                                            3), atol=1e-5)
    for i, length in enumerate(train['audio_lengths']):
        assert not train['audio'][i, length:].any()  # MMSA zero padding
        assert train['audio'][i, :length].any()
    text_len = train['text_bert'][:, 1].sum(1).astype(int)
    assert (train['text_bert'][np.arange(8), 0, text_len - 1] == 102).all()
    # Same arguments, same bytes; another seed, other data.
    again = planted(tmp_path / 'b', '--label-noise', '0')
    assert open(again, 'rb').read() == open(path, 'rb').read()

    noisy = pickle.load(open(planted(tmp_path / 'c', '--pad-noise', '--layout',
                                     'unaligned'), 'rb'))['valid']
    assert noisy['vision'].shape == (4, 500, 20)
    short = int(np.argmin(noisy['vision_lengths']))
    assert noisy['vision'][short, noisy['vision_lengths'][short]:].any()
    assert load_tool('data/mmsa/check_pickle.py').main(
        [str(tmp_path / 'c' / 'aligned_50.pkl'), '--dataset', 'mosi']) == 0


def test_drop_steps_rates():
    robustness = load_tool('analysis/robustness.py')
    x = torch.ones(4, 1, 200, 3)
    gen = torch.Generator().manual_seed(0)
    dropped = robustness.drop_steps(x, 0.3, gen, 'audio')
    steps = dropped[..., 0]
    assert 0.2 < 1 - steps.mean() < 0.4
    # whole steps are dropped
    assert torch.equal(dropped, steps.unsqueeze(-1).expand_as(x))
    assert not robustness.drop_steps(x, 1.0, gen, 'audio').any()
    with pytest.raises(ValueError, match="modality 'rgb' has shape"):
        robustness.drop_steps(torch.ones(2, 1, 3, 4, 8, 8), 0.5, gen, 'rgb')
    names = [c['name'] for c in robustness.conditions(
        ('text', 'audio'), ['audio'], [0.0], True, [0.5])]
    assert names == ['clean', 'noise:audio@0', 'drop:audio@0.5',
                     'missing:text', 'missing:audio']


def test_robustness_missing_rates_end_to_end(tmp_path):
    root = tmp_path / 'mosi'
    planted(root)
    out = tmp_path / 'robustness'
    payload = load_tool('analysis/robustness.py').main([
        str(REPO / 'configs/clcr_mosi_late_fusion.py'), 'none',
        '--sigmas', '0', '--missing-rates', '0.5', '1', '--no-missing',
        '--modalities', 'audio', 'vision', '--metric', 'mae', '--out-dir',
        str(out), '--cfg-options', *loader_options(root)
    ])
    conds = payload['models'][0]['conditions']
    clean = conds['clean']['metrics']['mae']
    assert conds['drop:audio@0.5']['metrics']['mae'] != clean
    assert conds['drop:vision@1']['metrics']['mae'] != clean
    table = (out / 'robustness.md').read_text()
    assert 'audio drop 0.5' in table and 'vision drop 1' in table
    assert json.loads((out / 'robustness.json').read_text())[
        'missing_rates'] == [0.5, 1.0]


def test_seed_aggregate_trains_tests_best_and_resumes(tmp_path):
    root = tmp_path / 'mosi'
    planted(root)
    tool = load_tool('analysis/seed_aggregate.py')
    argv = [
        str(REPO / 'configs/clcr_mosi_late_fusion.py'), '--seeds', '3',
        '--epochs', '1', '--root', str(tmp_path / 'runs'), '--train-args',
        *loader_options(root)
    ]
    runs = tool.main(argv)['runs']
    assert len(runs) == 1 and 'error' not in runs[0], runs
    assert 'best_mae' in runs[0]['checkpoint']
    assert set(runs[0]['metrics']) >= {'mae', 'corr', 'acc2_non0', 'acc7'}
    table = (tmp_path / 'runs' / 'seeds.md').read_text()
    assert '| clcr_mosi_late_fusion | 1 |' in table
    # A rerun reads the finished seed instead of training again.
    result = tmp_path / 'runs/clcr_mosi_late_fusion/seed3/test_result.json'
    stamp = result.stat().st_mtime_ns
    assert tool.main(argv)['runs'] == runs
    assert result.stat().st_mtime_ns == stamp


def test_seed_aggregate_tables(tmp_path):
    tool = load_tool('analysis/seed_aggregate.py')
    runs = [
        dict(name='clcr', seed=s, metrics=dict(mae=m, acc7=a))
        for s, m, a in ((1111, 0.7, 0.40), (1112, 0.9, 0.30), (1113, 0.8,
                                                                0.35))
    ] + [dict(name='late', seed=1111, error='training failed; see x.log')]
    summary = tool.aggregate(runs)
    assert set(summary) == {'clcr'}
    assert summary['clcr']['mae']['mean'] == pytest.approx(0.8)
    assert summary['clcr']['mae']['std'] == pytest.approx(0.1)  # n - 1
    markdown = tool.write_tables(summary, runs, str(tmp_path))
    assert '| clcr | 3 | 0.8000 ± 0.1000 | 0.3500 ± 0.0500 |' in markdown
    assert '- late seed 1111: training failed; see x.log' in markdown
    rows = (tmp_path / 'seeds.csv').read_text().splitlines()
    assert rows == ['config,metric,mean,std,n,values',
                    'clcr,mae,0.8,0.1,3,0.7 0.9 0.8',
                    'clcr,acc7,0.35,0.05,3,0.4 0.3 0.35']
