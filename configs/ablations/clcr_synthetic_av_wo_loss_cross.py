# Ablation: no cross-level interference loss (the other regularisers stay).
_base_ = ['../clcr_synthetic_av.py']
model = dict(loss_cross=None)
