from .regularisers import (CrossLevelInterferenceLoss, L1Loss,
                           SharedAlignmentLoss, SharedPrivateSeparationLoss,
                           TokenBudgetLoss)

__all__ = ['SharedPrivateSeparationLoss', 'CrossLevelInterferenceLoss',
           'TokenBudgetLoss', 'SharedAlignmentLoss', 'L1Loss']
