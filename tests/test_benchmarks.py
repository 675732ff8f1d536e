"""Smoke tests of tools/benchmark: every script runs end to end on tiny
sizes and writes the JSON record it documents, with positive measurements.

Timings are not asserted (the machine is shared); the structure and the
sanity of the numbers are.
"""
import importlib.util
import json
import math
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(REPO, 'tools', 'benchmark')

# A CLCR model small enough to step in milliseconds: two feature-sequence
# modalities with the light temporal encoder, d=16.
TINY_CONFIG = """
def enc(c):
    return dict(
        backbone=dict(type='TemporalConvEncoder', in_channels=c,
                      channels=8),
        taps=('layers.0', 'layers.1', 'layers.2'),
        tap_channels=(8, 8, 8),
        layout='sequence',
        grids=((8, 1, 1), (4, 1, 1), (2, 1, 1)))

model = dict(
    type='CLCRRecognizer',
    backbone=dict(type='CLCRHierarchyEncoder', embed_dims=16,
                  modalities=dict(a=enc(6), b=enc(7))),
    intra_ced=dict(type='IntraCED', num_heads=2),
    inter_cad=dict(type='InterCAD', out_channels=16, num_anchors=2,
                   num_heads=2),
    cls_head=dict(type='CLCRHead', num_classes=3, in_channels=16),
    loss_sep=dict(type='SharedPrivateSeparationLoss'),
    loss_cross=dict(type='CrossLevelInterferenceLoss'),
    loss_budget=dict(type='TokenBudgetLoss'),
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors=dict(
            a=dict(type='ActionDataPreprocessor', format_shape='NCHW'),
            b=dict(type='ActionDataPreprocessor', format_shape='NCHW'))))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
"""
TINY_ARGS = ['--shape', 'a=12,6', '--shape', 'b=12,7', '--batch-size', '2',
             '--threads', '1']


def _load(name: str):
    """Import tools/benchmark/<name>.py under a test-unique module name."""
    spec = importlib.util.spec_from_file_location(
        f'_test_bench_{name}', osp.join(BENCH, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / 'tiny_clcr.py'
    path.write_text(TINY_CONFIG)
    return str(path)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_model_step_compares_three_fusions(tiny_config, tmp_path):
    out = tmp_path / 'model_step.json'
    # FLOPs of whole steps are left out (seconds of FlopCounterMode
    # overhead); count_flops itself is checked below on a known op.
    model_step = _load('model_step')
    record = model_step.main(
        ['--config', tiny_config, *TINY_ARGS, '--repeats', '2', '--warmup',
         '1', '--memory', '--skip-flops', '--breakdown', '--op-profile',
         '--quiet', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['results'].keys() == record['results'].keys() == {
        'clcr', 'late', 'concat'}
    assert saved['shapes'] == dict(a=[12, 6], b=[12, 7])
    assert saved['batch_size'] == 2
    for variant, r in saved['results'].items():
        assert _positive(r['params'])
        for part in ('train', 'infer', 'fusion_only_train'):
            assert _positive(r[part]['median_ms']), (variant, part)
            assert r[part]['rounds'] == 2
        assert _positive(r['train']['samples_per_s'])
        assert _positive(r['memory']['peak_rss_mb'])
        assert _positive(r['train']['cpu_median_ms'])
        assert 'train_gflops' not in r
    breakdown = saved['results']['clcr']['breakdown']
    assert set(breakdown) == {'intra_ced.shallow', 'intra_ced.mid',
                              'intra_ced.deep', 'inter_cad', 'loss_sep',
                              'loss_cross'}
    assert all(_positive(p['cpu_median_ms']) for p in breakdown.values())
    ops = {v: r['fusion_only_ops'] for v, r in saved['results'].items()}
    for op in ops.values():
        assert _positive(op['matmul_ms']) and _positive(op['op_calls'])
        assert op['matmul_ms'] + op['other_ms'] == pytest.approx(
            op['self_cpu_ms'])
    # CLCR's necks add both matrix products and many more ops.
    assert ops['clcr']['op_calls'] > 2 * ops['late']['op_calls']
    floor = saved['ratios']['clcr_over_late']['train_ratio_matmul_floor']
    assert 1 < floor < saved['ratios']['clcr_over_late'][
        'train_cpu_paired_ratio'] * 2
    # The baselines really are the derived fusions, not CLCR again.
    assert saved['results']['clcr']['params'] > \
        saved['results']['late']['params']
    for key in ('clcr_over_late', 'clcr_over_concat'):
        ratios = saved['ratios'][key]
        for name in ('train_median_ratio', 'train_paired_ratio',
                     'infer_median_ratio', 'infer_paired_ratio'):
            assert _positive(ratios[name]), (key, name)
    assert _positive(saved['headline_clcr_over_late_train'])
    assert saved['command'].startswith('python tools/benchmark/model_step.py')
    # (2, 4) @ (4, 3) plus bias: 2 * 2 * 4 * 3 multiply-adds counted as FLOPs
    linear = torch.nn.Linear(4, 3)
    assert model_step.count_flops(lambda: linear(torch.ones(2, 4))) == 48


def test_fusion_variant_matches_baseline_configs():
    bu = _load('bench_utils')
    clcr = dict(
        type='CLCRRecognizer',
        backbone=dict(embed_dims=32, modalities=dict(a={}, b={}, c={})),
        intra_ced=dict(type='IntraCED'),
        inter_cad=dict(type='InterCAD'),
        cls_head=dict(type='CLCRHead', num_classes=5, in_channels=32),
        loss_sep=dict(type='SharedPrivateSeparationLoss'))
    late = bu.fusion_variant(clcr, 'late')
    assert late['intra_ced'] is None and late['inter_cad'] is None
    assert late['loss_sep'] is None
    assert late['fusion'] == dict(type='LateFusion')
    # as the baseline configs: only the fused (deep) level's aligners
    assert late['backbone']['levels'] == ('deep', )
    assert 'levels' not in clcr['backbone']
    assert late['cls_head'] == dict(
        type='LateFusionHead', num_modalities=3, num_classes=5,
        in_channels=32)
    concat = bu.fusion_variant(clcr, 'concat')
    assert concat['fusion'] == dict(type='ConcatFusion', out_channels=32)
    assert concat['cls_head']['type'] == 'CLCRHead'
    assert bu.fusion_variant(clcr, 'clcr') == clcr
    with pytest.raises(ValueError, match='not a CLCR model'):
        bu.fusion_variant(late, 'clcr')


def test_fusion_scaling_reports_every_sweep(tmp_path):
    out = tmp_path / 'scaling.json'
    _load('fusion_scaling').main([
        '--tokens', '8', '16', '--ratio-tokens', '16', '--ratios', '0.25',
        '1.0', '--fixed-k', '4', '--embed-dims', '16', '--num-heads', '2',
        '--num-anchors', '2', '--repeats', '1', '--warmup', '0',
        '--threads', '1', '--out', str(out)
    ])
    saved = json.loads(out.read_text())
    assert set(saved['sweeps']) == {'tokens', 'ratio', 'fixed_k',
                                    'intercad'}
    tokens = saved['sweeps']['tokens']['rows']
    assert [r['tokens'] for r in tokens] == [8, 16]
    assert [r['k'] for r in tokens] == [2, 4]  # ceil(0.25 N)
    for r in tokens:
        for key in ('budget_ms', 'full_ms', 'no_exchange_ms'):
            assert _positive(r[key]), key
    ratio = saved['sweeps']['ratio']['rows']
    assert [r['k'] for r in ratio] == [4, 16]
    assert all(r['k'] == 4 for r in saved['sweeps']['fixed_k']['rows'])
    assert all(_positive(r['intercad_ms'])
               for r in saved['sweeps']['intercad']['rows'])
    fits = saved['sweeps']['tokens']['fits']['budget']
    assert math.isfinite(fits['loglog_slope_total_vs_n'])
    assert math.isfinite(
        saved['sweeps']['ratio']['fits']['budget']
        ['exchange_ms_per_budget_token'])


def test_memory_reports_peaks(tiny_config, tmp_path):
    out = tmp_path / 'memory.json'
    _load('memory').main(['--config', tiny_config, *TINY_ARGS,
                          '--variants', 'clcr', 'late', '--steps', '1',
                          '--isolation', 'reset', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert set(saved['results']) == {'clcr', 'late'}
    for r in saved['results'].values():
        assert _positive(r['peak_rss_mb'])
        assert _positive(r['rss_after_build_mb'])
        assert r['cuda_max_allocated_mb'] is None  # CPU run
    assert _positive(saved['clcr_over_late_peak_rss'])


def test_memory_child_arguments_drop_parent_only_options():
    memory = _load('memory')
    argv = ['--preset', 'synthetic', '--variants', 'clcr', 'late',
            '--out=x.json', '--isolation', 'process', '--batch-size', '2']
    assert memory._strip(argv, ('--variants', '--out', '--isolation')) == [
        '--preset', 'synthetic', '--batch-size', '2']


def test_pipeline_throughput_mosi_row_and_skip(tmp_path, monkeypatch):
    pipeline = _load('pipeline_throughput')
    out = tmp_path / 'pipeline.json'
    # A row whose data code is absent is skipped with a reason, not fatal.
    monkeypatch.setitem(pipeline.ROW_CONFIGS, 'ucf101',
                        ('configs/_base_/datasets/not_there.py',
                         'configs/not_there.py'))
    monkeypatch.setitem(pipeline.MAKERS, 'ucf101', lambda root, args: None)
    pipeline.main([
        '--rows', 'mosi', 'ucf101', '--samples', '3', '--warmup', '1',
        '--loader-workers', '0', '--model-batch-size', '2',
        '--model-repeats', '1', '--threads', '1', '--out', str(out)
    ])
    saved = json.loads(out.read_text())
    mosi = saved['results']['mosi']
    assert mosi['status'] == 'ok', mosi.get('reason')
    assert mosi['packed_shapes'] == dict(
        text=[1, 50, 768], audio=[1, 50, 5], vision=[1, 50, 20])
    for key in ('per_worker_sps', 'per_sample_cpu_ms', 'workers_to_keep_up',
                'loading_share', 'loading_share_cpu'):
        assert _positive(mosi[key]), key
    assert _positive(mosi['model']['model_sps'])
    assert 0 < mosi['loading_share'] < 1
    ucf = saved['results']['ucf101']
    assert ucf['status'] == 'skipped'
    assert 'not_there.py' in ucf['reason']
