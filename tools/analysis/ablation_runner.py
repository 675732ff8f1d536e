"""Train CLCR, its ablations and the baselines over several seeds on one
benchmark; compare their best validation accuracy and their test accuracy
at the checkpoint selected on validation.

    python tools/analysis/ablation_runner.py                     # defaults
    python tools/analysis/ablation_runner.py --epochs 3 --seeds 0 1 \\
        --runs clcr late_fusion concat rgb_only audio_only \\
        --root work_dirs/ablations --out-dir docs/results
    python tools/analysis/ablation_runner.py --collect-only      # table only
    # the cross-level benchmark: 13 runs (CLCR, 4 baselines, 8 ablations)
    python tools/analysis/ablation_runner.py \
        --benchmark clcr_synthetic_crosslevel --seeds 0 1 2 \
        --root work_dirs/crosslevel --out-dir docs/results/crosslevel

Each run is ``python tools/train.py CONFIG --work-dir ROOT/NAME/seedS
--cfg-options train_cfg.max_epochs=E randomness.seed=S ...`` in a
subprocess, one after the other (mmengine's Runner does all the training;
the schedules follow ``train_cfg.max_epochs``, so a cosine still ends at
``eta_min``). A run is skipped when its work dir already holds a finished
result (``runner_result.json`` with the same epochs, or a best checkpoint
and validation at the last epoch); an interrupted run resumes from its last
checkpoint. The best validation metric (default ``acc/top1``) of every run
is read from mmengine's ``vis_data/scalars.json``. Then (unless
``--no-test``) ``python tools/test.py CONFIG BEST --work-dir
ROOT/NAME/seedS/test_best`` evaluates the checkpoint that mmengine's
``save_best`` kept, i.e. the one selected on validation (the earliest best
epoch), on the test split; the test split never selects anything. Finished
runs without a test result get one on the next call.

Outputs in ``--out-dir``: ``ablations.md`` (mean ± std over seeds of the
best validation value and of the test value, the per-seed values and the
validation learning curves, all rendered by ``results_tables.py``),
``ablations.json`` (the records) and ``ablations.png`` (bar chart with the
seeds as dots, and the learning curves).

Run names: ``clcr``, the baselines ``late_fusion``, ``concat``,
``rgb_only``, ``audio_only`` and every ``configs/ablations/*`` file as
``wo_<what>`` (``--benchmark`` sets the config prefix, default
``clcr_synthetic_av``), or ``NAME=CONFIG`` for any other config.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import analysis_utils as au  # noqa: E402
from results_tables import ablation_section, summarise_runs  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINES = ('late_fusion', 'concat', 'rgb_only', 'audio_only')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train CLCR, ablations and baselines over seeds; '
        'compare best validation accuracy')
    parser.add_argument('--benchmark', default='clcr_synthetic_av',
                        help='config prefix under configs/ (default '
                        'clcr_synthetic_av)')
    parser.add_argument(
        '--runs', nargs='+', default=None,
        help='run names in priority order (default: clcr, the baselines, '
        'then every ablation), or NAME=CONFIG')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=None,
                        help='train_cfg.max_epochs (default: the config\'s)')
    parser.add_argument('--train-subset', type=int, default=None,
                        help='train on the first N training samples')
    parser.add_argument(
        '--order', choices=['seed-major', 'run-major'], default='seed-major',
        help='seed-major: every run with the first seed, then the next '
        'seed (best when time may run out); run-major: all seeds of a run '
        'before the next run')
    parser.add_argument('--root', default='work_dirs/ablations',
                        help='work dirs go to ROOT/NAME/seedS')
    parser.add_argument('--out-dir', default='work_dirs/ablations',
                        help='where the table and plot go')
    parser.add_argument('--metric', default='acc/top1')
    parser.add_argument('--threads', type=int, default=1,
                        help='OMP/MKL threads of each training process '
                        '(default 1: on a busy machine more threads thrash)')
    parser.add_argument('--time-budget', type=float, default=None,
                        help='minutes; launch no new run after this')
    parser.add_argument('--collect-only', action='store_true',
                        help='only collect finished runs into the table')
    parser.add_argument('--no-test', action='store_true',
                        help='skip the test of the checkpoint selected on '
                        'validation')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands and exit')
    parser.add_argument(
        '--run-options', nargs='+', action='append', default=[],
        metavar='NAME_OR_OPTION',
        help='NAME KEY=VALUE ...: extra --cfg-options for one run only '
        '(repeatable), e.g. --run-options rgb_only '
        'model.backbone.modalities.rgb.fold_frames=False')
    parser.add_argument(
        '--train-args', nargs=argparse.REMAINDER, default=[],
        help='everything after this goes to tools/train.py --cfg-options '
        '(e.g. --train-args train_dataloader.num_workers=0)')
    return parser.parse_args(argv)


def default_runs(benchmark: str) -> List[str]:
    names = ['clcr'] + list(BASELINES)
    ablations = sorted(
        glob.glob(osp.join(REPO, 'configs', 'ablations', f'{benchmark}_wo_*.py')))
    names += [
        'wo_' + osp.basename(p)[len(benchmark) + 4:-3] for p in ablations
    ]
    return names


def resolve(name: str, benchmark: str) -> Tuple[str, str]:
    """Run name -> (name, config path)."""
    if '=' in name:
        name, config = name.split('=', 1)
        return name, config
    if name == 'clcr':
        config = f'configs/{benchmark}.py'
    elif name.startswith('wo_'):
        config = f'configs/ablations/{benchmark}_{name}.py'
    else:
        config = f'configs/{benchmark}_{name}.py'
    if not osp.exists(osp.join(REPO, config)):
        raise FileNotFoundError(f'run {name!r}: no config {config}')
    return name, config


# ----------------------------------------------------------------------
# reading results
# ----------------------------------------------------------------------
def read_val_history(work_dir: str, metric: str) -> List[Tuple[int, float]]:
    """(epoch, metric) of every validation in every (resumed) run of
    ``work_dir``, from mmengine's ``vis_data/scalars.json``."""
    history: Dict[int, float] = {}
    for path in sorted(glob.glob(
            osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if metric in record:
                    history[int(record['step'])] = float(record[metric])
    return sorted(history.items())


def run_result(work_dir: str, metric: str, epochs: Optional[int]
               ) -> Optional[dict]:
    """The finished result of a run, or None if it is not finished."""
    saved = osp.join(work_dir, 'runner_result.json')
    if osp.exists(saved):
        with open(saved) as f:
            result = json.load(f)
        if epochs is None or result.get('epochs') == epochs:
            return result
        return None
    history = read_val_history(work_dir, metric)
    best_ckpts = glob.glob(osp.join(work_dir, 'best_*.pth'))
    if not history or not best_ckpts or epochs is None:
        return None
    if history[-1][0] < epochs:
        return None
    return summarise(work_dir, history, epochs, metric)


def summarise(work_dir: str, history: List[Tuple[int, float]],
              epochs: Optional[int], metric: str) -> dict:
    best_epoch, best = max(history, key=lambda h: (h[1], -h[0]))
    best_ckpts = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')))
    return dict(
        work_dir=work_dir,
        metric=metric,
        epochs=epochs if epochs is not None else history[-1][0],
        best=best,
        best_epoch=best_epoch,
        last=history[-1][1],
        history=history,
        best_checkpoint=best_ckpts[-1] if best_ckpts else None)


# ----------------------------------------------------------------------
# running
# ----------------------------------------------------------------------
def run_options(config: str, seed: int, args: argparse.Namespace,
                name: str = '') -> List[str]:
    """The ``--cfg-options`` of one run (seed, schedule, subset, extras)."""
    opts = [f'randomness.seed={seed}']
    if args.epochs is not None:
        # The schedules end where the loop ends (configs/_base_/schedules).
        opts.append(f'train_cfg.max_epochs={args.epochs}')
    if args.train_subset is not None:
        opts.append(f'train_dataloader.dataset.indices={args.train_subset}')
    opts += list(args.train_args)
    for run_opts in args.run_options:
        if run_opts[0] == name:
            opts += list(run_opts[1:])
    return opts


def train_command(config: str, work_dir: str, seed: int,
                  args: argparse.Namespace, name: str = '') -> List[str]:
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
           '--work-dir', work_dir]
    if osp.exists(osp.join(work_dir, 'last_checkpoint')):
        cmd.append('--resume')
    return cmd + ['--cfg-options'] + run_options(config, seed, args, name)


def test_command(config: str, checkpoint: str, work_dir: str, seed: int,
                 args: argparse.Namespace, name: str = '') -> List[str]:
    """``tools/test.py`` on ``checkpoint`` with the run's options (the same
    data settings as its training)."""
    return [sys.executable, osp.join(REPO, 'tools', 'test.py'), config,
            checkpoint, '--work-dir', osp.join(work_dir, 'test_best'),
            '--cfg-options'] + run_options(config, seed, args, name)


def read_test_metric(work_dir: str, metric: str) -> Optional[float]:
    """``metric`` of the newest test in ``work_dir/test_best``: mmengine's
    LoggerHook dumps the test metrics to ``<timestamp>/<timestamp>.json``."""
    for path in sorted(glob.glob(osp.join(work_dir, 'test_best', '*',
                                          '*.json')), reverse=True):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get(metric) is not None:
                    return float(record[metric])
    return None


def run_test(result: dict, config: str, seed: int,
             args: argparse.Namespace, name: str) -> dict:
    """Add ``test`` (the test metric of the checkpoint selected on
    validation) to ``result``, running ``tools/test.py`` if needed; the
    result is returned unchanged when the test fails (and says so)."""
    work_dir, ckpt = result['work_dir'], result.get('best_checkpoint')
    if ckpt is None:
        print(f'[ablation] {name} seed {seed}: no best checkpoint to test',
              flush=True)
        return result
    value = read_test_metric(work_dir, args.metric)
    if value is None:
        lock = acquire_lock(work_dir)
        if lock is None:
            print(f'[ablation] {name} seed {seed}: another runner holds '
                  f'{work_dir}/runner.lock, not tested here', flush=True)
            return result
        cmd = test_command(config, ckpt, work_dir, seed, args, name)
        print('[ablation] ' + ' '.join(cmd), flush=True)
        try:
            with open(osp.join(work_dir, 'runner_stdout.log'), 'a') as log:
                proc = subprocess.run(cmd, cwd=REPO, env=thread_env(args),
                                      stdout=log, stderr=subprocess.STDOUT)
        finally:
            os.remove(lock)
        value = read_test_metric(work_dir, args.metric)
        if proc.returncode != 0 or value is None:
            print(f'[ablation] {name} seed {seed}: test FAILED (exit '
                  f'{proc.returncode}); see {work_dir}/runner_stdout.log',
                  flush=True)
            return result
    result = dict(result, test=value, test_checkpoint=ckpt)
    au.write_json(osp.join(work_dir, 'runner_result.json'), result)
    print(f'[ablation] {name} seed {seed}: test {args.metric} {value:.4f} '
          f'at {osp.basename(ckpt)}', flush=True)
    return result


def thread_env(args: argparse.Namespace) -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', str(args.threads))
    env.setdefault('MKL_NUM_THREADS', str(args.threads))
    return env


def acquire_lock(work_dir: str) -> Optional[str]:
    """Claim ``work_dir`` for this process (``runner.lock`` holds the PID),
    so runners started side by side on one root never train the same run
    twice. A lock whose process is gone is taken over."""
    path = osp.join(work_dir, 'runner.lock')
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
                os.kill(pid, 0)
                return None  # held by a live process
            except (ValueError, ProcessLookupError):
                os.remove(path)  # stale
                continue
            except PermissionError:
                return None
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return path
    return None


def run_one(name: str, config: str, seed: int,
            args: argparse.Namespace) -> Optional[dict]:
    work_dir = osp.join(args.root, name, f'seed{seed}')
    done = run_result(work_dir, args.metric, args.epochs)
    if done is not None:
        print(f'[ablation] {name} seed {seed}: done before '
              f"({args.metric} {done['best']:.4f}), skipped", flush=True)
        if 'test' in done or args.no_test or args.collect_only \
                or args.dry_run:
            return done
        return run_test(dict(done, name=name, config=config, seed=seed),
                        config, seed, args, name)
    if args.collect_only:
        return None
    cmd = train_command(config, work_dir, seed, args, name)
    print('[ablation] ' + ' '.join(cmd), flush=True)
    if args.dry_run:
        return None
    os.makedirs(work_dir, exist_ok=True)
    lock = acquire_lock(work_dir)
    if lock is None:
        print(f'[ablation] {name} seed {seed}: another runner is training '
              f'it ({work_dir}/runner.lock), skipped', flush=True)
        return None
    start = time.time()
    try:
        with open(osp.join(work_dir, 'runner_stdout.log'), 'a') as log:
            proc = subprocess.run(cmd, cwd=REPO, env=thread_env(args),
                                  stdout=log, stderr=subprocess.STDOUT)
    finally:
        os.remove(lock)
    minutes = (time.time() - start) / 60
    if proc.returncode != 0:
        print(f'[ablation] {name} seed {seed} FAILED (exit '
              f'{proc.returncode}); see {work_dir}/runner_stdout.log',
              flush=True)
        return None
    history = read_val_history(work_dir, args.metric)
    if not history:
        print(f'[ablation] {name} seed {seed}: no {args.metric} in the log',
              flush=True)
        return None
    result = summarise(work_dir, history, args.epochs, args.metric)
    result.update(name=name, config=config, seed=seed,
                  minutes=round(minutes, 2))
    au.write_json(osp.join(work_dir, 'runner_result.json'), result)
    print(f"[ablation] {name} seed {seed}: best {args.metric} "
          f"{result['best']:.4f} (epoch {result['best_epoch']}) in "
          f'{minutes:.1f} min', flush=True)
    if args.no_test:
        return result
    return run_test(result, config, seed, args, name)


# ----------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------
def plot(rows: List[dict], metric: str, path: str) -> None:
    """Bars of the best value per run (dots: seeds) and, beside them, each
    run's validation curve averaged over its seeds."""
    plt = au.use_agg()
    colours = {'CLCR (full)': 'tab:red', 'baseline': 'tab:blue',
               'unimodal': 'tab:gray', 'ablation': 'tab:orange',
               'CLCR variant': 'tab:purple', 'other': 'tab:green'}
    fig, (ax, curve_ax) = plt.subplots(
        1, 2, figsize=(max(5, 0.8 * len(rows) + 1) + 5, 3.8),
        gridspec_kw=dict(width_ratios=[max(5, 0.8 * len(rows) + 1), 5]))
    xs = range(len(rows))
    means = [100 * r['mean'] for r in rows]
    errs = [0 if math.isnan(r['std']) else 100 * r['std'] for r in rows]
    ax.bar(xs, means, yerr=errs, capsize=3,
           color=[colours.get(r['group'], 'tab:green') for r in rows])
    for x, r in zip(xs, rows):
        ax.scatter([x] * len(r['values']), [100 * v for v in r['values']],
                   color='k', s=10, zorder=3)
        tests = [100 * t for t in r['tests'] if t is not None]
        ax.scatter([x + 0.2] * len(tests), tests, color='k', marker='x',
                   s=14, zorder=3)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r['name'] for r in rows], rotation=35, ha='right')
    ax.set_ylabel(f'best val {metric} (%); x: test at that checkpoint')
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis='y')
    used = [g for g in colours if any(r['group'] == g for r in rows)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in used]
    ax.legend(handles, used, fontsize=7, loc='upper right')
    styles = ['-', '--', ':', '-.']
    for i, r in enumerate(rows):
        length = min(len(c) for c in r['curves'])
        curve = [100 * sum(c[e] for c in r['curves']) / len(r['curves'])
                 for e in range(length)]
        curve_ax.plot(range(1, length + 1), curve, styles[i % len(styles)],
                      marker='o', ms=3, label=r['name'],
                      color=colours.get(r['group'], 'tab:green'))
    curve_ax.set_xlabel('epoch')
    curve_ax.set_ylabel(f'val {metric} (%), mean over seeds')
    curve_ax.set_ylim(0, 100)
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(fontsize=6, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    args.root = osp.abspath(args.root)
    names = args.runs or default_runs(args.benchmark)
    jobs = [resolve(n, args.benchmark) for n in names]
    order = ([(j, s) for s in args.seeds for j in jobs]
             if args.order == 'seed-major' else
             [(j, s) for j in jobs for s in args.seeds])
    start = time.time()
    results: Dict[str, Dict[int, dict]] = {}
    for (name, config), seed in order:
        elapsed = (time.time() - start) / 60
        budget_over = (args.time_budget is not None
                       and elapsed > args.time_budget)
        if budget_over and not args.collect_only:
            # still pick up finished runs, launch nothing new
            work_dir = osp.join(args.root, name, f'seed{seed}')
            result = run_result(work_dir, args.metric, args.epochs)
            if result is None:
                print(f'[ablation] time budget used ({elapsed:.0f} min): '
                      f'{name} seed {seed} not run', flush=True)
        else:
            result = run_one(name, config, seed, args)
        if result is not None:
            results.setdefault(name, {})[seed] = result
    if args.dry_run:
        return {}
    rows = summarise_runs(results, [n for n, _ in jobs])
    os.makedirs(args.out_dir, exist_ok=True)
    payload = dict(benchmark=args.benchmark, metric=args.metric,
                   epochs=args.epochs, train_subset=args.train_subset,
                   seeds=args.seeds, rows=rows,
                   runs={n: {str(s): r for s, r in v.items()}
                         for n, v in results.items()})
    au.write_json(osp.join(args.out_dir, 'ablations.json'), payload)
    text = ablation_section(payload)
    with open(osp.join(args.out_dir, 'ablations.md'), 'w') as f:
        f.write(text + '\n')
    if rows:
        plot(rows, args.metric, osp.join(args.out_dir, 'ablations.png'))
    print(text)
    return payload


if __name__ == '__main__':
    main()
