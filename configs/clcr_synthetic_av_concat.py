# Baseline: concatenation of pooled deep features on the same encoders,
# data and schedule as clcr_synthetic_av.py.
_base_ = ['./clcr_synthetic_av.py']

model = dict(
    # ConcatFusion reads the deep level only; unbuilt shallow / mid aligners
    # leave no parameter without a gradient, as DDP's defaults require.
    backbone=dict(levels=('deep', )),
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='ConcatFusion', out_channels={{_base_.embed_dims}}),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
