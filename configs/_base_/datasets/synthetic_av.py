# Embedded default benchmark: seeded synthetic audio-visual clips (64x64,
# 16 frames at 8 fps, 16 kHz mono AAC audio) in real mp4 files. 8 classes =
# rhythm (shared) x colour family (visual) x sweep direction (audio); see
# tools/data/synthetic_av/README.md. Generate with
#   python tools/data/synthetic_av/generate.py --out-dir data/synthetic_av
# Inputs per sample: rgb (1, 3, 8, 56, 56) uint8, audio (1, 1, 101, 64)
# float32 log-mel.
# kinetics_sounds.py (and through it ave.py and cremad.py) inherits the
# loader layout from this file: dataset type, list files, classes.txt,
# av_pack, sampler, metric. Clip settings and pipelines are set there.
dataset_type = 'AudioVisualDataset'
data_root = 'data/synthetic_av'

# 8 frames, every 2nd of the 16 (frame_interval=2 below): the whole 2 s
# clip at 4 fps, so the fast beat (2 Hz) alternates bright/dim frame by
# frame and the slow one (1 Hz) every two frames.
av_num_frames = 8
av_crop_size = 56  # crops of the 64x64 frames
av_sample_rate = 16000
# 1.6 s windows of the 2 s audio (random in training, centred in testing):
# at least one full beat cycle of either rhythm.
av_clip_duration = 1.6
# 32 ms windows (512-point FFT), 16 ms hop: 1 + 25600 // 256 = 101 frames.
av_log_mel = dict(
    type='LogMelSpectrogram',
    sample_rate=av_sample_rate,
    n_fft=512,
    hop_length=256,
    n_mels=64,
    out_key='audio')
av_pack = dict(
    type='PackMultiModalInputs',
    collect_keys=('rgb', 'audio'),
    algorithm_keys=('modality_mask', ),
    meta_keys=('img_shape', 'sample_idx', 'filename'))

# The video branch runs inside mmcv's KeyMapper so that mmaction's own
# transforms work on their usual `imgs` key; only the frames (as `rgb`) and
# `img_shape` come out of it.
train_pipeline = [
    dict(
        type='KeyMapper',
        remapping=dict(imgs='rgb', img_shape='img_shape'),
        transforms=[
            dict(type='CheckVideo'),  # names the file if it is corrupt
            dict(type='PyAVInit'),
            dict(
                type='SampleFrames',
                clip_len=av_num_frames,
                frame_interval=2,
                num_clips=1),
            dict(type='PyAVDecode'),
            dict(type='RandomCrop', size=av_crop_size),
            dict(type='Flip', flip_ratio=0.5),
            dict(type='FormatShape', input_format='NCTHW'),
        ]),
    dict(type='LoadAudio', sample_rate=av_sample_rate, on_missing='raise'),
    dict(type='AudioClipSample', clip_duration=av_clip_duration),
    av_log_mel,
    av_pack,
]
val_pipeline = [
    dict(
        type='KeyMapper',
        remapping=dict(imgs='rgb', img_shape='img_shape'),
        transforms=[
            dict(type='CheckVideo'),
            dict(type='PyAVInit'),
            dict(
                type='SampleFrames',
                clip_len=av_num_frames,
                frame_interval=2,
                num_clips=1,
                test_mode=True),
            dict(type='PyAVDecode'),
            dict(type='CenterCrop', crop_size=av_crop_size),
            dict(type='FormatShape', input_format='NCTHW'),
        ]),
    dict(type='LoadAudio', sample_rate=av_sample_rate, on_missing='raise'),
    dict(
        type='AudioClipSample',
        clip_duration=av_clip_duration,
        test_mode=True),
    av_log_mel,
    av_pack,
]
test_pipeline = val_pipeline

av_dataset_common = dict(
    type=dataset_type,
    data_root=data_root,
    data_prefix=dict(video='', audio=''),
    # Paths relative to data_root, so overriding data_root moves them too.
    classes='classes.txt')

train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        **av_dataset_common,
        ann_file='train_list.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **av_dataset_common,
        ann_file='val_list.txt',
        pipeline=val_pipeline,
        test_mode=True))
# The validation loader on the test list.
test_dataloader = dict(
    val_dataloader,
    dataset=dict(
        val_dataloader['dataset'],
        ann_file='test_list.txt',
        pipeline=test_pipeline))

val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator
