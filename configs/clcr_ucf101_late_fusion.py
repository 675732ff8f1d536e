# Baseline: late fusion of the RGB and flow streams (classic two-stream
# score averaging) on the same encoders, data and schedule as clcr_ucf101.py.
_base_ = ['./clcr_ucf101.py']

model = dict(
    # LateFusion reads the deep level only; unbuilt shallow / mid aligners
    # leave no parameter without a gradient, as DDP's defaults require.
    backbone=dict(levels=('deep', )),
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='LateFusion'),
    cls_head=dict(type='LateFusionHead', num_modalities=2),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
