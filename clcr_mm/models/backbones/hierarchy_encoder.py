"""Semantic hierarchy encoder (CLCR section 1).

Every modality is encoded by its own backbone; three taps of that backbone
give the shallow, mid and deep levels. A level aligner per (modality, level)
turns each tap into tokens of one common width with the same normalisation
and embedding scheme in every modality, the "common basis for interaction"
on which IntraCED and InterCAD work.
"""
import functools
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from clcr_mm.registry import MODELS
from ..utils import LEVELS, Levels, check_modalities
from .temporal_encoder import steps_mask

# How a modality's input and taps are laid out:
#   'video'   : input (B, C, T, H, W); taps (B, C, t, h, w) from 3D
#               backbones, or (B*T, C, h, w) when frames are folded into the
#               batch for a 2D backbone (``fold_frames=True``).
#   'image'   : input (B, C, H, W) (spectrograms, stacked optical flow);
#               taps (B, C, h, w).
#   'sequence': input (B, L, D) (feature sequences); taps (B, C, L).
LAYOUTS = ('video', 'image', 'sequence')


def build_tap_norm(norm_cfg: Optional[dict], channels: int) -> nn.Module:
    """The mmcv norm layer of ``norm_cfg`` for a (B, C, T, H, W) tap.

    Args:
        norm_cfg (dict, optional): mmcv norm config, e.g.
            ``dict(type='BN3d')``. None gives an identity (no parameters,
            no buffers: the owner's state dict keys stay as without a norm).
        channels (int): C of the tap.

    Returns:
        nn.Module: The norm layer, or ``nn.Identity``.
    """
    if norm_cfg is None:
        return nn.Identity()
    return build_norm_layer(norm_cfg, channels)[1]


def masked_tap_norm(norm: nn.Module, tap: torch.Tensor,
                    step_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Apply ``norm`` to the valid time steps of ``tap`` only.

    A batch norm of the padded tap would count the padded steps in its
    batch statistics (and in its running statistics), so a sample's tokens
    would depend on how far the batch was padded. The valid steps of all
    samples are gathered into one (1, C, N_valid, H, W) clip, normalised
    together, and put back; padded steps come out as 0 (the aligner's
    pooling gives them weight 0 anyway). In eval mode the norm is a
    per-element affine map of the running statistics, so the gathering
    changes nothing there. Only batch norms (BN3d, SyncBN) take a masked
    tap: a per-sample norm (GN, IN, LN) would mix the gathered samples.

    Args:
        norm (nn.Module): Norm layer over (N, C, T, H, W) inputs (from
            :func:`build_tap_norm`).
        tap (Tensor): (B, C, T, H, W).
        step_mask (Tensor, optional): (B, T) bool, True for valid steps.
            None: every step is valid.

    Returns:
        Tensor: The normalised tap, (B, C, T, H, W).
    """
    if step_mask is None or isinstance(norm, nn.Identity):
        # no padding to keep out, or no statistics: the tap as a whole
        return norm(tap)
    if not isinstance(norm, _BatchNorm):
        raise TypeError(
            f'a tap with padded steps can only be batch-normalised, but its '
            f'norm is {type(norm).__name__}; use dict(type=\'BN3d\') or '
            'SyncBN as the tap norm of this modality')
    by_channel = tap.transpose(0, 1)  # (C, B, T, H, W)
    valid = norm(by_channel[:, step_mask].unsqueeze(0))[0]
    out = by_channel.new_zeros(by_channel.shape)
    out[:, step_mask] = valid
    return out.transpose(0, 1)


class LevelAligner(nn.Module):
    """Turn one backbone tap into aligned tokens of width ``embed_dims``.

    The tap is optionally normalised (``norm_cfg``), average-pooled to a
    fixed token grid (finer for shallow levels, coarser for deep ones),
    projected to the common width and layer-normalised; the caller adds
    level and modality embeddings. A learned position embedding over the
    grid carries the temporal (and spatial) order of the tokens.

    Args:
        in_channels (int): Channels of the tap.
        embed_dims (int): Common width d.
        grid (Sequence[int]): Token grid (t, h, w); N = t*h*w tokens.
        norm_cfg (dict, optional): mmcv norm layer (e.g.
            ``dict(type='BN3d')``) applied to the tap before pooling, over
            its valid steps only (:func:`masked_tap_norm`). Backbone taps
            leave a ReLU with a per-channel mean that every sample shares;
            a batch norm removes it, so the projection's updates do not
            move every sample's tokens together. None (the default) feeds
            the tap as it is. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 grid: Sequence[int],
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if len(grid) != 3:
            raise ValueError(f'token grid must be (t, h, w), got {grid}')
        self.in_channels = in_channels
        self.grid = tuple(int(g) for g in grid)
        num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.tap_norm = build_tap_norm(norm_cfg, in_channels)
        self.proj = nn.Linear(in_channels, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dims))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def num_tokens(self) -> int:
        return self.pos_embed.shape[1]

    def forward(self,
                tap: torch.Tensor,
                step_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Normalise, pool, project and embed.

        Args:
            tap (Tensor): Tap in canonical layout (B, C, T, H, W).
            step_mask (Tensor, optional): (B, T) bool, True for valid time
                steps. Only they enter the tap norm's statistics, and each
                token averages only the valid steps of its pooling window (a
                token whose window holds none pools to 0 and is flagged
                invalid by :meth:`token_mask`).

        Returns:
            Tensor: Tokens of shape (B, N, d).
        """
        tap = masked_tap_norm(self.tap_norm, tap, step_mask)
        if step_mask is None:
            pooled = F.adaptive_avg_pool3d(tap, self.grid)
        else:
            # avg(x * m) / avg(m) over the same adaptive windows is the mean
            # of the valid steps of each window.
            weight = self._window_weight(step_mask, tap)
            pooled = F.adaptive_avg_pool3d(
                tap * self._steps(step_mask, tap), self.grid) / (
                    weight.clamp_min(1e-6))
        tokens = pooled.flatten(2).transpose(1, 2)
        return self.norm(self.proj(tokens)) + self.pos_embed

    @staticmethod
    def _steps(step_mask: torch.Tensor, tap: torch.Tensor) -> torch.Tensor:
        """(B, T) bool -> (B, 1, T, H, W) in the tap's dtype."""
        mask = step_mask.to(tap.dtype)[:, None, :, None, None]
        return mask.expand(-1, -1, -1, *tap.shape[3:])

    def _window_weight(self, step_mask: torch.Tensor,
                       tap: torch.Tensor) -> torch.Tensor:
        """(B, 1, t, h, w) fraction of valid steps in each token window."""
        return F.adaptive_avg_pool3d(self._steps(step_mask, tap), self.grid)

    def token_mask(self, step_mask: torch.Tensor,
                   tap_shape: Sequence[int]) -> torch.Tensor:
        """Which tokens pool at least one valid step.

        Args:
            step_mask (Tensor): (B, T) bool valid time steps of the tap.
            tap_shape (Sequence[int]): Shape (B, C, T, H, W) of the tap.

        Returns:
            Tensor: (B, N) bool, True for valid tokens.
        """
        probe = step_mask.new_zeros((), dtype=torch.float32).expand(
            tap_shape[0], 1, *tap_shape[2:])
        return self._window_weight(step_mask, probe).flatten(1) > 0


class ModalityEncoder(nn.Module):
    """One modality's backbone with three taps in canonical layout.

    Taps are read with forward hooks on named submodules, so any registered
    backbone (mmaction2's ResNet, ResNetAudio, ResNet3dSlowOnly, or our
    TemporalConvEncoder) can serve without changes.

    Args:
        name (str): Modality name, used in error messages.
        backbone (dict): Config of the backbone, built from ``MODELS``.
        taps (Sequence[str]): Names of three submodules whose outputs are the
            shallow, mid and deep levels (e.g. ``('layer2', 'layer3',
            'layer4')``).
        tap_channels (Sequence[int]): Channels of the three taps.
        layout (str): One of ``'video'``, ``'image'``, ``'sequence'``.
        fold_frames (bool): For ``'video'``: run a 2D backbone on every frame
            by folding T into the batch. Defaults to False.
        image_as_clip (bool): For ``'image'``: feed the (B, C, H, W) input to
            a 3D backbone (e.g. mmaction2's ResNet3d, whose width is
            configurable) as a one-frame clip (B, C, 1, H, W). Defaults to
            False.
        pretrained (str, optional): Local checkpoint loaded into the
            backbone; nothing is downloaded. Defaults to None.
        pretrained_prefix (str): Key prefix of the backbone's weights inside
            the checkpoint, stripped when loading (e.g. ``'backbone.'`` for an
            mmaction2 recognizer checkpoint). Defaults to ``''``.
    """

    def __init__(self,
                 name: str,
                 backbone: dict,
                 taps: Sequence[str],
                 tap_channels: Sequence[int],
                 layout: str,
                 fold_frames: bool = False,
                 image_as_clip: bool = False,
                 pretrained: Optional[str] = None,
                 pretrained_prefix: str = '') -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(
                f'modality {name!r}: layout must be one of {LAYOUTS}, got '
                f'{layout!r}')
        if len(taps) != len(LEVELS) or len(tap_channels) != len(LEVELS):
            raise ValueError(
                f'modality {name!r}: need {len(LEVELS)} taps and tap_channels '
                f'(shallow, mid, deep), got taps={taps}, '
                f'tap_channels={tap_channels}')
        self.name = name
        self.layout = layout
        self.fold_frames = fold_frames
        self.image_as_clip = image_as_clip and layout == 'image'
        self.tap_channels = tuple(tap_channels)
        self.backbone = MODELS.build(backbone)
        modules = dict(self.backbone.named_modules())
        unknown = [t for t in taps if t not in modules]
        if unknown:
            raise KeyError(
                f'modality {name!r}: taps {unknown} are not submodules of '
                f'{type(self.backbone).__name__}; some valid names: '
                f'{[n for n in modules if n and "." not in n]}')
        self.taps = tuple(taps)
        self._tapped: Dict[str, torch.Tensor] = {}
        # one hook per module: a tap may serve several levels. A partial of
        # a bound method, not a closure: a deep copy of the model (an EMA
        # model) rebinds it to the copy, so the copy reads its own taps.
        for tap in dict.fromkeys(self.taps):
            modules[tap].register_forward_hook(
                functools.partial(self._store_tap, tap))
        self.pretrained = pretrained
        self.pretrained_prefix = pretrained_prefix

    def _store_tap(self, tap: str, module: nn.Module, args: tuple,
                   output: torch.Tensor) -> None:
        self._tapped[tap] = output

    def init_weights(self) -> None:
        """Initialise the backbone, then load the local checkpoint if any."""
        if hasattr(self.backbone, 'init_weights'):
            self.backbone.init_weights()
        if self.pretrained:
            load_pretrained(self.backbone, self.pretrained,
                            self.pretrained_prefix, self.name)

    def forward(
        self,
        x: torch.Tensor,
        lengths: Optional[torch.Tensor] = None
    ) -> Tuple[List[torch.Tensor], Optional[List[torch.Tensor]]]:
        """Run the backbone and return its taps in canonical layout.

        Args:
            x (Tensor): Input of this modality's layout (see ``LAYOUTS``).
            lengths (Tensor, optional): (B,) valid input steps, for the
                ``'sequence'`` layout only. The backbone must accept
                ``lengths`` in ``forward`` and give each tap's valid steps
                through ``tap_lengths(lengths)`` (as
                :class:`TemporalConvEncoder` does).

        Returns:
            tuple: Shallow, mid and deep taps, each (B, C, T, H, W), and,
            with ``lengths``, their (B, T) bool valid-step masks (else None).
        """
        expected_dim = dict(video=5, image=4, sequence=3)[self.layout]
        if x.dim() != expected_dim:
            raise ValueError(
                f'modality {self.name!r} has layout {self.layout!r} and '
                f'expects a {expected_dim}-D input per view, got shape '
                f'{tuple(x.shape)}')
        batch, frames = x.shape[0], 1
        if self.layout == 'video' and self.fold_frames:
            frames = x.shape[2]
            x = x.transpose(1, 2).flatten(0, 1)
        elif self.image_as_clip:
            x = x.unsqueeze(2)
        self._tapped.clear()
        if lengths is None:
            self.backbone(x)
        else:
            self._check_lengths(lengths, batch)
            self.backbone(x, lengths=lengths)
        taps = []
        for tap, channels in zip(self.taps, self.tap_channels):
            out = self._tapped[tap]
            if isinstance(out, (tuple, list)):
                out = out[0]
            taps.append(self._canonical(out, tap, channels, batch, frames))
        self._tapped.clear()  # do not keep activations alive
        if lengths is None:
            return taps, None
        tap_lengths = self.backbone.tap_lengths(lengths.to(x.device))
        step_masks = [
            steps_mask(tap_lengths[tap].to(out.device), out.shape[2])
            for tap, out in zip(self.taps, taps)
        ]
        return taps, step_masks

    def _check_lengths(self, lengths: torch.Tensor, batch: int) -> None:
        """Fail clearly when lengths cannot apply to this modality."""
        if self.layout != 'sequence':
            raise ValueError(
                f'modality {self.name!r}: valid lengths apply to the '
                f"'sequence' layout only, not {self.layout!r}")
        if not hasattr(self.backbone, 'tap_lengths'):
            raise TypeError(
                f'modality {self.name!r}: the backbone '
                f'{type(self.backbone).__name__} cannot honour valid '
                'lengths (it has no tap_lengths method); use '
                'TemporalConvEncoder or BertTextEncoder')
        if tuple(lengths.shape) != (batch, ):
            raise ValueError(
                f'modality {self.name!r}: lengths must have shape '
                f'({batch},), got {tuple(lengths.shape)}')

    def _canonical(self, out: torch.Tensor, tap: str, channels: int,
                   batch: int, frames: int) -> torch.Tensor:
        if self.layout == 'sequence':
            out = out[..., None, None]
        elif (self.layout == 'image' and not self.image_as_clip) or (
                self.layout == 'video' and self.fold_frames):
            if out.dim() != 4:
                raise ValueError(
                    f'modality {self.name!r}: tap {tap!r} should be 4-D '
                    f'(N, C, H, W), got shape {tuple(out.shape)}')
            out = out.view(batch, frames, *out.shape[1:]).transpose(1, 2)
        if out.dim() != 5 or out.shape[1] != channels:
            raise ValueError(
                f'modality {self.name!r}: tap {tap!r} has shape '
                f'{tuple(out.shape)} in (B, C, T, H, W) layout, but the '
                f'config says {channels} channels; fix tap_channels')
        return out


def _describe_keys(keys: Sequence[str], limit: int = 8) -> str:
    """``'a, b, c ... (+N more)'`` for error messages."""
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f' ... (+{len(keys) - limit} more)'
                    if len(keys) > limit else '')


def load_pretrained(module: nn.Module, filename: str, prefix: str,
                    modality: str) -> None:
    """Load a local checkpoint into ``module``, failing loudly on mismatch.

    Works with a plain backbone state dict (``prefix=''``), with an mmengine
    checkpoint of a whole mmaction2 recognizer (``prefix='backbone.'``), and
    with a CLCR checkpoint
    (``prefix='backbone.encoders.<modality>.backbone.'``).
    Only the keys under ``prefix`` are used, so the recognizer's head and
    other parts of the checkpoint are ignored; every backbone weight must be
    found there with the right shape. Nothing is downloaded.

    Args:
        module (nn.Module): The backbone to load into.
        filename (str): Path of a local checkpoint file (a state dict, or a
            dict holding one under ``'state_dict'`` as mmengine saves).
        prefix (str): Key prefix of the backbone's weights, stripped when
            loading. A ``'module.'`` prefix left by DistributedDataParallel
            is removed first.
        modality (str): Modality name, for the messages.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        KeyError: No key of the checkpoint starts with ``prefix``.
        RuntimeError: Keys are missing or unexpected, or shapes differ; the
            message names the file, the modality, the prefix and the keys.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'pretrained checkpoint for modality {modality!r} not found: '
            f'{filename}')
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state, dict):
        raise RuntimeError(
            f'pretrained checkpoint {filename} (modality {modality!r}) holds '
            f'no state dict but a {type(checkpoint).__name__}')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    selected = {
        k[len(prefix):]: v
        for k, v in state.items() if k.startswith(prefix)
    }
    if not selected:
        heads = sorted({k.split('.')[0] + '.' for k in state})
        raise KeyError(
            f'pretrained checkpoint {filename} has no key starting with '
            f'pretrained_prefix={prefix!r} (modality {modality!r}); its '
            f'top-level prefixes are {heads}')
    own = module.state_dict()
    missing = set(own) - set(selected)
    unexpected = set(selected) - set(own)
    mismatched = [
        f'{k}: checkpoint {tuple(selected[k].shape)} vs model '
        f'{tuple(own[k].shape)}' for k in sorted(set(own) & set(selected))
        if tuple(selected[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append('missing in checkpoint: '
                            f'{_describe_keys(missing)}')
        if unexpected:
            problems.append('not in the backbone: '
                            f'{_describe_keys(unexpected)}')
        if mismatched:
            problems.append('shape mismatch: ' + '; '.join(mismatched[:8]))
        raise RuntimeError(
            f'pretrained checkpoint {filename} does not match the '
            f'{type(module).__name__} backbone of modality {modality!r} '
            f'(pretrained_prefix={prefix!r}). ' + '. '.join(problems) +
            '. Check the backbone config (depth, in_channels) and the '
            'prefix.')
    module.load_state_dict(selected, strict=True)


@MODELS.register_module()
class CLCRHierarchyEncoder(BaseModule):
    """Semantic hierarchy encoder: three aligned levels per modality.

    Args:
        modalities (dict[str, dict]): Per modality, the keyword arguments of
            :class:`ModalityEncoder` (``backbone``, ``taps``,
            ``tap_channels``, ``layout``, ``fold_frames``, ``pretrained``,
            ``pretrained_prefix``) plus ``grids``: three token grids (t, h, w)
            for shallow, mid and deep.
        embed_dims (int): Common width d of all tokens. Defaults to 256.
        levels (Sequence[str]): The levels to build aligners for and to
            return, a subset of ``('shallow', 'mid', 'deep')``. Baselines
            that fuse one level (late / concat / unimodal) set
            ``('deep',)``: aligners they never use would leave trainable
            parameters without a gradient, which DDP's default
            ``find_unused_parameters=False`` rejects. Defaults to all three.
        tap_norm_cfg (dict, optional): mmcv norm layer of every level
            aligner (see :class:`LevelAligner`), applied to each tap before
            its projection, e.g. ``dict(type='BN3d')``; padded steps of
            sequence taps stay out of its statistics. Backbone taps leave
            a ReLU with a per-channel mean that every sample shares; with
            SGD on unnormalised taps h can end up the same for every sample
            (``projects/rgbpose_clcr``). None (the default) keeps the taps
            as they are, and the state dict as without the option.
        init_cfg (dict, optional): mmengine init config. Defaults to None.

    Example:
        >>> encoder = CLCRHierarchyEncoder(modalities=dict(
        ...     rgb=dict(backbone=dict(type='mmaction.ResNet', depth=18,
        ...                            pretrained=None),
        ...              taps=('layer2', 'layer3', 'layer4'),
        ...              tap_channels=(128, 256, 512), layout='video',
        ...              fold_frames=True,
        ...              grids=((4, 4, 4), (4, 2, 2), (2, 1, 1)))))
    """

    def __init__(self,
                 modalities: Dict[str, dict],
                 embed_dims: int = 256,
                 levels: Sequence[str] = LEVELS,
                 tap_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not modalities:
            raise ValueError('CLCRHierarchyEncoder needs at least one '
                             'modality')
        unknown = [level for level in levels if level not in LEVELS]
        if unknown or not levels:
            raise ValueError(f'levels must be a non-empty subset of {LEVELS}'
                             f', got {tuple(levels)}')
        # kept in LEVELS order whatever the config's order
        self.levels: Tuple[str, ...] = tuple(l for l in LEVELS if l in levels)
        self.modalities: Tuple[str, ...] = tuple(modalities)
        self.embed_dims = embed_dims
        self.encoders = nn.ModuleDict()
        self.aligners = nn.ModuleDict()
        for name, cfg in modalities.items():
            cfg = dict(cfg)
            grids = cfg.pop('grids')
            if len(grids) != len(LEVELS):
                raise ValueError(
                    f'modality {name!r}: need one token grid per level '
                    f'{LEVELS}, got {grids}')
            encoder = ModalityEncoder(name=name, **cfg)
            self.encoders[name] = encoder
            # None holds the place of an unbuilt level, so that parameter
            # names (aligners.<m>.<level index>) do not depend on ``levels``
            self.aligners[name] = nn.ModuleList([
                LevelAligner(c, embed_dims, g, tap_norm_cfg)
                if level in self.levels else None
                for level, c, g in zip(LEVELS, encoder.tap_channels, grids)
            ])
        self.level_embed = nn.Parameter(torch.zeros(len(LEVELS), embed_dims))
        self.modality_embed = nn.Parameter(
            torch.zeros(len(self.modalities), embed_dims))
        nn.init.trunc_normal_(self.level_embed, std=0.02)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)

    def init_weights(self) -> None:
        """Initialise the aligners, then every modality's backbone.

        ``BaseModule.init_weights`` only descends into children that have an
        ``init_weights`` method, and the ``ModuleDict`` holding the modality
        encoders has none, so without this override neither the backbones'
        own initialisation nor the ``pretrained`` checkpoints would run when
        a Runner initialises the model.
        """
        super().init_weights()
        for encoder in self.encoders.values():
            encoder.init_weights()

    @property
    def gathers_valid_steps(self) -> bool:
        """Whether :meth:`align` may gather valid steps: a batch-normalised
        tap of a ``'sequence'`` modality (which may carry lengths) takes
        its training statistics over the valid steps only, a tensor whose
        size depends on the lengths (see :func:`masked_tap_norm`)."""
        return any(
            isinstance(aligner.tap_norm, _BatchNorm)
            for name, encoder in self.encoders.items()
            if encoder.layout == 'sequence'
            for aligner in self.aligners[name] if aligner is not None)

    def num_tokens(self, modality: str) -> Tuple[int, ...]:
        """Number of tokens of ``modality`` at each level (0 if unbuilt)."""
        return tuple(a.num_tokens if a is not None else 0
                     for a in self.aligners[modality])

    def forward(
        self,
        inputs: Optional[Dict[str, torch.Tensor]] = None,
        lengths: Optional[Dict[str, torch.Tensor]] = None,
        return_token_masks: bool = False,
        **modality_inputs: torch.Tensor
    ) -> Union[Levels, Tuple[Levels, Levels]]:
        """Encode every modality into three aligned levels.

        Args:
            inputs (dict[str, Tensor], optional): Per modality, a batch in
                that modality's layout (no view dim).
            **modality_inputs (Tensor): The same, one keyword per modality,
                as mmaction2's ``MMRecognizer3D`` calls
                ``backbone(**inputs)``; instead of ``inputs``.
            lengths (dict[str, Tensor], optional): Per ``'sequence'``
                modality, (B,) valid steps. Steps past them do not affect
                any token. Modalities left out use all steps.
            return_token_masks (bool): Also return which tokens are valid.
                The token grid pools windows of the padded sequence, so
                that depends on this batch's padded length as well as on
                ``lengths``. Defaults to False.

        Returns:
            dict | tuple: ``levels[level][modality]`` tokens of shape
            (B, N_m^l, d), for every level in ``self.levels``; with
            ``return_token_masks``, also ``masks[level][modality]`` (B,
            N_m^l) bool, True for tokens that pool at least one valid step
            (all True for modalities without lengths; every sample keeps at
            least one valid token per level and modality).
        """
        if (inputs is None) == (not modality_inputs):
            raise TypeError(
                f'{type(self).__name__} takes its modalities either as one '
                'dict or as keywords (backbone(**inputs)), not both or '
                'neither')
        inputs = modality_inputs if inputs is None else inputs
        taps, step_masks = self.encode_taps(inputs, lengths)
        return self.align(taps, step_masks, return_token_masks)

    def encode_taps(
        self,
        inputs: Dict[str, torch.Tensor],
        lengths: Optional[Dict[str, torch.Tensor]] = None
    ) -> Tuple[Dict[str, List[torch.Tensor]], Dict[str, Optional[List[
            torch.Tensor]]]]:
        """Run every modality's backbone: the first half of
        :meth:`forward`, before the level aligners (a recognizer compiling
        its fusion compiles the aligners with it).

        Args:
            inputs (dict[str, Tensor]): Per modality, a batch in that
                modality's layout (no view dim).
            lengths (dict[str, Tensor], optional): As in :meth:`forward`.

        Returns:
            tuple: Per modality, its shallow, mid and deep taps (B, C, T, H,
            W); and per modality, their (B, T) bool valid-step masks, or
            None for modalities without lengths.
        """
        check_modalities(inputs, self.modalities, type(self).__name__)
        lengths = dict(lengths or {})
        unknown = set(lengths) - set(self.modalities)
        if unknown:
            raise KeyError(f'lengths given for {sorted(unknown)}, which are '
                           f'not among the modalities {self.modalities}')
        taps, step_masks = {}, {}
        for name in self.modalities:
            taps[name], step_masks[name] = self.encoders[name](
                inputs[name], lengths.get(name))
        return taps, step_masks

    def align(self,
              taps: Dict[str, List[torch.Tensor]],
              step_masks: Dict[str, Optional[List[torch.Tensor]]],
              return_token_masks: bool = False
              ) -> Union[Levels, Tuple[Levels, Levels]]:
        """Turn the taps of :meth:`encode_taps` into aligned tokens: the
        second half of :meth:`forward` (same returns). Static shapes, no
        host reads, so it compiles into one graph with what follows."""
        levels: Levels = {l: {} for l in self.levels}
        token_masks: Levels = {l: {} for l in self.levels}
        for m_idx, name in enumerate(self.modalities):
            masks = step_masks.get(name)
            for l_idx, (level, tap, aligner) in enumerate(
                    zip(LEVELS, taps[name], self.aligners[name])):
                if aligner is None:
                    continue
                step_mask = None if masks is None else masks[l_idx]
                levels[level][name] = (
                    aligner(tap, step_mask) + self.level_embed[l_idx] +
                    self.modality_embed[m_idx])
                if return_token_masks and step_mask is not None:
                    mask = aligner.token_mask(step_mask, tap.shape)
                    # a sample with no valid step (length 0: the modality is
                    # missing and masked anyway) keeps its first token, so
                    # every attention has a key to attend to
                    mask[:, 0] |= ~mask.any(1)
                    token_masks[level][name] = mask
        if not return_token_masks:
            return levels
        batch = next(iter(levels[self.levels[0]].values())).shape[0]
        for l_idx, level in enumerate(LEVELS):
            if level not in self.levels:
                continue
            for name in self.modalities:
                if name not in token_masks[level]:
                    token_masks[level][name] = torch.ones(
                        batch,
                        self.aligners[name][l_idx].num_tokens,
                        dtype=torch.bool,
                        device=self.level_embed.device)
        return levels, token_masks
