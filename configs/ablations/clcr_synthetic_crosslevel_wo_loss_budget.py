# Ablation on the cross-level benchmark: no token-budget loss; the learned
# budget itself stays (unlike wo_budget, which removes both).
_base_ = ['../clcr_synthetic_crosslevel.py']
model = dict(loss_budget=None)
