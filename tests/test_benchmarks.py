"""Smoke tests of tools/benchmark: every script runs end to end on tiny
sizes and writes the JSON record it documents, with positive measurements.

Timings are not asserted (the machine is shared); the structure, the
sanity of the numbers and the noise-free counts (aten ops, profiler op
calls) are.
"""
import importlib.util
import json
import math
import os
import os.path as osp
from typing import Optional, Tuple

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
         '--count-ops-batches', '2', '3', '--quiet', '--out', str(out)])
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
    assert set(breakdown) == {'intra_ced', 'inter_cad', 'loss_sep',
                              'loss_cross'}
    assert all(_positive(p['cpu_median_ms']) for p in breakdown.values())
    ops = {v: r['fusion_only_ops'] for v, r in saved['results'].items()}
    for op in ops.values():
        # MATMUL_OPS must name ops the profiler really reports, and they
        # must not be all there is
        assert 0 < op['matmul_ms'] < op['self_cpu_ms']
        assert _positive(op['other_ms']) and _positive(op['op_calls'])
    # CLCR's necks add both matrix products and many more ops (counts,
    # not times: no noise).
    assert ops['clcr']['op_calls'] > 2 * ops['late']['op_calls']
    assert math.isfinite(
        saved['ratios']['clcr_over_late']['train_ratio_matmul_floor'])
    # aten ops of forward + backward, counted below autograd
    counted = {v: r['aten_ops'] for v, r in saved['results'].items()}
    for size in ('2', '3'):
        assert counted['clcr']['total'][size] > \
            2 * counted['late']['total'][size] > 0
        assert saved['ratios']['clcr_over_late']['aten_op_ratio'][
            size] == pytest.approx(counted['clcr']['total'][size] /
                                   counted['late']['total'][size])
        for v in counted:
            assert 0 < counted[v]['kernels'][size] < counted[v]['total'][size]
        assert saved['ratios']['clcr_over_late']['kernel_op_ratio'][
            size] == pytest.approx(counted['clcr']['kernels'][size] /
                                   counted['late']['kernels'][size])
    # every parameter gradient's detach: the backward is counted
    assert 'aten.detach' in counted['clcr']['top']
    # the parameter update is counted on its own: one group per distinct
    # lr / weight decay, so CLCR's many more tensors cost no more groups
    updates = {v: c['optimizer_step'] for v, c in counted.items()}
    assert updates['clcr']['params'] > updates['late']['params']
    for update in updates.values():
        assert 0 < update['kernels'] <= update['total']
        assert update['param_groups'] <= 2
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


def test_aten_op_counter_sees_the_backward():
    model_step = _load('model_step')
    linear = torch.nn.Linear(4, 3)
    x = torch.ones(2, 4)
    with model_step.AtenOpCounter() as forward_only:
        linear(x).sum()
    with model_step.AtenOpCounter() as counter:
        linear(x).sum().backward()
    assert forward_only.counts['aten.addmm'] == 1
    assert 'aten.mm' not in forward_only.counts
    # the weight gradient is a matrix product run by the autograd engine
    assert counter.counts['aten.mm'] >= 1
    assert sum(counter.counts.values()) > sum(forward_only.counts.values())
    # the transposed weight and the gradients' detach are views: counted
    # as ops, not as kernels
    assert counter.counts['aten.t'] >= 1 and 'aten.t' not in counter.kernels
    assert counter.kernels['aten.mm'] == counter.counts['aten.mm']
    assert sum(counter.kernels.values()) < sum(counter.counts.values())


def _ops_record(preset: str, clcr: dict, late: dict,
                kernels: Optional[Tuple[dict, dict]] = None) -> dict:
    ops = [dict(total=clcr), dict(total=late)]
    for counts, kernel in zip(ops, kernels or ()):
        counts['kernels'] = kernel
    return dict(
        preset=preset,
        config=f'configs/clcr_{preset}.py',
        results=dict(clcr=dict(aten_ops=ops[0]), late=dict(aten_ops=ops[1])))


def test_op_count_report_fills_the_doc_section(tmp_path):
    report = _load('op_count_report')
    rec = tmp_path / 'ops.json'
    rec.write_text(json.dumps(_ops_record(
        'mosi', {'2': 3000, '16': 3100}, {'2': 800, '16': 900},
        kernels=({'2': 1500, '16': 1500}, {'2': 500, '16': 600}))))
    doc = tmp_path / 'perf.md'
    doc.write_text(f'# Perf\nbefore\n{report.BEGIN}\nold table\n'
                   f'{report.END}\nafter\n')
    report.main([str(rec), '--doc', str(doc), '--relative-to',
                 str(tmp_path)])
    text = doc.read_text()
    assert 'old table' not in text
    assert text.startswith('# Perf\nbefore\n') and text.endswith(
        f'{report.END}\nafter\n')
    assert '| mosi | `configs/clcr_mosi.py` | 2 | 3,000 | 800 | 3.75× | ' \
        '1,500 | 500 | 3.00× | [ops.json](ops.json) |' in text
    assert '| 16 | 3,100 | 900 | 3.44× | 1,500 | 600 | 2.50× |' in text
    assert 'One parameter update' not in text  # this record counted none
    record = json.loads(rec.read_text())
    for variant, groups in (('clcr', 2), ('late', 1)):
        record['results'][variant]['aten_ops']['optimizer_step'] = dict(
            total=10 * groups, kernels=9 * groups, param_groups=groups,
            params=100 * groups)
    rec.write_text(json.dumps(record))
    report.main([str(rec), '--doc', str(doc), '--relative-to',
                 str(tmp_path)])
    assert '| mosi | `configs/clcr_mosi.py` | 20 (2 groups, 200 tensors) | ' \
        '10 (1 group, 100 tensors) | [ops.json](ops.json) |' in \
        doc.read_text()
    # a record that set how the IntraCED levels run says so
    rec.write_text(json.dumps(dict(
        _ops_record('mosi', {'2': 3000}, {'2': 800}),
        cfg_options={'model.batch_levels': True})))
    assert '| mosi | `configs/clcr_mosi.py`, IntraCED levels batched | 2 |' \
        in report.main([str(rec), '--relative-to', str(tmp_path)])
    # an older record without the non-view count leaves those cells blank
    rec.write_text(json.dumps(_ops_record('mosi', {'2': 3000}, {'2': 800})))
    assert '| 3,000 | 800 | 3.75× |  |  |  | [ops.json]' in report.main(
        [str(rec), '--relative-to', str(tmp_path)])
    # without the markers the document is not touched, and the error says
    # which document
    bare = tmp_path / 'bare.md'
    bare.write_text('no markers\n')
    with pytest.raises(ValueError, match='bare.md has no'):
        report.main([str(rec), '--doc', str(bare)])
    assert bare.read_text() == 'no markers\n'
    rec.write_text(json.dumps(dict(preset='x', config='y', results={})))
    with pytest.raises(ValueError, match='no aten_ops'):
        report.main([str(rec)])


def _assert_doc_table_is_the_records(pattern: str, tool) -> None:
    """The table between ``tool``'s markers in docs/performance.md is what
    ``tool.render`` makes of the committed records matching ``pattern``."""
    import glob
    report = _load('op_count_report')
    paths = sorted(glob.glob(osp.join(REPO, 'docs', 'performance', pattern)))
    assert paths, f'no {pattern} records under docs/performance'
    names = [osp.relpath(p, osp.join(REPO, 'docs')) for p in paths]
    table = tool.render(report.load(paths), names)
    with open(osp.join(REPO, 'docs', 'performance.md')) as f:
        text = f.read()
    assert report.replace_section(text, table, 'performance.md', tool.BEGIN,
                                  tool.END) == text, (
        'docs/performance.md is out of date; regenerate its table with '
        f'{tool.__file__}')


def test_performance_doc_op_counts_are_the_records():
    """docs/performance.md's op-count table is regenerated from the
    committed records, not typed by hand."""
    _assert_doc_table_is_the_records('model_step_ops_*.json',
                                     _load('op_count_report'))


def _ratio_record(preset: str, ratio: float, **cfg_options) -> dict:
    """A model_step.py record that timed CLCR against late fusion."""
    return dict(
        preset=preset, batch_size=4, repeats=15, cfg_options=cfg_options,
        environment=dict(load_average=[1.0, 0.5, 0.25], cpu='AMD EPYC'),
        ratios=dict(clcr_over_late=dict(train_cpu_paired_ratio=ratio)),
        results={
            v: dict(train=dict(cpu_median_ms=ms))
            for v, ms in (('clcr', 1234.5 * ratio), ('late', 1234.5))
        })


def test_step_ratio_report_judges_each_run_against_its_target(tmp_path):
    report = _load('step_ratio_report')
    records = dict(
        synthetic=_ratio_record('synthetic', 1.2),
        ucf101=_ratio_record('ucf101', 1.03, **{
            'model.compile_fusion': True}),
        mosi=_ratio_record('mosi', 1.5, **{'model.batch_levels': False}))
    paths = []
    for name, record in records.items():
        paths.append(str(tmp_path / f'{name}.json'))
        with open(paths[-1], 'w') as f:
            json.dump(record, f)
    doc = tmp_path / 'perf.md'
    doc.write_text(f'intro\n{report.BEGIN}\nold\n{report.END}\nend\n')
    report.main(paths + ['--doc', str(doc), '--relative-to', str(tmp_path)])
    text = doc.read_text()
    assert 'old' not in text and text.endswith(f'{report.END}\nend\n')
    assert '| synthetic | eager | 4 | 15 | 1,481.4 | 1,234.5 | **1.200** | ' \
        '1.15: missed | AMD EPYC | 1.00 / 0.50 / 0.25 | [synthetic.json]' \
        '(synthetic.json) |' in text
    assert '| ucf101 | compile_fusion | 4 | 15 | 1,271.5 | 1,234.5 | ' \
        '**1.030** | 1.05: met |' in text
    # no target for MOSI; the level mode is named where a record set it
    assert '| mosi | eager, IntraCED levels one by one | 4 | 15 | ' \
        '1,851.8 | 1,234.5 | **1.500** |  |' in text
    # compile_fusion given as torch.compile options counts as compiled
    with open(paths[0], 'w') as f:
        json.dump(_ratio_record('synthetic', 1.1, **{
            'model.compile_fusion.options.fallback_random': True}), f)
    assert '| synthetic | compile_fusion | 4 | 15 | 1,358.0 | 1,234.5 | ' \
        '**1.100** | 1.15: met |' in report.main(
            [paths[0], '--relative-to', str(tmp_path)])
    untimed = dict(records['mosi'], ratios={})
    with open(paths[0], 'w') as f:
        json.dump(untimed, f)
    with pytest.raises(ValueError, match='synthetic.json: no train_cpu'):
        report.main([paths[0], '--relative-to', str(tmp_path)])


def test_performance_doc_step_ratios_are_the_records():
    """docs/performance.md's CLCR / late step-ratio table is regenerated
    from the committed runs, not typed by hand."""
    _assert_doc_table_is_the_records(osp.join('step_ratio', '*.json'),
                                     _load('step_ratio_report'))


def test_step_dispatches_counts_eager_and_compiled_steps(tiny_config,
                                                         tmp_path):
    """The profiler-based count of a step: eager, it sees every top-level
    aten op (no more than the dispatch mode's count, which also sees the
    ops composite ops make); with ``compile_fusion`` it reports the
    compiled graphs entered. TorchDynamo's eager backend needs no C++
    compiler, so no Inductor kernels here."""
    tool = _load('step_dispatches')
    out = tmp_path / 'dispatches.json'
    record = tool.main(['--config', tiny_config, *TINY_ARGS,
                        '--compile-backend', 'eager', '--out', str(out)])
    assert json.loads(out.read_text())['results'] == record['results']
    res = record['results']
    for variant in ('clcr', 'late'):
        eager, compiled = res[variant]['eager'], res[variant]['compiled']
        assert eager['aten_ops'] > 0 and eager['compiled_regions'] == 0
        assert eager['compiled_kernels'] == 0
        assert eager['host_dispatches'] == eager['aten_ops']
        assert eager['device_kernels'] is None
        assert compiled['compiled_regions'] > 0
        assert not compiled['recompiled']
    assert res['clcr']['eager']['aten_ops'] > res['late']['eager']['aten_ops']
    assert record['over_late_eager']['late/eager'] == 1.0
    # the same model counted by model_step.py's dispatch mode
    model_step = _load('model_step')
    args = model_step.parse_args(['--config', tiny_config, *TINY_ARGS])
    setup = model_step.prepare(args)
    bu = _load('bench_utils')
    torch.manual_seed(0)
    model = bu.build_model(setup['model_cfg'], torch.device('cpu'))
    batch = model_step.make_batch(setup['shapes'], 2, setup['num_classes'],
                                  setup['regression'], 0)
    counted = sum(model_step.count_aten_ops(model, batch).counts.values())
    assert res['clcr']['eager']['aten_ops'] <= counted
    # the table goes between the markers, one row per variant and mode
    doc = tmp_path / 'perf.md'
    doc.write_text(f'x\n{tool.BEGIN}\nold\n{tool.END}\ny\n')
    tool.main(['--doc', str(doc), '--records', str(out)])
    text = doc.read_text()
    assert 'old' not in text and text.endswith(f'{tool.END}\ny\n')
    eager = res['clcr']['eager']
    ratio = record['over_late_eager']['clcr/eager']
    assert (f"| clcr | eager | {eager['aten_ops']:,} | 0 | "
            f"{eager['host_dispatches']:,} | {ratio:.2f}× |  |") in text
    assert '| late | compile_fusion (eager) |' in text


def test_performance_doc_step_dispatches_are_the_records():
    """docs/performance.md's compiled-step table is the committed
    records', written by step_dispatches.py --doc."""
    _assert_doc_table_is_the_records('step_dispatches_*.json',
                                     _load('step_dispatches'))


def _device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _amp_part(tiny_config, tmp_path, variant: str) -> dict:
    """The AMP part of gpu_check.sh for one variant on the device present:
    float16 (with loss scaling on CUDA) and bfloat16 steps, each checked."""
    gpu_check = _load('gpu_check')
    device = _device()
    amp = gpu_check.main([
        'amp', '--config', tiny_config, *TINY_ARGS, '--device', device,
        '--variants', variant, '--steps', '2', '--out',
        str(tmp_path / f'amp_{variant}.json')
    ])
    assert set(amp['results']) == {f'{variant}/float16',
                                    f'{variant}/bfloat16'}
    for name, run in amp['results'].items():
        assert len(run['losses']) == 2
        assert run['losses_finite'], (name, run['losses'])
        assert run['grads_finite'] and _positive(run['steady_step_ms'])
        if device == 'cuda':
            assert run['optim_wrapper'] == 'AmpOptimWrapper'
            assert run['loss_scale'] > 1
            assert _positive(run['cuda_max_allocated_mb'])
        else:
            assert run['optim_wrapper'] == 'OptimWrapper'
    assert amp['ok']
    return amp


def test_gpu_check_amp_and_compile_parts(tiny_config, tmp_path):
    """AMP steps of late fusion, then its train_step compiled as mmengine
    does it (tracing CLCR takes a minute on a busy CPU, and
    test_amp_compile.py already trains CLCR compiled)."""
    _amp_part(tiny_config, tmp_path, 'late')
    backend = 'inductor' if _device() == 'cuda' else 'eager'
    compiled = _load('gpu_check').main([
        'compile', '--config', tiny_config, *TINY_ARGS, '--device',
        _device(), '--variants', 'late', '--steps', '1',
        '--compile-backend', backend, '--out', str(tmp_path / 'c.json')
    ])
    assert compiled['ok'] and compiled['backend'] == backend
    late = compiled['results']['late']
    assert len(late['compiled']['losses']) == 2  # compiling step + 1
    assert late['loss_forward_graphs'] >= 1
    assert late['loss_forward_graph_breaks'] >= 0
    assert _positive(late['compiled_over_eager'])
    # kernels of one whole train_step (optimizer included), eager and
    # compiled; the compiled one ran through compiled graphs
    launches = late['train_step_launches']
    assert launches['eager']['host_dispatches'] > 0
    assert launches['eager']['compiled_regions'] == 0
    assert launches['compiled']['compiled_regions'] > 0
    assert (launches['eager']['device_kernels'] is None) == (
        _device() == 'cpu')


def test_gpu_check_amp_clcr(tiny_config, tmp_path):
    """CLCR trains under float16 and bfloat16 AMP with finite losses."""
    _amp_part(tiny_config, tmp_path, 'clcr')


def test_gpu_check_script_runs_ddp_through_torchrun(tiny_config, tmp_path):
    """gpu_check.sh end to end for its DDP part: torchrun, one process,
    DDP's defaults (find_unused_parameters=False), two steps of CLCR and of
    late fusion; the record says which parts did not run."""
    import subprocess
    import sys
    out = tmp_path / 'gpu_check.json'
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', osp.join(BENCH, 'gpu_check.sh'), '--dry-run', '--device',
         _device(), '--config', tiny_config, '--shape', 'a=12,6',
         '--shape', 'b=12,7', '--parts', 'ddp', '--out', str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = json.loads(out.read_text())
    assert saved['benchmark'] == 'gpu_check' and saved['dry_run']
    ddp = saved['parts']['ddp']
    assert saved['ok']['ddp'], ddp
    assert ddp['world_size'] == 1 and not ddp['find_unused_parameters']
    assert ddp['backend'] == ('nccl' if _device() == 'cuda' else 'gloo')
    for variant in ('clcr', 'late'):
        assert ddp['results'][variant]['ok']
        assert len(ddp['results'][variant]['losses']) == 2
    for part in ('amp', 'compile', 'model_step'):
        assert saved['parts'][part] == dict(ok=False, error='not run')
        assert saved['ok'][part] is False


def test_mosi_preset_shapes_follow_the_config():
    from mmengine.config import Config
    model_step = _load('model_step')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'clcr_mosi.py'))
    shapes, _ = model_step.preset_shapes('mosi', cfg, None)
    dims = cfg['mmsa_feat_dims']
    assert set(shapes) == set(dims) == set(
        cfg.model.backbone.modalities)
    assert all(shapes[m] == (50, dims[m]) for m in dims)
