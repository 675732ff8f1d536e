"""CLCRRecognizer: hierarchy encoder -> IntraCED per level -> InterCAD ->
head, as an mmengine ``BaseModel`` with mmaction2's ``loss`` / ``predict`` /
``tensor`` modes."""
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmaction.utils import SampleList
from mmengine.model import BaseModel

from clcr_mm.registry import MODELS
from ..necks.intra_ced import IntraCEDLevels
from ..necks.mmaction_necks import (LOSS_NAMES, clcr_regularisers,
                                     fuse_levels, sample_modality_mask)
from ..utils import LEVELS, modality_presence


@MODELS.register_module()
class CLCRRecognizer(BaseModel):
    """Multimodal recognizer built from CLCR parts (or baseline fusions).

    Inputs are a dict of modality tensors of shape (B, V, ...) where V is the
    number of views (clips x crops); views are folded into the batch and the
    head averages them at test time, as in mmaction2's recognizers.

    Args:
        backbone (dict): A :class:`CLCRHierarchyEncoder` config; it fixes the
            modalities and their order.
        cls_head (dict): Head config (:class:`CLCRHead`, or
            :class:`LateFusionHead` with ``fusion=LateFusion``).
        intra_ced (dict, optional): :class:`IntraCED` config, built once per
            level (``modalities`` and ``embed_dims`` are filled in from the
            backbone). None skips the factorisation: InterCAD then sees the
            aligned tokens as both shared and private. Defaults to None.
        inter_cad (dict, optional): :class:`InterCAD` config. Exactly one of
            ``inter_cad`` and ``fusion`` must be given.
        fusion (dict, optional): A baseline fusion neck
            (:class:`ConcatFusion`, :class:`LateFusion`) on the encoder's
            levels, instead of IntraCED + InterCAD.
        loss_sep (dict, optional): :class:`SharedPrivateSeparationLoss`.
        loss_cross (dict, optional): :class:`CrossLevelInterferenceLoss`.
        loss_budget (dict, optional): :class:`TokenBudgetLoss`.
        loss_align (dict, optional): :class:`SharedAlignmentLoss`.
        loss_level (dict, optional): :class:`LevelWeightEntropyLoss` on
            InterCAD's level weights.
        loss_adv (dict, optional): :class:`PrivateLeakageAdversaryLoss`
            (``modalities`` and ``embed_dims`` filled in): an adversary that
            reads other modalities' private features from each exchanged
            shared subspace, trained against by gradient reversal.
        compile_fusion (bool | dict): Compile everything after the
            backbones' taps, the level aligners, IntraCED, InterCAD (or the
            baseline fusion), the head's scores and the regularisers, as
            one graph with
            ``torch.compile(fullgraph=True)`` (state dict keys unchanged); a
            dict gives ``torch.compile`` keyword arguments (e.g.
            ``dict(mode='max-autotune')``). Every shape there is static and
            nothing reads the device, so Inductor fuses it into few kernels
            and CUDA graphs apply. The backbones are compiled with the rest
            through mmengine's runner-level ``compile`` option. Defaults to
            False.
        batch_levels (bool | str): Run the levels' IntraCEDs as one
            batched computation (fewer kernels, padded FLOPs): True, False
            or ``'auto'`` (on accelerators, not on the CPU); see
            :class:`IntraCEDLevels`. Defaults to ``'auto'``.
        data_preprocessor (dict, optional): Usually mmaction2's
            ``MultiModalDataPreprocessor``.
        train_cfg (dict, optional): ``modality_dropout`` (float): chance that
            each sample loses one random modality in training, for
            robustness to missing modalities. Defaults to 0.
        test_cfg (dict, optional): ``missing_modalities`` (tuple[str]):
            modalities treated as missing at test time (zeroed and masked);
            ``return_analysis`` (bool): store InterCAD's level weights and
            private gates in each predicted data sample.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 backbone: dict,
                 cls_head: dict,
                 intra_ced: Optional[dict] = None,
                 inter_cad: Optional[dict] = None,
                 fusion: Optional[dict] = None,
                 loss_sep: Optional[dict] = None,
                 loss_cross: Optional[dict] = None,
                 loss_budget: Optional[dict] = None,
                 loss_align: Optional[dict] = None,
                 loss_level: Optional[dict] = None,
                 loss_adv: Optional[dict] = None,
                 compile_fusion: Union[bool, dict] = False,
                 batch_levels: Union[bool, str] = 'auto',
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='mmaction.ActionDataPreprocessor')
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if (inter_cad is None) == (fusion is None):
            raise ValueError('give exactly one of inter_cad (CLCR) and '
                             'fusion (a baseline fusion neck)')
        self.backbone = MODELS.build(backbone)
        self.modalities = tuple(self.backbone.modalities)
        dims = self.backbone.embed_dims
        shared_args = dict(modalities=self.modalities, embed_dims=dims)

        def build(cfg: Optional[dict]) -> Optional[nn.Module]:
            if cfg is None:
                return None
            cfg = dict(cfg)
            for key, value in shared_args.items():
                cfg.setdefault(key, value)
            return MODELS.build(cfg)

        self.intra_ced = IntraCEDLevels(
            {level: build(intra_ced)
             for level in LEVELS}, batch_levels) if intra_ced else None
        self.inter_cad = build(inter_cad)
        self.fusion = build(fusion)
        self.cls_head = MODELS.build(cls_head)
        self.loss_sep = MODELS.build(loss_sep) if loss_sep else None
        self.loss_cross = MODELS.build(loss_cross) if loss_cross else None
        self.loss_budget = MODELS.build(loss_budget) if loss_budget else None
        self.loss_align = MODELS.build(loss_align) if loss_align else None
        self.loss_level = MODELS.build(loss_level) if loss_level else None
        self.loss_adv = build(loss_adv)
        # compiled entry points by name (unbound: a deep copy of the model,
        # e.g. an EMA, passes itself and gets its own guards)
        self._compiled = {}
        if compile_fusion:
            self._compile_fusion(
                compile_fusion if isinstance(compile_fusion, dict) else {})
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        unknown = set(self.test_cfg.get('missing_modalities',
                                        ())) - set(self.modalities)
        if unknown:
            raise ValueError(
                f'test_cfg.missing_modalities names {sorted(unknown)}, not '
                f'among the model modalities {self.modalities}')

    def _compile_fusion(self, options: dict) -> None:
        if self.backbone.gathers_valid_steps:
            raise ValueError(
                'compile_fusion compiles the level aligners into one graph, '
                'but this backbone batch-normalises the taps of a '
                "'sequence' modality over their valid steps, a tensor whose "
                'size depends on the lengths; set the backbone\'s '
                'tap_norm_cfg=None, or compile through mmengine\'s '
                'runner-level `compile` option, which allows graph breaks')
        # One graph from the backbones' taps to the scores and the
        # regularisers, not one per module: Inductor fuses across the
        # modules (the level aligners' pooling, projection and embeddings
        # too), and no tensor crosses a graph boundary (where each output
        # that gets no gradient costs a zero tangent in backward).
        options = dict(fullgraph=True, **options)
        for name in ('_fuse', '_fuse_for_loss'):
            self._compiled[name] = torch.compile(
                getattr(type(self), name), **options)

    def _run(self, name: str, *args):
        """Call the method ``name``, compiled where ``compile_fusion``
        asked for it."""
        compiled = self._compiled.get(name)
        return compiled(self, *args) if compiled else getattr(self,
                                                              name)(*args)

    # ------------------------------------------------------------------
    # inputs and modality masks
    # ------------------------------------------------------------------
    def _fold_views(self, inputs: Dict[str, torch.Tensor]
                    ) -> Tuple[Dict[str, torch.Tensor], int]:
        """(B, V, ...) -> (B*V, ...); modalities with V=1 are repeated."""
        if not isinstance(inputs, dict):
            raise TypeError(
                f'{type(self).__name__} needs a dict of modality tensors, got '
                f'{type(inputs).__name__}; pack with PackActionInputs('
                f'collect_keys={self.modalities})')
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(
                f'the model expects modalities {self.modalities} but the '
                f'batch has no {missing} (it has {sorted(inputs)}); add them '
                'to the pipeline and to PackActionInputs(collect_keys=...)')
        views = {m: inputs[m].shape[1] for m in self.modalities}
        num_views = max(views.values())
        if any(v not in (1, num_views) for v in views.values()):
            raise ValueError(f'modalities have incompatible view counts '
                             f'{views}: each must be 1 or {num_views}')
        folded = {}
        for m in self.modalities:
            x = inputs[m]
            if x.shape[1] != num_views:
                x = x.expand(-1, num_views, *x.shape[2:])
            folded[m] = x.flatten(0, 1)
        return folded, num_views

    def _modality_mask(self, data_samples: Optional[SampleList],
                       batch: int, num_views: int,
                       device: torch.device) -> Optional[torch.Tensor]:
        """(B*V, M) bool mask from the samples, train-time modality dropout
        and test-time ``missing_modalities``; None when every modality of
        every sample is present, so attention runs without a mask.

        The samples' flags are host metadata: they are read once into one
        tensor, and nothing is read back from the device.
        """
        missing = set(() if self.training else self.test_cfg.get(
            'missing_modalities', ()))
        dropout = self.train_cfg.get('modality_dropout', 0) \
            if self.training else 0
        mask = sample_modality_mask(data_samples, self.modalities, batch,
                                    device)
        if not missing and not dropout:
            return None if mask is None else mask.repeat_interleave(
                num_views, dim=0)
        if mask is None:
            mask = torch.ones(batch, len(self.modalities), dtype=torch.bool,
                              device=device)
        if missing:
            mask = mask & torch.tensor(
                [m not in missing for m in self.modalities],
                dtype=torch.bool).to(device, non_blocking=True)
        if dropout > 0:
            drop = torch.rand(batch, device=device) < dropout
            victim = torch.randint(len(self.modalities), (batch, ),
                                   device=device)
            dropped = mask & ~(F.one_hot(victim, len(self.modalities)).bool()
                               & drop[:, None])
            # never drop the last present modality of a sample
            mask = torch.where(dropped.any(dim=1, keepdim=True), dropped,
                               mask)
        return mask.repeat_interleave(num_views, dim=0)

    def _zero_missing(self, inputs: Dict[str, torch.Tensor],
                      mask: Optional[torch.Tensor]
                      ) -> Dict[str, torch.Tensor]:
        """Zero the inputs of absent modalities, exactly as a pipeline that
        zero-fills a missing modality would, so both paths agree."""
        if mask is None:
            return inputs
        out = {}
        for i, m in enumerate(self.modalities):
            keep = mask[:, i].to(inputs[m].dtype)
            out[m] = inputs[m] * keep.view(-1, *[1] * (inputs[m].dim() - 1))
        return out

    def _lengths(self, data_samples: Optional[SampleList], num_views: int,
                 device: torch.device) -> Optional[Dict[str, torch.Tensor]]:
        """Per-modality valid lengths (B*V, ) from the samples'
        ``valid_lengths`` metainfo (sequence features); None when no sample
        has any."""
        per_sample = [
            sample.metainfo.get('valid_lengths') or {}
            for sample in (data_samples or [])
        ]
        names = [m for m in self.modalities
                 if any(m in lengths for lengths in per_sample)]
        if not names:
            return None
        return {
            m: torch.tensor([lengths[m] for lengths in per_sample],
                            dtype=torch.long).repeat_interleave(
                                num_views).to(device, non_blocking=True)
            for m in names
        }

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def extract_feat(self,
                     inputs: Dict[str, torch.Tensor],
                     data_samples: Optional[SampleList] = None) -> dict:
        """Run encoder, IntraCED and InterCAD (or a baseline fusion).

        Args:
            inputs (dict[str, Tensor]): (B, V, ...) per modality.
            data_samples (list[ActionDataSample], optional): Carry each
                sample's ``modality_mask``.

        Returns:
            dict: ``fused`` (the fusion neck's output, with ``feat`` h of
            shape (B*V, D)), ``levels`` (encoder tokens), ``intra`` (per
            level IntraCED outputs, or None), ``mask`` (B*V, M), or None
            when every modality is present), ``token_masks``
            (``[level][modality]`` (B*V, N) validity, or None) and
            ``num_views``.
        """
        taps, step_masks, mask, num_views = self._encode(
            inputs, data_samples)
        return dict(
            self._run('_fuse', taps, step_masks, mask), num_views=num_views)

    def _encode(self, inputs: Dict[str, torch.Tensor],
                data_samples: Optional[SampleList]) -> tuple:
        """Fold the views, build the modality mask, zero absent inputs and
        run the backbones: ``(taps, step_masks, mask, num_views)`` (see
        the backbone's ``encode_taps`` and :meth:`extract_feat`)."""
        batch = next(iter(inputs.values())).shape[0]
        inputs, num_views = self._fold_views(inputs)
        device = next(iter(inputs.values())).device
        mask = self._modality_mask(data_samples, batch, num_views, device)
        inputs = self._zero_missing(inputs, mask)
        lengths = self._lengths(data_samples, num_views, device)
        taps, step_masks = self.backbone.encode_taps(inputs, lengths)
        return taps, step_masks, mask, num_views

    def _align(self, taps: dict, step_masks: dict) -> tuple:
        """The encoder's tokens of the taps: ``(levels, token_masks)``,
        the masks None where no modality has valid lengths."""
        if all(masks is None for masks in step_masks.values()):
            return self.backbone.align(taps, step_masks), None
        return self.backbone.align(taps, step_masks, return_token_masks=True)

    def _fuse(self, taps: dict, step_masks: dict,
              mask: Optional[torch.Tensor]) -> dict:
        """The encoder's level aligners, then the fusion of the levels: a
        baseline neck, or IntraCED + InterCAD; :meth:`extract_feat`'s dict
        without ``num_views``."""
        levels, token_masks = self._align(taps, step_masks)
        if self.fusion is not None:
            fused = self.fusion(levels, mask) if token_masks is None else \
                self.fusion(levels, mask, token_masks=token_masks)
            return dict(fused=fused, levels=levels, intra=None, stacked=None,
                        mask=mask, token_masks=token_masks)
        return fuse_levels(self.intra_ced, self.inter_cad, levels, mask,
                           token_masks)

    def _fuse_for_loss(self, taps: dict, step_masks: dict,
                       mask: Optional[torch.Tensor]
                       ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The head's scores and the regularisers of the fused levels."""
        feats = self._fuse(taps, step_masks, mask)
        return self.cls_head(feats['fused']), self.regularisers(feats)

    def forward(self,
                inputs: Dict[str, torch.Tensor],
                data_samples: Optional[SampleList] = None,
                mode: str = 'tensor') -> Union[dict, SampleList,
                                               torch.Tensor]:
        """mmaction2-style dispatch on ``mode``: ``'loss'`` returns a dict of
        losses and statistics, ``'predict'`` a list of data samples with
        predictions, ``'tensor'`` the raw head scores (B*V, num_classes)."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            feats = self.extract_feat(inputs, data_samples)
            return self.cls_head(feats['fused'])
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, '
                           'predict and tensor mode')

    def loss(self, inputs: Dict[str, torch.Tensor],
             data_samples: SampleList) -> Dict[str, torch.Tensor]:
        """Task loss plus every configured regulariser, each under its own
        key, plus the realised token budgets for the log."""
        taps, step_masks, mask, num_views = self._encode(
            inputs, data_samples)
        if num_views > 1:
            data_samples = [s for s in data_samples for _ in range(num_views)]
        scores, regularisers = self._run('_fuse_for_loss', taps, step_masks,
                                         mask)
        losses = self.cls_head.loss_by_feat(scores, data_samples)
        losses.update(regularisers)
        return losses

    def regularisers(self, feats: dict) -> Dict[str, torch.Tensor]:
        """The CLCR regularisers that apply to this configuration.

        Args:
            feats (dict): Output of :meth:`extract_feat`.

        Returns:
            dict[str, Tensor]: ``loss_sep``, ``loss_cross``, ``loss_budget``,
            ``loss_align``, ``loss_level``, ``loss_adv`` (those configured
            and applicable) and, for logging, ``budget_k_<level>_<modality>`` (tokens
            offered, batch mean), ``budget_used_<level>_<modality>`` (their
            fraction) and ``budget_rho_<level>`` (mean ratio).
        """
        return clcr_regularisers(
            feats, self.modalities,
            {name: getattr(self, name) for name in LOSS_NAMES})

    def predict(self, inputs: Dict[str, torch.Tensor],
                data_samples: SampleList) -> SampleList:
        """Predictions averaged over views; with
        ``test_cfg.return_analysis`` each sample also gets ``level_weights``
        (L, ), ``private_gates`` (M, L) and ``modality_present`` (M, )."""
        feats = self.extract_feat(inputs, data_samples)
        scores = self.cls_head(feats['fused'])
        data_samples = self.cls_head.predict_by_feat(scores, data_samples)
        if self.test_cfg.get('return_analysis', False):
            self._attach_analysis(feats, data_samples)
        return data_samples

    def _attach_analysis(self, feats: dict,
                         data_samples: SampleList) -> None:
        views, fused = feats['num_views'], feats['fused']
        # any built level: baselines build only the one they fuse
        first = next(iter(feats['levels'].values()))[self.modalities[0]]
        present = modality_presence(feats['mask'], self.modalities,
                                    first.shape[0], first.device)
        fields = dict(modality_present=present.float())
        for key in ('level_weights', 'private_gates'):
            if key in fused:
                fields[key] = fused[key]
        for key, value in fields.items():
            value = value.detach().view(len(data_samples), views,
                                        *value.shape[1:]).mean(1)
            for sample, v in zip(data_samples, value):
                sample.set_field(v.cpu(), key)
