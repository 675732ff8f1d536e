# CLCR for CMU-MOSI / CMU-MOSEI: text, audio and vision feature sequences,
# sentiment regression. Spec section 7: d=128 for MOSI/MOSEI.
_base_ = ['./clcr_regularisers.py']

embed_dims = 128

# Semantic hierarchy encoder for feature sequences: a 3-layer temporal
# encoder per modality, one tap per layer (lexical/frame cues -> phrase /
# prosody -> utterance), strides (1, 2, 2) over 50 aligned steps.
sequence_grids = ((16, 1, 1), (8, 1, 1), (4, 1, 1))


def sequence_encoder(in_channels):
    return dict(
        backbone=dict(
            type='TemporalConvEncoder',
            in_channels=in_channels,
            channels=128,
            strides=(1, 2, 2),
            dropout=0.1),
        taps=('layers.0', 'layers.1', 'layers.2'),
        tap_channels=(128, 128, 128),
        layout='sequence',
        grids=sequence_grids)


model = dict(
    type='CLCRRecognizer',
    backbone=dict(
        type='CLCRHierarchyEncoder',
        embed_dims=embed_dims,
        modalities=dict(
            text=sequence_encoder(768),
            audio=sequence_encoder(5),
            vision=sequence_encoder(20))),
    intra_ced=dict(
        type='IntraCED',
        num_heads=4,
        token_budget=dict(init_ratio=0.5, ratio_range=(0.1, 1.0))),
    inter_cad=dict(
        type='InterCAD', out_channels=embed_dims, num_anchors=8,
        num_heads=4),
    cls_head=dict(
        type='CLCRHead',
        num_classes=1,
        in_channels=embed_dims,
        task='regression',
        dropout=0.1),
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors=dict(
            text=dict(type='ActionDataPreprocessor', format_shape='NCHW'),
            audio=dict(type='ActionDataPreprocessor', format_shape='NCHW'),
            vision=dict(type='ActionDataPreprocessor',
                        format_shape='NCHW'))))
