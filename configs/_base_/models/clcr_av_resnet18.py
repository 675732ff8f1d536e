# CLCR on two modalities, visual frames (`rgb`) + log-mel audio (`audio`),
# each with a ResNet-18 trained from scratch, as in the audio-visual
# literature (OGM-GE, PMR, MLA). Spec section 7 defaults: d=256, 4 heads,
# K=8 anchors, rho initial 0.5 in [0.1, 1.0], lambda_sep=0.1,
# lambda_cross=0.05, lambda_budget=0.01.
_base_ = ['./clcr_regularisers.py']

embed_dims = 256
num_classes = 8  # set by each benchmark config

# Semantic hierarchy encoder: three taps per modality (ResNet stages 2, 3,
# 4 as shallow / mid / deep), each pooled to a token grid (t, h, w) that
# gets coarser with depth.
rgb_encoder = dict(
    backbone=dict(type='mmaction.ResNet', depth=18, pretrained=None,
                  out_indices=(3, )),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(128, 256, 512),
    layout='video',
    fold_frames=True,  # 2D backbone on every frame
    grids=((4, 4, 4), (4, 2, 2), (2, 2, 2)))
audio_encoder = dict(
    backbone=dict(type='mmaction.ResNet', depth=18, pretrained=None,
                  in_channels=1, out_indices=(3, )),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(128, 256, 512),
    layout='image',  # (1, time, mel) spectrogram
    grids=((1, 8, 4), (1, 4, 2), (1, 2, 2)))

model = dict(
    type='CLCRRecognizer',
    backbone=dict(
        type='CLCRHierarchyEncoder',
        embed_dims=embed_dims,
        modalities=dict(rgb=rgb_encoder, audio=audio_encoder)),
    intra_ced=dict(
        type='IntraCED',
        num_heads=4,
        tie_shared=False,
        exchange=True,
        token_budget=dict(init_ratio=0.5, ratio_range=(0.1, 1.0))),
    inter_cad=dict(
        type='InterCAD',
        out_channels=embed_dims,
        num_anchors=8,
        num_heads=4,
        synchronise=True,
        selective=True,
        gate_private=True),
    cls_head=dict(
        type='CLCRHead',
        num_classes=num_classes,
        in_channels=embed_dims,
        dropout=0.3),
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors=dict(
            rgb=dict(
                type='ActionDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                format_shape='NCTHW'),
            audio=dict(type='ActionDataPreprocessor', format_shape='NCHW'))),
    train_cfg=dict(modality_dropout=0.0),
    test_cfg=dict(missing_modalities=(), return_analysis=False))
