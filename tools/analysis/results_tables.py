"""Markdown tables of the results, generated from the JSON records that the
analysis tools write (never copied by hand).

    python tools/analysis/results_tables.py RECORD.json [RECORD.json ...] \\
        --out docs/results/crosslevel/tables.md \\
        [--inject docs/results/README.md] [--summary]

Records are recognised by their content:

- ``ablations.json`` of ``ablation_runner.py``: the comparison (best
  validation accuracy and test accuracy at the checkpoint selected on
  validation, mean ± std over seeds, per-seed values) and the validation
  learning curves of every run and seed;
- ``representation.json`` of ``representation.py``: the leakage probes
  (each planted factor decoded from pooled shared, private and fused
  features, against its chance level);
- ``factors.json`` of a synthetic benchmark: its factor table and, where
  the generator states them, the accuracy ceilings of each model family;
- ``robustness.json`` of ``robustness.py``, one or more (e.g. one per
  seed, same models and conditions): each model's metric under noise and
  missing modalities, and its change from clean, mean ± std over the
  records.

With an ``ablations.json`` that holds a ``clcr`` run, a last table checks
the targets of the cross-level comparison (issue 12) on the test accuracy
at the validation-selected checkpoint: CLCR beats late fusion by at least
10 points and concatenation, and each ``wo_<module>`` run, by more than the
seed spread (the larger of the two runs' standard deviations); CLCR trained
with the private shortcut stays within 5 points of the ``noshortcut``
control; plus, from a ``representation.json``, the leakage checks.
``--summary`` writes only the comparison and the targets (no curves,
factors or probe tables), for a README.

``--out`` receives every table; ``--inject FILE`` also writes them into
``FILE`` between the lines ``<!-- results_tables:begin -->`` and
``<!-- results_tables:end -->`` (e.g. a README's results summary), leaving
the rest of the file untouched.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import analysis_utils as au  # noqa: E402

BEGIN = '<!-- results_tables:begin -->'
END = '<!-- results_tables:end -->'
# Targets of the cross-level comparison (issue 12), on test accuracy.
LATE_FUSION_MARGIN = 0.10  # CLCR - late fusion
SHORTCUT_TOLERANCE = 0.05  # |CLCR - CLCR trained without the shortcut|
# Runs that CLCR must beat by more than the seed spread.
BEAT_BY_SPREAD = ('concat', 'wo_hierarchy', 'wo_exchange', 'wo_intercad',
                  'wo_budget')
# Kinds of run, for the tables and plots of ablation_runner.py
# (noshortcut: CLCR trained without the private shortcut).
GROUPS = dict(clcr='CLCR (full)', late_fusion='baseline',
              concat='baseline', rgb_only='unimodal', audio_only='unimodal',
              noshortcut='CLCR variant')


def group(name: str) -> str:
    """The kind of a run (``'ablation'`` for ``wo_*``)."""
    if name in GROUPS:
        return GROUPS[name]
    if name.startswith('wo_'):
        return 'ablation'
    return 'CLCR variant' if name.startswith('clcr') else 'other'


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float('nan')
    var = sum((v - mean)**2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def pm(mean: float, std: float) -> str:
    """``mean ± std`` in percent; the std is left out when it is NaN."""
    std_txt = '' if math.isnan(std) else f' ± {100 * std:.1f}'
    return f'{100 * mean:.1f}{std_txt}'


# ----------------------------------------------------------------------
# comparison of runs (ablation_runner.py)
# ----------------------------------------------------------------------
def summarise_runs(runs: Dict[str, Dict[int, dict]],
                   names: Sequence[str]) -> List[dict]:
    """One row per run over its seeds.

    Args:
        runs (dict): ``name -> seed -> result`` as written by
            ``ablation_runner.py`` (``best``, ``history`` and, when the
            test stage ran, ``test``).
        names (Sequence[str]): Runs in table order; absent ones are left
            out.

    Returns:
        list[dict]: ``name``, ``group``, ``seeds``, ``values`` (best
        validation per seed), ``mean``, ``std``, ``tests`` (test metric at
        the checkpoint selected on validation; None where not measured),
        ``test_mean``, ``test_std`` (over the measured seeds; NaN if none),
        ``curves`` (validation curve per seed), ``curve_means``,
        ``curve_mean``, ``curve_std`` and ``epochs``.
    """
    rows = []
    for name in names:
        per_seed = {int(s): r for s, r in runs.get(name, {}).items()}
        if not per_seed:
            continue
        seeds = sorted(per_seed)
        values = [per_seed[s]['best'] for s in seeds]
        tests = [per_seed[s].get('test') for s in seeds]
        measured = [t for t in tests if t is not None]
        curves = [[v for _, v in per_seed[s]['history']] for s in seeds]
        curve_means = [sum(c) / len(c) for c in curves]
        mean, std = mean_std(values)
        test_mean, test_std = (mean_std(measured) if measured else
                               (float('nan'), float('nan')))
        curve_mean, curve_std = mean_std(curve_means)
        rows.append(dict(
            name=name, group=group(name), seeds=seeds, values=values,
            mean=mean, std=std, tests=tests, test_mean=test_mean,
            test_std=test_std, curves=curves, curve_means=curve_means,
            curve_mean=curve_mean, curve_std=curve_std,
            epochs=per_seed[seeds[0]].get('epochs')))
    return rows


def comparison_table(rows: Sequence[dict], metric: str) -> str:
    """Best validation and test-at-selected-checkpoint, mean ± std."""
    table = []
    for r in rows:
        measured = [t for t in r['tests'] if t is not None]
        test = (pm(r['test_mean'], r['test_std']) if measured else 'n/a')
        per_seed = ', '.join(
            f'{100 * v:.1f}' + (f' / {100 * t:.1f}' if t is not None else '')
            for v, t in zip(r['values'], r['tests']))
        table.append([r['name'], r['group'], pm(r['mean'], r['std']), test,
                      pm(r['curve_mean'], r['curve_std']), len(r['values']),
                      per_seed])
    header = ['run', 'kind', f'best val {metric} (%)',
              f'test {metric} at the val-selected checkpoint (%)',
              f'mean of the val {metric} curve (%)', 'seeds',
              'per seed: val / test']
    return au.markdown_table(header, table)


def curves_table(rows: Sequence[dict]) -> str:
    """Validation metric per epoch, every run and seed."""
    epochs = max((len(c) for r in rows for c in r['curves']), default=0)
    table = []
    for r in rows:
        for seed, curve in zip(r['seeds'], r['curves']):
            cells = [f'{100 * v:.1f}' for v in curve]
            table.append([r['name'], seed] + cells + [''] *
                         (epochs - len(cells)))
    header = ['run', 'seed'] + [f'ep {e + 1}' for e in range(epochs)]
    return au.markdown_table(header, table)


def record_rows(record: dict) -> List[dict]:
    """The rows of one ablations.json, recomputed from the per-seed
    records (so that records written before a column existed still render,
    as n/a)."""
    names = [r['name'] for r in record.get('rows') or []] or list(
        record['runs'])
    return summarise_runs(record['runs'], names)


def target_checks(rows: Sequence[dict],
                  leakage: Optional[Sequence[dict]] = None) -> List[list]:
    """Check the cross-level comparison's targets.

    Args:
        rows (Sequence[dict]): Rows of :func:`summarise_runs`; the checks
            use ``test_mean`` / ``test_std`` of ``clcr`` and of the runs it
            is compared with (those absent or untested are left out).
        leakage (Sequence[dict], optional): ``representation.leakage``.

    Returns:
        list[list]: ``[target, measured, met]`` rows (``met`` is ``'yes'``
        or ``'NO'``), empty without a tested ``clcr`` run.
    """
    tested = {r['name']: r for r in rows if not math.isnan(r['test_mean'])}
    clcr = tested.get('clcr')
    if clcr is None:
        return []
    met = {True: 'yes', False: 'NO'}

    def gap(name: str) -> float:
        return clcr['test_mean'] - tested[name]['test_mean']

    def spread(name: str) -> float:
        # one seed has no spread: the check then needs any positive gap
        stds = [s for s in (clcr['test_std'], tested[name]['test_std'])
                if not math.isnan(s)]
        return max(stds, default=0.0)

    checks = []
    if 'late_fusion' in tested:
        checks.append([
            f'CLCR - late_fusion >= {100 * LATE_FUSION_MARGIN:.0f} points',
            f"{100 * gap('late_fusion'):+.1f}",
            met[gap('late_fusion') >= LATE_FUSION_MARGIN]])
    for name in BEAT_BY_SPREAD:
        if name in tested:
            checks.append([
                f'CLCR - {name} > seed spread',
                f'{100 * gap(name):+.1f} vs {100 * spread(name):.1f}',
                met[gap(name) > spread(name)]])
    if 'noshortcut' in tested:
        checks.append([
            'CLCR with the shortcut within '
            f'{100 * SHORTCUT_TOLERANCE:.0f} points of noshortcut',
            f"{100 * gap('noshortcut'):+.1f}",
            met[abs(gap('noshortcut')) <= SHORTCUT_TOLERANCE]])
    for row in leakage or ():
        if row['ok'] is not None:
            checks.append([f"{row['factor']}: {row['check']}",
                           f"{100 * row['measured']:.1f} (chance "
                           f"{100 * row['chance']:.1f})", met[row['ok']]])
    return checks


def targets_section(rows: Sequence[dict],
                    leakage: Optional[Sequence[dict]] = None) -> str:
    """The targets table, or '' when nothing can be checked."""
    checks = target_checks(rows, leakage)
    if not checks:
        return ''
    return '\n'.join([
        '### Targets (test accuracy at the val-selected checkpoint, mean '
        'over seeds; leakage from the probes)\n',
        au.markdown_table(['target', 'measured (points / %)', 'met'],
                          checks), ''])


def ablation_section(record: dict, curves: bool = True) -> str:
    """The comparison and (``curves``) the learning curves of one
    ablations.json."""
    rows = record_rows(record)
    metric = record.get('metric', 'acc/top1')
    head = (f"### {record.get('benchmark', '?')}: comparison\n\n"
            f"epochs={record.get('epochs') or 'config'}, train subset="
            f"{record.get('train_subset') or 'all'}, "
            f"seeds={record.get('seeds')}. The test column is measured on "
            'the checkpoint with the best validation accuracy (earliest on '
            'ties), never selected on test.\n')
    parts = [head, comparison_table(rows, metric), '']
    if curves:
        parts += [f'Validation {metric} (%) per epoch:\n',
                  curves_table(rows), '']
    return '\n'.join(parts)


# ----------------------------------------------------------------------
# probes (representation.py) and factors (factors.json)
# ----------------------------------------------------------------------
def leakage_table(rows: Sequence[dict]) -> str:
    """The rows of ``representation.leakage`` as a Markdown table (%)."""
    fsets = list(dict.fromkeys(f for row in rows for f in row['accuracy']))
    table = []
    for row in rows:
        ok = {True: 'yes', False: 'NO', None: ''}[row['ok']]
        table.append([row['factor'], row['planted'],
                      f"{100 * row['chance']:.1f}"] + [
            f"{100 * row['accuracy'][f]:.1f}" if f in row['accuracy']
            else '' for f in fsets] + [row['check'], ok])
    return au.markdown_table(
        ['factor', 'planted in', 'chance'] + fsets + ['target', 'met'],
        table)


def relation_table(relations: Dict[str, Dict[str, float]],
                   chance: Dict[str, float],
                   two_stage: Optional[Dict[str, dict]] = None) -> str:
    """``representation.relation_probes`` (MLP probes) as a Markdown table
    (%), with the ``two_stage_probes`` (ingredients decoded linearly, then
    compared) where there are any."""
    two_stage = two_stage or {}
    fsets = list(dict.fromkeys(f for accs in relations.values()
                               for f in accs))
    table = []
    for name, accs in relations.items():
        row = [name, f'{100 * chance[name]:.1f}'] + [
            f'{100 * accs[f]:.1f}' for f in fsets]
        if two_stage:
            stage = two_stage.get(name)
            row.append('' if stage is None else '{:.1f} ({})'.format(
                100 * stage['accuracy'], ', '.join(
                    f"{k} {100 * v['accuracy']:.1f}"
                    for k, v in stage['inputs'].items())))
        table.append(row)
    header = ['relation', 'chance'] + [f'MLP: {f}' for f in fsets]
    if two_stage:
        header.append('two-stage: inputs decoded linearly, then compared')
    return au.markdown_table(header, table)


def leakage_section(record: dict) -> str:
    """Leakage probes of one representation.json."""
    if not record.get('leakage'):
        return ''
    head = (f"### Leakage probes: {osp.basename(str(record.get('config')))}"
            f"\n\nLinear-probe accuracy (%) on {record.get('num_eval')} "
            f"{record.get('eval_split')} samples, fitted on "
            f"{record.get('num_fit')} {record.get('fit_split')} samples; "
            'chance = majority class of the evaluation split.\n')
    parts = [head, leakage_table(record['leakage']), '']
    if record.get('relation_probes'):
        parts += ['The same relations from every modality\'s pooled '
                  'features together, by a one-hidden-layer MLP probe '
                  '(it can compute a relation a linear probe cannot):\n',
                  relation_table(record['relation_probes'],
                                 record['probes']['majority_baseline'],
                                 record.get('two_stage_probes')), '']
    return '\n'.join(parts)


def factors_section(record: dict) -> str:
    """The factor table and the ceilings of one factors.json."""
    meta = record['meta']
    table = [[name, ' / '.join(info['values']), info['modality'],
              info['level'], 'yes' if name in meta.get('label_factors', ())
              else '']
             for name, info in meta['factors'].items()]
    parts = [f"### Factors (label = {meta.get('label_formula')})\n",
             au.markdown_table(['factor', 'values', 'modality',
                                'level / how', 'in label'], table), '']
    if meta.get('ceilings'):
        parts += ['Accuracy ceilings on val / test:\n', au.markdown_table(
            ['model family', 'ceiling (%)'],
            [[k, f'{100 * v:.0f}'] for k, v in meta['ceilings'].items()]),
            '']
    return '\n'.join(parts)


# ----------------------------------------------------------------------
# robustness (robustness.py), over the records of several seeds
# ----------------------------------------------------------------------
def robustness_section(records: Sequence[dict]) -> str:
    """Mean ± std over records (e.g. one per seed) of every model's
    metric under every condition, and of its change from clean.

    Args:
        records (Sequence[dict]): ``robustness.json`` records of the same
            models and conditions.

    Returns:
        str: Markdown.
    """
    metric = records[0]['models'][0]['metric']
    values: Dict[str, Dict[str, List[float]]] = {}
    for record in records:
        for model in record['models']:
            conditions = values.setdefault(model['label'], {})
            for name, cond in model['conditions'].items():
                if cond.get('kind') == 'noise' and cond['sigma'] == 0:
                    continue  # the clean input again
                conditions.setdefault(name, []).append(
                    cond['metrics'][metric])
    names = list(next(iter(values.values())))
    counts = {len(v) for conds in values.values() for v in conds.values()}
    if len(counts) != 1:
        raise ValueError('robustness records differ in models or conditions')
    absolute, change = [], []
    for label, conds in values.items():
        clean = conds['clean']
        absolute.append([label] + [pm(*mean_std(conds[n])) for n in names])
        change.append([label] + [
            pm(*mean_std([v - c for v, c in zip(conds[n], clean)]))
            for n in names if n != 'clean'])
    header = [n.replace('noise:', '').replace('missing:', 'missing ')
              for n in names]
    sources = ', '.join(f"`{r.get('_path', '?')}`" for r in records)
    return '\n'.join([
        f'### Robustness: {metric} (%), mean ± std over {counts.pop()} '
        f'records\n', f'From {sources}.\n',
        au.markdown_table(['model'] + header, absolute), '',
        'Change from clean (points), mean ± std of the per-record '
        'differences:\n',
        au.markdown_table(['model'] + header[1:], change), ''])


def render(records: Sequence[dict], summary: bool = False) -> str:
    """All tables of the given records, in the order given, then the
    targets of the first ablations.json with the first representation's
    leakage checks.

    Args:
        records (Sequence[dict]): Loaded records.
        summary (bool): Only the comparison (without curves) and the
            targets.

    Returns:
        str: Markdown.
    """
    parts, rows, leakage, robustness = [], None, None, []
    for record in records:
        if 'models' in record and 'sigmas' in record:
            robustness.append(record)
        elif 'runs' in record:
            parts.append(ablation_section(record, curves=not summary))
            rows = record_rows(record) if rows is None else rows
        elif 'probes' in record:
            if not summary:
                parts.append(leakage_section(record))
            leakage = record.get('leakage') if leakage is None else leakage
        elif 'meta' in record and 'factors' in record['meta']:
            if not summary:
                parts.append(factors_section(record))
        else:
            raise ValueError(f"{record.get('_path', 'a record')}: not an "
                             'ablations.json, representation.json, '
                             'robustness.json or factors.json record')
    if robustness and not summary:
        parts.append(robustness_section(robustness))
    if rows is not None:
        parts.append(targets_section(rows, leakage))
    return '\n'.join(p for p in parts if p)


def inject(path: str, text: str) -> None:
    """Replace what lies between the markers of ``path`` with ``text``."""
    with open(path) as f:
        content = f.read()
    if content.count(BEGIN) != 1 or content.count(END) != 1 or \
            content.index(BEGIN) > content.index(END):
        raise ValueError(f'{path}: needs one line {BEGIN} followed by one '
                         f'line {END}')
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, 'w') as f:
        f.write(f'{head}{BEGIN}\n{text}\n{END}{tail}')


def load_record(path: str) -> dict:
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path}: not JSON ({e})') from e
    record['_path'] = path
    return record


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Markdown tables from the JSON records of the analysis '
        'tools')
    parser.add_argument('records', nargs='+',
                        help='ablations.json, representation.json and '
                        'factors.json files')
    parser.add_argument('--out', required=True, help='Markdown file written')
    parser.add_argument('--title', default='Results tables',
                        help='first heading of --out')
    parser.add_argument('--inject', default=None,
                        help='also write the tables between the markers of '
                        'this Markdown file')
    parser.add_argument('--summary', action='store_true',
                        help='only the comparison (no curves) and the '
                        'targets, e.g. for a README')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    text = render([load_record(p) for p in args.records],
                  summary=args.summary)
    sources = ', '.join(f'`{p}`' for p in args.records)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(f'# {args.title}\n\nGenerated by '
                f'`tools/analysis/results_tables.py` from {sources}; do '
                f'not edit by hand.\n\n{text}\n')
    if args.inject:
        inject(args.inject, text)
    return text


if __name__ == '__main__':
    main()
