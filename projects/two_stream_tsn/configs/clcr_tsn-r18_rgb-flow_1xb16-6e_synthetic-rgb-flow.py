# The UCF101 two-stream CLCR config, pointed at RGB + flow rawframes made
# from the synthetic audio-visual benchmark, at a CPU-friendly 32x32.
#
# Data (repository root):
#   python tools/data/synthetic_av/generate.py
#   python projects/two_stream_tsn/tools/build_synthetic_rgb_flow.py
# Labels are visual only: 2 * rhythm + colour (4 classes), see the tool.
#
# Only the data changes: the model, runtime and schedule are the UCF101
# config's, and the dataset is still mmaction2's RawframeDataset with
# clcr_mm's LoadRGBFlowFrames / FormatRGBFlow.
_base_ = ['./clcr_tsn-r18_rgb-flow_1xb32-6e_ucf101-split1.py']

data_root = 'data/synthetic_rgb_flow'
num_classes = 4  # slow-warm, slow-cool, fast-warm, fast-cool
crop_size = 32

model = dict(cls_head=dict(num_classes=num_classes, dropout=0.3))

# 8 RGB frames over the whole 16-frame clip (every 2nd, as the synthetic
# audio-visual config samples them) and a stack of L = 5 flow frames at the
# clip centre. Same geometry for RGB and flow (one list, see
# clcr_mm/datasets/transforms/rawframes.py).
sample_frames = dict(
    type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1)
load = dict(type='LoadRGBFlowFrames', flow_len=5, on_missing='error')
pack = dict(
    type='PackMultiModalInputs',
    collect_keys=('rgb', 'flow'),
    algorithm_keys=('modality_mask', ),
    meta_keys=('img_shape', 'frame_dir'))
train_pipeline = [
    sample_frames,
    load,
    dict(type='Resize', scale=(-1, crop_size + 4)),
    dict(
        type='MultiScaleCrop',
        input_size=crop_size,
        scales=(1, 0.875, 0.75),
        random_crop=False,
        max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatRGBFlow'),
    pack,
]
test_pipeline = [
    dict(sample_frames, test_mode=True),
    load,
    dict(type='Resize', scale=(-1, crop_size + 4)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatRGBFlow'),
    pack,
]

dataset = dict(
    _scope_='clcr_mm',
    data_root=data_root,
    data_prefix=dict(img='rawframes'),
    filename_tmpl='img_{:05d}.jpg',
    start_index=1)
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(**dataset, ann_file='train_list.txt',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(**dataset, ann_file='val_list.txt', pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(**dataset, ann_file='test_list.txt',
                 pipeline=test_pipeline))

# Top-5 of 4 classes is meaningless: report top-1 and mean class accuracy.
val_evaluator = dict(
    metric_options=dict(top_k_accuracy=dict(topk=(1, ))))
test_evaluator = val_evaluator
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(logger=dict(interval=10))
