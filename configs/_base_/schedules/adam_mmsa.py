# MOSI/MOSEI on fixed MMSA features: Adam, as in MMSA's models; 40 epochs
# with early model selection on validation MAE.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=40, val_begin=1,
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
    optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-5,
                   fused=True),
    clip_grad=dict(max_norm=1.0),
    # no weight decay on the token budgets' ratio logits: decay would pull
    # every rho towards the middle of its range, a budget prior nobody set
    paramwise_cfg=dict(custom_keys={'.logit': dict(decay_mult=0.0)}))

# Neither `end` nor `T_max`: mmengine's Runner ends the cosine at
# train_cfg.max_epochs, so overriding max_epochs rescales it.
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, eta_min=1e-5)
]

auto_scale_lr = dict(enable=False, base_batch_size=32)
