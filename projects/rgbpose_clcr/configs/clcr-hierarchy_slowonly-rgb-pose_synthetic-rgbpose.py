# CLCR with its own hierarchy encoder inside mmaction2's MMRecognizer3D, on
# PoseC3D's two pathways as separate mmaction2 backbones (no lateral
# connections): ResNet3dSlowOnly on RGB and PoseC3D's ResNet3dSlowOnly on
# the keypoint heatmaps, three stages of each tapped as the shallow / mid /
# deep levels. MMRecognizer3D calls backbone(imgs=..., heatmap_imgs=...),
# so the modalities carry the pipeline's key names. Same data and schedule
# as the RGBPoseConv3D configs.
_base_ = [
    './rgbpose-conv3d_rgbpose-head_synthetic-rgbpose.py',
    './_base_/clcr_rgbpose_fusion.py'
]

rgb_pathway = dict(
    backbone=dict(
        type='ResNet3dSlowOnly',
        depth=50,
        pretrained=None,
        conv1_kernel=(1, 7, 7),
        inflate=(0, 0, 1, 1),
        with_pool2=False),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(512, 1024, 2048),
    layout='video',
    grids=((4, 4, 4), (4, 2, 2), (2, 1, 1)))
# PoseC3D's pose pathway (mmaction2's slowonly_r50 keypoint config)
pose_pathway = dict(
    backbone=dict(
        type='ResNet3dSlowOnly',
        depth=50,
        pretrained=None,
        in_channels=17,
        base_channels=32,
        num_stages=3,
        out_indices=(2, ),
        stage_blocks=(4, 6, 3),
        conv1_stride_s=1,
        pool1_stride_s=1,
        inflate=(0, 1, 1),
        spatial_strides=(2, 2, 2),
        temporal_strides=(1, 1, 1),
        dilations=(1, 1, 1)),
    taps=('layer1', 'layer2', 'layer3'),
    tap_channels=(128, 256, 512),
    layout='video',
    grids=((8, 2, 2), (4, 2, 2), (2, 1, 1)))

model = dict(
    backbone=dict(
        _delete_=True,
        type='clcr_mm.CLCRHierarchyEncoder',
        embed_dims={{_base_.clcr_embed_dims}},
        modalities=dict(imgs=rgb_pathway, heatmap_imgs=pose_pathway),
        # the taps leave a ReLU with a per-channel mean that every sample
        # shares; projected as they were, the SGD steps moved all samples'
        # tokens together until h was constant (chance after one epoch), as
        # on RGBPoseConv3D's maps (clcr_fusion's norm_cfg): a batch norm per
        # tap removes the shared part
        tap_norm_cfg=dict(type='BN3d')),
    cls_head=dict(
        _delete_=True,
        type='clcr_mm.CLCRFusionHead',
        num_classes={{_base_.syn_num_classes}},
        in_channels={{_base_.clcr_embed_dims}},
        dropout=0.5,
        average_clips='prob',
        # the encoder's levels: no feature-map aligners in the head
        fusion={{_base_.clcr_fusion_levels}}))
