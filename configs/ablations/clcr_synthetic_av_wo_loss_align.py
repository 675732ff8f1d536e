# Ablation: no cross-modal alignment of the shared subspaces (the other
# regularisers stay).
_base_ = ['../clcr_synthetic_av.py']
model = dict(loss_align=None)
