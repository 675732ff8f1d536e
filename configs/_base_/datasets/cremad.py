# CREMA-D: 7442 clips of 91 actors speaking 12 sentences with 6 emotions
# (ANG, DIS, FEA, HAP, NEU, SAD = labels 0..5), face video (VideoFlash/*.flv,
# 480x360, 30 fps, ~2.5 s) + speech (AudioWAV/*.wav, 16 kHz mono).
# Prepare (once): python tools/data/cremad/prepare.py --root data/cremad
# which writes data/cremad/{train,val,test}_list.txt with lines
# "VideoFlash/x.flv AudioWAV/x.wav label" (a seeded 6698/744 random split,
# or your split files; val = test unless asked otherwise, since the
# literature has no validation set) and classes.txt.
#
# Inputs per sample (literature practice: OGM-GE, PMR, MMPareto train a
# ResNet-18 per modality from scratch on 1-3 frames + the speech):
#   rgb   uint8   (1, 3, 2, 224, 224)  2 frames, one from each half of the
#                                      clip (random within its half in
#                                      training, the middle in testing), as
#                                      MMPareto's CREMA-D loader does
#   audio float32 (1, 1, 301, 128)     log-mel of a 3 s window (OGM-GE uses
#                                      3 s of CREMA-D audio): random in
#                                      training, centred in testing; shorter
#                                      speech is zero-padded. 25 ms window
#                                      (FFT of 1024 points: with 512, the
#                                      lowest of 128 mel bands get no FFT
#                                      bin), 10 ms hop, 128 mel bins.
# Video is decoded with Decord (mmaction2's default backend): PyAV's
# PyAVInit takes the frame count from the container header, which FLV does
# not have (it reports 0 frames), and would sample the wrong frames; Decord
# counts frames from the stream index. The prepare tool and CheckVideo
# decode the .flv (flv1 codec) with PyAV to find corrupt files.
dataset_type = 'AudioVisualDataset'
data_root = 'data/cremad'

av_num_frames = 2
av_crop_size = 224
av_sample_rate = 16000  # CREMA-D's own rate: no resampling
av_clip_duration = 3.0
av_log_mel = dict(
    type='LogMelSpectrogram',
    sample_rate=av_sample_rate,
    n_fft=1024,
    win_length=400,
    hop_length=160,
    n_mels=128,
    out_key='audio')
av_pack = dict(
    type='PackActionInputs',
    collect_keys=('rgb', 'audio'),
    algorithm_keys=('modality_mask', ),
    meta_keys=('img_shape', 'sample_idx', 'filename'))

# mmaction's video transforms run inside mmcv's KeyMapper on their usual
# `imgs` key; only the frames (as `rgb`) and `img_shape` come out.
train_pipeline = [
    dict(
        type='KeyMapper',
        remapping=dict(imgs='rgb', img_shape='img_shape'),
        transforms=[
            dict(type='CheckVideo'),
            dict(type='DecordInit'),
            dict(type='UniformSample', clip_len=av_num_frames, num_clips=1),
            dict(type='DecordDecode'),
            # torchvision's RandomResizedCrop(224) + flip, as in OGM-GE.
            dict(type='RandomResizedCrop'),
            dict(
                type='Resize',
                scale=(av_crop_size, av_crop_size),
                keep_ratio=False),
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
            dict(type='DecordInit'),
            dict(
                type='UniformSample',
                clip_len=av_num_frames,
                num_clips=1,
                test_mode=True),
            dict(type='DecordDecode'),
            dict(type='Resize', scale=(-1, 256)),
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
    # Relative to data_root, so overriding data_root moves them too.
    classes='classes.txt')

# Batch 64 as in the literature (OGM-GE, PMR, MLA); 8 loader processes
# keep a GPU busy (lower num_workers on small hosts).
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        **av_dataset_common,
        ann_file='train_list.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **av_dataset_common,
        ann_file='val_list.txt',
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **av_dataset_common,
        ann_file='test_list.txt',
        pipeline=test_pipeline,
        test_mode=True))

val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator
