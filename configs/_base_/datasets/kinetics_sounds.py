# Kinetics-Sounds: 31 Kinetics-400 classes that can be seen and heard
# (tools/data/kinetics_sounds/classes.txt), 10 s YouTube clips.
# Prepare (once): python tools/data/kinetics_sounds/prepare.py \
#                     --root data/kinetics_sounds
# which writes data/kinetics_sounds/{train,val,test}_list.txt
# ("<video> <label>", audio read from the video's own track) and classes.txt
# from the Kinetics CSVs train.csv / validate.csv / test.csv.
#
# Inputs per sample (literature practice: OGM-GE, PMR, MMPareto train a
# ResNet-18 per modality from scratch on a few frames + the clip's audio):
#   rgb   uint8   (1, 3, 3, 224, 224)  3 frames, one from each third of the
#                                      clip (random within its third in
#                                      training, the middle in testing)
#   audio float32 (1, 1, 1001, 128)    log-mel of the whole 10 s at 16 kHz:
#                                      25 ms window, 10 ms hop, 128 mel bins
#                                      (FFT of 1024 points: with 512, the
#                                      lowest mel band gets no FFT bin). The
#                                      literature's 257 x 1004 linear
#                                      spectrogram covers the same 10 s at
#                                      the same frame rate.
# Video is decoded with PyAV through CheckedPyAVInit/CheckedPyAVDecode
# (clcr_mm/datasets/transforms/video.py): a damaged file becomes a
# MediaFileError naming it, handled by the dataset's on_error ('raise' here;
# 'skip' trains on another clip instead), where Decord can crash the loader
# process (a truncated Kinetics download: "killed by signal: Segmentation
# fault", no file named). They count frames from the stream's packets when
# the header has no count (.webm/.mkv/.flv), which mmaction2's PyAVInit
# does not. Labels are checked against num_classes (set to the head's by
# the top config) when the dataset is built.
#
# Loader layout (AudioVisualDataset on {train,val,test}_list.txt and
# classes.txt, PackMultiModalInputs keys, AccMetric) is the synthetic
# benchmark's; the clip settings, pipelines and loader sizes are this
# file's own. AVE and CREMA-D inherit from here.
_base_ = ['./synthetic_av.py']

data_root = 'data/kinetics_sounds'

av_num_frames = 3  # OGM-GE/MMPareto: 3 frames per KS clip
av_crop_size = 224
av_sample_rate = 16000
av_clip_duration = 10.0  # Kinetics clips are 10 s (shorter ones padded)
av_log_mel = dict(
    type='LogMelSpectrogram',
    sample_rate=av_sample_rate,
    n_fft=1024,
    win_length=400,
    hop_length=160,
    n_mels=128,
    out_key='audio')

# mmaction's video transforms run inside mmcv's KeyMapper on their usual
# `imgs` key; only the frames (as `rgb`), `img_shape` and the modality mask
# (rgb present; False for a damaged video under
# CheckedPyAVInit/CheckedPyAVDecode(on_error='zero')) come out.
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
                scale=(av_crop_size, av_crop_size),
                keep_ratio=False),
            dict(type='Flip', flip_ratio=0.5),
            dict(type='FormatShape', input_format='NCTHW'),
        ]),
    dict(type='LoadAudio', sample_rate=av_sample_rate, on_missing='raise'),
    dict(type='AudioClipSample', clip_duration=av_clip_duration),
    av_log_mel,
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
            dict(type='CenterCrop', crop_size=av_crop_size),
            dict(type='FormatShape', input_format='NCTHW'),
        ]),
    dict(type='LoadAudio', sample_rate=av_sample_rate, on_missing='raise'),
    dict(
        type='AudioClipSample',
        clip_duration=av_clip_duration,
        test_mode=True),
    av_log_mel,
    {{_base_.av_pack}},
]
test_pipeline = val_pipeline

# Kept in step for configs that build their own loaders from it.
av_dataset_common = dict(data_root=data_root)

# A child config does not re-evaluate its base, so each loader's dataset is
# given this file's data_root and pipeline explicitly.
# Batch 64 as in the literature (OGM-GE, PMR, MLA); 8 loader processes
# keep a GPU busy decoding 10 s clips (lower num_workers on small hosts).
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(data_root=data_root, pipeline=val_pipeline))
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
