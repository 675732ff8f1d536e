# Ablation: task loss only (no separation, cross-level, budget, alignment
# or level-entropy terms).
_base_ = ['../clcr_synthetic_av.py']
model = dict(
    loss_sep=None,
    loss_cross=None,
    loss_budget=None,
    loss_align=None,
    loss_level=None)
