# A short AdamW schedule for small benchmarks trained from scratch on CPU.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=6, val_begin=1,
                 val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    # one parameter group per distinct lr / weight decay, not mmengine's
    # one per parameter (paramwise_cfg below), so the fused optimizer runs
    # one kernel per group instead of one per tensor; CLCR has ~290 small
    # tensors (norms, biases, gates), see docs/performance.md.
    constructor='clcr_mm.MergedParamGroupsOptimWrapperConstructor',
    # fused: the whole update of a group in one kernel, on CPU and CUDA,
    # instead of ~30 small ops per tensor.
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4,
                   fused=True),
    clip_grad=dict(max_norm=5.0),
    # no weight decay on the token budgets' ratio logits: decay would pull
    # every rho towards the middle of its range, a budget prior nobody set
    paramwise_cfg=dict(custom_keys={'.logit': dict(decay_mult=0.0)}))

# Warm-up over the first epoch, cosine decay over the whole run. The
# cosine sets neither `end` nor `T_max`, so mmengine's Runner ends it at
# train_cfg.max_epochs and `--cfg-options train_cfg.max_epochs=N` rescales
# it for any N >= 1. It starts at 0, overlapping the warm-up (the two
# factors multiply, as in mmdet's schedules), because a cosine that began
# after the warm-up would have begin == end in a one-epoch run.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, eta_min=1e-5,
         convert_to_iter_based=True),
]

# lr above is for this total batch size; tools/train.py --auto-scale-lr
# rescales it linearly for other batch sizes.
auto_scale_lr = dict(enable=False, base_batch_size=16)
