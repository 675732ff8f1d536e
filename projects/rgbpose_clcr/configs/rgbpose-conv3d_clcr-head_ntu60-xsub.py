# PoseC3D's RGB + pose model (mmaction2's RGBPoseConv3D) with CLCR fusion:
# mmaction2's config, with RGBPoseHead (one classifier per pathway, losses
# summed) replaced by CLCRFusionHead (see _base_/clcr_rgbpose_fusion.py).
_base_ = [
    'mmaction::skeleton/posec3d/rgbpose_conv3d/rgbpose_conv3d.py',
    './_base_/clcr_rgbpose_fusion.py'
]

model = dict(
    cls_head=dict(
        _delete_=True,
        type='clcr_mm.CLCRFusionHead',
        num_classes=60,
        in_channels={{_base_.clcr_embed_dims}},
        dropout=0.5,
        average_clips='prob',
        fusion={{_base_.clcr_fusion}}))
# mmaction2's SGD, with no weight decay on the token budgets' ratio logits
# (decay would pull every rho towards the middle of its range, a budget
# prior nobody set; configs/_base_/schedules/adamw_short.py)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.logit': dict(decay_mult=0.0)}))

# mmaction2's config initialises from a downloaded checkpoint; nothing
# downloads here: pass a local copy with --cfg-options load_from=<file>
# (its cls_head keys are RGBPoseHead's and are skipped with a warning)
load_from = None
