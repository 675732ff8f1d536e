"""CLCR as the ``cls_head`` of mmaction2's multimodal recognizer."""
from typing import Dict

import torch
from mmaction.utils import OptSampleList, SampleList

from clcr_mm.registry import MODELS
from .clcr_head import CLCRHead


@MODELS.register_module()
class CLCRFusionHead(CLCRHead):
    """CLCR fusion and task head in one, for mmaction2's ``MMRecognizer3D``.

    ``MMRecognizer3D`` hands its head whatever ``backbone(**inputs)``
    returns and has no neck. This head runs a :class:`CLCRFusionNeck`
    (IntraCED per level + InterCAD) on those features, scores h with
    :class:`CLCRHead`'s linear layer, and in ``loss`` adds CLCR's
    regularisers to mmaction2's task loss, each under its own key. Clip
    averaging, label smoothing and top-k logging are ``BaseHead``'s.

    Accepted features (see :class:`CLCRFusionNeck`): the levels of
    :class:`CLCRHierarchyEncoder`, or per-modality feature maps of any
    backbone (e.g. ``RGBPoseConv3D``'s ``(x_rgb, x_pose)``) with
    ``fusion.in_channels`` set.

    Args:
        num_classes (int): Classes; 1 for regression.
        in_channels (int): Width D of h (InterCAD's ``out_channels``).
        fusion (dict): :class:`CLCRFusionNeck` config (type defaults to
            ``clcr_mm.CLCRFusionNeck``).
        **kwargs: :class:`CLCRHead` arguments (``task``, ``loss_cls``,
            ``dropout``) and mmaction2's ``BaseHead`` ones
            (``label_smooth_eps``, ``topk``, ``average_clips``, ...).
    """

    def __init__(self, num_classes: int, in_channels: int, fusion: dict,
                 **kwargs) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        fusion = dict(fusion)
        fusion.setdefault('type', 'clcr_mm.CLCRFusionNeck')
        self.fusion = MODELS.build(fusion)

    def forward(self, x, data_samples: OptSampleList = None,
                **kwargs) -> torch.Tensor:
        """Fuse and score.

        Args:
            x (dict | tuple): Backbone features (levels or feature maps).
            data_samples (list[ActionDataSample], optional): Their
                ``modality_mask`` marks zero-filled modalities, which the
                fusion then ignores.

        Returns:
            Tensor: (B, num_classes) scores.
        """
        feats = self.fusion.fuse_inputs(x, data_samples)
        return super().forward(feats['fused'])

    def loss(self, feats, data_samples: SampleList,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Task loss (``BaseHead.loss_by_feat``) plus the regularisers.

        With V views per sample folded into the batch (B*V scores), each
        sample's label serves its V views. The samples' ``modality_mask``
        is applied, as in ``predict``.

        Args:
            feats (dict | tuple): Backbone features.
            data_samples (list[ActionDataSample]): B samples with
                ``gt_label``.

        Returns:
            dict[str, Tensor]: ``loss_cls``, top-k accuracies, and the
            regularisers and budget statistics of
            :func:`clcr_regularisers`.
        """
        fused, loss_aux = self.fusion(feats, data_samples)
        scores = super().forward(fused)
        num_views = scores.shape[0] // len(data_samples)
        if num_views > 1:
            data_samples = [s for s in data_samples for _ in range(num_views)]
        losses = self.loss_by_feat(scores, data_samples)
        losses.update(loss_aux)
        return losses

    def predict(self, feats, data_samples: SampleList,
                **kwargs) -> SampleList:
        """``BaseHead.predict``, with the samples' modality masks applied
        to the fusion."""
        scores = self(feats, data_samples=data_samples)
        return self.predict_by_feat(scores, data_samples)

    @staticmethod
    def map_recognizer_state(state: Dict[str, torch.Tensor],
                             prefix: str = 'cls_head.'
                             ) -> Dict[str, torch.Tensor]:
        """Keys of a ``CLCRRecognizer`` state dict for ``MMRecognizer3D``
        with this head (``prefix`` is the head's key in the model).

        ``intra_ced.*``, ``inter_cad.*`` and ``loss_*.*`` move under
        ``<prefix>fusion.``; the backbone and the head's own layers keep
        their keys.
        """
        fusion_parts = ('intra_ced.', 'inter_cad.', 'loss_')
        return {(f'{prefix}fusion.{k}'
                 if k.startswith(fusion_parts) else k): v
                for k, v in state.items()}
