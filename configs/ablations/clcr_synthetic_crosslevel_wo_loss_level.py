# Ablation on the cross-level benchmark: no level-weight entropy term, so
# InterCAD's level weights may collapse freely (the other regularisers stay).
_base_ = ['../clcr_synthetic_crosslevel.py']
model = dict(loss_level=None)
