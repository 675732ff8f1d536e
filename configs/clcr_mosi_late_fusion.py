# Baseline: late fusion (average of unimodal predictions) on the same
# encoders, data and schedule as clcr_mosi.py.
_base_ = ['./clcr_mosi.py']

model = dict(
    # LateFusion reads the deep level only; unbuilt shallow / mid aligners
    # leave no parameter without a gradient, as DDP's defaults require.
    backbone=dict(levels=('deep', )),
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='LateFusion'),
    cls_head=dict(type='LateFusionHead', num_modalities=3),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
