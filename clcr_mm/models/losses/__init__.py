from .regularisers import (CrossLevelInterferenceLoss, L1Loss,
                           LevelWeightEntropyLoss,
                           PrivateLeakageAdversaryLoss, SharedAlignmentLoss,
                           SharedPrivateSeparationLoss, TokenBudgetLoss)

__all__ = ['SharedPrivateSeparationLoss', 'CrossLevelInterferenceLoss',
           'TokenBudgetLoss', 'SharedAlignmentLoss', 'LevelWeightEntropyLoss',
           'PrivateLeakageAdversaryLoss', 'L1Loss']
