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
# mmaction2's SGD, with no weight decay on CLCR's token budgets' ratio
# logits (decay would pull every rho towards the middle of its range, a
# budget prior nobody set; configs/_base_/schedules/adamw_short.py). The
# rule matches no parameter of this baseline, which trains as mmaction2's;
# it is set here so that the CLCR configs built on this one inherit it and
# differ from the baseline only in the model.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.logit': dict(decay_mult=0.0)}))
load_from = None  # mmaction2's config downloads an initial checkpoint
