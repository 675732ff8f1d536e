# Ablation: no token-budget cost (the other regularisers stay).
_base_ = ['../clcr_synthetic_av.py']
model = dict(loss_budget=None)
