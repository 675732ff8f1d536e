# Data of the synthetic RGB + pose task (tools/build_synthetic_rgbpose.py):
# mmaction2's RGBPoseConv3D pipelines at 64 px instead of 224 (pose
# heatmaps at 16 px) without MMCompact (the figure always fills the square
# frame, and mmaction2 1.2's MMCompact uses np.Inf, gone in NumPy 2), 4
# classes, a short schedule. Names are prefixed
# `syn_`, so this file sits next to mmaction2's config among the bases;
# the leaf configs assign them.
syn_data_root = 'data/synthetic_rgbpose/'
syn_ann_file = syn_data_root + 'synthetic_rgbpose.pkl'
syn_num_classes = 4
syn_left_kp = [1, 3, 5, 7, 9, 11, 13, 15]
syn_right_kp = [2, 4, 6, 8, 10, 12, 14, 16]
syn_sample = dict(
    type='MMUniformSampleFrames', clip_len=dict(RGB=8, Pose=32), num_clips=1)
syn_pose_target = dict(
    type='GeneratePoseTarget',
    sigma=0.7,
    use_score=True,
    with_kp=True,
    with_limb=False,
    scaling=0.25)
syn_pack = [
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'heatmap_imgs'))
]
syn_train_pipeline = [
    syn_sample,
    dict(type='MMDecode'),
    dict(type='Resize', scale=(72, 72), keep_ratio=False),
    dict(type='RandomResizedCrop', area_range=(0.56, 1.0)),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5, left_kp=syn_left_kp, right_kp=syn_right_kp),
    syn_pose_target,
] + syn_pack
syn_val_pipeline = [
    dict(syn_sample, test_mode=True),
    dict(type='MMDecode'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False),
    syn_pose_target,
] + syn_pack

syn_dataset = dict(
    type='PoseDataset',
    ann_file=syn_ann_file,
    data_prefix=dict(video=syn_data_root + 'videos'))
syn_train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(syn_dataset, split='xsub_train', pipeline=syn_train_pipeline))
syn_val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        syn_dataset,
        split='xsub_val',
        pipeline=syn_val_pipeline,
        test_mode=True))
syn_train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=10, val_begin=1, val_interval=1)
syn_param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=10, by_epoch=True, eta_min=1e-4)
]
