from .regularisers import (CrossLevelInterferenceLoss, L1Loss,
                           LevelWeightEntropyLoss, SharedAlignmentLoss,
                           SharedPrivateSeparationLoss, TokenBudgetLoss)

__all__ = ['SharedPrivateSeparationLoss', 'CrossLevelInterferenceLoss',
           'TokenBudgetLoss', 'SharedAlignmentLoss', 'LevelWeightEntropyLoss',
           'L1Loss']
