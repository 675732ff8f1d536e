# Ablation: no token budget; every shared token is a key, no budget loss.
_base_ = ['../clcr_synthetic_av.py']
model = dict(intra_ced=dict(token_budget=None), loss_budget=None)
