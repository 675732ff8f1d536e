"""Host dispatches and kernels of one training step, eager and compiled.

``model_step.py`` counts the aten ops of a step with a ``TorchDispatchMode``,
which sees eager code only: TorchDynamo does not trace while a dispatch mode
is active, so a model built with ``compile_fusion`` runs eagerly under it.
This script counts from ``torch.profiler`` instead, for every fusion
variant, eagerly and with ``compile_fusion=dict(backend=...)`` (IntraCED,
InterCAD, the head and the regularisers compiled with ``fullgraph=True``;
the encoders eager, as in a config that sets it):

* ``aten_ops``: top-level aten ops, i.e. every aten call the host makes
  that no other aten op made (Python, the autograd engine, a compiled
  graph's wrapper calling its extern kernels);
* ``compiled_kernels``: Inductor's generated CPU kernels called (each
  fused loop nest of a compiled graph);
* ``host_dispatches``: the two together, what the host launches per step;
* ``device_kernels`` (CUDA only): the kernels that ran on the GPU.

The profiler's top-level count leaves out the ops a composite op makes
itself (``linear`` counts once, not as ``t`` + ``addmm``), so its eager
figures are lower than ``model_step.py``'s; compare ratios within one tool.
Not counted: the data preprocessor and the optimizer (as ``model_step.py``).

Example::

    python tools/benchmark/step_dispatches.py --preset synthetic \\
        --threads 1 --out docs/performance/step_dispatches_synthetic.json
    python tools/benchmark/step_dispatches.py --preset ucf101 --device cuda
    python tools/benchmark/step_dispatches.py --doc docs/performance.md \\
        --records docs/performance/step_dispatches_*.json
"""
import argparse
import os.path as osp
import sys
import time
from collections import Counter
from typing import Any, Callable, Dict, Optional, Sequence

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_utils as bu  # noqa: E402
import model_step as ms  # noqa: E402
from op_count_report import load, replace_section  # noqa: E402

BEGIN = '<!-- step-dispatches:begin -->'
END = '<!-- step-dispatches:end -->'
MODES = ('eager', 'compiled')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ms.add_model_args(parser)
    parser.set_defaults(variants=['clcr', 'late'])
    parser.add_argument(
        '--modes',
        nargs='+',
        default=list(MODES),
        choices=MODES,
        help='eager, and/or compile_fusion (default both)')
    parser.add_argument(
        '--compile-backend',
        default='inductor',
        help="torch.compile backend of the compiled mode (default inductor; "
        "'eager' and 'aot_eager' need no C++ compiler)")
    parser.add_argument('--out', help='write the record as JSON here')
    parser.add_argument(
        '--doc',
        help='instead of measuring, write the table of the --records into '
        f'this document, between {BEGIN} and {END}')
    parser.add_argument(
        '--records', nargs='+', default=[], help='records for --doc')
    return parser.parse_args(argv)


def _top_level_aten(event) -> bool:
    """An aten op that no other aten op called."""
    if not event.name.startswith('aten::'):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith('aten::'):
            return False
        parent = parent.cpu_parent
    return True


def count_step(step: Callable[[], None], device: torch.device,
               warmup: int = 2) -> Dict[str, Any]:
    """Profile one call of ``step`` after ``warmup`` calls (compilation and
    autotuning happen there; a recompile in the counted call is reported).

    Returns:
        dict: ``aten_ops``, ``compiled_kernels``, ``host_dispatches``,
        ``device_kernels`` (None off CUDA), ``compiled_regions`` (compiled
        graphs entered), ``recompiled`` and ``top`` (most frequent aten ops).
    """
    from torch._inductor import metrics
    from torch.profiler import ProfilerActivity, profile
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    bu.synchronize(device)
    warmup_s = time.perf_counter() - start
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    generated = metrics.generated_kernel_count
    with profile(activities=activities) as prof:
        step()
        bu.synchronize(device)
    events = prof.events()
    aten = Counter(e.name for e in events if _top_level_aten(e))
    kernels = sum('cpp_fused' in e.name for e in events)
    device_kernels = None
    if device.type == 'cuda':
        device_kernels = sum(
            e.device_type == torch.autograd.DeviceType.CUDA for e in events)
    return dict(
        aten_ops=sum(aten.values()),
        compiled_kernels=kernels,
        host_dispatches=sum(aten.values()) + kernels,
        device_kernels=device_kernels,
        compiled_regions=sum(
            e.name.startswith('Torch-Compiled Region') for e in events),
        recompiled=metrics.generated_kernel_count != generated,
        warmup_s=round(warmup_s, 1),
        top=dict(aten.most_common(12)))


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    """Count every variant in every mode; returns the JSON record."""
    import clcr_mm  # noqa: F401  (registers modules, patches mmaction2)
    device = bu.setup_torch(args.device, args.threads)
    # name Inductor's CPU kernels in the profile (they run outside aten)
    torch._inductor.config.cpp.enable_kernel_profile = True
    setup = ms.prepare(args)
    batch = ms.move_batch(
        ms.make_batch(setup['shapes'], setup['batch_size'],
                      setup['num_classes'], setup['regression'], args.seed),
        device)
    results: Dict[str, Dict[str, Any]] = {}
    for variant in args.variants:
        for mode in args.modes:
            cfg = bu.fusion_variant(setup['model_cfg'], variant)
            if mode == 'compiled':
                cfg['compile_fusion'] = dict(backend=args.compile_backend)
            torch.manual_seed(args.seed)
            model = bu.build_model(cfg, device).train()

            data = model.data_preprocessor(batch, True)

            def step(model=model, data=data) -> None:
                loss, _ = model.parse_losses(model(**data, mode='loss'))
                loss.backward()
                model.zero_grad(set_to_none=True)

            results.setdefault(variant, {})[mode] = count_step(step, device)
            torch._dynamo.reset()
    record = dict(
        tool='tools/benchmark/step_dispatches.py',
        command=bu.command_line(),
        preset=args.preset,
        config=setup['config'],
        cfg_options=dict(args.cfg_options),
        batch_size=setup['batch_size'],
        shapes={m: list(s) for m, s in setup['shapes'].items()},
        compile_backend=args.compile_backend,
        environment=bu.environment(device),
        results=results)
    if 'late' in results:
        base = results['late'].get('eager')
        record['over_late_eager'] = {
            f'{v}/{mode}': counts['host_dispatches'] / base['host_dispatches']
            for v, modes in results.items() for mode, counts in modes.items()
        } if base else {}
    return record


def render(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> str:
    """Markdown table: one row per record, variant and mode."""
    lines = [
        '| preset | variant | mode | top-level aten ops | compiled kernels '
        '| host dispatches | / late fusion, eager | GPU kernels | record |',
        '|---|---|---|---:|---:|---:|---:|---:|---|'
    ]
    for record, name in zip(records, names):
        ratios = record.get('over_late_eager', {})
        for variant, modes in record['results'].items():
            for mode, c in modes.items():
                ratio = ratios.get(f'{variant}/{mode}')
                mode_cell = mode if mode == 'eager' else \
                    f"compile_fusion ({record['compile_backend']})"
                lines.append(
                    f"| {record['preset']} | {variant} | {mode_cell} | "
                    f"{c['aten_ops']:,} | {c['compiled_kernels']:,} | "
                    f"{c['host_dispatches']:,} | "
                    f"{'' if ratio is None else f'{ratio:.2f}×'} | "
                    f"{'' if c['device_kernels'] is None else c['device_kernels']} "
                    f"| [{osp.basename(name)}]({name}) |")
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.doc:
        if not args.records:
            raise SystemExit('--doc needs --records')
        names = [osp.relpath(p, osp.dirname(args.doc)) for p in args.records]
        table = render(load(args.records), names)
        with open(args.doc) as f:
            text = replace_section(f.read(), table, args.doc, BEGIN, END)
        with open(args.doc, 'w') as f:
            f.write(text)
        return dict(table=table)
    record = measure(args)
    for variant, modes in record['results'].items():
        for mode, c in modes.items():
            print(f"{variant:6s} {mode:8s} aten {c['aten_ops']:5d}  "
                  f"compiled kernels {c['compiled_kernels']:4d}  "
                  f"host dispatches {c['host_dispatches']:5d}  "
                  f"GPU kernels {c['device_kernels']}")
    if args.out:
        bu.write_json(args.out, record)
    return record


if __name__ == '__main__':
    main()
