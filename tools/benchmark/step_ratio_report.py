"""Write the step-time-ratio table of docs/performance.md from the records.

``model_step.py`` times CLCR and late fusion side by side (interleaved
rounds, CPU time) and stores the paired median of their ratio in its JSON
record (``ratios.clcr_over_late.train_cpu_paired_ratio``). One record is
one run on one machine state, and on a shared CPU the same code gives
ratios a few percent apart from run to run, so the target is judged on
several runs. This script renders every record given as one row (preset,
eager or ``compile_fusion``, rounds, step times, the ratio against the
preset's target, the processor, the machine's load average) and puts the
table between the markers ``<!-- step-ratios:begin -->`` and
``<!-- step-ratios:end -->`` of the document, so the figures in the docs
are the records' own.

Example::

    python tools/benchmark/step_ratio_report.py \\
        docs/performance/step_ratio/*.json --doc docs/performance.md
"""
import os.path as osp
import sys
from typing import Any, Dict, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from op_count_report import levels_note, run_report  # noqa: E402

BEGIN = '<!-- step-ratios:begin -->'
END = '<!-- step-ratios:end -->'

# CLCR / late-fusion training-step targets on the CPU (issue 13, item 4)
TARGETS = {'synthetic': 1.15, 'ucf101': 1.05}


def _mode(record: Dict[str, Any]) -> str:
    """``eager`` or ``compile_fusion``, with the IntraCED level mode where
    the record set it."""
    options = record.get('cfg_options') or {}
    compiled = any(
        key == 'model.compile_fusion' and value
        or key.startswith('model.compile_fusion.')
        for key, value in options.items())
    return ('compile_fusion' if compiled else 'eager') + levels_note(record)


def render(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    """Markdown table: one row per record.

    Args:
        records (Sequence[dict]): ``model_step.py`` records that timed
            ``clcr`` and ``late``.
        names (Sequence[str]): How to cite each record (its path).

    Returns:
        str: The table.

    Raises:
        ValueError: A record has no CLCR / late-fusion training ratio.
    """
    lines = [
        '| preset | mode | batch | rounds | CLCR train CPU ms | '
        'late train CPU ms | CLCR / late (CPU, paired) | target | '
        'processor | load average | record |',
        '|---|---|---:|---:|---:|---:|---:|---|---|---|---|'
    ]
    for record, name in zip(records, names):
        ratio = record.get('ratios', {}).get('clcr_over_late', {}).get(
            'train_cpu_paired_ratio')
        if ratio is None:
            raise ValueError(
                f'{name}: no train_cpu_paired_ratio of clcr over late; run '
                'model_step.py with --variants clcr late')
        preset = record['preset']
        target = TARGETS.get(preset)
        verdict = '' if target is None else (
            f"{target:.2f}: {'met' if ratio <= target else 'missed'}")
        times = [
            record['results'][v]['train']['cpu_median_ms']
            for v in ('clcr', 'late')
        ]
        environment = record.get('environment', {})
        load_average = environment.get('load_average')
        load_cell = '' if not load_average else ' / '.join(
            f'{x:.2f}' for x in load_average)
        lines.append(
            f"| {preset} | {_mode(record)} | {record['batch_size']} | "
            f"{record['repeats']} | {times[0]:,.1f} | {times[1]:,.1f} | "
            f"**{ratio:.3f}** | {verdict} | {environment.get('cpu', '')} | "
            f'{load_cell} | '
            f'[{osp.basename(name)}]({name}) |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> str:
    return run_report(argv, render, __doc__.splitlines()[0], BEGIN, END)


if __name__ == '__main__':
    main()
