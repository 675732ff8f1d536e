# Audio-visual literature practice (OGM-GE, PMR, MLA): SGD, momentum 0.9,
# lr 1e-3, batch 64, ~100 epochs, step decay.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_begin=1,
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
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-4,
                   fused=True),
    clip_grad=dict(max_norm=40, norm_type=2),
    # no weight decay on the token budgets' ratio logits: decay would pull
    # every rho towards the middle of its range, a budget prior nobody set
    paramwise_cfg=dict(custom_keys={'.logit': dict(decay_mult=0.0)}))

# No `end`: mmengine's Runner ends the schedule at train_cfg.max_epochs.
# The milestone is an absolute epoch: a run shorter than 71 epochs keeps
# the initial lr throughout.
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, milestones=[70],
         gamma=0.1)
]

auto_scale_lr = dict(enable=False, base_batch_size=64)
