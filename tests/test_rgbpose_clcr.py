"""CLCRFusionHead on RGBPoseConv3D's feature maps (projects/rgbpose_clcr).

RGBPoseConv3D's final maps come out of a ReLU: every channel carries a
large positive mean that all samples share. Fed to the fusion as they are,
the project's SGD moved every sample's tokens together, the LayerNorms of
IntraCED / InterCAD then left h constant, and the head stayed at chance.
These tests train the project config's head, with the project config's
optimizer, on maps of that kind.
"""
import os.path as osp

import pytest
import torch
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import clcr_mm  # noqa: F401  (registers CLCR)
from clcr_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLCR_HEAD_CFG = osp.join(REPO, 'projects', 'rgbpose_clcr', 'configs',
                         'rgbpose-conv3d_clcr-head_synthetic-rgbpose.py')
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
