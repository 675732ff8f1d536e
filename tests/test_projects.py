"""The worked projects under ``projects/``: CLCR parts inside mmaction2
models, configs written for mmaction2's default scope, project-local
modules, pretrained initialisation, and training through mmaction2's own
``tools/train.py``.

Inputs are tiny (2 frames, 32x32) so the whole file runs in seconds.
"""
import copy
import glob
import logging
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import save_checkpoint

from conftest import tiny_inputs, tiny_model_cfg, tiny_samples

from clcr_mm.models import IntraCED
from clcr_mm.registry import MODELS as CLCR_MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECTS = osp.join(REPO, 'projects')
BOTTLENECK_DIR = osp.join(PROJECTS, 'bottleneck_exchange')
AV_CFG = osp.join(PROJECTS, 'audio_visual_resnet', 'configs',
                  'clcr_r18-resnetaudio50_1xb16-6e_synthetic-av.py')
SLOWONLY_CFG = osp.join(PROJECTS, 'audio_visual_resnet', 'configs',
                        'clcr_slowonly-r18-resnetaudio50_1xb16-6e_'
                        'synthetic-av.py')
UCF_CFG = osp.join(PROJECTS, 'two_stream_tsn', 'configs',
                   'clcr_tsn-r18_rgb-flow_1xb32-6e_ucf101-split1.py')
SYN_FLOW_CFG = osp.join(PROJECTS, 'two_stream_tsn', 'configs',
                        'clcr_tsn-r18_rgb-flow_1xb16-6e_synthetic-rgb-flow.py')
BOTTLENECK_CFG = osp.join(
    BOTTLENECK_DIR, 'configs',
    'clcr-bottleneck4_r18-resnetaudio50_1xb16-6e_synthetic-av.py')
AUDIO_TSN_CFG = osp.join(PROJECTS, 'audio_visual_resnet', 'configs',
                         'tsn-audio_resnetaudio50_1xb16-6e_synthetic-av-'
                         'audio.py')
AV_PRETRAINED_CFG = osp.join(PROJECTS, 'audio_visual_resnet', 'configs',
                             'clcr_r18-resnetaudio50_1xb16-6e_synthetic-av_'
                             'audio-pretrained.py')
PROJECT_CFGS = [
    AV_CFG, SLOWONLY_CFG, AV_PRETRAINED_CFG, UCF_CFG, SYN_FLOW_CFG,
    BOTTLENECK_CFG
]
RES18 = dict(type='ResNet', depth=18, pretrained=None, out_indices=(3, ))


@pytest.fixture(autouse=True, scope='module')
def single_thread_quiet():
    """Tiny tensors gain nothing from intra-op threads, and on a busy
    2-core machine OpenMP spin-waits make them ten times slower; mmengine's
    per-parameter init report is silenced."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
    torch.set_num_threads(threads)


@pytest.fixture
def project_path(monkeypatch):
    """Make the project-local packages importable, as the READMEs'
    ``PYTHONPATH=projects/<name>`` does."""
    monkeypatch.syspath_prepend(BOTTLENECK_DIR)


@pytest.fixture
def mmaction_scope():
    """Run the test body under mmaction2's default scope."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def _mmaction_models():
    from mmaction.registry import MODELS
    return MODELS


def _types(cfg) -> list:
    """Every ``type`` string in a (nested) config."""
    found = []
    if isinstance(cfg, dict):
        if isinstance(cfg.get('type'), str):
            found.append(cfg['type'])
        for value in cfg.values():
            found += _types(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            found += _types(value)
    return found


def _tiny_batch(model_cfg, batch: int = 2, num_classes: int = 4) -> dict:
    """A collated batch for the model's modalities: 2 frames of 32x32 for
    video, a (C, 32, 32) image for flow stacks and spectrograms."""
    from mmaction.structures import ActionDataSample
    inputs = {}
    for name, spec in model_cfg['backbone']['modalities'].items():
        if spec['layout'] == 'video':
            shape = (1, 3, 2, 32, 32)
        else:
            shape = (1, spec['backbone'].get('in_channels', 3), 32, 32)
        inputs[name] = [
            torch.randint(0, 255, shape).float() for _ in range(batch)
        ]
    samples = [
        ActionDataSample().set_gt_label(i % num_classes)
        for i in range(batch)
    ]
    return dict(inputs=inputs, data_samples=samples)


# ----------------------------------------------------------------------
# project configs
# ----------------------------------------------------------------------
@pytest.mark.parametrize('path', PROJECT_CFGS, ids=osp.basename)
def test_project_config_reads_as_an_mmaction2_config(path, project_path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmaction'
    assert 'clcr_mm' in cfg.custom_imports['imports']
    assert cfg.custom_imports['allow_failed_imports'] is False
    # Every model type resolves from mmaction2's scope: ours are written
    # clcr_mm.<Name>, mmaction2's and project-local ones bare.
    models = _mmaction_models()
    with DefaultScope.overwrite_default_scope('mmaction'):
        unresolved = [t for t in _types(cfg.model) if models.get(t) is None]
    assert unresolved == []
    assert cfg.model['type'] == 'clcr_mm.CLCRRecognizer'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader]['dataset']['_scope_'] == 'clcr_mm'


# The synthetic two-stream config only changes the data of the UCF101 one;
# the SlowOnly variant's backbone is exercised in
# test_mmaction_backbones_tapped_from_clcr_scope.
@pytest.mark.parametrize(
    'path', [AV_CFG, UCF_CFG, BOTTLENECK_CFG], ids=osp.basename)
def test_project_model_trains_and_predicts(path, project_path,
                                           mmaction_scope):
    cfg = Config.fromfile(path)
    num_classes = cfg.model['cls_head']['num_classes']
    model = _mmaction_models().build(cfg.model)
    model.init_weights()
    data = model.data_preprocessor(
        _tiny_batch(cfg.model, num_classes=num_classes), True)
    losses = model(**data, mode='loss')
    for key in ('loss_cls', 'loss_sep', 'loss_cross', 'loss_budget'):
        assert torch.isfinite(losses[key]), key
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    # Gradients reach every modality's mmaction2 backbone and the fusion.
    for name, encoder in model.backbone.encoders.items():
        grads = [p.grad for p in encoder.backbone.parameters()
                 if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, name
    assert model.inter_cad.anchors.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(
            _tiny_batch(cfg.model, num_classes=num_classes), False),
                      mode='predict')
    assert preds[0].pred_score.shape == (num_classes, )
    assert torch.allclose(preds[0].pred_score.sum(), torch.tensor(1.0),
                          atol=1e-5)


def test_project_data_pipelines_build_in_mmaction_scope(tmp_path,
                                                        mmaction_scope):
    """The clcr_mm dataset bases, inherited by a config whose default scope
    is mmaction, build every transform (each dataset carries
    ``_scope_='clcr_mm'``)."""
    from mmaction.registry import DATASETS
    (tmp_path / 'classes.txt').write_text('\n'.join('abcdefgh') + '\n')
    (tmp_path / 'list.txt').write_text('videos/a.mp4 3\n')
    cfg = Config.fromfile(AV_CFG)
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset_cfg = copy.deepcopy(cfg[loader]['dataset'])
        dataset_cfg.update(data_root=str(tmp_path), ann_file='list.txt')
        dataset = DATASETS.build(dataset_cfg)
        names = [type(t).__name__ for t in dataset.pipeline.transforms]
        assert names == ['KeyMapper', 'LoadAudio', 'AudioClipSample',
                         'LogMelSpectrogram', 'PackMultiModalInputs']
        assert dataset.get_data_info(0)['label'] == 3


# ----------------------------------------------------------------------
# cross-scope registry paths
# ----------------------------------------------------------------------
def test_mmaction_backbones_tapped_from_clcr_scope():
    """From scope clcr_mm: mmaction.ResNet / ResNetAudio / ResNet3dSlowOnly
    each tapped at three stages by the hierarchy encoder."""
    from mmaction.models import ResNet, ResNet3dSlowOnly, ResNetAudio
    taps = ('layer2', 'layer3', 'layer4')
    encoder = CLCR_MODELS.build(dict(
        type='CLCRHierarchyEncoder',
        embed_dims=32,
        modalities=dict(
            rgb=dict(backbone=dict(RES18, type='mmaction.ResNet'),
                     taps=taps, tap_channels=(128, 256, 512),
                     layout='video', fold_frames=True,
                     grids=((2, 2, 2), (2, 1, 1), (1, 1, 1))),
            clip=dict(backbone=dict(type='mmaction.ResNet3dSlowOnly',
                                    depth=18, pretrained=None,
                                    lateral=False, conv1_kernel=(1, 7, 7),
                                    conv1_stride_t=1, pool1_stride_t=1,
                                    inflate=(0, 0, 1, 1)),
                      taps=taps, tap_channels=(128, 256, 512),
                      layout='video',
                      grids=((2, 2, 2), (2, 1, 1), (1, 1, 1))),
            audio=dict(backbone=dict(type='mmaction.ResNetAudio', depth=50,
                                     pretrained=None, base_channels=8,
                                     conv1_stride=2),
                       taps=taps, tap_channels=(64, 128, 256),
                       layout='image',
                       grids=((1, 4, 2), (1, 2, 2), (1, 1, 1))))))
    encoders = encoder.encoders
    assert isinstance(encoders['rgb'].backbone, ResNet)
    assert isinstance(encoders['clip'].backbone, ResNet3dSlowOnly)
    assert isinstance(encoders['audio'].backbone, ResNetAudio)
    levels = encoder(dict(rgb=torch.randn(2, 3, 2, 32, 32),
                          clip=torch.randn(2, 3, 2, 32, 32),
                          audio=torch.randn(2, 1, 32, 32)))
    assert {m: t.shape for m, t in levels['shallow'].items()} == dict(
        rgb=(2, 8, 32), clip=(2, 8, 32), audio=(2, 8, 32))
    assert levels['deep']['audio'].shape == (2, 1, 32)


def test_clcr_parts_from_mmaction_scope_with_custom_imports(tmp_path):
    """From scope mmaction, a config that imports clcr_mm builds
    ``clcr_mm.IntraCED``; the bare name is not mmaction2's."""
    cfg_file = tmp_path / 'user_cfg.py'
    cfg_file.write_text(
        "default_scope = 'mmaction'\n"
        "custom_imports = dict(imports=['clcr_mm'], "
        "allow_failed_imports=False)\n"
        "neck = dict(type='clcr_mm.IntraCED', modalities=('a', 'b'), "
        "embed_dims=16, num_heads=2)\n")
    cfg = Config.fromfile(str(cfg_file))
    models = _mmaction_models()
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        neck = models.build(cfg.neck)
        with pytest.raises(KeyError, match='IntraCED'):
            models.build(dict(cfg.neck, type='IntraCED'))
        # The regression head's default L1 loss is scope-qualified too.
        head = models.build(dict(type='clcr_mm.CLCRHead', num_classes=1,
                                 in_channels=8, task='regression'))
    assert isinstance(neck, IntraCED)
    assert type(head.loss_cls).__name__ == 'L1Loss'
    out = neck(dict(a=torch.randn(2, 5, 16), b=torch.randn(2, 3, 16)))
    assert out['shared']['b'].shape == (2, 3, 16)


@pytest.mark.parametrize('scope', ['clcr_mm', 'mmaction'])
def test_one_transform_name_builds_one_class_in_every_scope(scope):
    """``PackActionInputs`` is mmaction2's in both scopes; ours has its own
    name and is reached from mmaction2 configs by ``clcr_mm.``."""
    from mmaction.datasets.transforms import PackActionInputs
    from mmaction.registry import TRANSFORMS

    from clcr_mm.datasets.transforms import PackMultiModalInputs
    ours = 'PackMultiModalInputs' if scope == 'clcr_mm' else \
        'clcr_mm.PackMultiModalInputs'
    with DefaultScope.overwrite_default_scope(scope):
        assert type(TRANSFORMS.build(
            dict(type='PackActionInputs'))) is PackActionInputs
        assert type(TRANSFORMS.build(
            dict(type=ours, collect_keys=('a', )))) is PackMultiModalInputs


def test_project_module_resolves_from_both_scopes(project_path):
    """BottleneckExchange lives in mmaction2's registry: bare from scope
    mmaction, and through the parent from scope clcr_mm (which is how the
    CLCR recognizer builds its ``intra_ced``)."""
    import clcr_bottleneck
    models = _mmaction_models()
    for scope, registry in (('mmaction', models), ('clcr_mm', CLCR_MODELS)):
        with DefaultScope.overwrite_default_scope(scope):
            module = registry.build(dict(type='BottleneckExchange',
                                         modalities=('a', 'b'),
                                         embed_dims=16, num_heads=2))
        assert isinstance(module, clcr_bottleneck.BottleneckExchange)


# ----------------------------------------------------------------------
# the project-local exchange keeps CLCR's properties
# ----------------------------------------------------------------------
def _exchange(**kwargs):
    from clcr_bottleneck import BottleneckExchange
    args = dict(modalities=('a', 'b', 'c'), embed_dims=16, num_heads=2,
                num_bottlenecks=3, dropout=0.0)
    args.update(kwargs)
    return BottleneckExchange(**args)


def _tokens(sizes=dict(a=6, b=4, c=5), batch=3, grad=False):
    return {m: torch.randn(batch, n, 16, requires_grad=grad)
            for m, n in sizes.items()}


def test_bottleneck_exchange_interface_and_no_private_leak(project_path):
    exchange = _exchange()
    tokens = _tokens(grad=True)
    out = exchange(tokens)
    assert set(out) == {'shared', 'private', 'shared_in', 'budget_ratio',
                        'budget_used', 'num_selected'}
    for m, t in tokens.items():
        assert out['shared'][m].shape == t.shape
        assert out['private'][m].shape == t.shape
    # the soft training gates offer rho = 0.5 of every modality's tokens
    for used in out['budget_used'].values():
        assert torch.allclose(used, torch.full((3, ), 0.5))
    # The exchange is real: b's shared tokens depend on a's input ...
    grad, = torch.autograd.grad(out['shared']['b'].sum(), tokens['a'])
    assert grad.abs().sum() > 0
    # ... but never through a's private projection.
    grads = torch.autograd.grad(
        out['shared']['b'].sum(),
        list(exchange.private_proj['a'].parameters()), allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads)
    # A modality never reads back its own bottleneck: with the others
    # absent, a's shared tokens do not depend on a's offered tokens.
    mask = torch.tensor([[True, False, False]] * 3)
    out = exchange(tokens, mask)
    grads = torch.autograd.grad(
        out['shared']['a'].sum(), list(exchange.write.parameters()),
        allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads)


@pytest.mark.parametrize('subspace', ['private_proj', 'shared_proj'])
def test_bottleneck_exchange_private_noise_stays_private(project_path,
                                                         subspace):
    """Noise added to P_a (by a forward hook on a's private projection)
    changes no other modality's exchanged shared tokens; the same noise on
    S_a does. Unlike a gradient check on the projection's parameters, this
    fails if P_a ever reaches the exchange by any path."""
    exchange = _exchange().eval()
    tokens = _tokens()
    clean = exchange(tokens)
    handle = getattr(exchange, subspace)['a'].register_forward_hook(
        lambda module, args, out: out + 3 * torch.randn_like(out))
    noisy = exchange(tokens)
    handle.remove()
    for m in ('b', 'c'):
        same = torch.allclose(clean['shared'][m], noisy['shared'][m],
                              atol=1e-6)
        assert same == (subspace == 'private_proj'), m


def test_bottleneck_exchange_ignores_absent_modality(project_path):
    exchange = _exchange().eval()
    tokens = _tokens()
    mask = torch.tensor([[True, True, False], [True, True, True],
                         [True, True, False]])
    out = exchange(tokens, mask)
    changed = dict(tokens, c=torch.randn_like(tokens['c']) * 5)
    out2 = exchange(changed, mask)
    assert torch.allclose(out['shared']['a'][[0, 2]],
                          out2['shared']['a'][[0, 2]], atol=1e-6)
    assert not torch.allclose(out['shared']['a'][1], out2['shared']['a'][1])


def test_bottleneck_exchange_trains_budget_inside_clcr(project_path):
    """Swapped into the CLCR recognizer, the budget ratio still learns and
    the budget regulariser still sees it."""
    model = CLCR_MODELS.build(tiny_model_cfg(
        intra_ced=dict(type='BottleneckExchange', num_heads=2,
                       num_bottlenecks=2)))
    losses = model(tiny_inputs(), tiny_samples(), mode='loss')
    assert 'loss_budget' in losses and 'budget_rho_mid' in losses
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    budget = model.intra_ced['mid'].budgets['a']
    assert budget.logit.grad is not None and budget.logit.grad.abs() > 0


# ----------------------------------------------------------------------
# pretrained initialisation
# ----------------------------------------------------------------------
def _backbone(**kwargs):
    return CLCR_MODELS.build(dict(RES18, type='mmaction.ResNet', **kwargs))


def _recognizer_cfg(pretrained, prefix, in_channels=3):
    """A one-modality CLCR recognizer whose encoder loads ``pretrained``."""
    return dict(
        type='CLCRRecognizer',
        backbone=dict(
            type='CLCRHierarchyEncoder', embed_dims=16,
            modalities=dict(flow=dict(
                backbone=dict(RES18, type='mmaction.ResNet',
                              in_channels=in_channels),
                taps=('layer2', 'layer3', 'layer4'),
                tap_channels=(128, 256, 512), layout='image',
                grids=((1, 2, 2), (1, 1, 1), (1, 1, 1)),
                pretrained=pretrained, pretrained_prefix=prefix))),
        inter_cad=dict(type='InterCAD', out_channels=16, num_anchors=2,
                       num_heads=2),
        cls_head=dict(type='CLCRHead', num_classes=3, in_channels=16))


def _same(module_a, module_b) -> bool:
    a, b = module_a.state_dict(), module_b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A plain backbone state dict and an mmaction2 recognizer checkpoint
    (mmengine format: ``meta`` + ``state_dict`` with ``backbone.*`` and
    ``cls_head.*``), both with distinctive weights."""
    root = tmp_path_factory.mktemp('ckpt')
    with DefaultScope.overwrite_default_scope('clcr_mm'):
        torch.manual_seed(1)
        recognizer = CLCR_MODELS.build(dict(
            type='mmaction.Recognizer2D',
            backbone=dict(RES18, type='ResNet', in_channels=10),
            cls_head=dict(type='TSNHead', num_classes=5, in_channels=512)))
    for p in recognizer.parameters():
        torch.nn.init.normal_(p)
    save_checkpoint(dict(meta=dict(epoch=3),
                         state_dict=recognizer.state_dict()),
                    str(root / 'tsn_flow.pth'))
    torch.save(recognizer.backbone.state_dict(), str(root / 'plain.pth'))
    return dict(root=root, source=recognizer.backbone)


def test_pretrained_from_mmaction2_recognizer_checkpoint(checkpoints):
    """Runner-style ``init_weights`` on the whole recognizer loads the
    ``backbone.*`` weights of an mmaction2 TSN checkpoint; its head is
    ignored."""
    model = CLCR_MODELS.build(_recognizer_cfg(
        str(checkpoints['root'] / 'tsn_flow.pth'), 'backbone.',
        in_channels=10))
    encoder = model.backbone.encoders['flow'].backbone
    assert not _same(encoder, checkpoints['source'])
    model.init_weights()
    assert _same(encoder, checkpoints['source'])


def test_pretrained_from_plain_and_clcr_checkpoints(checkpoints, tmp_path):
    from clcr_mm.models.backbones.hierarchy_encoder import load_pretrained
    target = _backbone(in_channels=10)
    load_pretrained(target, str(checkpoints['root'] / 'plain.pth'), '',
                    'flow')
    assert _same(target, checkpoints['source'])
    # A CLCR run's checkpoint initialises a stream of a new CLCR model.
    clcr = CLCR_MODELS.build(_recognizer_cfg(None, '', in_channels=10))
    save_checkpoint(dict(state_dict=clcr.state_dict()),
                    str(tmp_path / 'clcr.pth'))
    target = _backbone(in_channels=10)
    load_pretrained(target, str(tmp_path / 'clcr.pth'),
                    'backbone.encoders.flow.backbone.', 'flow')
    assert _same(target, clcr.backbone.encoders['flow'].backbone)


def test_pretrained_errors_name_the_problem(checkpoints, tmp_path):
    from clcr_mm.models.backbones.hierarchy_encoder import load_pretrained
    root = checkpoints['root']
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_pretrained(_backbone(), str(tmp_path / 'nowhere.pth'), '', 'rgb')
    # 10-channel flow weights into a 3-channel RGB stem
    with pytest.raises(RuntimeError,
                       match=r"'rgb'.*shape mismatch: conv1\.conv\.weight"):
        load_pretrained(_backbone(), str(root / 'plain.pth'), '', 'rgb')
    # a checkpoint that lacks some backbone weights
    partial = {k: v for k, v in checkpoints['source'].state_dict().items()
               if not k.startswith('layer4.')}
    torch.save(partial, str(tmp_path / 'partial.pth'))
    with pytest.raises(RuntimeError, match=r'missing in checkpoint: '
                       r'layer4\.0\.'):
        load_pretrained(_backbone(in_channels=10),
                        str(tmp_path / 'partial.pth'), '', 'flow')
    # the wrong prefix lists what the checkpoint holds
    with pytest.raises(KeyError, match=r"\['backbone\.', 'cls_head\.'\]"):
        load_pretrained(_backbone(in_channels=10), str(root / 'tsn_flow.pth'),
                        'model.backbone.', 'flow')
    # the recognizer-level path raises the same, when the Runner inits
    model = CLCR_MODELS.build(_recognizer_cfg(str(root / 'tsn_flow.pth'),
                                              'backbone.', in_channels=3))
    with pytest.raises(RuntimeError, match='shape mismatch'):
        model.init_weights()


def test_audio_stream_from_the_projects_mmaction2_audio_recognizer(
        tmp_path, mmaction_scope):
    """The two-stage example of projects/audio_visual_resnet: a checkpoint
    of the plain mmaction2 RecognizerAudio (stage 1) initialises the audio
    stream of the CLCR model (stage 2) through the config's ``pretrained``
    and ``pretrained_prefix``."""
    stage1 = Config.fromfile(AUDIO_TSN_CFG)
    assert stage1.model['type'] == 'RecognizerAudio'
    models = _mmaction_models()
    recognizer = models.build(stage1.model)
    recognizer.init_weights()
    save_checkpoint(dict(meta=dict(epoch=6),
                         state_dict=recognizer.state_dict()),
                    str(tmp_path / 'epoch_6.pth'))
    stage2 = Config.fromfile(AV_PRETRAINED_CFG)
    audio = stage2.model['backbone']['modalities']['audio']
    assert audio['pretrained_prefix'] == 'backbone.'
    assert audio['pretrained'].endswith('epoch_6.pth')
    audio['pretrained'] = str(tmp_path / 'epoch_6.pth')
    model = models.build(stage2.model)
    model.init_weights()
    assert _same(model.backbone.encoders['audio'].backbone,
                 recognizer.backbone)


def test_mmaction2_torchvision_pretrained_runs_inside_encoder(tmp_path):
    """mmaction2's own ImageNet path (``ResNet(pretrained=<torchvision
    file>)``) works inside the encoder: the Runner's init reaches it."""
    import torchvision
    torch.manual_seed(2)
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), str(tmp_path / 'resnet18_tv.pth'))
    cfg = _recognizer_cfg(None, '')
    cfg['backbone']['modalities']['flow']['backbone']['pretrained'] = str(
        tmp_path / 'resnet18_tv.pth')
    model = CLCR_MODELS.build(cfg)
    model.init_weights()
    backbone = model.backbone.encoders['flow'].backbone
    assert torch.equal(backbone.conv1.conv.weight, tv.conv1.weight)
    assert torch.equal(backbone.layer4[1].conv2.conv.weight,
                       tv.layer4[1].conv2.weight)


# ----------------------------------------------------------------------
# one real training iteration through mmaction2's own tools/train.py
# ----------------------------------------------------------------------
ENTRY_POINT_TEST = 'test_one_iteration_with_mmaction2_train_entry_point'


def _write_rawframes(root, clip, num_frames=6, size=36):
    """RGB + flow JPEGs of one clip in mmaction2's rawframe layout."""
    rng = np.random.default_rng(len(clip))
    clip_dir = osp.join(root, 'rawframes', clip)
    os.makedirs(clip_dir)
    for i in range(1, num_frames + 1):
        cv2.imwrite(osp.join(clip_dir, f'img_{i:05d}.jpg'),
                    rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        if i < num_frames:  # flow k: frame k -> k + 1
            for axis in 'xy':
                cv2.imwrite(osp.join(clip_dir, f'flow_{axis}_{i:05d}.jpg'),
                            rng.integers(0, 255, (size, size),
                                         dtype=np.uint8))


def _start_mmaction2_training(root) -> subprocess.Popen:
    """Launch ``python mmaction/.mim/tools/train.py`` on the synthetic
    two-stream config with 2 + 2 tiny clips under ``root``, shrunk to one
    iteration and one validation pass with ``--cfg-options``."""
    import mmaction
    train_py = osp.join(osp.dirname(mmaction.__file__), '.mim', 'tools',
                        'train.py')
    assert osp.isfile(train_py), 'the mmaction2 wheel ships tools/train.py'
    data = osp.join(root, 'data')
    for split in ('train', 'val'):
        rows = []
        for i in range(2):
            clip = f'{split}/{split}_{i}'
            _write_rawframes(data, clip)
            rows.append(f'{clip} 6 {i % 4}')
        with open(osp.join(data, f'{split}_list.txt'), 'w') as f:
            f.write('\n'.join(rows) + '\n')
    options = [
        f'{loader}.dataset.data_root={data}'
        for loader in ('train_dataloader', 'val_dataloader')
    ] + [
        'val_dataloader.dataset.ann_file=val_list.txt',
        # 6 frames per clip: sample 2 frames and a 1-flow stack
        'train_dataloader.dataset.pipeline.0.clip_len=2',
        'train_dataloader.dataset.pipeline.1.flow_len=1',
        'val_dataloader.dataset.pipeline.0.clip_len=2',
        'val_dataloader.dataset.pipeline.1.flow_len=1',
        'model.backbone.modalities.flow.backbone.in_channels=2',
        'model.data_preprocessor.preprocessors.flow.mean=[128,128]',
        'model.data_preprocessor.preprocessors.flow.std=[128,128]',
        'model.backbone.embed_dims=32', 'model.intra_ced.num_heads=2',
        'model.inter_cad.out_channels=32', 'model.inter_cad.num_heads=2',
        'model.cls_head.in_channels=32',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1', 'param_scheduler=None',
        'default_hooks.checkpoint=None', 'default_hooks.logger.interval=1',
    ]
    # Nothing is put on the path: the installed clcr_mm comes in through the
    # config's custom_imports alone. One thread: the in-process tests use
    # the other core meanwhile.
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen(
        [sys.executable, train_py, SYN_FLOW_CFG, '--work-dir',
         osp.join(root, 'work'), '--cfg-options', *options],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


@pytest.fixture(scope='module', autouse=True)
def mmaction2_training(request, tmp_path_factory):
    """Start the entry-point run when the module starts, so that it uses
    the second core while the in-process tests run on the first; the test
    below collects it. Started only if that test is selected."""
    if not any(item.name == ENTRY_POINT_TEST
               for item in request.session.items):
        yield None
        return
    root = str(tmp_path_factory.mktemp('mmaction2_train'))
    proc = _start_mmaction2_training(root)
    yield dict(proc=proc, root=root)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_one_iteration_with_mmaction2_train_entry_point(mmaction2_training):
    """``python mmaction/.mim/tools/train.py <project config>`` in a fresh
    interpreter: the config's ``custom_imports`` alone brings in clcr_mm
    (and its mmaction2 wheel repair) before any model is built, and a real
    Runner trains one iteration and validates."""
    proc, root = mmaction2_training['proc'], mmaction2_training['root']
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert 'Epoch(train) [1][1/1]' in log and 'loss_sep' in log, log[-3000:]
    assert 'Epoch(val) [1][1/1]' in log and 'acc/top1' in log, log[-3000:]
    assert glob.glob(osp.join(root, 'work', '*', 'vis_data', 'scalars.json'))
