# Baseline: late fusion (average of unimodal logits) on the same encoders,
# data and schedule as clcr_synthetic_av.py.
_base_ = ['./clcr_synthetic_av.py']

model = dict(
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='LateFusion'),
    cls_head=dict(type='LateFusionHead', num_modalities=2),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
