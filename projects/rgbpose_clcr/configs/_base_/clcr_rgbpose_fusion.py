# CLCR fusion on RGBPoseConv3D's final feature maps (x_rgb: 2048 channels,
# x_pose: 512), the `fusion` of CLCRFusionHead (`clcr_fusion`). Each map is
# pooled to three token grids (fine, medium, coarse) and fused by IntraCED
# per level and InterCAD; the regularisers join the loss, each logged under its own key.
# Why the final maps and not several stages: RGBPoseConv3D already
# exchanges information between its pathways through lateral connections
# at every stage, and returns only its final maps; tapping earlier stages
# would take a second backbone class.
custom_imports = dict(imports=['clcr_mm'], allow_failed_imports=False)

clcr_embed_dims = 256
clcr_fusion_core = dict(
    embed_dims=clcr_embed_dims,
    intra_ced=dict(num_heads=4),
    inter_cad=dict(out_channels=clcr_embed_dims, num_anchors=8),
    loss_sep=dict(type='clcr_mm.SharedPrivateSeparationLoss', loss_weight=0.1),
    loss_cross=dict(
        type='clcr_mm.CrossLevelInterferenceLoss', loss_weight=0.05),
    loss_budget=dict(type='clcr_mm.TokenBudgetLoss', loss_weight=0.01),
    loss_align=dict(type='clcr_mm.SharedAlignmentLoss', loss_weight=0.1),
    loss_level=dict(type='clcr_mm.LevelWeightEntropyLoss', loss_weight=0.01))
clcr_fusion = dict(
    clcr_fusion_core,
    # the order of RGBPoseConv3D's outputs (x_rgb, x_pose)
    modalities=('rgb', 'pose'),
    in_channels=(2048, 512),
    # (t, h, w) per level; the final maps are 8 x 7 x 7 at 224 px
    grids=((4, 4, 4), (2, 2, 2), (1, 1, 1)),
    # the maps leave a ReLU with a mean every sample shares; unnormalised,
    # the SGD steps moved all samples' tokens together until h was constant
    # (chance accuracy); a batch norm per map removes the shared part
    norm_cfg=dict(type='BN3d'))
# the same fusion on CLCRHierarchyEncoder's levels: modalities named by the
# pipeline keys that MMRecognizer3D passes as backbone(**inputs)
clcr_fusion_levels = dict(
    clcr_fusion_core, modalities=('imgs', 'heatmap_imgs'))
