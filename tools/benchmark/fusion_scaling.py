"""How IntraCED and InterCAD scale with the number of tokens and the budget.

Each point times one training step of the module alone (forward + backward
of a scalar loss on its outputs, tokens that require grad, training mode so
dropout and the soft budget gate are on) and records its peak memory.
Every sweep interleaves its candidates (rounds ABCABC..., rotated) and
reports medians.

Sweeps (``--sweeps``):

* ``tokens``: N tokens per modality and level grows at a fixed budget ratio
  rho (k = ceil(rho N)); next to the budgeted module run the same module
  without exchange (factorisation only: what the exchange adds is the
  difference) and without a budget (every shared token is a key: full
  N x N cross-attention). The exchange time is fitted against the number
  of query-key pairs (M N x (M-1) k): linear in the budget, and the
  no-budget module pays 1/rho times more attention.
* ``ratio``: N fixed, rho grows: exchange time against k is a line
  (log-log slope ~1).
* ``fixed_k``: k fixed while N grows (rho = k / N): with a constant budget
  the exchange grows linearly in N (log-log slope ~1), where full attention
  grows as N^2 (slope ~2).
* ``intercad``: InterCAD alone, N tokens per modality and level: K anchors
  attend to the tokens, so time is linear in N (slope ~1).

``--reference-rev REV`` adds the IntraCED / InterCAD of a git revision as a
further candidate of each point (``...@REV``): before/after comparisons of
an optimisation, interleaved in one process.

Example::

    python tools/benchmark/fusion_scaling.py \\
        --out work_dirs/bench/fusion_scaling.json
"""
import argparse
import math
import os.path as osp
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_utils as bu  # noqa: E402
from clcr_mm.models.utils import LEVELS  # noqa: E402

SWEEPS = ('tokens', 'ratio', 'fixed_k', 'intercad')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Step time and peak memory of IntraCED / InterCAD as '
        'tokens and token budget grow.')
    parser.add_argument(
        '--sweeps',
        nargs='+',
        default=list(SWEEPS),
        choices=SWEEPS,
        help='which sweeps to run (default: all)')
    parser.add_argument(
        '--tokens',
        nargs='+',
        type=int,
        default=[64, 128, 256, 512, 1024, 2048, 4096],
        help='tokens per modality (and level, for InterCAD) in the tokens, '
        'fixed_k and intercad sweeps (default 64 ... 4096)')
    parser.add_argument(
        '--ratio',
        type=float,
        default=0.25,
        help='budget ratio rho of the tokens sweep (default 0.25)')
    parser.add_argument(
        '--ratios',
        nargs='+',
        type=float,
        default=[0.05, 0.1, 0.25, 0.5, 0.75, 1.0],
        help='budget ratios of the ratio sweep (1.0 = no budget; default '
        '0.05 ... 1.0)')
    parser.add_argument(
        '--ratio-tokens',
        type=int,
        default=2048,
        help='tokens per modality in the ratio sweep (default 2048)')
    parser.add_argument(
        '--fixed-k',
        type=int,
        default=64,
        help='budget tokens k of the fixed_k sweep (default 64)')
    parser.add_argument(
        '--batch-size', type=int, default=1, help='batch size (default 1)')
    parser.add_argument(
        '--modalities',
        type=int,
        default=2,
        help='number of modalities M (default 2)')
    parser.add_argument(
        '--embed-dims', type=int, default=256, help='width d (default 256)')
    parser.add_argument(
        '--num-heads', type=int, default=4, help='heads (default 4)')
    parser.add_argument(
        '--dropout',
        type=float,
        default=0.1,
        help='IntraCED dropout, attention included (default 0.1, the '
        "module's default)")
    parser.add_argument(
        '--num-anchors', type=int, default=8, help='InterCAD anchors K')
    parser.add_argument(
        '--repeats', type=int, default=3, help='timed rounds (default 3)')
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed steps (default 1)')
    parser.add_argument(
        '--no-full',
        action='store_true',
        help='tokens/fixed_k sweeps: skip the no-budget (full attention) '
        'reference, the slowest candidate')
    parser.add_argument(
        '--full-max-tokens',
        type=int,
        default=2048,
        help='run the no-budget reference only up to this N (default 2048)')
    parser.add_argument(
        '--reference-rev',
        help='also time IntraCED/InterCAD of this git revision (before/after)')
    parser.add_argument(
        '--clock',
        choices=('wall', 'cpu'),
        default='wall',
        help="'wall' (default) or 'cpu': process CPU time, robust to other "
        'jobs on a shared machine when --threads 1 (meaningless on CUDA)')
    parser.add_argument(
        '--threads',
        type=int,
        default=0,
        help='torch CPU threads (default 0 = all cores)')
    parser.add_argument(
        '--device', default='cpu', help="'cpu' or 'cuda[:N]' (default cpu)")
    parser.add_argument(
        '--amp', action='store_true', help='measure under torch.autocast')
    parser.add_argument(
        '--refit',
        metavar='JSON',
        help='measure nothing: recompute the fits of the sweeps stored in '
        'this JSON (written by this script) and print them (and write the '
        'updated record to --out)')
    parser.add_argument('--seed', type=int, default=0, help='seed')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


class Point:
    """One module on one input size: a step closure and its memory peak."""

    def __init__(self, module: torch.nn.Module,
                 make_inputs: Callable[[], tuple], device: torch.device,
                 amp: bool) -> None:
        self.module = module.to(device).train()
        self.inputs = make_inputs()
        self.device = device
        self.amp = amp

    def step(self) -> None:
        """Forward + backward of a scalar that touches every output."""
        self.module.zero_grad(set_to_none=True)
        for t in _leaves(self.inputs):
            t.grad = None
        with bu.autocast(self.device, self.amp):
            out = self.module(*self.inputs)
            loss = _scalar(out)
        loss.backward()

    def peak_memory(self) -> Dict[str, Optional[float]]:
        """Peak memory of one step above what was allocated before it."""
        bu.synchronize(self.device)
        resettable = bu.reset_peak_rss()
        before = bu.current_rss_mb()
        cuda_before = None
        if self.device.type == 'cuda':
            bu.reset_cuda_peak(self.device)
            cuda_before = torch.cuda.memory_allocated(self.device) / 2**20
        self.step()
        bu.synchronize(self.device)
        peak = bu.peak_rss_mb()
        cuda_peak = bu.cuda_peak_mb(self.device)
        return dict(
            rss_increase_mb=(peak - before) if resettable and before
            else None,
            cuda_increase_mb=(cuda_peak - cuda_before)
            if cuda_peak is not None else None)


def _leaves(inputs) -> List[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs] if inputs.requires_grad else []
    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    if isinstance(inputs, (list, tuple)):
        return [t for x in inputs for t in _leaves(x)]
    return []


def _scalar(out) -> torch.Tensor:
    """Sum of the means of every floating tensor in a nested output, so the
    backward reaches every branch."""
    if isinstance(out, torch.Tensor):
        return out.float().mean() if out.is_floating_point() and \
            out.requires_grad else out.new_zeros((), dtype=torch.float)
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        terms = [_scalar(x) for x in out]
        terms = [t for t in terms if t is not None]
        return sum(terms) if terms else None
    return None


def make_tokens(sizes: Dict[str, int], batch: int, dims: int,
                device: torch.device, gen: torch.Generator):
    return {
        m: torch.randn(batch, n, dims, generator=gen).to(device)
        .requires_grad_()
        for m, n in sizes.items()
    }


def budget_cfg(ratio: float) -> Optional[dict]:
    """TokenBudget arguments for an exact ratio; None (no budget: every
    token is a key) for ratio 1. The allowed range is widened around the
    ratio, since the default (0.1, 1.0) excludes its end points."""
    if ratio >= 1.0:
        return None
    low = min(0.1, ratio / 2)
    return dict(init_ratio=ratio, ratio_range=(low, 1.0))


def run_points(points: Dict[str, Point], args: argparse.Namespace,
               device: torch.device) -> Dict[str, Dict[str, Any]]:
    """Time the points interleaved; ``median_ms`` is on ``--clock``."""
    cpu: Dict[str, List[float]] = {}
    wall = bu.interleaved_times({k: p.step for k, p in points.items()},
                                device, args.repeats, args.warmup,
                                cpu_times=cpu)
    times = cpu if args.clock == 'cpu' else wall
    out = {}
    for key, point in points.items():
        out[key] = dict(**bu.summarize(times[key]), **point.peak_memory())
    return out


def intra_factory(args: argparse.Namespace, classes: Dict[str, type]):
    names = [f'm{i}' for i in range(args.modalities)]

    def build(cls_name: str, ratio: Optional[float] = None,
              exchange: bool = True, full: bool = False):
        cls = classes[cls_name]
        token_budget = None if full else budget_cfg(ratio)
        return cls(
            names,
            embed_dims=args.embed_dims,
            num_heads=args.num_heads,
            exchange=exchange,
            token_budget=token_budget,
            dropout=args.dropout)

    return names, build


def intra_sweep(kind: str, args: argparse.Namespace, device: torch.device,
                impls: Dict[str, Dict[str, type]]) -> Dict[str, Any]:
    """The tokens, ratio or fixed_k sweep of IntraCED."""
    gen = torch.Generator().manual_seed(args.seed)
    if kind == 'ratio':
        grid = [(args.ratio_tokens, r) for r in args.ratios]
    elif kind == 'tokens':
        grid = [(n, args.ratio) for n in args.tokens]
    else:  # fixed_k
        grid = [(n, args.fixed_k / n) for n in args.tokens
                if n >= args.fixed_k]
    rows = []
    for n, ratio in grid:
        k = n if ratio >= 1 else max(1, min(n, math.ceil(ratio * n)))
        sizes = {f'm{i}': n for i in range(args.modalities)}
        tokens = make_tokens(sizes, args.batch_size, args.embed_dims, device,
                             gen)
        points: Dict[str, Point] = {}
        for tag, classes in impls.items():
            _, build = intra_factory(args, classes)
            points[f'budget{tag}'] = Point(
                build('IntraCED', ratio), lambda: (tokens, ), device,
                args.amp)
            if kind != 'ratio' and not args.no_full and \
                    n <= args.full_max_tokens:
                points[f'full{tag}'] = Point(
                    build('IntraCED', full=True), lambda: (tokens, ), device,
                    args.amp)
        _, build = intra_factory(args, impls[''])
        points['no_exchange'] = Point(
            build('IntraCED', ratio, exchange=False), lambda: (tokens, ),
            device, args.amp)
        measured = run_points(points, args, device)
        base = measured['no_exchange']['median_ms']
        m = args.modalities
        row = dict(
            tokens=n,
            ratio=ratio,
            k=k,
            pairs=m * n * (m - 1) * k,
            full_pairs=m * n * (m - 1) * n)
        for key, stats in measured.items():
            row[f'{key}_ms'] = stats['median_ms']
            row[f'{key}_mad_ms'] = stats['mad_ms']
            row[f'{key}_rss_mb'] = stats['rss_increase_mb']
            row[f'{key}_cuda_mb'] = stats['cuda_increase_mb']
            if key != 'no_exchange':
                row[f'{key}_exchange_ms'] = stats['median_ms'] - base
        rows.append(row)
        print(f'[{kind}] N={n} rho={ratio:.4g} k={k}: ' + '  '.join(
            f'{key}={stats["median_ms"]:.1f}ms'
            for key, stats in measured.items()), flush=True)
    return dict(rows=rows, fits=intra_fits(kind, rows, impls))


def intra_fits(kind: str, rows: List[dict],
               impls: Dict[str, Dict[str, type]]) -> Dict[str, Any]:
    """Slopes that say whether the exchange follows the budget."""
    fits: Dict[str, Any] = {}
    for tag in impls:
        key = f'budget{tag}'
        total = [r[f'{key}_ms'] for r in rows]
        exch = [max(r[f'{key}_exchange_ms'], 1e-6) for r in rows]
        if kind == 'ratio':
            ks = [r['k'] for r in rows]
            a, b, r2 = bu.linear_fit(ks, exch)
            fits[key] = dict(
                exchange_ms_per_budget_token=b,
                exchange_intercept_ms=a,
                r2=r2,
                loglog_slope_exchange_vs_k=bu.loglog_slope(ks, exch),
                loglog_slope_total_vs_k=bu.loglog_slope(ks, total))
            continue
        ns = [r['tokens'] for r in rows]
        pairs = [r['pairs'] for r in rows]
        # exchange = a * (query tokens) + b * (query-key pairs): the first
        # term is the projections and feed-forward, the second attention.
        queries = [r['tokens'] * len_mod(r) for r in rows]
        fits[key] = dict(
            loglog_slope_total_vs_n=bu.loglog_slope(ns, total),
            loglog_slope_exchange_vs_n=bu.loglog_slope(ns, exch))
        if kind == 'fixed_k':
            # pairs grow with N here (k fixed): one line in N says it all.
            a, b, r2 = bu.linear_fit(ns, exch)
            fits[key].update(
                exchange_ms_per_token=b, exchange_intercept_ms=a, r2=r2)
        else:
            a, b, r2 = bu.two_term_fit(queries, pairs, exch)
            fits[key].update(
                exchange_us_per_query_token=a * 1e3,
                exchange_ns_per_pair=b * 1e6,
                r2_exchange_vs_tokens_and_pairs=r2)
        full_key = f'full{tag}'
        full_rows = [r for r in rows if f'{full_key}_ms' in r]
        if len(full_rows) >= 2:
            fns = [r['tokens'] for r in full_rows]
            full_exch = [max(r[f'{full_key}_exchange_ms'], 1e-6)
                         for r in full_rows]
            budget_exch = [max(r[f'{key}_exchange_ms'], 1e-6)
                           for r in full_rows]
            fa, fb, fr2 = bu.two_term_fit(
                [r['tokens'] * len_mod(r) for r in full_rows],
                [r['full_pairs'] for r in full_rows], full_exch)
            fits[full_key] = dict(
                loglog_slope_total_vs_n=bu.loglog_slope(
                    fns, [r[f'{full_key}_ms'] for r in full_rows]),
                loglog_slope_exchange_vs_n=bu.loglog_slope(fns, full_exch),
                exchange_us_per_query_token=fa * 1e3,
                exchange_ns_per_pair=fb * 1e6,
                r2_exchange_vs_tokens_and_pairs=fr2,
                max_n=fns[-1],
                exchange_full_over_budget_at_max_n=full_exch[-1] /
                budget_exch[-1])
    return fits


def len_mod(row: dict) -> int:
    """Number of modalities M of a row (pairs = M N (M - 1) k)."""
    n, k, pairs = row['tokens'], row['k'], row['pairs']
    # M (M - 1) = pairs / (N k); solve for the positive root.
    mm = pairs / (n * k)
    return int(round((1 + math.sqrt(1 + 4 * mm)) / 2))


def intercad_sweep(args: argparse.Namespace, device: torch.device,
                   impls: Dict[str, Dict[str, type]]) -> Dict[str, Any]:
    """InterCAD alone as tokens per modality and level grow."""
    gen = torch.Generator().manual_seed(args.seed)
    names = [f'm{i}' for i in range(args.modalities)]
    rows = []
    for n in args.tokens:
        sizes = {m: n for m in names}
        shared = {
            level: make_tokens(sizes, args.batch_size, args.embed_dims,
                               device, gen)
            for level in LEVELS
        }
        private = {
            level: make_tokens(sizes, args.batch_size, args.embed_dims,
                               device, gen)
            for level in LEVELS
        }
        points = {}
        for tag, classes in impls.items():
            module = classes['InterCAD'](
                names,
                embed_dims=args.embed_dims,
                out_channels=args.embed_dims,
                num_anchors=args.num_anchors,
                num_heads=args.num_heads)
            points[f'intercad{tag}'] = Point(module,
                                             lambda: (shared, private),
                                             device, args.amp)
        measured = run_points(points, args, device)
        row = dict(tokens=n)
        for key, stats in measured.items():
            row[f'{key}_ms'] = stats['median_ms']
            row[f'{key}_mad_ms'] = stats['mad_ms']
            row[f'{key}_rss_mb'] = stats['rss_increase_mb']
            row[f'{key}_cuda_mb'] = stats['cuda_increase_mb']
        rows.append(row)
        print(f'[intercad] N={n}: ' + '  '.join(
            f'{key}={stats["median_ms"]:.1f}ms'
            for key, stats in measured.items()), flush=True)
    ns = [r['tokens'] for r in rows]
    fits = {
        f'intercad{tag}': dict(
            loglog_slope_total_vs_n=bu.loglog_slope(
                ns, [r[f'intercad{tag}_ms'] for r in rows]))
        for tag in impls
    }
    return dict(rows=rows, fits=fits)


def print_sweep(name: str, sweep: Dict[str, Any]) -> None:
    rows = sweep['rows']
    if not rows:
        return
    # The full record is in the JSON; the table keeps times and memory.
    cuda = any(r.get(k) is not None for r in rows for k in r
               if k.endswith('_cuda_mb'))
    skip = ('_mad_ms', 'pairs') + (() if cuda else ('_cuda_mb', ))
    cols = [c for c in rows[0] if not c.endswith(skip)]
    print(f'\n== {name} ==')
    print(bu.format_table(rows, cols))
    for key, fit in sweep['fits'].items():
        print(f'fit {key}: ' + '  '.join(
            f'{k}={v:.4g}' for k, v in fit.items()))


def refit(path: str) -> Dict[str, Any]:
    """Recompute the fits of a stored record from its rows."""
    import json
    with open(path) as f:
        record = json.load(f)
    for kind, sweep in record['sweeps'].items():
        rows = sweep['rows']
        if kind == 'intercad':
            tags = [k[len('intercad'):-len('_ms')] for k in rows[0]
                    if k.startswith('intercad') and k.endswith('_ms')
                    and not k.endswith(('_mad_ms', '_exchange_ms'))]
            ns = [r['tokens'] for r in rows]
            sweep['fits'] = {
                f'intercad{t}': dict(
                    loglog_slope_total_vs_n=bu.loglog_slope(
                        ns, [r[f'intercad{t}_ms'] for r in rows]))
                for t in tags
            }
        else:
            tags = [k[len('budget'):-len('_ms')] for k in rows[0]
                    if k.startswith('budget') and k.endswith('_ms')
                    and not k.endswith(('_mad_ms', '_exchange_ms'))]
            sweep['fits'] = intra_fits(kind, rows, {t: None for t in tags})
    record['refit_command'] = ('python tools/benchmark/fusion_scaling.py '
                               f'--refit {path}')
    return record


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.refit:
        record = refit(args.refit)
        for kind, sweep in record['sweeps'].items():
            print_sweep(kind, sweep)
        bu.write_json(args.out, record)
        return record
    import clcr_mm  # noqa: F401
    from clcr_mm.models import InterCAD, IntraCED
    device = bu.setup_torch(args.device, args.threads)
    torch.manual_seed(args.seed)
    impls = {'': dict(IntraCED=IntraCED, InterCAD=InterCAD)}
    if args.reference_rev:
        impls['@' + args.reference_rev] = bu.load_reference_classes(
            args.reference_rev)
    record: Dict[str, Any] = dict(
        benchmark='fusion_scaling',
        command='python tools/benchmark/fusion_scaling.py ' + ' '.join(argv),
        settings=dict(
            batch_size=args.batch_size,
            modalities=args.modalities,
            embed_dims=args.embed_dims,
            num_heads=args.num_heads,
            dropout=args.dropout,
            num_anchors=args.num_anchors,
            repeats=args.repeats,
            warmup=args.warmup,
            amp=args.amp,
            clock=args.clock,
            reference_rev=args.reference_rev,
            reference_commit=bu.resolve_rev(args.reference_rev)
            if args.reference_rev else None),
        environment=bu.environment(device),
        sweeps={})
    for kind in args.sweeps:
        if kind == 'intercad':
            record['sweeps'][kind] = intercad_sweep(args, device, impls)
        else:
            record['sweeps'][kind] = intra_sweep(kind, args, device, impls)
    for kind, sweep in record['sweeps'].items():
        print_sweep(kind, sweep)
    bu.write_json(args.out, record)
    return record


if __name__ == '__main__':
    main()
