# Ablation: no level-weight entropy term (the other regularisers stay).
_base_ = ['../clcr_synthetic_av.py']
model = dict(loss_level=None)
