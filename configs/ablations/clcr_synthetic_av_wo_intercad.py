# Ablation: no InterCAD (no anchors, uniform level weights, ungated
# private cues): plain pooling and concatenation of shared and private.
_base_ = ['../clcr_synthetic_av.py']
model = dict(
    inter_cad=dict(synchronise=False, selective=False, gate_private=False),
    loss_cross=None)
