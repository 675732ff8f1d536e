# CLCR on the embedded cross-level benchmark: the model, pipeline and
# schedule of clcr_synthetic_av.py on the clips of
#   python tools/data/synthetic_crosslevel/generate.py
# then:
#   python tools/train.py configs/clcr_synthetic_crosslevel.py
# The other clcr_synthetic_crosslevel_* configs (baselines, unimodal) and
# configs/ablations/clcr_synthetic_crosslevel_* inherit their
# clcr_synthetic_av counterparts the same way.
_base_ = [
    './clcr_synthetic_av.py',
    '_base_/datasets/synthetic_crosslevel.py',
]

model = dict(cls_head=dict(num_classes={{_base_.crosslevel_num_classes}}))
train_cfg = dict(max_epochs={{_base_.crosslevel_max_epochs}})
train_dataloader = {{_base_.crosslevel_loader}}
val_dataloader = {{_base_.crosslevel_loader}}
test_dataloader = {{_base_.crosslevel_loader}}
