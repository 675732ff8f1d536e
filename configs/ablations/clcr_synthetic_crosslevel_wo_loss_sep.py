# Ablation on the cross-level benchmark: no shared/private separation loss
# (the other regularisers stay).
_base_ = ['../clcr_synthetic_crosslevel.py']
model = dict(loss_sep=None)
