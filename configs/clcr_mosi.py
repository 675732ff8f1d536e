# CLCR on CMU-MOSI (text + audio + vision MMSA features, regression).
# Prepare: tools/data/mmsa/README.md (data/mosi/aligned_50.pkl), then
#   python tools/train.py configs/clcr_mosi.py
_base_ = [
    '_base_/models/clcr_mmsa.py',
    '_base_/datasets/mosi.py',
    '_base_/schedules/adam_mmsa.py',
    '_base_/default_runtime.py',
]

# MAE is better when lower; mmengine cannot infer that from 'auto'.
default_hooks = dict(checkpoint=dict(save_best='mae', rule='less'))
