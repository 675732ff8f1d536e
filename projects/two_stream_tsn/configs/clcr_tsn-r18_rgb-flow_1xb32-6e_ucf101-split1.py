# Two-stream (RGB + optical flow) TSN-style recognizer whose fusion is CLCR,
# written as an ordinary mmaction2 config.
#
# - Both streams are mmaction2's own 2D `ResNet` (depth 18): the RGB stream
#   runs on every frame of the clip (frames folded into the batch, as TSN
#   does); the flow stream is the classic two-stream flow net, one ResNet on
#   a stack of L flow frames, i.e. `in_channels = 2 * L` (x/y interleaved).
# - Instead of TSN's late score averaging, the two streams are fused by
#   CLCR: a hierarchy encoder taps both ResNets at stages 2/3/4, IntraCED
#   exchanges shared tokens within each level, InterCAD aggregates levels.
# - Data: clcr_mm's UCF101 rawframe base (mmaction2's RawframeDataset and
#   SampleFrames + clcr_mm's LoadRGBFlowFrames / FormatRGBFlow), unchanged.
#
# Prepare UCF101 with tools/data/ucf101/prepare.py, then (repository root):
#   python tools/train.py <this config>
#   MMACTION=$(python -c "import mmaction, os; print(os.path.dirname(mmaction.__file__))")
#   python $MMACTION/.mim/tools/train.py <this config>   # mmaction2's own
# A CPU-sized version on synthetic rawframes:
#   clcr_tsn-r18_rgb-flow_1xb16-6e_synthetic-rgb-flow.py
_base_ = [
    'mmaction::_base_/default_runtime.py',  # default_scope = 'mmaction'
    '../../../configs/_base_/datasets/ucf101_rgb_flow.py',
    '../../../configs/_base_/schedules/adamw_short.py',
]

custom_imports = dict(imports=['clcr_mm'], allow_failed_imports=False)

embed_dims = 256
# L flow frames per stack: must equal the dataset base's `flow_len` (5),
# the flow ResNet then takes 2L = 10 channels.
flow_len = 5

# ---------------------------------------------------------------- model
model = dict(
    type='clcr_mm.CLCRRecognizer',
    backbone=dict(
        type='clcr_mm.CLCRHierarchyEncoder',
        embed_dims=embed_dims,
        modalities=dict(
            rgb=dict(
                backbone=dict(
                    type='ResNet', depth=18, pretrained=None,
                    out_indices=(3, )),
                # ImageNet initialisation with mmaction2's own mechanism
                # (torchvision key names are converted by mmaction2's
                # ResNet; the file must be local, nothing downloads):
                # backbone=dict(type='ResNet', depth=18, out_indices=(3, ),
                #     pretrained='checkpoints/resnet18-f37072fd.pth'),
                taps=('layer2', 'layer3', 'layer4'),
                tap_channels=(128, 256, 512),
                layout='video',  # (3, T, H, W) clip
                fold_frames=True,  # 2D ResNet on each of the T frames
                grids=((8, 2, 2), (8, 1, 1), (4, 1, 1)),
            ),
            flow=dict(
                backbone=dict(
                    type='ResNet', depth=18, pretrained=None,
                    in_channels=2 * flow_len, out_indices=(3, )),
                # A flow net trained elsewhere with mmaction2 (e.g. a TSN
                # flow recognizer) initialises this stream from its
                # checkpoint: keys 'backbone.*' are taken, the head ignored.
                # pretrained='work_dirs/tsn_flow/best_acc_top1_epoch_N.pth',
                # pretrained_prefix='backbone.',
                taps=('layer2', 'layer3', 'layer4'),
                tap_channels=(128, 256, 512),
                layout='image',  # (2L, H, W) flow stack
                grids=((1, 4, 4), (1, 2, 2), (1, 1, 1)),
            ))),
    intra_ced=dict(
        type='clcr_mm.IntraCED',
        num_heads=4,
        token_budget=dict(init_ratio=0.5, ratio_range=(0.1, 1.0))),
    inter_cad=dict(
        type='clcr_mm.InterCAD',
        out_channels=embed_dims,
        num_anchors=8,
        num_heads=4),
    cls_head=dict(
        type='clcr_mm.CLCRHead',
        num_classes={{_base_.num_classes}},
        in_channels=embed_dims,
        dropout=0.5,
        loss_cls=dict(type='CrossEntropyLoss')),
    loss_sep=dict(type='clcr_mm.SharedPrivateSeparationLoss',
                  loss_weight=0.1),
    loss_cross=dict(type='clcr_mm.CrossLevelInterferenceLoss',
                    loss_weight=0.05),
    loss_budget=dict(type='clcr_mm.TokenBudgetLoss', target=0.5,
                     loss_weight=0.01),
    # mmaction2's MultiModalDataPreprocessor with the dataset base's
    # per-modality normalisation (flow: 128 +- 128, TSN's convention).
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors={{_base_.preprocessors}}),
)

# ----------------------------------------------------------------- data
# The base's transforms are named in the clcr_mm scope (LoadRGBFlowFrames,
# FormatRGBFlow, and mmaction2's own by bare name), so its datasets are
# built there.
train_dataloader = dict(dataset=dict(_scope_='clcr_mm'))
val_dataloader = dict(dataset=dict(_scope_='clcr_mm'))
test_dataloader = dict(dataset=dict(_scope_='clcr_mm'))

# -------------------------------------------------------------- runtime
custom_hooks = [dict(type='clcr_mm.NonFiniteLossHook')]
randomness = dict(seed=0, diff_rank_seed=False, deterministic=False)
auto_scale_lr = dict(enable=False, base_batch_size=32)
