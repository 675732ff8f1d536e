# Ablation: no shared/private separation loss (the other regularisers stay).
_base_ = ['../clcr_synthetic_av.py']
model = dict(loss_sep=None)
