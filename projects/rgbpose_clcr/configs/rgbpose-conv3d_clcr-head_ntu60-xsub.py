# PoseC3D's RGB + pose model (mmaction2's RGBPoseConv3D) with CLCR fusion:
# mmaction2's config, with RGBPoseHead (two classifiers whose losses are
# summed) replaced by CLCRFusionHead. The head takes the backbone's final
# feature maps (x_rgb: 2048 ch, x_pose: 512 ch), pools each into three token
# grids (fine, medium, coarse) and fuses them through IntraCED per level and
# InterCAD; its regularisers join the loss. Why the final maps and not
# several stages: RGBPoseConv3D already exchanges information between its
# pathways through lateral connections at every stage, and returns only its
# final maps, so tapping earlier stages would need a second backbone class.
_base_ = 'mmaction::skeleton/posec3d/rgbpose_conv3d/rgbpose_conv3d.py'

custom_imports = dict(imports=['clcr_mm'], allow_failed_imports=False)

embed_dims = 256
model = dict(
    cls_head=dict(
        _delete_=True,
        type='clcr_mm.CLCRFusionHead',
        num_classes=60,
        in_channels=embed_dims,
        dropout=0.5,
        average_clips='prob',
        fusion=dict(
            # the order of RGBPoseConv3D's outputs (x_rgb, x_pose)
            modalities=('rgb', 'pose'),
            embed_dims=embed_dims,
            in_channels=(2048, 512),
            # (t, h, w) per level; the final maps are 8 x 7 x 7 at 224 px
            grids=((4, 4, 4), (2, 2, 2), (1, 1, 1)),
            intra_ced=dict(num_heads=4),
            inter_cad=dict(out_channels=embed_dims, num_anchors=8),
            loss_sep=dict(
                type='clcr_mm.SharedPrivateSeparationLoss', loss_weight=0.1),
            loss_cross=dict(
                type='clcr_mm.CrossLevelInterferenceLoss', loss_weight=0.05),
            loss_budget=dict(type='clcr_mm.TokenBudgetLoss', loss_weight=0.01),
            loss_align=dict(
                type='clcr_mm.SharedAlignmentLoss', loss_weight=0.1),
            loss_level=dict(
                type='clcr_mm.LevelWeightEntropyLoss', loss_weight=0.01))))
