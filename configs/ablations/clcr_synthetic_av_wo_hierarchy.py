# Ablation: no semantic hierarchy; all three "levels" tap the deepest stage
# of each encoder, so IntraCED/InterCAD see one semantic level three times.
_base_ = ['../clcr_synthetic_av.py']
model = dict(
    backbone=dict(
        modalities=dict(
            rgb=dict(taps=('layer4', 'layer4', 'layer4'),
                     tap_channels=(128, 128, 128)),
            audio=dict(taps=('layer4', 'layer4', 'layer4'),
                       tap_channels=(128, 128, 128)))))
