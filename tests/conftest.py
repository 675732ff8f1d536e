"""Shared fixtures: the clcr_mm scope and tiny CLCR model configs."""
import copy

import pytest
import torch
from mmengine.registry import init_default_scope

import clcr_mm  # noqa: F401


@pytest.fixture(autouse=True)
def clcr_scope():
    init_default_scope('clcr_mm')
    torch.manual_seed(0)
    # Tiny models gain nothing from intra-op threads, and on a busy 2-core
    # machine the threads contend: one thread keeps the suite fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sequence_encoder(in_channels: int, grids=((8, 1, 1), (4, 1, 1),
                                              (2, 1, 1))) -> dict:
    """A fast feature-sequence encoder spec for one modality."""
    return dict(
        backbone=dict(
            type='TemporalConvEncoder', in_channels=in_channels, channels=16),
        taps=('layers.0', 'layers.1', 'layers.2'),
        tap_channels=(16, 16, 16),
        layout='sequence',
        grids=grids)


def tiny_model_cfg(modalities=('a', 'b'), dims=32, num_classes=4,
                   **overrides) -> dict:
    """CLCR on feature sequences with every regulariser enabled."""
    cfg = dict(
        type='CLCRRecognizer',
        backbone=dict(
            type='CLCRHierarchyEncoder',
            embed_dims=dims,
            modalities={m: sequence_encoder(6 + i)
                        for i, m in enumerate(modalities)}),
        intra_ced=dict(type='IntraCED', num_heads=2, dropout=0.0),
        inter_cad=dict(
            type='InterCAD', out_channels=dims, num_anchors=4, num_heads=2,
            dropout=0.0),
        cls_head=dict(type='CLCRHead', num_classes=num_classes,
                      in_channels=dims),
        loss_sep=dict(type='SharedPrivateSeparationLoss', loss_weight=0.1),
        loss_cross=dict(type='CrossLevelInterferenceLoss', loss_weight=0.05),
        loss_budget=dict(type='TokenBudgetLoss', loss_weight=0.01),
        loss_align=dict(type='SharedAlignmentLoss', loss_weight=0.1))
    cfg.update(copy.deepcopy(overrides))
    return cfg


def tiny_inputs(batch=4, modalities=('a', 'b'), length=12, views=1):
    """(B, V, L, D) sequences per modality."""
    return {
        m: torch.randn(batch, views, length, 6 + i)
        for i, m in enumerate(modalities)
    }


def tiny_samples(batch=4, num_classes=4, masks=None):
    from mmaction.structures import ActionDataSample
    samples = []
    for i in range(batch):
        sample = ActionDataSample().set_gt_label(i % num_classes)
        if masks is not None and masks[i] is not None:
            sample.set_field(masks[i], 'modality_mask')
        samples.append(sample)
    return samples
