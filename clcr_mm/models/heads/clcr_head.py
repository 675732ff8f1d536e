"""Task heads on the compact representation h."""
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmaction.models.heads import BaseHead
from mmaction.utils import SampleList

from clcr_mm.registry import MODELS

TASKS = ('classification', 'regression')


@MODELS.register_module()
class CLCRHead(BaseHead):
    """Linear head on h: classification (cross-entropy, mmaction2's top-k
    logging and clip averaging) or regression (L1, for MOSI/MOSEI).

    Args:
        num_classes (int): Classes; 1 for regression.
        in_channels (int): Width D of h.
        task (str): ``'classification'`` or ``'regression'``.
        loss_cls (dict, optional): Loss config. Defaults to
            ``CrossEntropyLoss`` for classification and ``L1Loss`` for
            regression.
        dropout (float): Dropout before the linear layer. Defaults to 0.
        **kwargs: Other arguments of mmaction2's ``BaseHead`` (``topk``,
            ``label_smooth_eps``, ``init_cfg``, ``average_clips``, which
            defaults to ``'prob'`` here).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 task: str = 'classification',
                 loss_cls: Optional[dict] = None,
                 dropout: float = 0.0,
                 **kwargs) -> None:
        if task not in TASKS:
            raise ValueError(f'task must be one of {TASKS}, got {task!r}')
        if loss_cls is None:
            # Scoped names: the head is also built under mmaction2's default
            # scope (custom_imports), where a bare 'L1Loss' is unknown.
            loss_cls = dict(type='mmaction.CrossEntropyLoss') \
                if task == TASKS[0] else dict(type='clcr_mm.L1Loss')
        if task == 'regression':
            kwargs.setdefault('topk', (1, ))
        # softmax scores averaged over views, as the metrics expect
        kwargs.setdefault('average_clips', 'prob')
        super().__init__(num_classes, in_channels, loss_cls, **kwargs)
        self.task = task
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x, **kwargs) -> torch.Tensor:
        """Score h.

        Args:
            x (Tensor | dict): h of shape (B, D), or a fusion neck's output
                dict holding it as ``feat``.

        Returns:
            Tensor: (B, num_classes) scores, or (B, 1) for regression.
        """
        if isinstance(x, dict):
            x = x['feat']
        return self.fc(self.dropout(x))

    def loss_by_feat(self, cls_scores: torch.Tensor,
                     data_samples: SampleList) -> Dict:
        """Classification defers to mmaction2; regression uses L1 on
        (B, 1) predictions against float ``gt_label`` of shape (1, )."""
        if self.task == 'classification':
            # mmaction2 computes top-k accuracy through numpy, which has no
            # bfloat16 (bf16 AMP); the loss takes float32 under autocast too
            return super().loss_by_feat(cls_scores.float(), data_samples)
        target = torch.stack([ds.gt_label.float() for ds in data_samples])
        target = target.view(-1, 1).to(cls_scores.device)
        return dict(loss_cls=self.loss_cls(cls_scores, target))

    def predict_by_feat(self, cls_scores: torch.Tensor,
                        data_samples: SampleList) -> SampleList:
        """Regression predictions are averaged over views and stored as
        ``pred_score`` of shape (1, )."""
        if self.task == 'classification':
            return super().predict_by_feat(cls_scores, data_samples)
        preds = cls_scores.view(len(data_samples), -1).mean(1, keepdim=True)
        for data_sample, pred in zip(data_samples, preds):
            data_sample.set_field(pred.detach(), 'pred_score')
        return data_samples


@MODELS.register_module()
class LateFusionHead(CLCRHead):
    """Late fusion: one linear classifier per modality, logits averaged over
    the modalities present in each sample.

    Args:
        num_modalities (int): M.
        Other args as :class:`CLCRHead`.
    """

    def __init__(self, num_modalities: int, num_classes: int,
                 in_channels: int, **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self.fc = nn.ModuleList(
            nn.Linear(in_channels, num_classes) for _ in range(num_modalities))

    def forward(self, x: dict, **kwargs) -> torch.Tensor:
        """Average unimodal logits.

        Args:
            x (dict): ``modality_feats`` (B, M, d) and ``present`` (B, M).

        Returns:
            Tensor: (B, num_classes).
        """
        feats = self.dropout(x['modality_feats'])
        logits = torch.stack(
            [fc(feats[:, i]) for i, fc in enumerate(self.fc)], 1)
        weight = x['present'].to(logits.dtype).unsqueeze(-1)
        return (logits * weight).sum(1) / weight.sum(1).clamp(min=1)
