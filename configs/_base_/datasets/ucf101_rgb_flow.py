# UCF101 (101 actions), two modalities: RGB clip + stacked optical flow.
#
# Data: run `python tools/data/ucf101/prepare.py --root data/ucf101` (see
# tools/data/ucf101/README.md). Lists use mmaction2's rawframe format and the
# frames live in data/ucf101/rawframes/<Class>/<clip>/{img,flow_x,flow_y}_*.
#
# Per sample (after PackMultiModalInputs):
#   inputs['rgb']  uint8 (V, 3, T, H, W)  T = clip_len RGB frames
#   inputs['flow'] uint8 (V, 2L, H, W)    L = flow_len flows at the clip
#                                         centre, channels x1,y1,...,xL,yL
#   V = 1 in train/val, test_num_clips in test.
#   data_sample.modality_mask = {'rgb': True, 'flow': True}
#
# Sampling: one dense clip of T = 8 frames every 4th frame (~1.3 s at 25 fps)
# for the RGB encoder, and the classic two-stream flow stack (L = 5, 10
# channels) centred on that clip, so both modalities see the same moment.
# Spatial augmentation is TSN's (scale jitter + corner crops + flip), applied
# to RGB and flow together (LoadRGBFlowFrames puts both in one list, see
# clcr_mm/datasets/transforms/rawframes.py); a flip negates flow-x.
#
# Splits: `split` below picks the official split (1, 2, 3). Training uses
# its training list without 3 held-out groups (subtrain); the best
# checkpoint is picked on those groups (subval, drawn with a seed by the
# prepare tool); the official test list (mmaction2's "val" list name) is for
# the final number only. The annotation file names are computed from
# `split` here, so a child config that changes the split must also
# redefine them, e.g.
#   split = 2
#   train_dataloader = dict(dataset=dict(
#       ann_file=f'ucf101_subtrain_split_{split}_rawframes.txt'))
#   val_dataloader = dict(dataset=dict(
#       ann_file=f'ucf101_subval_split_{split}_rawframes.txt'))
#   test_dataloader = dict(dataset=dict(
#       ann_file=f'ucf101_val_split_{split}_rawframes.txt'))
#
# mmaction2's RawframeDataset with every list line checked at build time
# (label within num_classes, the head's; UTF-8; frame count), naming the file
# and line (clcr_mm/datasets/rawframe_dataset.py).
dataset_type = 'CheckedRawframeDataset'
data_root = 'data/ucf101'
split = 1
num_classes = 101
modalities = ('rgb', 'flow')
ann_file_train = f'ucf101_subtrain_split_{split}_rawframes.txt'
ann_file_val = f'ucf101_subval_split_{split}_rawframes.txt'
ann_file_test = f'ucf101_val_split_{split}_rawframes.txt'

clip_len = 8  # T, RGB frames per clip
frame_interval = 4
flow_len = 5  # L, flow frames per stack -> 2L = 10 channels
crop_size = 224
test_num_clips = 5  # views averaged at test time

# Normalisation for the model's MultiModalDataPreprocessor, e.g.
#   data_preprocessor=dict(type='MultiModalDataPreprocessor',
#                          preprocessors={{_base_.preprocessors}})
# Frames are decoded in RGB order already (to_rgb=False). Flow is stored as
# 0..255 with 127.5 = no motion (TSN uses mean = std = 128).
preprocessors = dict(
    rgb=dict(
        type='ActionDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        format_shape='NCTHW'),
    flow=dict(
        type='ActionDataPreprocessor',
        mean=[128.] * (2 * flow_len),
        std=[128.] * (2 * flow_len),
        format_shape='NCHW'))

pack_inputs = dict(
    type='PackMultiModalInputs',
    collect_keys=modalities,
    algorithm_keys=('modality_mask', ),
    meta_keys=('img_shape', 'frame_dir'))

train_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=1),
    dict(type='LoadRGBFlowFrames', flow_len=flow_len, on_missing='error'),
    dict(type='Resize', scale=(-1, 256)),
    dict(
        type='MultiScaleCrop',
        input_size=crop_size,
        scales=(1, 0.875, 0.75, 0.66),
        random_crop=False,
        max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatRGBFlow'),
    pack_inputs,
]
val_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=1,
        test_mode=True),
    dict(type='LoadRGBFlowFrames', flow_len=flow_len, on_missing='error'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatRGBFlow'),
    pack_inputs,
]
test_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=test_num_clips,
        test_mode=True),
    dict(type='LoadRGBFlowFrames', flow_len=flow_len, on_missing='error'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatRGBFlow'),
    pack_inputs,
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_file_train,
        data_prefix=dict(img='rawframes'),
        filename_tmpl='img_{:05d}.jpg',
        modality='RGB',  # must stay 'RGB', see LoadRGBFlowFrames
        start_index=1,
        num_classes=num_classes,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_file_val,
        data_prefix=dict(img='rawframes'),
        filename_tmpl='img_{:05d}.jpg',
        modality='RGB',
        start_index=1,
        num_classes=num_classes,
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_file_test,
        data_prefix=dict(img='rawframes'),
        filename_tmpl='img_{:05d}.jpg',
        modality='RGB',
        start_index=1,
        num_classes=num_classes,
        pipeline=test_pipeline,
        test_mode=True))

val_evaluator = dict(
    type='AccMetric',
    metric_list=('top_k_accuracy', 'mean_class_accuracy'),
    metric_options=dict(top_k_accuracy=dict(topk=(1, 5))))
test_evaluator = val_evaluator
