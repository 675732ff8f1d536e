# CREMA-D: 7442 clips of 91 actors speaking 12 sentences with 6 emotions
# (ANG, DIS, FEA, HAP, NEU, SAD = labels 0..5), face video (VideoFlash/*.flv,
# 480x360, 30 fps, ~2.5 s) + speech (AudioWAV/*.wav, 16 kHz mono).
# Prepare (once): python tools/data/cremad/prepare.py --root data/cremad
# which writes data/cremad/{train,val,test}_list.txt with lines
# "VideoFlash/x.flv AudioWAV/x.wav label" (a seeded 6698/744 random split,
# or your split files; val is held out of the training part, 10 % seeded
# and stratified by emotion, so checkpoints are picked on it and the test
# split is for the final number only) and classes.txt.
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
#                                      speech is zero-padded; the log-mel
#                                      of Kinetics-Sounds (25 ms window,
#                                      10 ms hop, 128 mel bins).
# Video is decoded with PyAV as for Kinetics-Sounds (CheckedPyAVInit counts
# the frames of an .flv, whose header has no count; a damaged file is an
# error naming it). The prepare tool decodes every .flv (flv1 codec) and wav
# to the end to find corrupt or truncated files before training.
#
# Only the paths, the frame count and the audio window differ from
# Kinetics-Sounds; everything else is inherited from it.
_base_ = ['./kinetics_sounds.py']

data_root = 'data/cremad'

av_num_frames = 2
av_clip_duration = 3.0

# Kinetics-Sounds' pipelines with the values above: a child config does not
# re-evaluate its base's pipelines, so they are restated here. The crop
# size, the 16 kHz audio rate (CREMA-D's own: no resampling), the log-mel
# and the packing are Kinetics-Sounds'.
train_pipeline = [
    dict(
        type='KeyMapper',
        remapping=dict(
            imgs='rgb',
            img_shape='img_shape',
            modality_mask='modality_mask'),
        transforms=[
            dict(type='CheckedPyAVInit'),
            dict(type='UniformSample', clip_len=av_num_frames, num_clips=1),
            dict(type='CheckedPyAVDecode'),
            # torchvision's RandomResizedCrop(224) + flip, as in OGM-GE.
            dict(type='RandomResizedCrop'),
            dict(
                type='Resize',
                scale=({{_base_.av_crop_size}}, {{_base_.av_crop_size}}),
                keep_ratio=False),
            dict(type='Flip', flip_ratio=0.5),
            dict(type='FormatShape', input_format='NCTHW'),
        ]),
    dict(
        type='LoadAudio',
        sample_rate={{_base_.av_sample_rate}},
        on_missing='raise'),
    dict(type='AudioClipSample', clip_duration=av_clip_duration),
    {{_base_.av_log_mel}},
    {{_base_.av_pack}},
]
val_pipeline = [
    dict(
        type='KeyMapper',
        remapping=dict(
            imgs='rgb',
            img_shape='img_shape',
            modality_mask='modality_mask'),
        transforms=[
            dict(type='CheckedPyAVInit'),
            dict(
                type='UniformSample',
                clip_len=av_num_frames,
                num_clips=1,
                test_mode=True),
            dict(type='CheckedPyAVDecode'),
            dict(type='Resize', scale=(-1, 256)),
            dict(type='CenterCrop', crop_size={{_base_.av_crop_size}}),
            dict(type='FormatShape', input_format='NCTHW'),
        ]),
    dict(
        type='LoadAudio',
        sample_rate={{_base_.av_sample_rate}},
        on_missing='raise'),
    dict(
        type='AudioClipSample',
        clip_duration=av_clip_duration,
        test_mode=True),
    {{_base_.av_log_mel}},
    {{_base_.av_pack}},
]
test_pipeline = val_pipeline

# The base copied its own data_root and pipelines into these: point them at
# CREMA-D's. Batch 64 and 8 loader processes, as for Kinetics-Sounds.
av_dataset_common = dict(data_root=data_root)
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=val_pipeline))
test_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
