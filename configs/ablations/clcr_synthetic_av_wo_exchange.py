# Ablation: IntraCED factorises but runs no cross-modal exchange.
_base_ = ['../clcr_synthetic_av.py']
model = dict(intra_ced=dict(exchange=False))
