# Baseline: late fusion of the RGB and flow streams (classic two-stream
# score averaging) on the same encoders, data and schedule as clcr_ucf101.py.
_base_ = ['./clcr_ucf101.py']

model = dict(
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='LateFusion'),
    cls_head=dict(type='LateFusionHead', num_modalities=2),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
