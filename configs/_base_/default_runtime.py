# Runtime shared by every clcr_mm config (mmaction2 style).
default_scope = 'clcr_mm'

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, ignore_last=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', interval=1, save_best='auto', max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    sync_buffers=dict(type='SyncBuffersHook'))

# NonFiniteLossHook stops the run with the iteration and the loss term
# responsible when any logged loss becomes NaN/inf. NonFiniteGradHook skips
# (counts and logs) optimizer steps whose gradients are NaN/inf, and stops
# after 10 in a row (action='raise': at the first). FiniteCheckpointHook
# stops the run before a checkpoint with NaN/inf weights or optimizer state
# is written, so last_checkpoint always resumes. ModalityMaskCounterHook
# logs, per train/val/test epoch, how many samples had each modality missing
# (zero-filled by the pipeline, modality_mask False, or removed by the
# model's test_cfg.missing_modalities). ReseedHook reseeds the RNGs from
# (seed, epoch, iter), so `tools/train.py --resume` repeats the
# uninterrupted run exactly (mmengine does not checkpoint RNG states).
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='NonFiniteGradHook', action='skip', max_consecutive_skips=10),
    dict(type='FiniteCheckpointHook'),
    dict(type='ModalityMaskCounterHook'),
    dict(type='ReseedHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)

# Every loss term and the realised token budgets are scalars in the log;
# add dict(type='TensorboardVisBackend') to also write TensorBoard events.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ActionVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
