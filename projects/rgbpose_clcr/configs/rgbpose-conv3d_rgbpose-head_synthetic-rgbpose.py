# Baseline: mmaction2's RGBPoseConv3D + RGBPoseHead, unchanged, on the
# synthetic RGB + pose task (tools/build_synthetic_rgbpose.py).
_base_ = [
    'mmaction::skeleton/posec3d/rgbpose_conv3d/rgbpose_conv3d.py',
    './_base_/synthetic_rgbpose.py'
]

model = dict(cls_head=dict(num_classes={{_base_.syn_num_classes}}))
train_dataloader = {{_base_.syn_train_dataloader}}
val_dataloader = {{_base_.syn_val_dataloader}}
test_dataloader = {{_base_.syn_val_dataloader}}
train_cfg = {{_base_.syn_train_cfg}}
param_scheduler = {{_base_.syn_param_scheduler}}
load_from = None  # mmaction2's config downloads an initial checkpoint
