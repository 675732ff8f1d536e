# RGBPoseConv3D + CLCRFusionHead on the synthetic RGB + pose task: the
# baseline config with RGBPoseHead replaced by CLCR fusion.
_base_ = [
    './rgbpose-conv3d_rgbpose-head_synthetic-rgbpose.py',
    './_base_/clcr_rgbpose_fusion.py'
]

model = dict(
    cls_head=dict(
        _delete_=True,
        type='clcr_mm.CLCRFusionHead',
        num_classes={{_base_.syn_num_classes}},
        in_channels={{_base_.clcr_embed_dims}},
        dropout=0.5,
        average_clips='prob',
        fusion={{_base_.clcr_fusion}}))
