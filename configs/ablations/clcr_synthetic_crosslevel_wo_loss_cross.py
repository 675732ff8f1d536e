# Ablation on the cross-level benchmark: no cross-level interference loss
# (the other regularisers stay).
_base_ = ['../clcr_synthetic_crosslevel.py']
model = dict(loss_cross=None)
