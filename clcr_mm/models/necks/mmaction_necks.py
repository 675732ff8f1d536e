"""CLCR fusion under mmaction2's neck contract.

:class:`CLCRFusionNeck` runs IntraCED on every level and InterCAD on their
outputs, and returns ``(x, loss_aux)`` as mmaction2's necks do (``TPN``):
``x`` is InterCAD's output (its ``feat`` is h) and ``loss_aux`` holds CLCR's
regularisers, each under its own key. It is the fusion inside
:class:`CLCRFusionHead`, which plugs CLCR into mmaction2's
``MMRecognizer3D``. Its steps are functions that any CLCR model shares:
:func:`fuse_levels` (IntraCED per level -> InterCAD),
:func:`clcr_regularisers` (every configured regulariser and the budget
statistics) and :func:`sample_modality_mask` (the samples' modality flags as
a mask).
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmaction.utils import OptSampleList
from mmengine.model import BaseModule

from clcr_mm.registry import MODELS
from ..backbones.hierarchy_encoder import LevelAligner, build_tap_norm
from ..utils import LEVELS, Levels, check_modalities, modality_presence
from .intra_ced import IntraCEDLevels

FeatureMaps = Union[Sequence, Dict[str, object]]

LOSS_NAMES = ('loss_sep', 'loss_cross', 'loss_budget', 'loss_align',
              'loss_level', 'loss_adv')
# regularisers with parameters shaped by the model: built with its
# ``modalities`` and ``embed_dims`` filled in
SHAPED_LOSSES = ('loss_adv', )


def sample_modality_mask(data_samples: OptSampleList,
                         modalities: Sequence[str], batch: int,
                         device: torch.device) -> Optional[torch.Tensor]:
    """The (batch, M) presence mask of the samples' ``modality_mask``.

    Args:
        data_samples (list[ActionDataSample], optional): B samples, each
            with an optional ``modality_mask`` dict (modality -> present).
        modalities (Sequence[str]): Modality names, the mask's columns.
        batch (int): Rows of the features, B*V with V views per sample.
        device (torch.device): Device of the mask.

    Returns:
        Tensor | None: Bool (B*V, M), each sample's row repeated for its
        views; None when every modality of every sample is present (the
        samples' flags are host metadata, nothing is read from the device).
    """
    flags = [(sample.get('modality_mask', None) or {})
             for sample in (data_samples or [])]
    if all(bool(f.get(m, True)) for f in flags for m in modalities):
        return None
    if batch % len(flags):
        raise ValueError(f'{batch} feature rows are not a whole number of '
                         f'views of {len(flags)} samples')
    mask = torch.tensor([[bool(f.get(m, True)) for m in modalities]
                         for f in flags], dtype=torch.bool)
    return mask.repeat_interleave(batch // len(flags), dim=0).to(device)


def fuse_levels(intra_ced: Optional[IntraCEDLevels], inter_cad: nn.Module,
                levels: Levels,
                modality_mask: Optional[torch.Tensor] = None,
                token_masks: Optional[Levels] = None) -> dict:
    """IntraCED on every level, then InterCAD.

    Args:
        intra_ced (IntraCEDLevels, optional): One IntraCED per level; None
            skips the factorisation (InterCAD sees the tokens as both
            shared and private).
        inter_cad (nn.Module): InterCAD.
        levels (dict): ``levels[level][modality]`` tokens (B, N, d).
        modality_mask (Tensor, optional): Bool (B, M), True = present.
        token_masks (dict, optional): ``[level][modality]`` bool (B, N),
            False for padding tokens.

    Returns:
        dict: ``fused`` (InterCAD's output, h as ``feat`` (B, D)),
        ``levels``, ``intra`` (per level IntraCED outputs, or None),
        ``stacked`` (the same stacked level-major, see
        :class:`IntraCEDLevels`; or None), ``mask`` and ``token_masks`` as
        given; the input of :func:`clcr_regularisers`.
    """
    intra = stacked = None
    if intra_ced is not None:
        intra, stacked = intra_ced(levels, modality_mask, token_masks)
        shared, private = stacked['shared'], stacked['private']
    else:
        shared = private = levels
    fused = inter_cad(shared, private, modality_mask, token_masks)
    return dict(fused=fused, levels=levels, intra=intra, stacked=stacked,
                mask=modality_mask, token_masks=token_masks)


def clcr_regularisers(feats: dict, modalities: Sequence[str],
                      losses: Dict[str, Optional[nn.Module]]
                      ) -> Dict[str, torch.Tensor]:
    """The CLCR regularisers that apply to one fused batch.

    Args:
        feats (dict): ``levels`` (``[level][modality]`` encoder tokens
            (B, N, d)), ``stacked`` (IntraCED's outputs stacked, see
            :class:`IntraCEDLevels`; None or absent without IntraCED),
            ``fused`` (InterCAD's output) and ``mask`` ((B, M) bool, or
            None).
        modalities (Sequence[str]): Modality names, in the mask's order.
        losses (dict[str, nn.Module | None]): The regulariser modules under
            the names of ``LOSS_NAMES``; None (or absent) switches one off.

    Returns:
        dict[str, Tensor]: ``loss_sep``, ``loss_cross``, ``loss_budget``,
        ``loss_align``, ``loss_level`` (those configured and applicable)
        and, for logging, ``budget_k_<level>_<modality>`` (tokens offered,
        batch mean), ``budget_used_<level>_<modality>`` (their fraction) and
        ``budget_rho_<level>`` (mean ratio).
    """
    out: Dict[str, torch.Tensor] = {}
    fused = feats['fused']
    # any built level: baselines build only the one they fuse
    first = next(iter(feats['levels'].values()))[modalities[0]]
    present = modality_presence(feats['mask'], modalities, first.shape[0],
                                first.device)
    stacked = feats.get('stacked')
    if stacked is not None:
        shared, private = stacked['shared'], stacked['private']
        shared_in = stacked['shared_in']
        if losses.get('loss_sep') is not None:
            out['loss_sep'] = losses['loss_sep'](shared, private, present,
                                                 modalities)
        if losses.get('loss_align') is not None:
            out['loss_align'] = losses['loss_align'](shared_in, present,
                                                     modalities)
        if losses.get('loss_adv') is not None:
            out['loss_adv'] = losses['loss_adv'](shared, shared_in, private,
                                                 present, modalities)
        used = stacked['budget_used']
        if losses.get('loss_budget') is not None and used is not None:
            out['loss_budget'] = losses['loss_budget'](used)
        out.update(_budget_logs(stacked, modalities))
    if losses.get('loss_cross') is not None and 'level_feats' in fused:
        out['loss_cross'] = losses['loss_cross'](fused['level_feats'])
    if losses.get('loss_level') is not None and 'level_weights' in fused:
        out['loss_level'] = losses['loss_level'](fused['level_weights'])
    return out


def _budget_logs(stacked: dict,
                 modalities: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Batch means of the realised budgets, for the log: tokens offered
    (``budget_k_<level>_<modality>``), their fraction
    (``budget_used_<level>_<modality>``) and the mean ratio per level
    (``budget_rho_<level>``); each statistic reduced in one op."""
    logs = {}
    names = [f'{level}_{m}' for level in LEVELS for m in modalities]
    for key, stat in (('num_selected', 'k'), ('budget_used', 'used')):
        if stacked[key] is not None:
            values = stacked[key].detach().mean(-1).unbind(0)
            logs.update(
                (f'budget_{stat}_{name}', v) for name, v in zip(names, values))
    if stacked['budget_ratio'] is not None:
        ratios = stacked['budget_ratio'].detach().view(
            len(LEVELS), len(modalities)).mean(1).unbind(0)
        logs.update((f'budget_rho_{level}', r)
                    for level, r in zip(LEVELS, ratios))
    return logs


def _scoped(cfg: Optional[dict], default_type: str) -> Optional[dict]:
    """Copy of a sub-config with a scoped default type, so the part builds
    under mmaction2's default scope as under ours."""
    if cfg is None:
        return None
    cfg = dict(cfg)
    cfg.setdefault('type', default_type)
    return cfg


@MODELS.register_module()
class CLCRFusionNeck(BaseModule):
    """IntraCED per level + InterCAD, as an mmaction2 neck.

    It takes either the hierarchy encoder's levels, or per-modality feature
    maps of any mmaction2 backbone (e.g. ``RGBPoseConv3D``'s
    ``(x_rgb, x_pose)``), which its own level aligners turn into tokens:

    * ``in_channels=None``: ``x`` is ``levels[level][modality]`` tokens
      (B, N, embed_dims), the output of :class:`CLCRHierarchyEncoder`;
    * ``in_channels`` given: ``x`` is a tuple (in ``modalities`` order) or a
      dict of per-modality features, each either one map (B, C, T, H, W) or
      (B, C, H, W), pooled to the three level grids (one map at three
      granularities: the levels then differ in resolution, not in depth), or
      a sequence of three maps (shallow, mid, deep stages); every map is
      normalised (``norm_cfg``) before its aligners.

    Args:
        modalities (Sequence[str]): Modality names, in a fixed order (the
            order of a tuple input).
        embed_dims (int): Token width d. Defaults to 256.
        intra_ced (dict, optional): :class:`IntraCED` config, built once per
            level (``modalities``, ``embed_dims`` filled in; type defaults to
            ``clcr_mm.IntraCED``). None skips the factorisation: InterCAD
            sees the tokens as both shared and private. Defaults to
            ``dict()``.
        inter_cad (dict): :class:`InterCAD` config (type defaults to
            ``clcr_mm.InterCAD``). Defaults to ``dict()``.
        in_channels (Sequence, optional): Per modality, the channels of its
            one feature map (int) or of its three maps (three ints). None
            for token-level inputs. Defaults to None.
        grids (Sequence, optional): Token grid (t, h, w) per level, for
            feature-map inputs. Defaults to ``((4, 4, 4), (2, 2, 2),
            (1, 1, 1))``.
        norm_cfg (dict, optional): mmcv norm layer applied to every feature
            map before its level aligners, one per map. Backbone maps come
            out of a ReLU with a large mean that every sample shares; left
            in, the projections' SGD steps move all samples' tokens
            together, which after the LayerNorms of IntraCED / InterCAD
            leaves h constant (the head stays at chance inside
            ``RGBPoseConv3D``); batch normalisation removes that common
            part. None feeds the maps as they are. Defaults to
            ``dict(type='BN3d')``.
        loss_sep, loss_cross, loss_budget, loss_align, loss_level, loss_adv
            (dict, optional): Regulariser configs, as in
            ``CLCRRecognizer``; None switches one off. Defaults to None.
        batch_levels (bool | str): Run the levels' IntraCEDs as one
            batched computation (see :class:`IntraCEDLevels`). Defaults to
            ``'auto'``.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 modalities: Sequence[str],
                 embed_dims: int = 256,
                 intra_ced: Optional[dict] = dict(),
                 inter_cad: dict = dict(),
                 in_channels: Optional[Sequence] = None,
                 grids: Optional[Sequence[Sequence[int]]] = None,
                 norm_cfg: Optional[dict] = dict(type='BN3d'),
                 loss_sep: Optional[dict] = None,
                 loss_cross: Optional[dict] = None,
                 loss_budget: Optional[dict] = None,
                 loss_align: Optional[dict] = None,
                 loss_level: Optional[dict] = None,
                 loss_adv: Optional[dict] = None,
                 batch_levels: Union[bool, str] = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.modalities = tuple(modalities)
        self.embed_dims = embed_dims
        shared_args = dict(modalities=self.modalities, embed_dims=embed_dims)
        intra_ced = _scoped(intra_ced, 'clcr_mm.IntraCED')
        self.intra_ced = IntraCEDLevels({
            level: MODELS.build({**intra_ced, **shared_args})
            for level in LEVELS
        }, batch_levels) if intra_ced is not None else None
        self.inter_cad = MODELS.build({
            **_scoped(inter_cad, 'clcr_mm.InterCAD'), **shared_args})
        # same attribute names as CLCRRecognizer's, so state dicts map by a
        # prefix only
        for name, cfg in zip(LOSS_NAMES, (loss_sep, loss_cross, loss_budget,
                                          loss_align, loss_level, loss_adv)):
            if cfg and name in SHAPED_LOSSES:
                cfg = {**shared_args, **cfg}
            setattr(self, name, MODELS.build(cfg) if cfg else None)
        self.aligners = None
        if in_channels is not None:
            self._build_aligners(in_channels, grids or ((4, 4, 4), (2, 2, 2),
                                                        (1, 1, 1)), norm_cfg)

    def _build_aligners(self, in_channels: Sequence,
                        grids: Sequence[Sequence[int]],
                        norm_cfg: Optional[dict]) -> None:
        if len(in_channels) != len(self.modalities):
            raise ValueError(
                f'CLCRFusionNeck: in_channels {tuple(in_channels)} must give '
                f'one entry per modality {self.modalities}')
        if len(grids) != len(LEVELS):
            raise ValueError(f'CLCRFusionNeck: need one token grid per level '
                             f'{LEVELS}, got {grids}')
        self.aligners = nn.ModuleDict()
        self.map_norms = nn.ModuleDict()
        for m, channels in zip(self.modalities, in_channels):
            per_level = (channels, ) * len(LEVELS) if isinstance(
                channels, int) else tuple(channels)
            if len(per_level) != len(LEVELS):
                raise ValueError(
                    f'CLCRFusionNeck: modality {m!r} has in_channels '
                    f'{channels}; give one int (one feature map) or '
                    f'{len(LEVELS)} (shallow, mid, deep maps)')
            self.aligners[m] = nn.ModuleList(
                LevelAligner(c, self.embed_dims, g)
                for c, g in zip(per_level, grids))
            # one norm per map: a single map serves all levels
            maps = (channels, ) if isinstance(channels, int) else per_level
            self.map_norms[m] = nn.ModuleList(
                build_tap_norm(norm_cfg, c) for c in maps)
        self.level_embed = nn.Parameter(
            torch.zeros(len(LEVELS), self.embed_dims))
        self.modality_embed = nn.Parameter(
            torch.zeros(len(self.modalities), self.embed_dims))
        nn.init.trunc_normal_(self.level_embed, std=0.02)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)

    @property
    def losses(self) -> Dict[str, Optional[nn.Module]]:
        """The regulariser modules by name (None where switched off)."""
        return {name: getattr(self, name) for name in LOSS_NAMES}

    def to_levels(self, x: Union[Levels, FeatureMaps]) -> Levels:
        """The ``[level][modality]`` tokens of the input (see the class
        docstring for the two accepted forms)."""
        if self.aligners is None:
            if not isinstance(x, dict) or set(LEVELS) - set(x):
                raise TypeError(
                    'CLCRFusionNeck without in_channels takes the hierarchy '
                    f'encoder\'s levels, a dict with keys {LEVELS} of '
                    'per-modality tokens; for backbone feature maps set '
                    'in_channels')
            for level in LEVELS:
                check_modalities(x[level], self.modalities,
                                 f'{type(self).__name__} ({level} level)')
                for m, tokens in x[level].items():
                    if tokens.shape[-1] != self.embed_dims:
                        raise ValueError(
                            f'CLCRFusionNeck: {level} tokens of {m!r} are '
                            f'{tokens.shape[-1]} wide but embed_dims='
                            f'{self.embed_dims}; give the fusion the '
                            'encoder\'s embed_dims')
            return x
        if isinstance(x, dict):
            check_modalities(x, self.modalities, type(self).__name__)
            maps = [x[m] for m in self.modalities]
        else:
            if len(x) != len(self.modalities):
                raise ValueError(
                    f'CLCRFusionNeck got {len(x)} feature maps but is '
                    f'configured for modalities {self.modalities}')
            maps = list(x)
        levels: Levels = {level: {} for level in LEVELS}
        for m_idx, (m, feats) in enumerate(zip(self.modalities, maps)):
            taps = self._normalised_taps(m, feats)
            for l_idx, (level, tap, aligner) in enumerate(
                    zip(LEVELS, taps, self.aligners[m])):
                levels[level][m] = (aligner(tap) + self.level_embed[l_idx] +
                                    self.modality_embed[m_idx])
        return levels

    def _normalised_taps(self, modality: str, feats) -> list:
        """One modality's maps, checked and normalised, one per level.

        Args:
            modality (str): The modality's name.
            feats (Tensor | Sequence[Tensor]): One map (B, C, [T,] H, W),
                which serves every level, or one map per level.

        Returns:
            list[Tensor]: (B, C, T, H, W) per level.
        """
        single = isinstance(feats, torch.Tensor)
        feats = (feats, ) if single else tuple(feats)
        if not single and len(feats) != len(LEVELS):
            raise ValueError(
                f'CLCRFusionNeck: modality {modality!r} gave {len(feats)} '
                f'feature maps; give one, or one per level {LEVELS}')
        taps = []
        for level, tap, aligner, norm in zip(LEVELS, feats,
                                             self.aligners[modality],
                                             self.map_norms[modality]):
            if tap.dim() == 4:  # (B, C, H, W): a one-frame clip
                tap = tap.unsqueeze(2)
            if tap.dim() != 5 or tap.shape[1] != aligner.in_channels:
                where = 'its feature map' if single else f'level {level!r}'
                raise ValueError(
                    f'CLCRFusionNeck: modality {modality!r}, {where}: '
                    f'expected (B, {aligner.in_channels}, [T,] H, W), got '
                    f'shape {tuple(tap.shape)}; fix in_channels')
            taps.append(norm(tap))
        return taps * len(LEVELS) if single else taps

    def fuse_inputs(self, x: Union[Levels, FeatureMaps],
                    data_samples: OptSampleList = None) -> dict:
        """Tokens of ``x``, fused with the samples' modality masks.

        Args:
            x (dict | tuple): Levels or per-modality feature maps, with the
                views of each sample folded into the batch (B*V).
            data_samples (list[ActionDataSample], optional): B samples;
                ``modality_mask`` (dict modality -> present) marks modalities
                a pipeline zero-filled.

        Returns:
            dict: Output of :func:`fuse_levels`.
        """
        levels = self.to_levels(x)
        first = levels[LEVELS[0]][self.modalities[0]]
        mask = sample_modality_mask(data_samples, self.modalities,
                                    first.shape[0], first.device)
        return fuse_levels(self.intra_ced, self.inter_cad, levels, mask)

    def regularisers(self, feats: dict) -> Dict[str, torch.Tensor]:
        """:func:`clcr_regularisers` with this neck's loss modules."""
        return clcr_regularisers(feats, self.modalities, self.losses)

    def forward(self,
                x: Union[Levels, FeatureMaps],
                data_samples: OptSampleList = None
                ) -> Tuple[dict, Dict[str, torch.Tensor]]:
        """mmaction2's neck contract.

        Args:
            x (dict | tuple): Levels or per-modality feature maps.
            data_samples (list[ActionDataSample], optional): Given in
                training (as mmaction2's recognizers do), which turns the
                regularisers on; their ``modality_mask`` is applied.

        Returns:
            tuple: InterCAD's output dict (h as ``feat`` (B, D)) and
            ``loss_aux``, the regularisers and budget statistics (empty
            without ``data_samples``).
        """
        feats = self.fuse_inputs(x, data_samples)
        loss_aux = self.regularisers(feats) if data_samples is not None \
            else {}
        return feats['fused'], loss_aux
