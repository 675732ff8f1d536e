"""Parameters and FLOPs of a clcr_mm model, in total and per part.

    python tools/analysis/complexity.py configs/clcr_synthetic_av.py
    python tools/analysis/complexity.py configs/clcr_cremad.py --shape cremad
    python tools/analysis/complexity.py CONFIG --shape rgb=3,8,112,112 \\
        --shape audio=1,101,64 --out work_dirs/complexity.json

Parts: each modality's encoder backbone and level aligners, each IntraCED
level, InterCAD (or the baseline fusion neck) and the head; ``other`` is
what belongs to none of them (level / modality embeddings, the modality-mask
bookkeeping in the recognizer).

FLOPs follow the fvcore / mmengine convention: one multiply-add counts as
one FLOP (so they are MACs; ``torch.utils.flop_counter`` counts 2 per
multiply-add and is halved here to match). The default analyser is
mmengine's :class:`mmengine.analysis.FlopAnalyzer` (a ``torch.jit`` trace,
which accepts the model's dict of modality tensors directly); it has no
counter for ``aten::scaled_dot_product_attention``, so this tool registers
one (Q·Kᵀ plus attention·V). ``--backend torch`` uses
``torch.utils.flop_counter.FlopCounterMode`` instead (no tracing; counts
matmuls, convolutions and attention only, no normalisation or pooling);
``auto`` falls back to it if the trace fails.

Input shapes are per sample, without the view dimension, for one view
(batch 1): ``--shape PRESET`` picks a benchmark preset (default: guessed
from the config file name), ``--shape name=d1,d2,...`` sets one modality.
Feature-sequence modalities (layout ``sequence``) default to
``(L, in_channels)`` with ``L`` from the config's ``mmsa_seq_len`` (else 50).
"""
import argparse
import json
import math
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import clcr_mm  # noqa: F401  (registers CLCR; patches mmaction2 1.2.0)
from clcr_mm.registry import MODELS

# Per-sample input shapes (no view dim) of each benchmark's test pipeline.
PRESETS: Dict[str, Dict[str, Tuple[int, ...]]] = {
    'synthetic': dict(rgb=(3, 8, 56, 56), audio=(1, 101, 64)),
    'cremad': dict(rgb=(3, 2, 224, 224), audio=(1, 301, 128)),
    'kinetics_sounds': dict(rgb=(3, 3, 224, 224), audio=(1, 1001, 128)),
    'ave': dict(rgb=(3, 3, 224, 224), audio=(1, 1001, 128)),
    'ucf101': dict(rgb=(3, 8, 224, 224), flow=(10, 224, 224)),
    'mmsa': dict(),  # sequences: derived from the config
}
# config-name fragment -> preset
PRESET_GUESS = (('synthetic', 'synthetic'), ('cremad', 'cremad'),
                ('kinetics', 'kinetics_sounds'), ('ave', 'ave'),
                ('ucf101', 'ucf101'), ('mosi', 'mmsa'), ('mosei', 'mmsa'))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs of a clcr_mm model, per part')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        '--shape',
        action='append',
        default=[],
        help=f'a preset {sorted(PRESETS)} or NAME=D1,D2,... for one '
        'modality (per sample, no view dim); repeatable')
    parser.add_argument(
        '--backend',
        choices=['auto', 'mmengine', 'torch'],
        default='auto',
        help='FLOP counter (default: mmengine, torch if the trace fails)')
    parser.add_argument('--out', help='write the JSON here')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy format')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------
def guess_preset(config: str) -> Optional[str]:
    name = osp.basename(config).lower()
    for fragment, preset in PRESET_GUESS:
        if fragment in name:
            return preset
    return None


def input_shapes(cfg: Config, config: str,
                 items: Sequence[str]) -> Dict[str, Tuple[int, ...]]:
    """Per-sample shapes of every modality of ``cfg.model``."""
    encoders = cfg.model.backbone.modalities
    presets = [i for i in items if '=' not in i]
    overrides = [i for i in items if '=' in i]
    if len(presets) > 1:
        raise ValueError(f'--shape: give at most one preset, got {presets}')
    preset = presets[0] if presets else guess_preset(config)
    if preset is not None and preset not in PRESETS:
        raise ValueError(f'--shape: unknown preset {preset!r}; presets are '
                         f'{sorted(PRESETS)}, or give NAME=D1,D2,...')
    shapes = dict(PRESETS.get(preset, {}))
    seq_len = cfg.get('mmsa_seq_len', None) or {}
    for m, enc in encoders.items():
        if m not in shapes and enc.get('layout') == 'sequence':
            shapes[m] = (seq_len.get(m, 50), enc.backbone.in_channels)
    for item in overrides:
        name, dims = item.split('=', 1)
        try:
            shapes[name] = tuple(int(d) for d in dims.split(','))
        except ValueError:
            raise ValueError(f'--shape expects NAME=D1,D2,..., got {item!r}')
    missing = [m for m in encoders if m not in shapes]
    if missing:
        raise ValueError(
            f'no input shape for modalities {missing} (preset {preset!r}); '
            f'pass --shape PRESET or --shape {missing[0]}=D1,D2,...')
    return {m: tuple(shapes[m]) for m in encoders}


# ----------------------------------------------------------------------
# model parts
# ----------------------------------------------------------------------
def model_parts(model: nn.Module) -> Dict[str, str]:
    """Report name -> module name (as in ``named_modules``)."""
    parts = {}
    for m in model.backbone.modalities:
        parts[f'encoder.{m}'] = f'backbone.encoders.{m}'
        parts[f'aligner.{m}'] = f'backbone.aligners.{m}'
    if getattr(model, 'intra_ced', None) is not None:
        # level by level, as IntraCEDLevels runs them on the CPU; batched
        # (batch_levels=True) their FLOPs count under 'other'
        for level in model.intra_ced:
            parts[f'intra_ced.{level}'] = f'intra_ced.{level}'
    if getattr(model, 'inter_cad', None) is not None:
        parts['inter_cad'] = 'inter_cad'
    if getattr(model, 'fusion', None) is not None:
        parts['fusion'] = 'fusion'
    parts['head'] = 'cls_head'
    return parts


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------
# FLOP counters
# ----------------------------------------------------------------------
def _sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``scaled_dot_product_attention``: Q·Kᵀ and attention·V."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``baddbmm(bias, batch1, batch2)``: the batched product, as
    mmengine counts ``bmm`` (IntraCED runs its levels' projections as
    one)."""
    from mmengine.analysis.jit_handles import bmm_flop_jit
    return bmm_flop_jit(inputs[1:3], outputs)


def flops_mmengine(model: nn.Module, inputs: dict
                   ) -> Tuple[int, Dict[str, int], Dict[str, int]]:
    """Total and per-module FLOPs by mmengine's jit-trace analyser."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, (inputs, ))
    analyzer.set_op_handle(
        'aten::scaled_dot_product_attention', _sdpa_flop_jit,
        'aten::baddbmm', _baddbmm_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    total = int(analyzer.total())
    by_module = {k: int(v) for k, v in analyzer.by_module().items()}
    unsupported = dict(analyzer.unsupported_ops())
    return total, by_module, unsupported


def flops_torch(model: nn.Module, inputs: dict
                ) -> Tuple[int, Dict[str, int], Dict[str, int]]:
    """Total and per-module FLOPs by ``torch.utils.flop_counter`` (halved
    to multiply-adds)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        model(inputs, None, mode='tensor')
    prefix = type(model).__name__
    by_module = {}
    for name, ops in counter.get_flop_counts().items():
        flops = sum(ops.values()) // 2
        if name == prefix:
            name = ''
        elif name.startswith(prefix + '.'):
            name = name[len(prefix) + 1:]
        else:  # 'Global'
            continue
        by_module[name] = flops
    return counter.get_total_flops() // 2, by_module, {}


def analyse(model: nn.Module, shapes: Dict[str, Tuple[int, ...]],
            backend: str = 'auto') -> dict:
    """Parameters and FLOPs of ``model`` for one sample of ``shapes``.

    Returns:
        dict: ``backend``, ``shapes``, ``total`` (params, flops) and
        ``parts`` (name -> params, flops, share of FLOPs).
    """
    model = model.eval()
    inputs = {m: torch.randn(1, 1, *s) for m, s in shapes.items()}
    used, unsupported = backend, {}
    with torch.no_grad():
        if backend in ('auto', 'mmengine'):
            try:
                total, by_module, unsupported = flops_mmengine(model, inputs)
                used = 'mmengine'
            except Exception as err:  # noqa: BLE001  (trace failures vary)
                if backend == 'mmengine':
                    raise
                print(f'mmengine FlopAnalyzer failed ({err!r}); using '
                      'torch.utils.flop_counter', file=sys.stderr)
                used = 'torch'
        if used == 'torch':
            total, by_module, _ = flops_torch(model, inputs)
    modules = dict(model.named_modules())
    parts = {}
    for name, module_name in model_parts(model).items():
        params = count_params(modules[module_name])
        flops = by_module.get(module_name, 0)
        parts[name] = dict(
            module=module_name,
            params=params,
            flops=flops,
            flops_share=flops / total if total else 0.0)
    total_params = count_params(model)
    parts['other'] = dict(
        module='',
        params=total_params - sum(p['params'] for p in parts.values()),
        flops=total - sum(p['flops'] for p in parts.values()),
        flops_share=0.0)
    if total:
        parts['other']['flops_share'] = parts['other']['flops'] / total
    return dict(
        backend=used,
        flop_convention='1 multiply-add = 1 FLOP (fvcore/mmengine)',
        shapes={m: list(s) for m, s in shapes.items()},
        batch_size=1,
        total=dict(params=total_params, flops=total),
        parts=parts,
        unsupported_ops=unsupported)


def format_table(result: dict) -> str:
    """Markdown table of the parts and the total."""
    lines = [
        '| part | params | params (M) | GFLOPs | share of FLOPs |',
        '|---|---:|---:|---:|---:|'
    ]
    rows = list(result['parts'].items()) + [('**total**', result['total'])]
    for name, row in rows:
        share = row.get('flops_share', 1.0)
        lines.append(f"| {name} | {row['params']:,} | "
                     f"{row['params'] / 1e6:.3f} | {row['flops'] / 1e9:.4f}"
                     f' | {100 * share:.1f}% |')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'clcr_mm'))
    shapes = input_shapes(cfg, args.config, args.shape)
    model = MODELS.build(cfg.model)
    result = analyse(model, shapes, args.backend)
    result['config'] = args.config
    print(f'{args.config}: inputs {result["shapes"]} (batch 1, one view), '
          f'FLOPs by {result["backend"]} ({result["flop_convention"]})')
    print(format_table(result))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        dirname = osp.dirname(args.out)
        if dirname:
            import os
            os.makedirs(dirname, exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return result


if __name__ == '__main__':
    main()
