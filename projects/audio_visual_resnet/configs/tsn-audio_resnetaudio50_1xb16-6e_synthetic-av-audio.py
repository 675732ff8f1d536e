# Stage 1 of the pretrained example: a plain mmaction2 audio recognizer,
# nothing of CLCR in the model. mmaction2's RecognizerAudio + ResNetAudio +
# TSNAudioHead learn from the audio track of the synthetic benchmark alone
# (audio sees rhythm and chirp, so at most 4 of the 8 classes: 50 %).
# Its checkpoint then initialises the audio stream of the CLCR model:
# clcr_r18-resnetaudio50_1xb16-6e_synthetic-av_audio-pretrained.py.
#
#   python tools/train.py <this config>
_base_ = [
    'mmaction::_base_/default_runtime.py',
    '../../../configs/_base_/datasets/synthetic_av.py',
    '../../../configs/_base_/schedules/adamw_short.py',
]

# clcr_mm is imported only for its data transforms (LoadAudio, ...).
custom_imports = dict(imports=['clcr_mm'], allow_failed_imports=False)

model = dict(
    type='RecognizerAudio',
    # The same ResNetAudio as the CLCR model's audio stream, so that its
    # weights can be loaded there.
    backbone=dict(
        type='ResNetAudio', depth=50, pretrained=None, in_channels=1,
        base_channels=16, conv1_stride=2),
    cls_head=dict(
        type='TSNAudioHead',
        num_classes=8,
        in_channels=512,
        dropout_ratio=0.3,
        init_std=0.01,
        average_clips='prob'))

# Audio only: the log-mel goes to mmaction2's `audios` key, which
# PackActionInputs packs as the (single-tensor) input of RecognizerAudio.
log_mel = dict(
    type='LogMelSpectrogram', sample_rate={{_base_.av_sample_rate}},
    n_fft=512, hop_length=256, n_mels=64, out_key='audios')
pack = dict(type='PackActionInputs', meta_keys=('sample_idx', 'filename'))
train_pipeline = [
    dict(type='LoadAudio', sample_rate={{_base_.av_sample_rate}},
         on_missing='raise'),
    dict(type='AudioClipSample', clip_duration={{_base_.av_clip_duration}}),
    log_mel,
    pack,
]
test_pipeline = [
    dict(type='LoadAudio', sample_rate={{_base_.av_sample_rate}},
         on_missing='raise'),
    dict(type='AudioClipSample', clip_duration={{_base_.av_clip_duration}},
         test_mode=True),
    log_mel,
    pack,
]
train_dataloader = dict(
    dataset=dict(_scope_='clcr_mm', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_scope_='clcr_mm', pipeline=test_pipeline))
test_dataloader = dict(
    dataset=dict(_scope_='clcr_mm', pipeline=test_pipeline))

default_hooks = dict(logger=dict(interval=10))
randomness = dict(seed=0, diff_rank_seed=False, deterministic=False)
