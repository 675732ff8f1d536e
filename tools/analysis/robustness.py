"""Robustness of a trained model to Gaussian noise and missing modalities.

    python tools/analysis/robustness.py CONFIG CHECKPOINT \\
        [--sigmas 0 0.25 0.5 1 2] [--out-dir work_dirs/robustness] \\
        [--compare CONFIG2 CHECKPOINT2 LABEL2 ...]

One pass over the test split (mmengine's ``Runner.build_dataloader`` on
``test_dataloader``): every batch goes through the model's own data
preprocessor once, then is scored under every condition, each with its own
fresh evaluator built from ``test_evaluator``:

- ``clean``;
- ``noise:<modality>@<sigma>``: Gaussian noise added to that modality
  *after* the preprocessor's normalisation. With ``--sigma-unit std``
  (default) sigma is in units of that modality's standard deviation after
  preprocessing, measured on the first test batch (so 1.0 means noise as
  strong as the signal, comparable across modalities); with ``abs`` it is
  in the normalised input's own units. The noise is seeded per batch,
  modality and sigma; sigma 0 is exactly the clean input;
- ``missing:<modality>``: the modality removed through the model's own
  ``test_cfg.missing_modalities`` path (zeroed and masked, exactly as a
  pipeline that finds the modality missing);
- ``drop:<modality>@<rate>`` (``--missing-rates``): random missing rates, as
  MMSA's ``data_missing``: every time step of a feature-sequence modality
  (inputs (B, V, L, D)) is zeroed with probability ``rate``, independently
  per sample and step, seeded per batch, modality and rate.

Writes ``robustness.json``, ``robustness.md`` and ``robustness.png``
(metric vs sigma per noisy modality, and metric per missing modality) to
``--out-dir``. ``--compare`` adds more models (e.g. the baselines) to the
same table and plot.
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import analysis_utils as au  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Accuracy under Gaussian noise and missing modalities')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--label', default=None,
                        help='name of this model in the outputs '
                        '(default: config file name)')
    parser.add_argument(
        '--compare',
        nargs=3,
        action='append',
        default=[],
        metavar=('CONFIG', 'CHECKPOINT', 'LABEL'),
        help='another model to evaluate on the same conditions; repeatable')
    parser.add_argument(
        '--sigmas',
        type=float,
        nargs='+',
        default=[0.0, 0.25, 0.5, 1.0, 2.0],
        help='noise strengths (default: 0 0.25 0.5 1 2)')
    parser.add_argument(
        '--sigma-unit',
        choices=['std', 'abs'],
        default='std',
        help="'std': sigma times the modality's std after preprocessing "
        "(default); 'abs': sigma in normalised units")
    parser.add_argument(
        '--modalities', nargs='+', default=None,
        help='modalities to perturb (default: all of each model)')
    parser.add_argument('--no-missing', action='store_true',
                        help='skip the missing-modality conditions')
    parser.add_argument(
        '--missing-rates', type=float, nargs='+', default=[],
        help='random per-step drop rates in (0, 1] for feature-sequence '
        'modalities, e.g. 0.1 0.3 0.5 0.7 (default: none)')
    parser.add_argument('--metric', default=None,
                        help='metric key to report (default: first top1)')
    parser.add_argument('--out-dir', default='work_dirs/robustness')
    parser.add_argument('--data-root', default=None,
                        help='override test_dataloader.dataset.data_root')
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--num-workers', type=int, default=None)
    parser.add_argument('--max-batches', type=int, default=None,
                        help='stop after this many test batches (smoke runs)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--ceiling', type=float, default=None,
        help='draw a dashed reference line at this metric value in %% '
        "(e.g. 50: one modality's ceiling on the synthetic benchmark)")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of every config, xxx=yyy format')
    return parser.parse_args(argv)


def conditions(modalities: Sequence[str],
               perturb: Optional[Sequence[str]],
               sigmas: Sequence[float],
               missing: bool,
               rates: Sequence[float] = ()) -> List[dict]:
    """The conditions evaluated for a model with ``modalities``."""
    out = [dict(name='clean', kind='clean')]
    for m in modalities:
        if perturb is not None and m not in perturb:
            continue
        for sigma in sigmas:
            out.append(
                dict(name=f'noise:{m}@{sigma:g}', kind='noise', modality=m,
                     sigma=float(sigma)))
        for rate in rates:
            out.append(
                dict(name=f'drop:{m}@{rate:g}', kind='drop', modality=m,
                     rate=float(rate)))
    if missing and len(modalities) > 1:
        for m in modalities:
            out.append(dict(name=f'missing:{m}', kind='missing', modality=m))
    return out


def drop_steps(x: torch.Tensor, rate: float, gen: torch.Generator,
               modality: str) -> torch.Tensor:
    """Zero each time step of a feature sequence with probability ``rate``.

    Args:
        x (Tensor): (B, V, L, D) feature sequences.
        rate (float): Drop probability per sample and step.
        gen (torch.Generator): Seeded generator (on the CPU).
        modality (str): Name, for the error message.

    Returns:
        Tensor: ``x`` with the dropped steps set to 0.
    """
    if x.dim() != 4:
        raise ValueError(
            f'--missing-rates drops time steps of feature sequences (B, V, '
            f'L, D); modality {modality!r} has shape {tuple(x.shape)}. '
            'Choose sequence modalities with --modalities.')
    keep = torch.rand(x.shape[:3], generator=gen) >= rate
    return x * keep.unsqueeze(-1).to(device=x.device, dtype=x.dtype)


def evaluate_model(config: str, checkpoint: str, args: argparse.Namespace,
                   label: str) -> dict:
    """Score one model under every condition in one pass over the test
    split."""
    cfg = au.load_config(config, args.cfg_options, args.data_root,
                         args.batch_size, args.num_workers)
    model = au.build_model(cfg, checkpoint)
    modalities = tuple(model.modalities)
    conds = conditions(modalities, args.modalities, args.sigmas,
                       not args.no_missing, args.missing_rates)
    loader = au.build_test_loader(cfg)
    evaluators = {
        c['name']: au.build_evaluator(cfg, loader.dataset)
        for c in conds
    }
    base_missing = tuple(model.test_cfg.get('missing_modalities', ()))
    scale: Dict[str, float] = {}
    start, seen = time.time(), 0
    with torch.no_grad():
        for b, data_batch in enumerate(loader):
            if args.max_batches is not None and b >= args.max_batches:
                break
            data = model.data_preprocessor(data_batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            seen += len(samples)
            if not scale:
                for m in modalities:
                    std = float(inputs[m].float().std())
                    scale[m] = std if args.sigma_unit == 'std' else 1.0
            for c_idx, cond in enumerate(conds):
                x = dict(inputs)
                model.test_cfg['missing_modalities'] = base_missing
                if cond['kind'] == 'noise' and cond['sigma'] > 0:
                    m = cond['modality']
                    gen = torch.Generator().manual_seed(
                        args.seed * 1000003 + b * 1009 + c_idx)
                    noise = torch.randn(
                        x[m].shape, generator=gen, dtype=torch.float32)
                    x[m] = x[m].float() + (cond['sigma'] * scale[m]) * noise
                elif cond['kind'] == 'drop':
                    m = cond['modality']
                    gen = torch.Generator().manual_seed(
                        args.seed * 1000003 + b * 1009 + c_idx)
                    x[m] = drop_steps(x[m], cond['rate'], gen, m)
                elif cond['kind'] == 'missing':
                    model.test_cfg['missing_modalities'] = tuple(
                        sorted(set(base_missing) | {cond['modality']}))
                outputs = model(x, samples, mode='predict')
                evaluators[cond['name']].process(outputs, data_batch)
    model.test_cfg['missing_modalities'] = base_missing
    if seen == 0:
        raise RuntimeError(f'{config}: the test dataloader gave no samples')
    results, metric_key = {}, args.metric
    for cond in conds:
        metrics = evaluators[cond['name']].evaluate(seen)
        metric_key = au.pick_metric(metrics, metric_key)
        results[cond['name']] = dict(cond, metrics=metrics)
    return dict(
        label=label,
        config=config,
        checkpoint=checkpoint,
        modalities=list(modalities),
        num_samples=seen,
        metric=metric_key,
        sigma_unit=args.sigma_unit,
        sigma_scale=scale,
        seconds=round(time.time() - start, 1),
        conditions=results)


def summary_table(models: List[dict],
                  sigmas: Sequence[float],
                  rates: Sequence[float] = ()) -> str:
    """One row per model: clean, each modality's noise curve, random
    missing rates, missing modalities."""
    metric = models[0]['metric']
    all_mods = []
    for r in models:
        all_mods += [m for m in r['modalities'] if m not in all_mods]
    header = ['model', 'clean']
    header += [f'{m} σ={s:g}' for m in all_mods for s in sigmas if s > 0]
    header += [f'{m} drop {r:g}' for m in all_mods for r in rates]
    header += [f'missing {m}' for m in all_mods]
    rows = []
    for r in models:
        conds = r['conditions']

        def cell(name: str) -> str:
            if name not in conds:
                return '–'
            return f"{100 * conds[name]['metrics'][r['metric']]:.1f}"

        row = [r['label'], cell('clean')]
        row += [cell(f'noise:{m}@{s:g}') for m in all_mods for s in sigmas
                if s > 0]
        row += [cell(f'drop:{m}@{r:g}') for m in all_mods for r in rates]
        row += [cell(f'missing:{m}') for m in all_mods]
        rows.append(row)
    return (f'{metric} (%) on the test split\n\n' +
            au.markdown_table(header, rows))


def plot(models: List[dict], sigmas: Sequence[float], path: str,
         ceiling: Optional[float] = None) -> None:
    plt = au.use_agg()
    all_mods = []
    for r in models:
        all_mods += [m for m in r['modalities'] if m not in all_mods]
    fig, axes = plt.subplots(
        1, len(all_mods) + 1, figsize=(4.2 * (len(all_mods) + 1), 3.6),
        squeeze=False)
    axes = axes[0]
    for ax, m in zip(axes, all_mods):
        for r in models:
            names = [f'noise:{m}@{s:g}' for s in sigmas]
            if names[0] not in r['conditions']:
                continue
            ys = [100 * r['conditions'][n]['metrics'][r['metric']]
                  for n in names]
            ax.plot(sigmas, ys, marker='o', label=r['label'])
        ax.set_ylim(0, 100)
        ax.set_title(f'Gaussian noise on {m}')
        ax.set_xlabel(f"sigma ({models[0]['sigma_unit']})")
        ax.set_ylabel(f"{models[0]['metric']} (%)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    width = 0.8 / max(1, len(models))
    groups = ['clean'] + [f'missing:{m}' for m in all_mods]
    for i, r in enumerate(models):
        ys = [100 * r['conditions'][g]['metrics'][r['metric']]
              if g in r['conditions'] else 0.0 for g in groups]
        ax.bar([g + i * width for g in range(len(groups))], ys, width,
               label=r['label'])
    ax.set_xticks([g + width * (len(models) - 1) / 2
                   for g in range(len(groups))])
    ax.set_xticklabels(['clean'] + [f'no {m}' for m in all_mods])
    ax.set_ylim(0, 100)
    ax.set_title('missing modality at test time')
    ax.set_ylabel(f"{models[0]['metric']} (%)")
    ax.grid(alpha=0.3, axis='y')
    if ceiling is not None:
        for ax in axes:
            ax.axhline(ceiling, color='gray', linestyle='--', linewidth=1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    bad = [r for r in args.missing_rates if not 0 < r <= 1]
    if bad:
        raise ValueError(f'--missing-rates must be in (0, 1], got {bad}')
    if 0.0 not in args.sigmas:
        args.sigmas = [0.0] + list(args.sigmas)
    args.sigmas = sorted(set(args.sigmas))
    jobs = [(args.config, args.checkpoint, args.label or
             osp.splitext(osp.basename(args.config))[0])]
    jobs += [tuple(c) for c in args.compare]
    models = []
    for config, checkpoint, label in jobs:
        print(f'[robustness] {label}: {config} {checkpoint}', flush=True)
        models.append(evaluate_model(config, checkpoint, args, label))
    os.makedirs(args.out_dir, exist_ok=True)
    table = summary_table(models, args.sigmas, args.missing_rates)
    payload = dict(sigmas=args.sigmas, sigma_unit=args.sigma_unit,
                   missing_rates=args.missing_rates, models=models)
    au.write_json(osp.join(args.out_dir, 'robustness.json'), payload)
    with open(osp.join(args.out_dir, 'robustness.md'), 'w') as f:
        f.write(table + '\n')
    plot(models, args.sigmas, osp.join(args.out_dir, 'robustness.png'),
         args.ceiling)
    print(table)
    return payload


if __name__ == '__main__':
    main()
