# Baseline: late fusion (average of unimodal predictions) on the same
# encoders, data and schedule as clcr_mosei.py.
_base_ = ['./clcr_mosei.py']

model = dict(
    intra_ced=None,
    inter_cad=None,
    fusion=dict(type='LateFusion'),
    cls_head=dict(type='LateFusionHead', num_modalities=3),
    loss_sep=None,
    loss_cross=None,
    loss_budget=None)
