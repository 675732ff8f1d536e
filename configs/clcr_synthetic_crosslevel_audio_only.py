# Baseline on the cross-level benchmark: audio only (unimodal),
# defined by clcr_synthetic_av_audio_only.py; see clcr_synthetic_crosslevel.py.
_base_ = [
    './clcr_synthetic_av_audio_only.py',
    '_base_/datasets/synthetic_crosslevel.py',
]

model = dict(cls_head=dict(num_classes={{_base_.crosslevel_num_classes}}))
train_cfg = dict(max_epochs={{_base_.crosslevel_max_epochs}})
train_dataloader = {{_base_.crosslevel_loader}}
val_dataloader = {{_base_.crosslevel_loader}}
test_dataloader = {{_base_.crosslevel_loader}}
