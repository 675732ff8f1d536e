# The same audio-visual CLCR recognizer with a 3D visual backbone:
# mmaction2's ResNet3dSlowOnly (depth 18, SlowOnly-style: 2D stem and early
# stages, temporal convolutions from stage 3) sees the 8-frame clip as one
# volume instead of frame by frame. Its stage outputs are already
# (B, C, T, H, W), so the encoder taps them without folding frames.
#
#   python tools/train.py <this config>
_base_ = ['./clcr_r18-resnetaudio50_1xb16-6e_synthetic-av.py']

model = dict(
    backbone=dict(
        modalities=dict(
            rgb=dict(
                backbone=dict(
                    _delete_=True,
                    type='ResNet3dSlowOnly',
                    depth=18,
                    pretrained=None,
                    lateral=False,
                    conv1_kernel=(1, 7, 7),
                    conv1_stride_t=1,
                    pool1_stride_t=1,
                    inflate=(0, 0, 1, 1),
                    norm_eval=False),
                fold_frames=False))))
