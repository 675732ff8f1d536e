# CLCR's regularisers and their default weights (spec section 5; section 7
# defaults lambda_sep=0.1, lambda_cross=0.05, lambda_budget=0.01), shared by
# every CLCR model config. Each is a switch: a config sets one to None to
# turn it off (configs/ablations); PrivateLeakageAdversaryLoss (loss_adv)
# is opt-in (configs/clcr_synthetic_av_adversary.py).
model = dict(
    loss_sep=dict(type='SharedPrivateSeparationLoss', loss_weight=0.1),
    loss_cross=dict(type='CrossLevelInterferenceLoss', loss_weight=0.05),
    # a cost on the fraction of shared tokens exchanged (target 0: every
    # offered token costs), traded against the task loss
    loss_budget=dict(type='TokenBudgetLoss', target=0.0, loss_weight=0.01),
    # shared subspaces hold what the modalities have in common
    loss_align=dict(type='SharedAlignmentLoss', loss_weight=0.1),
    # level weights spread unless the task pays for collapse
    loss_level=dict(type='LevelWeightEntropyLoss', loss_weight=0.01))
