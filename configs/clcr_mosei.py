# CLCR on CMU-MOSEI (text + audio + vision MMSA features, regression).
# Prepare: tools/data/mmsa/README.md (data/mosei/aligned_50.pkl), then
#   python tools/train.py configs/clcr_mosei.py
_base_ = [
    '_base_/models/clcr_mmsa.py',
    '_base_/datasets/mosei.py',
    '_base_/schedules/adam_mmsa.py',
    '_base_/default_runtime.py',
]

# MOSEI features: COVAREP audio 74-d, Facet vision 35-d.
model = dict(
    backbone=dict(
        modalities=dict(
            audio=dict(backbone=dict(in_channels=74)),
            vision=dict(backbone=dict(in_channels=35)))))

# MAE is better when lower; mmengine cannot infer that from 'auto'.
default_hooks = dict(checkpoint=dict(save_best='mae', rule='less'))
# MOSEI is ~16k training utterances: fewer epochs suffice.
train_cfg = dict(max_epochs=20)  # the cosine schedule follows
