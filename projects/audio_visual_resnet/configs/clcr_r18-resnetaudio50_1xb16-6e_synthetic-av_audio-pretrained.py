# Stage 2 of the pretrained example: the audio-visual CLCR model with its
# audio stream initialised from the mmaction2 audio recognizer of stage 1
# (tsn-audio_resnetaudio50_1xb16-6e_synthetic-av-audio.py). The checkpoint
# is a local file written by mmaction2's training loop; its `backbone.*`
# keys are loaded into the audio ResNetAudio, its TSNAudioHead is ignored.
#
#   python tools/train.py projects/audio_visual_resnet/configs/tsn-audio_resnetaudio50_1xb16-6e_synthetic-av-audio.py
#   python tools/train.py <this config>
_base_ = ['./clcr_r18-resnetaudio50_1xb16-6e_synthetic-av.py']

model = dict(
    backbone=dict(
        modalities=dict(
            audio=dict(
                pretrained='work_dirs/tsn-audio_resnetaudio50_1xb16-6e_'
                'synthetic-av-audio/epoch_6.pth',
                pretrained_prefix='backbone.'))))
