# Unimodal baseline: audio only (pooled deep features -> linear), same
# encoder, data and schedule as clcr_synthetic_av.py.
_base_ = ['./clcr_synthetic_av_concat.py']

model = dict(
    backbone=dict(
        modalities=dict(_delete_=True, audio={{_base_.audio_encoder}})))
