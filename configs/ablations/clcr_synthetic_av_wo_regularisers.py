# Ablation: task loss only (no separation, cross-level or budget terms).
_base_ = ['../clcr_synthetic_av.py']
model = dict(loss_sep=None, loss_cross=None, loss_budget=None)
