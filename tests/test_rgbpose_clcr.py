"""CLCR fusion on the backbone features of projects/rgbpose_clcr.

RGBPoseConv3D's final maps, like the stages tapped by the hierarchy
encoder, come out of a ReLU: every channel carries a positive mean that
all samples share. Fed to the fusion as they are, the project's SGD moved
every sample's tokens together, the LayerNorms of IntraCED / InterCAD then
left h constant, and the head stayed at chance. These tests train the
project configs' models, with the project's optimizer, on inputs of that
kind: the head on post-ReLU maps, the hierarchy variant on a few generated
clips.
"""
import copy
import os.path as osp
import runpy

import pytest
import torch
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DATASETS, init_default_scope

import clcr_mm  # noqa: F401  (registers CLCR)
from clcr_mm.models.backbones.hierarchy_encoder import (LevelAligner,
                                                        build_tap_norm,
                                                        masked_tap_norm)
from clcr_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROJECT = osp.join(REPO, 'projects', 'rgbpose_clcr')
CLCR_HEAD_CFG = osp.join(PROJECT, 'configs',
                         'rgbpose-conv3d_clcr-head_synthetic-rgbpose.py')
HIERARCHY_CFG = osp.join(
    PROJECT, 'configs', 'clcr-hierarchy_slowonly-rgb-pose_synthetic-rgbpose.py')
NUM_CLASSES = 4
POOL = 32


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def relu_maps(labels: torch.Tensor, channels: int, frames: int,
              seed: int) -> torch.Tensor:
    """Maps shaped like RGBPoseConv3D's (B, C, T, 2, 2) at 64 px: a ReLU
    of a channel mean shared by every sample, a small class shift and
    noise."""
    gen = torch.Generator().manual_seed(seed)
    shared = torch.randn(channels, 1, 1, 1, generator=gen)
    per_class = torch.randn(NUM_CLASSES, channels, 1, 1, 1, generator=gen)
    noise = torch.randn(len(labels), channels, frames, 2, 2, generator=gen)
    return torch.relu(shared + 0.3 * per_class[labels] + noise)


def samples(labels: torch.Tensor) -> list:
    out = []
    for label in labels:
        sample = ActionDataSample()
        sample.set_gt_label(label.view(1))
        out.append(sample)
    return out


def project_head(**fusion):
    """The synthetic config's CLCRFusionHead (fusion overrides applied)
    and an OptimWrapper built from the config's ``optim_wrapper``, as the
    Runner builds it (SGD, lr 0.0075, momentum 0.9, clip 40)."""
    cfg = Config.fromfile(CLCR_HEAD_CFG)
    cfg.model.cls_head.fusion.update(fusion)
    init_default_scope('mmaction')
    torch.manual_seed(0)
    head = MODELS.build(cfg.model.cls_head)
    head.init_weights()
    # the wrapper's module names match the recognizer's (cls_head.*), so
    # the config's paramwise rules see the names they see in training
    model = torch.nn.ModuleDict(dict(cls_head=head))
    return head, build_optim_wrapper(model, cfg.optim_wrapper)


def spread(h: torch.Tensor) -> float:
    """Across-sample std of h relative to its rms: 0 for a constant h."""
    return (h.std(0).mean() / h.pow(2).mean().sqrt()).item()


def train_on_shuffled_batches(head, optim_wrapper, steps: int = 15):
    """SGD on random batches of 8 from a pool of 32 labelled map pairs;
    returns the pool's eval accuracy and h's spread."""
    labels = torch.arange(POOL) % NUM_CLASSES
    maps = (relu_maps(labels, 2048, 2, seed=1),
            relu_maps(labels, 512, 4, seed=2))
    gen = torch.Generator().manual_seed(3)
    head.train()
    for _ in range(steps):
        idx = torch.randint(0, POOL, (8, ), generator=gen)
        losses = head.loss(tuple(m[idx] for m in maps), samples(labels[idx]))
        optim_wrapper.update_params(
            sum(v for k, v in losses.items() if k.startswith('loss')))
    head.eval()
    with torch.no_grad():
        h = head.fusion.fuse_inputs(maps)['fused']['feat']
        acc = (head(maps).argmax(1) == labels).float().mean().item()
    return acc, spread(h)


def test_clcr_head_learns_rgbpose_maps_with_the_project_optimizer():
    head, optim_wrapper = project_head()
    acc, h_spread = train_on_shuffled_batches(head, optim_wrapper)
    assert acc >= 0.9, acc
    assert h_spread > 0.3, h_spread


def test_unnormalised_maps_collapse_h():
    """The cause, kept visible: the same training without the maps' batch
    normalisation leaves h (nearly) the same for every sample."""
    head, optim_wrapper = project_head(norm_cfg=None)
    acc, h_spread = train_on_shuffled_batches(head, optim_wrapper)
    assert h_spread < 0.1, h_spread
    assert acc < 0.9, acc


def test_map_norm_removes_what_every_sample_shares():
    """In training the tokens do not depend on a per-channel offset that
    all samples of the batch share; without the norm they do."""
    labels = torch.arange(8) % NUM_CLASSES
    maps = (relu_maps(labels, 2048, 2, seed=1),
            relu_maps(labels, 512, 4, seed=2))
    offset = 5 * torch.rand(1, 512, 1, 1, 1)
    shifted = (maps[0], maps[1] + offset)
    for norm_cfg, invariant in ((dict(type='BN3d'), True), (None, False)):
        head, _ = project_head(norm_cfg=norm_cfg)
        fusion = head.fusion.train()
        with torch.no_grad():
            tokens = fusion.to_levels(maps)['shallow']['pose']
            moved = fusion.to_levels(shifted)['shallow']['pose']
        assert torch.allclose(tokens, moved, atol=1e-4) is invariant
    # one norm per map: a single map serves all three levels
    assert [len(norms) for norms in head.fusion.map_norms.values()] == [1, 1]
    norms = project_head()[0].fusion.map_norms
    assert [n[0].num_features for n in norms.values()] == [2048, 512]


def test_three_maps_per_modality_get_one_norm_each():
    init_default_scope('mmaction')
    neck = MODELS.build(
        dict(
            type='clcr_mm.CLCRFusionNeck',
            modalities=('rgb', 'pose'),
            embed_dims=16,
            in_channels=((8, 16, 32), 4),
            intra_ced=dict(num_heads=2),
            inter_cad=dict(out_channels=16, num_heads=2)))
    assert [n.num_features for n in neck.map_norms['rgb']] == [8, 16, 32]
    assert [n.num_features for n in neck.map_norms['pose']] == [4]
    rgb = [torch.rand(2, c, 2, 4, 4) for c in (8, 16, 32)]
    pose = torch.rand(2, 4, 4, 4, 4)
    levels = neck.to_levels((rgb, pose))
    assert levels['mid']['rgb'].shape == (2, 8, 16)
    with pytest.raises(ValueError, match="'rgb', level 'mid'.*fix in_chan"):
        neck.to_levels(([rgb[0], rgb[0], rgb[2]], pose))
    with pytest.raises(ValueError, match="'pose', its feature map.*fix in_"):
        neck.to_levels((rgb, torch.rand(2, 5, 4, 4, 4)))


def padded_taps(lengths: torch.Tensor, frames: int, seed: int,
                fill: float) -> tuple:
    """A post-ReLU (B, 4, frames, 1, 1) tap whose steps past ``lengths``
    hold ``fill`` times noise, and its (B, frames) valid-step mask. The
    valid steps depend on the seed only (frames <= 16)."""
    gen = torch.Generator().manual_seed(seed)
    valid_part = torch.relu(1 + torch.randn(
        len(lengths), 4, 16, 1, 1, generator=gen))[:, :, :frames]
    mask = torch.arange(frames)[None] < lengths[:, None]
    padding = fill * torch.randn(valid_part.shape)
    return torch.where(mask[:, None, :, None, None], valid_part,
                       padding), mask


def test_tap_norm_statistics_come_from_valid_steps_only():
    """A padded batch is normalised as the unpadded one: same outputs on
    the valid steps, same running statistics; a plain batch norm of the
    padded tap is not."""
    lengths = torch.tensor([5, 5, 5])
    unpadded, _ = padded_taps(lengths, 5, seed=0, fill=0)
    padded, mask = padded_taps(lengths, 8, seed=0, fill=50)
    assert torch.equal(padded[:, :, :5], unpadded)
    norms = [build_tap_norm(dict(type='BN3d'), 4) for _ in range(3)]
    reference = norms[0](unpadded)
    masked = masked_tap_norm(norms[1], padded, mask)
    assert torch.allclose(masked[:, :, :5], reference, atol=1e-5)
    assert masked[:, :, 5:].abs().max() == 0
    for stat in ('running_mean', 'running_var'):
        assert torch.allclose(
            getattr(norms[0], stat), getattr(norms[1], stat), atol=1e-5)
    plain = norms[2](padded)
    assert not torch.allclose(plain[:, :, :5], reference, atol=1e-2)
    assert not torch.allclose(norms[2].running_var, norms[0].running_var,
                              atol=1e-2)
    with pytest.raises(TypeError, match='padded steps.*GroupNorm'):
        masked_tap_norm(
            build_tap_norm(dict(type='GN', num_groups=2), 4), padded, mask)


def test_aligner_tokens_ignore_what_padding_holds():
    """Samples of different lengths, in training (batch statistics) and in
    eval (running statistics): the tokens do not depend on the padding."""
    lengths = torch.tensor([7, 3, 5, 1])
    aligners = []
    for fill in (0, 50):
        torch.manual_seed(0)
        aligners.append(
            LevelAligner(4, 8, (4, 1, 1), norm_cfg=dict(type='BN3d')))
        tap, mask = padded_taps(lengths, 8, seed=1, fill=fill)
        aligners[-1].train()
        tokens = aligners[-1](tap, mask)
        aligners[-1].eval()
        with torch.no_grad():
            tokens = (tokens, aligners[-1](tap, mask))
        if fill:
            for a, b in zip(tokens, reference):
                assert torch.allclose(a, b, atol=1e-5)
        reference = tokens
    assert torch.equal(aligners[0].tap_norm.running_mean,
                       aligners[1].tap_norm.running_mean)


@pytest.fixture(scope='module')
def tiny_clips(tmp_path_factory):
    """16 clips of the project's synthetic task (4 per class) written by
    its generator, through the config's validation pipeline with half its
    frames (4 RGB, 16 pose) at its 64 px (16 px heatmaps). At 32 px the
    unnormalised variant does not collapse within a few steps, at 64 px it
    does, as in the full runs."""
    data = tmp_path_factory.mktemp('synthetic_rgbpose')
    build = runpy.run_path(
        osp.join(PROJECT, 'tools', 'build_synthetic_rgbpose.py'))['build']
    assert build(str(data), num_train=16, num_val=0) == []
    cfg = Config.fromfile(HIERARCHY_CFG)
    pipeline = copy.deepcopy(cfg.val_dataloader.dataset.pipeline)
    for transform in pipeline:
        if transform['type'] == 'MMUniformSampleFrames':
            transform['clip_len'] = dict(RGB=4, Pose=16)
    init_default_scope('mmaction')
    dataset = DATASETS.build(
        dict(cfg.train_dataloader.dataset,
             ann_file=str(data / 'synthetic_rgbpose.pkl'),
             data_prefix=dict(video=str(data / 'videos')),
             pipeline=pipeline))
    return [dataset[i] for i in range(len(dataset))]


def train_hierarchy_variant(clips: list, tap_norm_cfg, steps: int = 9):
    """The hierarchy config's recognizer (tap norm set as given) trained
    by ``train_step`` (the Runner's step) with the config's optimizer on
    random batches of 8 of ``clips``.

    Returns:
        tuple: The clips' eval accuracy, h's spread over them, and the mean
        training ``loss_cls`` of the last 4 steps.
    """
    cfg = Config.fromfile(HIERARCHY_CFG)
    cfg.model.backbone.tap_norm_cfg = tap_norm_cfg
    init_default_scope('mmaction')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    gen = torch.Generator().manual_seed(3)
    model.train()
    loss_cls = []
    for _ in range(steps):
        idx = torch.randint(0, len(clips), (8, ), generator=gen).tolist()
        log = model.train_step(
            pseudo_collate([copy.deepcopy(clips[i]) for i in idx]),
            optim_wrapper)
        loss_cls.append(log['loss_cls'].item())
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate(copy.deepcopy(clips)))
        levels = model.extract_feat(data['inputs'])[0]
        h = model.cls_head.fusion.fuse_inputs(levels)['fused']['feat']
        scores = model.cls_head(levels)
    labels = torch.cat([clip['data_samples'].gt_label for clip in clips])
    acc = (scores.argmax(1) == labels).float().mean().item()
    return acc, spread(h), sum(loss_cls[-4:]) / 4


def test_hierarchy_variant_learns_with_tap_norm(tiny_clips):
    """With its taps batch-normalised (the config) the recognizer fits its
    training batches and h varies across clips; after 9 steps the eval
    accuracy on the 16 clips is above chance, not yet 100 % (measured:
    56 %, h's spread 0.24, loss_cls 0.25)."""
    acc, h_spread, loss = train_hierarchy_variant(tiny_clips,
                                                  dict(type='BN3d'))
    assert h_spread > 0.15, h_spread
    assert loss < 1.0, loss
    assert acc >= 0.375, acc


def test_hierarchy_variant_collapses_without_tap_norm(tiny_clips):
    """The cause, kept visible: unnormalised taps leave h (nearly) the
    same for every clip, the head at chance and loss_cls above ln 4
    (measured: 25 %, spread 0.013, loss_cls 2.4)."""
    acc, h_spread, loss = train_hierarchy_variant(tiny_clips, None)
    assert h_spread < 0.05, h_spread
    assert loss > 1.39, loss
    assert acc < 0.375, acc


def test_hierarchy_config_norms_taps_and_keeps_default_keys():
    """The project config sets the tap norm; without it the state dict has
    the keys it had before the option existed (shipped checkpoints load)."""
    cfg = Config.fromfile(HIERARCHY_CFG)
    assert cfg.model.backbone.tap_norm_cfg == dict(type='BN3d')
    init_default_scope('mmaction')
    normed = MODELS.build(cfg.model.backbone)
    cfg.model.backbone.pop('tap_norm_cfg')
    plain = MODELS.build(cfg.model.backbone)
    aligner_keys = {
        k.split('.', 3)[-1]
        for k in plain.state_dict() if k.startswith('aligners.')
    }
    assert aligner_keys == {
        'proj.weight', 'proj.bias', 'norm.weight', 'norm.bias', 'pos_embed'
    }
    added = set(normed.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(normed.state_dict())
    assert {k.split('.', 3)[-1] for k in added} == {
        f'tap_norm.{name}' for name in ('weight', 'bias', 'running_mean',
                                        'running_var', 'num_batches_tracked')
    }
    # one norm per tap, as wide as the tap
    assert [a.tap_norm.num_features for a in normed.aligners['imgs']
            ] == [512, 1024, 2048]
    # the budgets' ratio logits are not decayed by the project's SGD
    model = torch.nn.ModuleDict(dict(backbone=normed))
    model['cls_head'] = MODELS.build(cfg.model.cls_head)
    # mmengine's constructor gives every parameter its own group
    group_of = {
        id(group['params'][0]): group
        for group in build_optim_wrapper(model, cfg.optim_wrapper).param_groups
    }
    logits = [p for n, p in model.named_parameters() if n.endswith('.logit')]
    assert len(logits) == 6  # 3 levels x 2 modalities
    assert all(group_of[id(p)]['weight_decay'] == 0 for p in logits)
    assert group_of[id(model.cls_head.fc.weight)]['weight_decay'] == 1e-4
