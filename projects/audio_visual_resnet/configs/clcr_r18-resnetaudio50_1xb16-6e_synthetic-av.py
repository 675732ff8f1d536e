# CLCR audio-visual recognizer written as an ordinary mmaction2 config.
#
# - Backbones are mmaction2's own: `ResNet` (depth 18, one frame at a time)
#   for the visual frames and `ResNetAudio` (depth 50, mmaction2's audio
#   ResNet with factorised time/frequency convolutions) for the log-mel
#   spectrogram. Each is tapped at three stages by clcr_mm's hierarchy
#   encoder; neither is modified.
# - The fusion is CLCR: IntraCED per level + InterCAD + CLCR head and
#   regularisers, reached from mmaction2's scope as `clcr_mm.<Name>`.
# - Runtime is mmaction2's own default runtime; data is the clcr_mm
#   synthetic audio-visual benchmark (configs/_base_/datasets/synthetic_av.py)
#   with frames resized to 32x32 so that it trains on a CPU.
#
# Train (repository root, after `python tools/data/synthetic_av/generate.py`):
#   python tools/train.py <this config>
#   MMACTION=$(python -c "import mmaction, os; print(os.path.dirname(mmaction.__file__))")
#   python $MMACTION/.mim/tools/train.py <this config>   # mmaction2's own
_base_ = [
    'mmaction::_base_/default_runtime.py',  # default_scope = 'mmaction'
    '../../../configs/_base_/datasets/synthetic_av.py',
    '../../../configs/_base_/schedules/adamw_short.py',
]

# The only thing an mmaction2 user adds to use CLCR: import the plugin.
# Importing clcr_mm registers its modules (scope 'clcr_mm') and repairs the
# published mmaction2 1.2.0 wheel before mmaction2 builds any model.
custom_imports = dict(imports=['clcr_mm'], allow_failed_imports=False)

num_classes = 8  # 4 * rhythm + 2 * colour + chirp
embed_dims = 256  # common token width d of every modality and level
frame_size = 32

# ---------------------------------------------------------------- model
model = dict(
    type='clcr_mm.CLCRRecognizer',
    backbone=dict(
        type='clcr_mm.CLCRHierarchyEncoder',
        embed_dims=embed_dims,
        modalities=dict(
            rgb=dict(
                # mmaction2's 2D ResNet, run on every frame (the T frames
                # are folded into the batch), as TSN does.
                backbone=dict(
                    type='ResNet', depth=18, pretrained=None,
                    out_indices=(3, )),
                # Stage outputs read as shallow / mid / deep levels.
                taps=('layer2', 'layer3', 'layer4'),
                tap_channels=(128, 256, 512),
                layout='video',
                fold_frames=True,
                # Token grids (t, h, w) per level. 32x32 frames give 4x4,
                # 2x2, 1x1 maps; all 8 frames are kept at the shallow and
                # mid levels: the fast beat alternates frame by frame and
                # pooling frames in pairs would erase it.
                grids=((8, 2, 2), (8, 1, 1), (4, 1, 1)),
                # Initialise from a local checkpoint (nothing downloads):
                # pretrained='work_dirs/<run>/best_acc_top1_epoch_N.pth',
                # pretrained_prefix='backbone.',  # mmaction2 recognizer
            ),
            audio=dict(
                # mmaction2's audio ResNet. base_channels=16 and a strided
                # stem keep it light (1.5 M parameters) for a 101x64
                # spectrogram; stage widths are then 64/128/256/512.
                backbone=dict(
                    type='ResNetAudio', depth=50, pretrained=None,
                    in_channels=1, base_channels=16, conv1_stride=2),
                taps=('layer2', 'layer3', 'layer4'),
                tap_channels=(128, 256, 512),
                layout='image',  # (1, time, mel) -> maps (26x16, 13x8, 7x4)
                grids=((1, 8, 4), (1, 4, 2), (1, 2, 2)),
            ))),
    # One IntraCED per level: shared/private factorisation and cross-modal
    # exchange over a learnable budget of shared tokens.
    intra_ced=dict(
        type='clcr_mm.IntraCED',
        num_heads=4,
        tie_shared=False,
        exchange=True,
        token_budget=dict(init_ratio=0.5, ratio_range=(0.1, 1.0))),
    # InterCAD: anchor synchronisation, level weights, private gates.
    inter_cad=dict(
        type='clcr_mm.InterCAD',
        out_channels=embed_dims,
        num_anchors=8,
        num_heads=4),
    cls_head=dict(
        type='clcr_mm.CLCRHead',
        num_classes=num_classes,
        in_channels=embed_dims,
        dropout=0.3,
        loss_cls=dict(type='CrossEntropyLoss')),  # mmaction2's loss
    loss_sep=dict(type='clcr_mm.SharedPrivateSeparationLoss',
                  loss_weight=0.1),
    loss_cross=dict(type='clcr_mm.CrossLevelInterferenceLoss',
                    loss_weight=0.05),
    loss_budget=dict(type='clcr_mm.TokenBudgetLoss', target=0.5,
                     loss_weight=0.01),
    # mmaction2's multimodal preprocessor: one ActionDataPreprocessor per
    # modality, keyed like the pipeline's
    # PackMultiModalInputs(collect_keys).
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors=dict(
            rgb=dict(
                type='ActionDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                format_shape='NCTHW'),
            audio=dict(type='ActionDataPreprocessor', format_shape='NCHW'))),
)

# ----------------------------------------------------------------- data
# The dataset base is reused as is except for the frame size. Its dataset
# and transforms are clcr_mm's (AudioVisualDataset, LoadAudio, ...) and are
# named there without a scope, so each dataset is built in the clcr_mm scope
# (`_scope_`); mmaction2's transforms resolve from there too.
visual_train = [
    dict(type='CheckVideo'),  # names the file if it is corrupt
    dict(type='PyAVInit'),
    # 8 frames, every 2nd of the 16: the whole clip at 4 fps (as the base)
    dict(type='SampleFrames', clip_len={{_base_.av_num_frames}},
         frame_interval=2, num_clips=1),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(frame_size + 4, frame_size + 4),
         keep_ratio=False),
    dict(type='RandomCrop', size=frame_size),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
]
visual_test = [
    dict(type='CheckVideo'),
    dict(type='PyAVInit'),
    dict(type='SampleFrames', clip_len={{_base_.av_num_frames}},
         frame_interval=2, num_clips=1, test_mode=True),
    dict(type='PyAVDecode'),
    dict(type='Resize', scale=(frame_size + 4, frame_size + 4),
         keep_ratio=False),
    dict(type='CenterCrop', crop_size=frame_size),
    dict(type='FormatShape', input_format='NCTHW'),
]
train_pipeline = [
    dict(type='KeyMapper', remapping=dict(imgs='rgb', img_shape='img_shape'),
         transforms=visual_train),
    dict(type='LoadAudio', sample_rate={{_base_.av_sample_rate}},
         on_missing='raise'),
    dict(type='AudioClipSample', clip_duration={{_base_.av_clip_duration}}),
    {{_base_.av_log_mel}},
    {{_base_.av_pack}},
]
test_pipeline = [
    dict(type='KeyMapper', remapping=dict(imgs='rgb', img_shape='img_shape'),
         transforms=visual_test),
    dict(type='LoadAudio', sample_rate={{_base_.av_sample_rate}},
         on_missing='raise'),
    dict(type='AudioClipSample', clip_duration={{_base_.av_clip_duration}},
         test_mode=True),
    {{_base_.av_log_mel}},
    {{_base_.av_pack}},
]
train_dataloader = dict(
    dataset=dict(_scope_='clcr_mm', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_scope_='clcr_mm', pipeline=test_pipeline))
test_dataloader = dict(
    dataset=dict(_scope_='clcr_mm', pipeline=test_pipeline))

# -------------------------------------------------------------- runtime
# clcr_mm's hook: stop at the first NaN/inf loss term and name it.
custom_hooks = [dict(type='clcr_mm.NonFiniteLossHook')]
default_hooks = dict(logger=dict(interval=10))
randomness = dict(seed=0, diff_rank_seed=False, deterministic=False)
