# Baseline: late fusion (average of the unimodal logits) with the same
# encoders, data and schedule as clcr_cremad.py.
_base_ = ['./clcr_cremad.py']

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
