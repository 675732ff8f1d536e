# Baseline: concatenation of pooled deep features on the same encoders,
# data and schedule as clcr_synthetic_av.py.
_base_ = ['./clcr_synthetic_av.py']

model = dict(
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='ConcatFusion', out_channels={{_base_.embed_dims}}),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
