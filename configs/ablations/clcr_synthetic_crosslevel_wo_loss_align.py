# Ablation on the cross-level benchmark: no cross-modal alignment of the
# shared subspaces (the other regularisers stay).
_base_ = ['../clcr_synthetic_crosslevel.py']
model = dict(loss_align=None)
