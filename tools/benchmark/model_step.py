"""Training-step time and inference throughput: CLCR vs late vs concat fusion.

The three models share everything but the fusion: they are built from ONE
CLCR config, and the baselines are derived from it exactly as the baseline
configs do (``configs/clcr_synthetic_av_late_fusion.py``,
``configs/clcr_synthetic_av_concat.py``): ``intra_ced=None``,
``inter_cad=None``, ``fusion=LateFusion | ConcatFusion``, the late-fusion
head, no CLCR regularisers. Same encoders, same inputs, same optimizer (the
config's ``optim_wrapper``), same process, interleaved measurements.

A training step is mmengine's own ``BaseModel.train_step`` (data
preprocessor, forward in ``loss`` mode, ``parse_losses``, backward,
gradient clipping if configured, optimizer step); an inference step is
``val_step`` (preprocessor + ``predict``) under ``torch.no_grad``.

Besides the whole step, the script times the *fusion part alone*: the
encoder is replaced by its cached output (tokens that still require grad,
so the backward into the tokens is paid), which isolates what CLCR adds
from the backbone's much larger and noisier cost.

Presets (per-sample input shapes, no view dim):

* ``synthetic``: the embedded synthetic AV benchmark, model
  ``configs/clcr_synthetic_av.py``; shapes read from that config's
  ``train_pipeline`` (rgb (3, 8, 56, 56) uint8, audio log-mel (1, 101, 64)).
* ``mosi``: CMU-MOSI feature sequences, model ``configs/clcr_mosi.py``;
  (length, width) per modality from the config's ``mmsa_feat_dims`` and
  ``mmsa_seq_len`` (None: the 50 steps of ``aligned_50.pkl``): text
  (50, 768), audio (50, 5), vision (50, 20).
* ``ucf101``: UCF101-shaped RGB + optical flow with ResNet-18 encoders:
  rgb (3, 8, S, S) and flow (10, S, S), S = ``--crop`` (112 by default to
  stay practical on CPU; use ``--crop 224`` on a GPU for the real size).
  The model is ``configs/clcr_ucf101_rgb_flow.py`` if it exists, else
  ``configs/_base_/models/clcr_av_resnet18.py`` with its audio encoder
  replaced by a ResNet-18 on the 10-channel flow stack.

Example::

    python tools/benchmark/model_step.py --preset synthetic \\
        --out work_dirs/bench/model_step_synthetic.json
    python tools/benchmark/model_step.py --preset ucf101 --batch-size 4 \\
        --device cuda --amp --crop 224
"""
import argparse
import copy
import os.path as osp
import sys
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import DictAction
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_utils as bu  # noqa: E402

# Shapes used when no config says otherwise (per sample, no view dim).
SYNTHETIC_DEFAULTS = dict(
    rgb=(3, 8, 56, 56),  # 8 frames, 56x56 crops of the 64x64 videos
    audio=(1, 101, 64))  # log-mel: 1.6 s at 16 ms hop, 64 mel bins
# Steps per modality in MMSA's aligned_50.pkl, kept when mmsa_seq_len=None.
MOSI_STORED_LEN = 50
UCF101_DEFAULTS = dict(clip_len=8, flow_len=5, crop=112, cpu_batch_size=4)
# Modalities that come out of the pipeline as uint8 images / frames.
UINT8_MODALITIES = ('rgb', 'flow', 'visual', 'video')

PRESET_CONFIGS = dict(
    synthetic=('configs/clcr_synthetic_av.py',
               'configs/_base_/models/clcr_av_resnet18.py'),
    ucf101=('configs/clcr_ucf101_rgb_flow.py', 'configs/clcr_ucf101.py'),
    mosi=('configs/clcr_mosi.py', ))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Step time and inference throughput of CLCR vs late '
        'and concatenation fusion on the same encoders and inputs.')
    add_model_args(parser)
    parser.add_argument(
        '--repeats',
        type=int,
        default=7,
        help='timed rounds per variant; the median is reported (default 7)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=2,
        help='untimed steps per variant before timing (default 2)')
    parser.add_argument(
        '--inner',
        type=int,
        default=1,
        help='steps per variant and round (default 1)')
    parser.add_argument(
        '--infer-batch-size',
        type=int,
        default=None,
        help='batch size for inference (default: the training batch size)')
    parser.add_argument(
        '--skip-infer', action='store_true', help='skip inference timing')
    parser.add_argument(
        '--skip-fusion',
        action='store_true',
        help='skip timing the fusion part alone')
    parser.add_argument(
        '--skip-flops',
        action='store_true',
        help='skip counting the FLOPs of one training step per variant '
        '(torch.utils.flop_counter; noise-free, counts matmuls, '
        'convolutions and attention only)')
    parser.add_argument(
        '--breakdown',
        action='store_true',
        help="time each CLCR part alone (forward + backward on the encoder's "
        'real tokens): IntraCED per level, InterCAD, each regulariser')
    parser.add_argument(
        '--op-profile',
        action='store_true',
        help='profile the fusion-only step of each variant (torch.profiler, '
        'CPU): time in matrix products and attention vs every other op, '
        'and op calls per step; tells how much of what CLCR adds is '
        'arithmetic and how much per-op work')
    parser.add_argument(
        '--count-ops-batches',
        type=int,
        nargs='*',
        default=[2, 16],
        metavar='B',
        help='count the aten ops one training step (forward + backward) '
        'dispatches, per variant, at each of these batch sizes '
        '(TorchDispatchMode; default 2 16; none to skip)')
    parser.add_argument(
        '--memory',
        action='store_true',
        help='also record the peak RSS (and CUDA peak) of one training step '
        'of each variant, in this process (see memory.py for isolated '
        'processes)')
    parser.add_argument(
        '--reference-rev',
        help='also time CLCR with the IntraCED / InterCAD code of this git '
        "revision (variant 'clcr@REV'), for before/after comparisons; the "
        'revision must share their interfaces (InterCAD reading stacked '
        'levels: 530b9ac or later)')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument(
        '--quiet', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with ``memory.py``: which model, which fusion
    variants, which inputs, which device."""
    parser.add_argument(
        '--variants',
        nargs='+',
        default=list(bu.VARIANTS),
        choices=bu.VARIANTS,
        help='fusions to compare (default: all three)')
    parser.add_argument(
        '--preset',
        choices=tuple(PRESET_CONFIGS),
        default='synthetic',
        help='input sizes and default model (default: synthetic)')
    parser.add_argument(
        '--config',
        help='CLCR config whose `model` is benchmarked (default: the '
        "preset's config, see the module docstring)")
    parser.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help="training batch size (default: the config's "
        'train_dataloader.batch_size, else 8; ucf101 on CPU: 4)')
    parser.add_argument(
        '--crop',
        type=int,
        default=None,
        help='ucf101 preset: spatial size of rgb and flow (default 112)')
    parser.add_argument(
        '--shape',
        action='append',
        default=[],
        metavar='NAME=D1,D2,...',
        help='override the per-sample shape of one modality (no view dim), '
        'e.g. --shape rgb=3,4,32,32 ; repeatable')
    parser.add_argument(
        '--threads',
        type=int,
        default=0,
        help='torch CPU threads (default 0 = all cores this process may use)')
    parser.add_argument(
        '--device',
        default='cpu',
        help="'cpu' or 'cuda[:N]' (default cpu)")
    parser.add_argument(
        '--amp',
        action='store_true',
        help='measure under torch.autocast (float16 on CUDA with a loss '
        'scaler via mmengine AmpOptimWrapper, bfloat16 on CPU)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of weights and inputs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='override config entries, xxx=yyy format (as tools/train.py), '
        'e.g. optim_wrapper.optimizer.foreach=True')


# ----------------------------------------------------------------------
# configs and shapes
# ----------------------------------------------------------------------
def load_config(preset: str,
                path: Optional[str] = None,
                options: Optional[dict] = None):
    """Load the benchmark config of a preset (or the given one).

    Returns:
        tuple[Config, str, bool]: The config, its path relative to the repo
        and whether the model had to be derived (ucf101 without its own
        config).
    """
    from mmengine.config import Config
    found = None
    if path:
        found = Config.fromfile(path), path, False
    for rel in PRESET_CONFIGS[preset]:
        full = osp.join(bu.REPO_ROOT, rel)
        if found is None and osp.isfile(full):
            found = Config.fromfile(full), rel, False
    if found is None and preset == 'ucf101':
        found = ucf101_fallback_config(), \
            'derived: clcr_av_resnet18 + flow', True
    if found is not None:
        if options:
            found[0].merge_from_dict(options)
        return found
    raise FileNotFoundError(
        f'no config for preset {preset!r}: looked for '
        f'{PRESET_CONFIGS[preset]} under {bu.REPO_ROOT}; pass --config')


def ucf101_fallback_config():
    """CLCR with ResNet-18 encoders for RGB + flow, used until the project
    has a UCF101 config: the AV ResNet-18 model with its audio encoder
    swapped for a ResNet-18 on the 2L-channel flow stack, and the UCF101
    dataset base's data preprocessors."""
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(bu.REPO_ROOT, 'configs/_base_/models/clcr_av_resnet18.py'))
    ds_path = osp.join(bu.REPO_ROOT, 'configs/_base_/datasets/'
                       'ucf101_rgb_flow.py')
    ds = Config.fromfile(ds_path) if osp.isfile(ds_path) else Config()
    flow_len = ds.get('flow_len', UCF101_DEFAULTS['flow_len'])
    model = cfg.model.to_dict()
    modalities = model['backbone']['modalities']
    flow = copy.deepcopy(modalities.pop('audio'))
    flow['backbone']['in_channels'] = 2 * flow_len
    flow['layout'] = 'image'
    # Same spatial grids as the RGB stream, one time step (a flow stack is
    # an image with 2L channels).
    flow['grids'] = tuple((1, g[1], g[2]) for g in modalities['rgb']['grids'])
    modalities['flow'] = flow
    model['cls_head']['num_classes'] = ds.get('num_classes', 101)
    preprocessors = ds.get('preprocessors', None)
    if preprocessors is not None:
        model['data_preprocessor']['preprocessors'] = preprocessors.to_dict()
    else:
        pre = model['data_preprocessor']['preprocessors']
        pre['flow'] = dict(
            type='ActionDataPreprocessor',
            mean=[128.] * 2 * flow_len,
            std=[128.] * 2 * flow_len,
            format_shape='NCHW')
        pre.pop('audio')
    cfg.model = model
    for key in ('clip_len', 'flow_len'):
        if key in ds:
            cfg[key] = ds[key]
    return cfg


def _find_transforms(pipeline: Sequence[dict]) -> List[dict]:
    """Every transform of a pipeline, descending into wrappers such as
    mmcv's KeyMapper (``transforms=[...]``)."""
    found = []
    for t in pipeline or []:
        found.append(t)
        if isinstance(t.get('transforms', None), (list, tuple)):
            found += _find_transforms(t['transforms'])
    return found


def synthetic_shapes(cfg) -> Tuple[Dict[str, Tuple[int, ...]], str]:
    """Per-sample shapes of the synthetic AV inputs, read from the config's
    ``train_pipeline`` (frames per clip, crop size, log-mel frames and
    bins); defaults where the config has no pipeline.

    Returns:
        tuple[dict, str]: Shapes and where they came from.
    """
    pipeline = cfg.get('train_pipeline', None)
    if not pipeline:
        return dict(SYNTHETIC_DEFAULTS), 'preset defaults'
    by_type = {}
    for t in _find_transforms(pipeline):
        by_type.setdefault(str(t.get('type')).split('.')[-1], t)
    shapes = dict(SYNTHETIC_DEFAULTS)
    c, frames, h, w = shapes['rgb']
    if 'SampleFrames' in by_type:
        frames = by_type['SampleFrames']['clip_len']
    crop = by_type.get('RandomCrop', {}).get('size') or \
        by_type.get('CenterCrop', {}).get('crop_size')
    if crop:
        h, w = (crop, crop) if isinstance(crop, int) else crop[::-1]
    shapes['rgb'] = (c, frames, h, w)
    mel = by_type.get('LogMelSpectrogram')
    clip = by_type.get('AudioClipSample')
    if mel and clip:
        samples = int(round(clip['clip_duration'] * mel['sample_rate']))
        # centred STFT frames: 1 + samples // hop
        shapes['audio'] = (1, 1 + samples // mel['hop_length'],
                           mel['n_mels'])
    return shapes, 'train_pipeline of the config'


def preset_shapes(preset: str, cfg,
                  crop: Optional[int]) -> Tuple[Dict[str, tuple], str]:
    """Per-sample input shapes (no view dim) of a preset."""
    if preset == 'synthetic':
        return synthetic_shapes(cfg)
    if preset == 'mosi':
        dims = cfg['mmsa_feat_dims']
        lengths = cfg.get('mmsa_seq_len', None)
        if not isinstance(lengths, dict):  # None keeps the stored steps
            lengths = {m: lengths or MOSI_STORED_LEN for m in dims}
        return {m: (lengths[m], dims[m]) for m in dims}, \
            'mmsa_feat_dims (and mmsa_seq_len, else 50 steps) of the config'
    clip_len = cfg.get('clip_len', UCF101_DEFAULTS['clip_len'])
    flow_len = cfg.get('flow_len', UCF101_DEFAULTS['flow_len'])
    size = crop or UCF101_DEFAULTS['crop']
    return dict(
        rgb=(3, clip_len, size, size),
        flow=(2 * flow_len, size, size)), \
        f'UCF101 layout: clip_len={clip_len}, flow_len={flow_len}, ' \
        f'crop={size}'


def parse_shape_overrides(items: Sequence[str]) -> Dict[str, tuple]:
    """``['rgb=3,4,32,32']`` -> ``{'rgb': (3, 4, 32, 32)}``."""
    out = {}
    for item in items:
        name, sep, dims = item.partition('=')
        try:
            shape = tuple(int(d) for d in dims.split(','))
        except ValueError:
            shape = ()
        if not sep or not name or not shape:
            raise ValueError(f'--shape expects NAME=D1,D2,... got {item!r}')
        out[name] = shape
    return out


def make_batch(shapes: Dict[str, tuple], batch: int, num_classes: int,
               regression: bool, seed: int) -> dict:
    """A batch as the dataloader delivers it to ``train_step``.

    ``inputs`` maps modality -> list of per-sample tensors with a view dim
    of 1 (uint8 for video / flow, float32 otherwise); every data sample
    has a label and an all-present ``modality_mask``, as the pipelines
    write them.
    """
    from mmaction.structures import ActionDataSample
    gen = torch.Generator().manual_seed(seed)
    inputs = {}
    for name, shape in shapes.items():
        if name in UINT8_MODALITIES:
            x = torch.randint(0, 256, (batch, 1, *shape), generator=gen,
                              dtype=torch.uint8)
        else:
            x = torch.randn((batch, 1, *shape), generator=gen)
        inputs[name] = list(x)
    samples = []
    for i in range(batch):
        sample = ActionDataSample()
        if regression:
            sample.set_gt_label(torch.tensor([float(i % 7) - 3.0]))
        else:
            sample.set_gt_label(i % num_classes)
        sample.set_field({m: True for m in shapes}, 'modality_mask')
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def prepare(args: argparse.Namespace) -> Dict[str, Any]:
    """Load config, work out shapes and batch size; shared by scripts."""
    cfg, cfg_name, derived = load_config(args.preset, args.config,
                                         args.cfg_options)
    shapes, shape_source = preset_shapes(args.preset, cfg, args.crop)
    overrides = parse_shape_overrides(args.shape)
    shapes.update(overrides)
    if overrides:
        shape_source += ' + --shape overrides'
    model_cfg = cfg.model.to_dict()
    modalities = list(model_cfg['backbone']['modalities'])
    missing = [m for m in modalities if m not in shapes]
    if missing:
        raise ValueError(
            f'the model has modalities {modalities} but the preset '
            f'{args.preset!r} gives shapes only for {sorted(shapes)}; add '
            f'--shape for {missing}')
    shapes = {m: tuple(shapes[m]) for m in modalities}
    batch = args.batch_size
    if not batch and args.preset == 'ucf101' and \
            not args.device.startswith('cuda'):
        # The UCF101 config's batch of 32 clips takes minutes per step on a
        # few CPU cores; the comparison needs the same batch, not that one.
        batch = UCF101_DEFAULTS['cpu_batch_size']
    batch = batch or cfg.get('train_dataloader', {}).get('batch_size', 8)
    head = model_cfg['cls_head']
    return dict(
        cfg=cfg,
        config=cfg_name,
        derived_config=derived,
        model_cfg=model_cfg,
        shapes=shapes,
        shape_source=shape_source,
        batch_size=int(batch),
        num_classes=int(head.get('num_classes', 2)),
        regression=head.get('task', 'classification') == 'regression')


def build_optim_wrapper(model: torch.nn.Module, cfg, device: torch.device,
                        amp: bool):
    """The config's optim wrapper (AdamW / SGD, gradient clipping...), as
    AmpOptimWrapper for CUDA AMP; plain OptimWrapper otherwise (CPU AMP is
    an autocast context around the step, bfloat16 needs no loss scale)."""
    from mmengine.optim import build_optim_wrapper as build
    optim_cfg = copy.deepcopy(
        cfg.get('optim_wrapper', None) or dict(
            optimizer=dict(type='SGD', lr=1e-3, momentum=0.9)))
    optim_cfg = dict(optim_cfg)
    for key in ('loss_scale', 'dtype'):
        optim_cfg.pop(key, None)
    optim_cfg['type'] = 'AmpOptimWrapper' if (
        amp and device.type == 'cuda') else 'OptimWrapper'
    return build(model, optim_cfg)


def move_batch(batch: dict, device: torch.device) -> dict:
    """Put the inputs on the device once, outside the timed region: the
    benchmark measures the model, not host-to-device copies."""
    if device.type == 'cpu':
        return batch
    return dict(
        inputs={
            m: [x.to(device) for x in xs]
            for m, xs in batch['inputs'].items()
        },
        data_samples=batch['data_samples'])


class Bench:
    """One model variant with its optimizer and step closures.

    Args:
        name (str): ``'clcr'``, ``'late'``, ``'concat'`` or ``'clcr@REV'``
            (CLCR whose IntraCED / InterCAD run the code of git revision
            REV, see :func:`bench_utils.load_reference_classes`).
        model_cfg (dict): The CLCR model config.
        cfg (Config): The whole config (for ``optim_wrapper``).
        device (torch.device): Where to run.
        amp (bool): Measure under autocast.
        reference (dict, optional): Classes of ``clcr@REV``.
    """

    def __init__(self,
                 name: str,
                 model_cfg: dict,
                 cfg,
                 device: torch.device,
                 amp: bool,
                 reference: Optional[Dict[str, type]] = None) -> None:
        self.name = name
        self.device = device
        self.amp = amp
        variant = name.split('@')[0]
        self.model = bu.build_model(
            bu.fusion_variant(model_cfg, variant), device)
        if '@' in name:
            bu.swap_reference(self.model, reference)
        self.optim = build_optim_wrapper(self.model, cfg, device, amp)
        # CUDA AMP is inside AmpOptimWrapper.optim_context; CPU AMP needs
        # an explicit autocast.
        self.cpu_amp = amp and device.type != 'cuda'

    def train_step(self, batch: dict) -> None:
        self.model.train()
        with bu.autocast(self.device, self.cpu_amp):
            self.model.train_step(batch, self.optim)

    def infer_step(self, batch: dict) -> None:
        self.model.eval()
        with torch.no_grad(), bu.autocast(self.device, self.amp):
            self.model.val_step(batch)

    def cache_encoder(self, batch: dict) -> None:
        """Replace the encoder by its output on ``batch``, so a train step
        runs only preprocessing, fusion, head, losses and optimizer.

        The cached tokens are leaves that require grad, so backward still
        computes the gradient that would flow into the encoder.
        """
        self.model.train()
        with torch.no_grad(), bu.autocast(self.device, self.cpu_amp or (
                self.amp and self.device.type == 'cuda')):
            data = self.model.data_preprocessor(batch, True)
            inputs, _ = self.model._fold_views(data['inputs'])
            levels = self.model.backbone(inputs)
        cached = {
            level: {m: t.detach().requires_grad_()
                    for m, t in tokens.items()}
            for level, tokens in levels.items()
        }
        # Instance attributes shadow the class's methods for this model:
        # the recognizer runs the backbones (encode_taps), then the level
        # aligners (align); both are replaced, the aligners' output cached.
        backbone = self.model.backbone
        backbone.encode_taps = lambda inputs, lengths=None: ({}, {})
        backbone.align = lambda taps, step_masks, return_token_masks=False: \
            cached

    def restore_encoder(self) -> None:
        for name in ('encode_taps', 'align'):
            self.model.backbone.__dict__.pop(name, None)


def clcr_breakdown(bench: Bench, batch: dict, args: argparse.Namespace,
                   device: torch.device) -> Dict[str, Dict[str, float]]:
    """Time every CLCR part alone, forward + backward, interleaved.

    Inputs are the real tokens of the encoder on ``batch`` (and, for
    InterCAD and the regularisers, IntraCED's real outputs), detached leaves
    that require grad, so each part pays its own backward and nothing else.

    Returns:
        dict: part -> ``median_ms`` (wall) and ``cpu_median_ms``.
    """
    from clcr_mm.models.utils import LEVELS
    model = bench.model.train()
    with torch.no_grad():
        data = model.data_preprocessor(batch, True)
        inputs, _ = model._fold_views(data['inputs'])
        levels = model.backbone(inputs)
        first = levels[LEVELS[0]][model.modalities[0]]
        mask = torch.ones(
            first.shape[0], len(model.modalities), dtype=torch.bool,
            device=first.device)
        intra, _ = model.intra_ced(levels, mask)

    def leaves(nested: dict) -> dict:
        return {
            l: {m: t.detach().requires_grad_()
                for m, t in d.items()}
            for l, d in nested.items()
        }

    tokens = leaves(levels)
    shared = leaves({l: intra[l]['shared'] for l in LEVELS})
    private = leaves({l: intra[l]['private'] for l in LEVELS})
    with torch.no_grad():
        level_feats = model.inter_cad(shared, private, mask)['level_feats']
    level_feats = level_feats.detach().requires_grad_()

    def intra_step() -> None:
        # all levels, batched, as the model runs them
        out, _ = model.intra_ced(tokens, mask)
        loss = sum(t.float().mean() for level in out.values()
                   for part in ('shared', 'private')
                   for t in level[part].values())
        loss.backward()

    parts = {'intra_ced': intra_step}
    parts['inter_cad'] = lambda: model.inter_cad(shared, private, mask)[
        'feat'].float().mean().backward()
    if model.loss_sep is not None:
        parts['loss_sep'] = lambda: model.loss_sep(
            shared, private, mask, model.modalities).backward()
    if model.loss_cross is not None:
        parts['loss_cross'] = lambda: model.loss_cross(level_feats).backward()
    if model.loss_align is not None:
        parts['loss_align'] = lambda: model.loss_align(
            shared, mask, model.modalities).backward()
    cpu: Dict[str, List[float]] = {}
    wall = bu.interleaved_times(parts, device, args.repeats, args.warmup,
                                cpu_times=cpu)
    return {
        part: dict(
            median_ms=bu.summarize(wall[part])['median_ms'],
            cpu_median_ms=bu.summarize(cpu[part])['median_ms'])
        for part in parts
    }


# Ops that do the matrix arithmetic (GEMMs and fused attention); the rest
# are element-wise, normalisation, indexing, copies, optimizer updates.
MATMUL_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm',
              'aten::_scaled_dot_product_flash_attention_for_cpu',
              'aten::_scaled_dot_product_flash_attention_for_cpu_backward')


def op_profile(step, steps: int = 3) -> Dict[str, float]:
    """Self CPU time per training step split into matrix arithmetic and
    everything else, from ``torch.profiler`` over ``steps`` steps.

    The profiler adds a few microseconds to every op, so ``other_ms`` and
    the total are inflated where ops are many and small; ``matmul_ms`` is
    the robust figure.

    Returns:
        dict: ``matmul_ms``, ``other_ms``, ``self_cpu_ms`` and
        ``op_calls`` per step.
    """
    from torch.profiler import ProfilerActivity, profile
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    matmul = sum(e.self_cpu_time_total
                 for e in events if e.key in MATMUL_OPS) / 1000 / steps
    return dict(
        matmul_ms=matmul,
        other_ms=total - matmul,
        self_cpu_ms=total,
        op_calls=sum(e.count for e in events) / steps)


class AtenOpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while active, by overload packet.

    It sits below autograd, so the backward's ops are counted too (the
    autograd engine carries the mode into its threads), each call once:
    what a GPU would see as dispatcher work on the host. ``kernels``
    counts only the ops whose output does not alias an input (by the op's
    schema): views, transposes, expands and the ``detach`` that autograd
    runs for every parameter's gradient change metadata and launch no
    kernel on a GPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()
        self.kernels: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.counts[name] += 1
        if not func.is_view:
            self.kernels[name] += 1
        return func(*args, **(kwargs or {}))


def count_aten_ops(model: torch.nn.Module, batch: dict) -> AtenOpCounter:
    """The aten ops of one training step's forward and backward (``loss``
    mode, ``parse_losses``, backward). Not counted: the data preprocessor,
    whose per-sample stacking and normalisation grow with the batch, and
    the optimizer, whose count depends on its foreach/fused setting.

    Returns:
        AtenOpCounter: ``counts`` (every op) and ``kernels`` (non-view
        ops), by op name.
    """
    model.train()
    data = model.data_preprocessor(batch, True)
    with AtenOpCounter() as counter:
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter


def count_optimizer_ops(bench: 'Bench', batch: dict) -> AtenOpCounter:
    """The aten ops of one parameter update after a training step's
    backward: what ``OptimWrapper.step`` runs (gradient clipping, the
    optimizer's step), counted apart from :func:`count_aten_ops` because
    it depends on the optimizer's fused / foreach setting and on how many
    parameter groups the optimizer-wrapper constructor made.

    Returns:
        AtenOpCounter: Its ops, by name.
    """
    model = bench.model
    model.train()
    data = model.data_preprocessor(batch, True)
    with bu.autocast(bench.device, bench.amp):
        loss, _ = model.parse_losses(model(**data, mode='loss'))
    bench.optim.backward(loss)
    with AtenOpCounter() as counter:
        bench.optim.step()
    bench.optim.zero_grad()
    return counter


def op_counts(benches: Dict[str, 'Bench'], setup: Dict[str, Any],
              batches: Sequence[int], seed: int,
              device: torch.device) -> Dict[str, Dict[str, Any]]:
    """Per variant: total aten ops per step at each batch size (``total``;
    ``kernels``: the non-view ones), the most frequent ops at the first
    one, and the ops of one parameter update (``optimizer_step``: ``total``,
    ``kernels``, and the optimizer's ``param_groups`` and ``params``)."""
    out: Dict[str, Dict[str, Any]] = {
        v: dict(total={}, kernels={})
        for v in benches
    }
    for i, size in enumerate(batches):
        batch = move_batch(
            make_batch(setup['shapes'], size, setup['num_classes'],
                       setup['regression'], seed), device)
        for v, b in benches.items():
            with bu.autocast(device, b.amp):
                counter = count_aten_ops(b.model, batch)
            out[v]['total'][str(size)] = sum(counter.counts.values())
            out[v]['kernels'][str(size)] = sum(counter.kernels.values())
            if i == 0:
                out[v]['top'] = dict(counter.counts.most_common(12))
                update = count_optimizer_ops(b, batch)
                groups = b.optim.optimizer.param_groups
                out[v]['optimizer_step'] = dict(
                    total=sum(update.counts.values()),
                    kernels=sum(update.kernels.values()),
                    param_groups=len(groups),
                    params=sum(len(g['params']) for g in groups))
    return out


def count_flops(step) -> float:
    """FLOPs of one call of ``step`` (matmul / conv / attention ops, as
    counted by ``torch.utils.flop_counter.FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def peak_step_memory(bench: Bench, batch: dict) -> Dict[str, Any]:
    """Peak RSS (and CUDA peak) of one training step, in this process."""
    bu.synchronize(bench.device)
    resettable = bu.reset_peak_rss()
    bu.reset_cuda_peak(bench.device)
    before = bu.current_rss_mb()
    bench.train_step(batch)
    bu.synchronize(bench.device)
    peak = bu.peak_rss_mb()
    return dict(
        peak_rss_mb=peak,
        step_rss_increase_mb=(peak - before) if (resettable and before)
        else None,
        peak_rss_is_lifetime=not resettable,
        cuda_max_allocated_mb=bu.cuda_peak_mb(bench.device))


def run(args: argparse.Namespace, argv: Sequence[str]) -> Dict[str, Any]:
    """Benchmark and return the JSON record."""
    import clcr_mm  # noqa: F401  (registers modules, patches mmaction2)
    device = bu.setup_torch(args.device, args.threads)
    setup = prepare(args)
    torch.manual_seed(args.seed)
    train_batch = move_batch(
        make_batch(setup['shapes'], setup['batch_size'],
                   setup['num_classes'], setup['regression'], args.seed),
        device)
    infer_bs = args.infer_batch_size or setup['batch_size']
    infer_batch = train_batch if infer_bs == setup['batch_size'] else \
        move_batch(make_batch(setup['shapes'], infer_bs,
                              setup['num_classes'], setup['regression'],
                              args.seed + 1), device)
    variants = list(args.variants)
    reference = None
    if args.reference_rev:
        reference = bu.load_reference_classes(args.reference_rev)
        variants.append(f'clcr@{args.reference_rev}')
    benches = {
        v: Bench(v, setup['model_cfg'], setup['cfg'], device, args.amp,
                 reference)
        for v in variants
    }
    progress = not args.quiet
    results: Dict[str, Dict[str, Any]] = {
        v: dict(params=bu.count_parameters(b.model))
        for v, b in benches.items()
    }

    def store(part: str, times: Dict[str, List[float]],
               cpu: Dict[str, List[float]], batch_size: int) -> None:
        for v in times:
            stats = bu.summarize(times[v])
            cpu_stats = bu.summarize(cpu[v])
            results[v][part] = dict(
                **stats,
                samples_per_s=batch_size * 1000 / stats['median_ms'],
                times_ms=[t * 1000 for t in times[v]],
                cpu_median_ms=cpu_stats['median_ms'],
                cpu_mad_ms=cpu_stats['mad_ms'],
                cpu_times_ms=[t * 1000 for t in cpu[v]])

    train_cpu: Dict[str, List[float]] = {}
    train_times = bu.interleaved_times(
        {v: (lambda b=b: b.train_step(train_batch))
         for v, b in benches.items()}, device, args.repeats, args.warmup,
        args.inner, progress, train_cpu)
    store('train', train_times, train_cpu, setup['batch_size'])
    if not args.skip_infer:
        infer_cpu: Dict[str, List[float]] = {}
        infer_times = bu.interleaved_times(
            {v: (lambda b=b: b.infer_step(infer_batch))
             for v, b in benches.items()}, device, args.repeats, args.warmup,
            args.inner, progress, infer_cpu)
        store('infer', infer_times, infer_cpu, infer_bs)
    if args.memory:
        for v, b in benches.items():
            results[v]['memory'] = peak_step_memory(b, train_batch)
    if args.breakdown and 'clcr' in benches:
        results['clcr']['breakdown'] = clcr_breakdown(
            benches['clcr'], train_batch, args, device)
    if not args.skip_flops:
        for v, b in benches.items():
            results[v]['train_gflops'] = count_flops(
                lambda b=b: b.train_step(train_batch)) / 1e9
    if args.count_ops_batches:
        for v, ops in op_counts(benches, setup, args.count_ops_batches,
                                args.seed, device).items():
            results[v]['aten_ops'] = ops
    fusion_times = None
    if not args.skip_fusion:
        for b in benches.values():
            b.cache_encoder(train_batch)
        fusion_cpu: Dict[str, List[float]] = {}
        try:
            fusion_times = bu.interleaved_times(
                {v: (lambda b=b: b.train_step(train_batch))
                 for v, b in benches.items()}, device, args.repeats,
                args.warmup, args.inner, progress, fusion_cpu)
            if args.op_profile and device.type == 'cpu':
                for v, b in benches.items():
                    results[v]['fusion_only_ops'] = op_profile(
                        lambda b=b: b.train_step(train_batch))
        finally:
            for b in benches.values():
                b.restore_encoder()
        store('fusion_only_train', fusion_times, fusion_cpu,
               setup['batch_size'])

    ratios: Dict[str, Any] = {}
    pairs = [('clcr', base) for base in ('late', 'concat')]
    if args.reference_rev:
        ref = f'clcr@{args.reference_rev}'
        pairs += [(ref, 'late'), ('clcr', ref)]
    for num, base in pairs:
        if num not in results or base not in results:
            continue
        key = f'{num}_over_{base}'
        ratios[key] = dict(
            train_median_ratio=results[num]['train']['median_ms'] /
            results[base]['train']['median_ms'],
            train_paired_ratio=bu.paired_ratio(train_times[num],
                                               train_times[base]),
            train_cpu_paired_ratio=bu.paired_ratio(train_cpu[num],
                                                   train_cpu[base]))
        if not args.skip_infer:
            ratios[key]['infer_median_ratio'] = (
                results[num]['infer']['median_ms'] /
                results[base]['infer']['median_ms'])
            ratios[key]['infer_paired_ratio'] = bu.paired_ratio(
                infer_times[num], infer_times[base])
            ratios[key]['infer_cpu_paired_ratio'] = bu.paired_ratio(
                infer_cpu[num], infer_cpu[base])
        if 'aten_ops' in results[num]:
            for count, name in (('total', 'aten_op_ratio'),
                                ('kernels', 'kernel_op_ratio')):
                ratios[key][name] = {
                    size: total / results[base]['aten_ops'][count][size]
                    for size, total in results[num]['aten_ops'][count].items()
                }
        if 'train_gflops' in results[num]:
            ratios[key]['train_flop_ratio'] = (
                results[num]['train_gflops'] / results[base]['train_gflops'])
        if fusion_times is not None:
            ratios[key]['fusion_only_paired_ratio'] = bu.paired_ratio(
                fusion_times[num], fusion_times[base])
            ratios[key]['fusion_overhead_ms'] = (
                results[num]['fusion_only_train']['median_ms'] -
                results[base]['fusion_only_train']['median_ms'])
            ratios[key]['fusion_overhead_cpu_ms'] = (
                results[num]['fusion_only_train']['cpu_median_ms'] -
                results[base]['fusion_only_train']['cpu_median_ms'])
        if 'fusion_only_ops' in results[num]:
            # The matrix-arithmetic share of what the fusion adds (profiler
            # clock), applied to the measured CPU overhead: had every other
            # op been free, the step ratio could not drop below the floor.
            ops_num = results[num]['fusion_only_ops']
            ops_base = results[base]['fusion_only_ops']
            share = (ops_num['matmul_ms'] - ops_base['matmul_ms']) / (
                ops_num['self_cpu_ms'] - ops_base['self_cpu_ms'])
            ratios[key]['fusion_overhead_matmul_share'] = share
            ratios[key]['train_ratio_matmul_floor'] = 1 + (
                share * ratios[key]['fusion_overhead_cpu_ms'] /
                results[base]['train']['cpu_median_ms'])
    record = dict(
        benchmark='model_step',
        command='python tools/benchmark/model_step.py ' + ' '.join(argv),
        preset=args.preset,
        config=setup['config'],
        derived_config=setup['derived_config'],
        shapes={m: list(s) for m, s in setup['shapes'].items()},
        shape_source=setup['shape_source'],
        batch_size=setup['batch_size'],
        infer_batch_size=infer_bs,
        amp=args.amp,
        repeats=args.repeats,
        warmup=args.warmup,
        inner=args.inner,
        reference_rev=args.reference_rev,
        reference_commit=bu.resolve_rev(args.reference_rev)
        if args.reference_rev else None,
        cfg_options=args.cfg_options,
        environment=bu.environment(device),
        results=results,
        ratios=ratios)
    if 'clcr_over_late' in ratios:
        record['headline_clcr_over_late_train'] = \
            ratios['clcr_over_late']['train_paired_ratio']
        record['headline_clcr_over_late_train_cpu'] = \
            ratios['clcr_over_late']['train_cpu_paired_ratio']
    return record


def print_report(record: Dict[str, Any]) -> None:
    rows = []
    for v, r in record['results'].items():
        rows.append(
            dict(
                variant=v,
                params_M=r['params'] / 1e6,
                train_GFLOP=r.get('train_gflops'),
                train_ms=r['train']['median_ms'],
                train_mad=r['train']['mad_ms'],
                train_cpu_ms=r['train']['cpu_median_ms'],
                train_sps=r['train']['samples_per_s'],
                infer_ms=r.get('infer', {}).get('median_ms'),
                infer_cpu_ms=r.get('infer', {}).get('cpu_median_ms'),
                infer_sps=r.get('infer', {}).get('samples_per_s'),
                fusion_ms=r.get('fusion_only_train', {}).get('median_ms'),
                fusion_cpu_ms=r.get('fusion_only_train',
                                    {}).get('cpu_median_ms'),
                peak_rss_MB=r.get('memory', {}).get('peak_rss_mb'),
                cuda_MB=r.get('memory', {}).get('cuda_max_allocated_mb')))
    cols = ['variant', 'params_M', 'train_GFLOP', 'train_ms', 'train_mad',
            'train_cpu_ms', 'train_sps', 'infer_ms', 'infer_cpu_ms',
            'infer_sps', 'fusion_ms', 'fusion_cpu_ms']
    if any(r['peak_rss_MB'] is not None for r in rows):
        cols += ['peak_rss_MB', 'cuda_MB']
    print(f"model_step  preset={record['preset']}  config={record['config']}"
          f"  batch={record['batch_size']}  shapes={record['shapes']}  "
          f"device={record['environment']['device']}  threads="
          f"{record['environment']['threads']}  amp={record['amp']}")
    print(bu.format_table(rows, cols))
    for key, r in record['ratios'].items():
        parts = [
            f'{k}=' + ('/'.join(f'{x:.3f}' for x in v.values())
                       if isinstance(v, dict) else f'{v:.3f}')
            for k, v in r.items()
        ]
        print(f'{key}: ' + '  '.join(parts))
    ops = [
        dict(variant=v, **r['fusion_only_ops'])
        for v, r in record['results'].items() if 'fusion_only_ops' in r
    ]
    if ops:
        print('Fusion-only step, per step (torch.profiler self CPU time):')
        print(bu.format_table(ops, ['variant', 'matmul_ms', 'other_ms',
                                    'self_cpu_ms', 'op_calls']))
    counted = {v: r['aten_ops']['total']
               for v, r in record['results'].items() if 'aten_ops' in r}
    if counted:
        print('aten ops per training step (forward + backward), by batch:')
        print(bu.format_table(
            [dict(variant=v, **{f'B={b}': n for b, n in c.items()})
             for v, c in counted.items()],
            ['variant'] + [f'B={b}' for b in next(iter(counted.values()))]))
    updates = {v: r['aten_ops']['optimizer_step']
               for v, r in record['results'].items()
               if 'optimizer_step' in r.get('aten_ops', {})}
    if updates:
        print('aten ops of one parameter update (OptimWrapper.step):')
        print(bu.format_table(
            [dict(variant=v, **u) for v, u in updates.items()],
            ['variant', 'total', 'kernels', 'param_groups', 'params']))
    breakdown = record['results'].get('clcr', {}).get('breakdown')
    if breakdown:
        print('CLCR parts alone (forward + backward):')
        rows = [dict(part=k, **v) for k, v in breakdown.items()]
        print(bu.format_table(rows, ['part', 'median_ms', 'cpu_median_ms']))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    record = run(args, argv)
    print_report(record)
    bu.write_json(args.out, record)
    return record


if __name__ == '__main__':
    main()
