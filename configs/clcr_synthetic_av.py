# CLCR on the embedded synthetic audio-visual benchmark (the quick-start
# job). Generate the data first:
#   python tools/data/synthetic_av/generate.py
# then train:
#   python tools/train.py configs/clcr_synthetic_av.py
_base_ = [
    '_base_/models/clcr_av_light.py',
    '_base_/datasets/synthetic_av.py',
    '_base_/schedules/adamw_short.py',
    '_base_/default_runtime.py',
]

num_classes = 8  # rhythm (shared) x colour (visual) x sweep (audio)
model = dict(cls_head=dict(num_classes=num_classes, topk=(1, 5)))

default_hooks = dict(logger=dict(interval=10))
randomness = dict(seed=0, deterministic=False)
