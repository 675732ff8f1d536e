"""Run configs over seeds, test the checkpoint selected on validation, and
write mean ± std of every test metric, as MMSA reports MOSI / MOSEI.

    python tools/analysis/seed_aggregate.py CONFIG [CONFIG ...] \\
        [--seeds 1111 1112 1113 1114 1115] [--root work_dirs/seeds] \\
        [--out-dir work_dirs/seeds] [--epochs E] [--workers N] \\
        [--train-args KEY=VALUE ...]

For every (config, seed), in ``ROOT/<config name>/seed<S>``:

1. ``tools/train.py CONFIG --work-dir ... --cfg-options randomness.seed=S``
   (mmengine's Runner; resumed from ``last_checkpoint`` when a run was
   interrupted). The config's ``default_hooks.checkpoint.save_best`` selects
   the checkpoint on the validation split (MAE for the MOSI/MOSEI configs).
2. ``tools/test.py CONFIG best_*.pth`` on the test split; its metrics (the
   Runner's ``<timestamp>.json``) go to ``test_result.json``.

A seed whose ``test_result.json`` exists is skipped, so a rerun resumes
where it stopped; a failed seed is recorded in the report (with the log to
read) and the others go on. ``--workers`` runs seeds in parallel processes
(mmengine's ``track_parallel_progress``).

Outputs in ``--out-dir``: ``seeds.csv`` (one row per config and metric:
mean, std, n and the per-seed values), ``seeds.md`` (one row per config,
``mean ± std`` per metric; std is the sample standard deviation over
seeds) and ``seeds.json`` (everything, failures included).
"""
import argparse
import csv
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from mmengine.utils import track_parallel_progress, track_progress

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import ablation_runner as ar  # noqa: E402
from results_tables import mean_std  # noqa: E402
import analysis_utils as au  # noqa: E402

REPO = ar.REPO
MMSA_SEEDS = (1111, 1112, 1113, 1114, 1115)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train over seeds, test the validation-selected '
        'checkpoint, aggregate mean ± std')
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument('--seeds', type=int, nargs='+',
                        default=list(MMSA_SEEDS),
                        help='default: 1111-1115, as MMSA')
    parser.add_argument('--root', default='work_dirs/seeds',
                        help='work dirs go to ROOT/<config name>/seed<S>')
    parser.add_argument('--out-dir', default=None,
                        help='where the tables go (default: --root)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='train_cfg.max_epochs (the cosine schedule is '
                        'shortened to match)')
    parser.add_argument('--workers', type=int, default=1,
                        help='seeds trained in parallel')
    parser.add_argument('--threads', type=int, default=1,
                        help='OMP/MKL threads per training process')
    parser.add_argument(
        '--train-args', nargs='+', default=[], metavar='KEY=VALUE',
        help='--cfg-options for both tools/train.py and tools/test.py '
        '(e.g. data roots, batch size)')
    args = parser.parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        parser.error('--workers and --threads must be >= 1')
    args.out_dir = args.out_dir or args.root
    return args


def _run(cmd: List[str], log_path: str, threads: int) -> int:
    """Run a tool, appending its output to ``log_path``; return the code."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', str(threads))
    env.setdefault('MKL_NUM_THREADS', str(threads))
    with open(log_path, 'a') as log:
        log.write('+ ' + ' '.join(cmd) + '\n')
        log.flush()
        return subprocess.run(cmd, cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode


def read_test_metrics(test_dir: str) -> Dict[str, float]:
    """Metrics of the latest ``tools/test.py`` run in ``test_dir``.

    mmengine's LoggerHook writes them to ``<timestamp>/<timestamp>.json``.
    """
    for path in sorted(glob.glob(osp.join(test_dir, '*', '*.json')),
                       reverse=True):
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        if lines:
            record = json.loads(lines[-1])
            return {
                k: float(v)
                for k, v in record.items()
                if isinstance(v, (int, float)) and k not in ('step', 'time',
                                                             'data_time')
            }
    return {}


def run_seed(task: tuple) -> dict:
    """Train one seed, test its selected checkpoint; never raises.

    Args:
        task (tuple): (config, seed, args).

    Returns:
        dict: ``config``, ``seed``, ``work_dir`` and either ``metrics`` and
        ``checkpoint`` or ``error`` (with the log to read).
    """
    config, seed, args = task
    name = osp.splitext(osp.basename(config))[0]
    work_dir = osp.abspath(osp.join(args.root, name, f'seed{seed}'))
    result = dict(config=config, name=name, seed=seed, work_dir=work_dir)
    saved = osp.join(work_dir, 'test_result.json')
    if osp.exists(saved):
        with open(saved) as f:
            return json.load(f)
    os.makedirs(work_dir, exist_ok=True)
    lock = ar.acquire_lock(work_dir)
    if lock is None:
        return dict(result, error=f'another process holds {work_dir}')
    log = osp.join(work_dir, 'seed_stdout.log')
    try:
        options = [f'randomness.seed={seed}'] + list(args.train_args)
        if args.epochs is not None:
            # the schedules follow train_cfg.max_epochs
            options.append(f'train_cfg.max_epochs={args.epochs}')
        train = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
                 '--work-dir', work_dir]
        if osp.exists(osp.join(work_dir, 'last_checkpoint')):
            train.append('--resume')
        if _run(train + ['--cfg-options'] + options, log, args.threads):
            return dict(result, error=f'training failed; see {log}')
        best = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')))
        if not best:
            return dict(
                result,
                error='no best_*.pth: the config must select a checkpoint '
                'on validation (default_hooks.checkpoint.save_best)')
        test_dir = osp.join(work_dir, 'test')
        test = [sys.executable, osp.join(REPO, 'tools', 'test.py'), config,
                best[-1], '--work-dir', test_dir]
        if args.train_args:
            test += ['--cfg-options'] + list(args.train_args)
        if _run(test, log, args.threads):
            return dict(result, error=f'testing failed; see {log}')
        metrics = read_test_metrics(test_dir)
        if not metrics:
            return dict(result, error=f'no test metrics in {test_dir}')
        result.update(checkpoint=best[-1], metrics=metrics)
        au.write_json(saved, result)
        return result
    finally:
        os.remove(lock)


def aggregate(results: List[dict]) -> Dict[str, Dict[str, dict]]:
    """``{config name: {metric: dict(mean, std, n, values)}}``."""
    table: Dict[str, Dict[str, dict]] = {}
    for r in results:
        if 'metrics' not in r:
            continue
        for metric, value in r['metrics'].items():
            table.setdefault(r['name'], {}).setdefault(metric, {})[
                r['seed']] = value
    out = {}
    for name, metrics in table.items():
        out[name] = {}
        for metric, per_seed in metrics.items():
            values = [per_seed[s] for s in sorted(per_seed)]
            mean, std = mean_std(values)
            out[name][metric] = dict(mean=mean, std=std, n=len(values),
                                     values=per_seed)
    return out


def write_tables(summary: Dict[str, Dict[str, dict]], results: List[dict],
                 out_dir: str) -> str:
    """Write ``seeds.csv``, ``seeds.md`` and ``seeds.json``; return the
    Markdown."""
    os.makedirs(out_dir, exist_ok=True)
    metrics: List[str] = []
    for per_metric in summary.values():
        metrics += [m for m in per_metric if m not in metrics]
    with open(osp.join(out_dir, 'seeds.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['config', 'metric', 'mean', 'std', 'n', 'values'])
        for name, per_metric in summary.items():
            for metric in metrics:
                if metric in per_metric:
                    s = per_metric[metric]
                    writer.writerow([
                        name, metric, f"{s['mean']:.6g}", f"{s['std']:.6g}",
                        s['n'], ' '.join(f'{s["values"][k]:.6g}'
                                         for k in sorted(s['values']))
                    ])
    rows = []
    for name, per_metric in summary.items():
        n = max(s['n'] for s in per_metric.values())
        rows.append([name, str(n)] + [
            f"{per_metric[m]['mean']:.4f} ± {per_metric[m]['std']:.4f}"
            if m in per_metric else '–' for m in metrics
        ])
    failed = [r for r in results if 'error' in r]
    markdown = ('Test split, checkpoint selected on validation; mean ± '
                'sample std over seeds.\n\n' +
                au.markdown_table(['config', 'seeds'] + metrics, rows))
    if failed:
        markdown += '\n\nFailed runs:\n\n' + '\n'.join(
            f"- {r['name']} seed {r['seed']}: {r['error']}" for r in failed)
    with open(osp.join(out_dir, 'seeds.md'), 'w') as f:
        f.write(markdown + '\n')
    au.write_json(osp.join(out_dir, 'seeds.json'),
                  dict(summary=summary, runs=results))
    return markdown


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    for config in args.configs:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
    tasks = [(c, s, args) for s in args.seeds for c in args.configs]
    if args.workers > 1:
        results = track_parallel_progress(run_seed, tasks, args.workers)
    else:
        results = track_progress(run_seed, tasks)
    summary = aggregate(results)
    print('\n' + write_tables(summary, results, args.out_dir))
    return dict(summary=summary, runs=results)


if __name__ == '__main__':
    main()
