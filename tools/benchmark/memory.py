"""Peak memory of a training step: CLCR vs late vs concatenation fusion.

Each variant runs in its own fresh Python process (``--isolation process``,
the default), so its peak resident set size (VmHWM of /proc/self/status,
``getrusage`` elsewhere) is not mixed up with the other models' weights,
optimizer states or allocator caches. Reported per variant:

* ``rss_after_build_mb``: RSS with the model and optimizer built (weights,
  plus torch / mmaction code);
* ``peak_rss_mb``: peak RSS over ``--steps`` training steps (lifetime
  high-water mark of that process);
* ``step_peak_increase_mb``: peak RSS during the last step above the RSS
  right before it (activations, gradients, optimizer work; the peak counter
  is reset before the step where Linux allows);
* ``cuda_max_allocated_mb``: ``torch.cuda.max_memory_allocated`` over the
  last step, on CUDA.

``--isolation reset`` measures every variant in this process instead (the
peak counter is reset before each step): faster, but the absolute RSS then
includes every model built.

Model, inputs and device options are those of ``model_step.py``.

Example::

    python tools/benchmark/memory.py --preset synthetic \\
        --out work_dirs/bench/memory_synthetic.json
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_utils as bu  # noqa: E402
import model_step as ms  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Peak memory (RSS, CUDA) of a training step of CLCR vs '
        'late and concatenation fusion.')
    ms.add_model_args(parser)
    parser.add_argument(
        '--steps',
        type=int,
        default=2,
        help='training steps per variant; the last is measured (default 2)')
    parser.add_argument(
        '--isolation',
        choices=('process', 'reset'),
        default='process',
        help="'process': one fresh process per variant (default); 'reset': "
        'all in this process, peak counter reset per step')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument(
        '--child-out', help=argparse.SUPPRESS)  # used by --isolation process
    return parser.parse_args(argv)


def measure_variant(args: argparse.Namespace, variant: str,
                    setup: Dict[str, Any]) -> Dict[str, Any]:
    """Build one variant and measure its steps, in this process."""
    import torch
    device = bu.setup_torch(args.device, args.threads)
    torch.manual_seed(args.seed)
    batch = ms.move_batch(
        ms.make_batch(setup['shapes'], setup['batch_size'],
                      setup['num_classes'], setup['regression'], args.seed),
        device)
    bench = ms.Bench(variant, setup['model_cfg'], setup['cfg'], device,
                     args.amp)
    bu.synchronize(device)
    after_build = bu.current_rss_mb()
    for _ in range(max(args.steps - 1, 0)):
        bench.train_step(batch)
    # Lifetime high-water mark so far; the last step resets the counter.
    peak_before = bu.peak_rss_mb()
    step = ms.peak_step_memory(bench, batch)
    return dict(
        params=bu.count_parameters(bench.model),
        rss_after_build_mb=after_build,
        peak_rss_mb=max(peak_before, step['peak_rss_mb'])
        if args.isolation == 'process' else step['peak_rss_mb'],
        step_peak_increase_mb=step['step_rss_increase_mb'],
        peak_is_lifetime=step['peak_rss_is_lifetime'],
        cuda_max_allocated_mb=step['cuda_max_allocated_mb'])


def run_child(argv: Sequence[str], variant: str) -> Dict[str, Any]:
    """Measure one variant in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'child.json')
        # Strip our own --variants / --out; the child gets one variant.
        child_argv = _strip(argv, ('--variants', '--out', '--isolation'))
        cmd = [sys.executable, osp.abspath(__file__)] + child_argv + [
            '--variants', variant, '--isolation', 'process', '--child-out',
            out
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not osp.isfile(out):
            raise RuntimeError(
                f'memory measurement of {variant!r} failed (exit '
                f'{proc.returncode}):\n{proc.stderr[-3000:]}')
        with open(out) as f:
            return json.load(f)


def _strip(argv: Sequence[str], options: Sequence[str]) -> list:
    """Remove options (and their values) from an argument list."""
    out, skip = [], False
    for arg in argv:
        if skip:
            if arg.startswith('--'):
                skip = False
            else:
                continue
        name = arg.split('=', 1)[0]
        if name in options:
            skip = '=' not in arg
            continue
        out.append(arg)
    return out


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import clcr_mm  # noqa: F401
    import torch
    setup = ms.prepare(args)
    if args.child_out:
        result = measure_variant(args, args.variants[0], setup)
        bu.write_json(args.child_out, result)
        return result
    results = {}
    for variant in args.variants:
        if args.isolation == 'process':
            results[variant] = run_child(argv, variant)
        else:
            results[variant] = measure_variant(args, variant, setup)
    device = torch.device(args.device)
    record = dict(
        benchmark='memory',
        command='python tools/benchmark/memory.py ' + ' '.join(argv),
        preset=args.preset,
        config=setup['config'],
        shapes={m: list(s) for m, s in setup['shapes'].items()},
        batch_size=setup['batch_size'],
        amp=args.amp,
        isolation=args.isolation,
        steps=args.steps,
        environment=bu.environment(device),
        results=results)
    if 'clcr' in results and 'late' in results:
        record['clcr_over_late_peak_rss'] = (
            results['clcr']['peak_rss_mb'] / results['late']['peak_rss_mb'])
        inc_c = results['clcr']['step_peak_increase_mb']
        inc_l = results['late']['step_peak_increase_mb']
        if inc_c is not None and inc_l is not None:
            record['clcr_minus_late_step_increase_mb'] = inc_c - inc_l
    rows = [dict(variant=v, params_M=r['params'] / 1e6, **{
        k: r[k]
        for k in ('rss_after_build_mb', 'peak_rss_mb',
                  'step_peak_increase_mb', 'cuda_max_allocated_mb')
    }) for v, r in results.items()]
    print(f"memory  preset={args.preset}  config={setup['config']}  batch="
          f"{setup['batch_size']}  shapes={record['shapes']}  device="
          f'{args.device}  isolation={args.isolation}')
    print(bu.format_table(rows, list(rows[0])))
    bu.write_json(args.out, record)
    return record


if __name__ == '__main__':
    main()
