# CLCR for the embedded synthetic audio-visual benchmark: the same model as
# clcr_av_resnet18.py with narrow encoders (mmaction2's ResNet3d-18 at
# base width 16 instead of 64) and d=128, so it trains in minutes on 2 CPU
# cores. Inputs: rgb (B, 1, 3, 8, 56, 56), audio log-mel (B, 1, 1, 101, 64).
_base_ = ['./clcr_av_resnet18.py']

embed_dims = 128

narrow_resnet3d = dict(
    type='mmaction.ResNet3d',
    depth=18,
    base_channels=16,
    pretrained=None,
    pretrained2d=False,
    out_indices=(3, ))

# Visual: 2D stem and stages 1-2 on every frame, 3D convolutions in stages
# 3-4 see the blinking rhythm across frames; stage 2, 3, 4 taps (32, 64, 128 channels at spatial
# strides 8, 16, 32) are shallow / mid / deep.
# `_delete_`: replace, not merge with, the ResNet-18 encoders of the base.
rgb_encoder = dict(
    _delete_=True,
    backbone=dict(
        narrow_resnet3d,
        conv1_kernel=(1, 7, 7),
        with_pool2=False,
        inflate=(0, 0, 1, 1)),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(32, 64, 128),
    layout='video',
    # all 8 frames stay as 8 time steps: the 1 Hz vs 2 Hz blinking is a
    # period-4 vs period-2 pattern over the sampled frames
    grids=((8, 2, 2), (8, 2, 2), (8, 1, 1)))

# Audio: the same narrow ResNet with 2D kernels on the (time, mel)
# spectrogram, fed as a one-frame clip.
audio_encoder = dict(
    _delete_=True,
    backbone=dict(
        narrow_resnet3d,
        in_channels=1,
        conv1_kernel=(1, 7, 7),
        conv1_stride_t=1,
        pool1_stride_t=1,
        with_pool2=False,
        inflate=(0, 0, 0, 0)),
    taps=('layer2', 'layer3', 'layer4'),
    tap_channels=(32, 64, 128),
    layout='image',
    image_as_clip=True,
    grids=((1, 8, 4), (1, 4, 2), (1, 2, 2)))

model = dict(
    backbone=dict(
        embed_dims=embed_dims,
        modalities=dict(rgb=rgb_encoder, audio=audio_encoder)),
    inter_cad=dict(out_channels=embed_dims),
    cls_head=dict(in_channels=embed_dims))
