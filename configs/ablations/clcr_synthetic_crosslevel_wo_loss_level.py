# Ablation on the cross-level benchmark, as defined by
# clcr_synthetic_av_wo_loss_level.py; see ../clcr_synthetic_crosslevel.py.
_base_ = [
    './clcr_synthetic_av_wo_loss_level.py',
    '../_base_/datasets/synthetic_crosslevel.py',
]

model = dict(cls_head=dict(num_classes={{_base_.crosslevel_num_classes}}))
train_cfg = dict(max_epochs={{_base_.crosslevel_max_epochs}})
train_dataloader = {{_base_.crosslevel_loader}}
val_dataloader = {{_base_.crosslevel_loader}}
test_dataloader = {{_base_.crosslevel_loader}}
