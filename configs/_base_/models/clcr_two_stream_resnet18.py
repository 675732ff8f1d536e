# CLCR on RGB + optical flow (two-stream): a ResNet-18 per stream.
# RGB: a 2D ResNet-18 on each of the T frames (frames folded into the
# batch), flow: a ResNet-18 on the stacked 2L-channel flow (TSN practice).
# Both are trained from scratch by default; for ImageNet initialisation set
# `pretrained='/path/to/resnet18.pth'` per modality (a local file; nothing
# is downloaded).
_base_ = ['./clcr_regularisers.py']

embed_dims = 256
flow_channels = 10  # 2L, L=5 flow frames

rgb_encoder = dict(
    backbone=dict(type='mmaction.ResNet', depth=18, pretrained=None,
                  out_indices=(3, )),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(128, 256, 512),
    layout='video',
    fold_frames=True,
    grids=((4, 4, 4), (4, 2, 2), (2, 1, 1)),
    pretrained=None)
flow_encoder = dict(
    backbone=dict(type='mmaction.ResNet', depth=18, pretrained=None,
                  in_channels=flow_channels, out_indices=(3, )),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(128, 256, 512),
    layout='image',
    grids=((1, 6, 6), (1, 3, 3), (1, 2, 2)),
    pretrained=None)

model = dict(
    type='CLCRRecognizer',
    backbone=dict(
        type='CLCRHierarchyEncoder',
        embed_dims=embed_dims,
        modalities=dict(rgb=rgb_encoder, flow=flow_encoder)),
    intra_ced=dict(
        type='IntraCED',
        num_heads=4,
        token_budget=dict(init_ratio=0.5, ratio_range=(0.1, 1.0))),
    inter_cad=dict(
        type='InterCAD', out_channels=embed_dims, num_anchors=8,
        num_heads=4),
    cls_head=dict(
        type='CLCRHead', num_classes=101, in_channels=embed_dims,
        dropout=0.5),
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors=dict(
            rgb=dict(
                type='ActionDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                format_shape='NCTHW'),
            flow=dict(
                type='ActionDataPreprocessor',
                mean=[128.] * flow_channels,
                std=[128.] * flow_channels,
                format_shape='NCHW'))))
