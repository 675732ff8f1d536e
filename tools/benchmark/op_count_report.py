"""Write the aten-op-count table of docs/performance.md from the records.

``model_step.py`` counts the aten ops of one training step (forward +
backward) per fusion variant and batch size, all of them and the non-view
ones (those that launch a kernel on a GPU), and stores them in its JSON
record (``results.<variant>.aten_ops``: ``total`` and ``kernels``, and
``optimizer_step``, the ops of one parameter update). This script renders
those counts,
for every record given, as one markdown table and puts it between the
markers ``<!-- aten-op-counts:begin -->`` and ``<!-- aten-op-counts:end -->``
of the document, so the figures in the docs are the records' own.

Example::

    python tools/benchmark/op_count_report.py \\
        docs/performance/model_step_ops_*.json --doc docs/performance.md
"""
import argparse
import json
import os.path as osp
from typing import Any, Callable, Dict, List, Optional, Sequence

BEGIN = '<!-- aten-op-counts:begin -->'
END = '<!-- aten-op-counts:end -->'


def render(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    """Markdown table: one row per record and batch size.

    Args:
        records (Sequence[dict]): ``model_step.py`` records with
            ``aten_ops`` for ``clcr`` and ``late``.
        names (Sequence[str]): How to cite each record (its path).

    Returns:
        str: The table, with a line naming the command of each record.

    Raises:
        ValueError: A record has no op counts for CLCR and late fusion.
    """
    lines = [
        '| preset | config | batch | CLCR ops | late-fusion ops | '
        'CLCR / late | CLCR non-view ops | late-fusion non-view ops | '
        'CLCR / late (non-view) | record |',
        '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for record, name in zip(records, names):
        results = record.get('results', {})
        if not all('aten_ops' in results.get(v, {}) for v in ('clcr',
                                                              'late')):
            raise ValueError(
                f'{name}: no aten_ops for both clcr and late; run '
                'model_step.py with --variants clcr late and '
                '--count-ops-batches')
        clcr, late = (results[v]['aten_ops'] for v in ('clcr', 'late'))
        for size in clcr['total']:
            cells = []
            for count in ('total', 'kernels'):
                # records from before the non-view count leave it blank
                if size in clcr.get(count, {}):
                    a, b = clcr[count][size], late[count][size]
                    cells += [f'{a:,}', f'{b:,}', f'{a / b:.2f}×']
                else:
                    cells += ['', '', '']
            lines.append(
                f"| {record['preset']} | {_config(record)} | {size} | " +
                ' | '.join(cells) + f' | [{osp.basename(name)}]({name}) |')
    return '\n'.join(lines) + '\n' + _render_updates(records, names)


def _render_updates(records: Sequence[Dict[str, Any]],
                    names: Sequence[str]) -> str:
    """Second table, of the records that counted one parameter update
    (``aten_ops.optimizer_step``); empty when none did."""
    lines = []
    for record, name in zip(records, names):
        results = record['results']
        updates = [results[v]['aten_ops'].get('optimizer_step')
                   for v in ('clcr', 'late')]
        if None in updates:
            continue
        cells = [
            f"{u['total']:,} ({u['param_groups']} group"
            f"{'' if u['param_groups'] == 1 else 's'}, {u['params']} "
            'tensors)' for u in updates
        ]
        lines.append(f"| {record['preset']} | {_config(record)} | " +
                     ' | '.join(cells) + f' | [{osp.basename(name)}]({name}) |')
    if not lines:
        return ''
    return '\n'.join([
        '', 'One parameter update (`OptimWrapper.step`: gradient clipping '
        'and the optimizer), aten ops:', '',
        '| preset | config | CLCR | late fusion | record |',
        '|---|---|---|---|---|'
    ] + lines) + '\n'


def _config(record: Dict[str, Any]) -> str:
    """The config cell: the config, and how its IntraCED levels ran where
    the record set it."""
    return f"`{record['config']}`" + levels_note(record)


def levels_note(record: Dict[str, Any]) -> str:
    """``', IntraCED levels batched'`` (or ``one by one``) where the record
    set it (``--cfg-options model.batch_levels=...``), else ``''``."""
    mode = (record.get('cfg_options') or {}).get('model.batch_levels')
    if mode is None:
        return ''
    return ', IntraCED levels ' + ('batched' if mode else 'one by one')


def replace_section(text: str, table: str, doc: str, begin: str = BEGIN,
                    end: str = END) -> str:
    """Put ``table`` between the markers ``begin`` and ``end`` of ``text``.

    Raises:
        ValueError: The markers are missing or out of order (names ``doc``).
    """
    first, last = text.find(begin), text.find(end)
    if first < 0 or last < first:
        raise ValueError(f'{doc} has no {begin} ... {end} section to fill')
    return text[:first + len(begin)] + '\n' + table + text[last:]


def load(paths: Sequence[str]) -> List[Dict[str, Any]]:
    records = []
    for path in paths:
        with open(path) as f:
            records.append(json.load(f))
    return records


def run_report(argv: Optional[Sequence[str]], render_table: Callable[
        [Sequence[Dict[str, Any]], Sequence[str]], str], description: str,
               begin: str, end: str) -> str:
    """The command line of a report script: render the records given with
    ``render_table`` and print the table, or put it between ``begin`` and
    ``end`` of ``--doc``.

    Returns:
        str: The table.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('records', nargs='+', help='model_step.py records')
    parser.add_argument(
        '--doc', help='document to update in place (default: print)')
    parser.add_argument(
        '--relative-to',
        default='docs',
        help='links to the records are relative to this folder '
        '(default docs, where performance.md lies)')
    args = parser.parse_args(argv)
    names = [osp.relpath(p, args.relative_to) for p in args.records]
    table = render_table(load(args.records), names)
    if args.doc:
        with open(args.doc) as f:
            text = replace_section(f.read(), table, args.doc, begin, end)
        with open(args.doc, 'w') as f:
            f.write(text)
    else:
        print(table, end='')
    return table


def main(argv: Optional[Sequence[str]] = None) -> str:
    return run_report(argv, render, __doc__.splitlines()[0], BEGIN, END)


if __name__ == '__main__':
    main()
