"""RGB + optical-flow loading from mmaction2 rawframe directories.

UCF101 in clcr_mm is a two-modality dataset (``rgb`` and ``flow``) read from
one rawframe directory per clip (``img_%05d.jpg``, ``flow_x_%05d.jpg``,
``flow_y_%05d.jpg``, as written by ``tools/data/ucf101/extract_rgb_flow.py``
or mmaction2's denseflow tools). The list file and frame sampling are
mmaction2's own (``RawframeDataset`` + ``SampleFrames``); this module adds
the two transforms that bracket the spatial augmentations:

1. :class:`LoadRGBFlowFrames` decodes the sampled RGB frames and, per clip,
   a stack of ``L`` consecutive flow frames, and puts ALL of them in the one
   ``results['imgs']`` list: ``[rgb ..., flow_x, flow_y, flow_x, ...]``.
2. mmaction2's geometric transforms (``Resize``, ``RandomResizedCrop``,
   ``MultiScaleCrop``, ``CenterCrop``, ``ThreeCrop``, ``TenCrop``, ``Flip``,
   lazy mode + ``Fuse`` too) then run unchanged. They treat every list
   element the same way with one random draw, so RGB and flow get the same
   crop box, scale and flip by construction -- no shared-seed trickery.
3. :class:`FormatRGBFlow` splits the list back into ``results['rgb']``
   ``(V, 3, T, H, W)`` and ``results['flow']`` ``(V, 2L, H, W)``, and
   applies the one thing a geometric transform cannot know: a horizontal
   mirror negates the x flow (``255 - q`` in the quantised encoding), a
   vertical one the y flow. It reads ``results['flip']`` /
   ``results['flip_direction']`` (set by ``Flip`` in both eager and lazy
   mode) and recognises ``TenCrop``'s mirrored views.

The dataset must keep ``modality='RGB'``: mmaction2's ``Flip`` would
otherwise invert every other list element itself, assuming a pure flow list.
Photometric transforms (``ColorJitter``...) must not be placed between the
two transforms, as they would alter the flow images.
"""
import warnings
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio

from clcr_mm.registry import TRANSFORMS

_ON_MISSING = ('error', 'zero')
LAYOUT_KEY = 'rgb_flow_layout'


class FrameLoadError(FileNotFoundError):
    """A frame of a clip is missing or cannot be decoded."""


def flow_stack_indices(frame_inds: np.ndarray,
                       num_clips: int,
                       clip_len: int,
                       total_frames: int,
                       flow_len: int,
                       start_index: int = 1) -> np.ndarray:
    """Flow frame indices: ``flow_len`` consecutive flows per clip centre.

    Flow frame ``k`` is the motion from RGB frame ``k`` to ``k + 1``, so a
    clip of ``N = total_frames`` RGB frames has flow frames
    ``start_index .. start_index + N - 2``. For clip ``i`` the stack starts
    ``flow_len // 2`` before its middle sampled RGB frame and is shifted to
    stay inside the valid range (as two-stream networks do at the video
    ends); clips shorter than ``flow_len + 1`` frames repeat the last flow.

    Args:
        frame_inds (np.ndarray): Sampled RGB indices from ``SampleFrames``,
            shape ``(num_clips * clip_len,)``, ``start_index`` included.
        num_clips (int): Number of clips.
        clip_len (int): RGB frames per clip ``T``.
        total_frames (int): RGB frames of the video ``N`` (``N >= 2``).
        flow_len (int): Flow frames per stack ``L``.
        start_index (int): Index of the first frame file. Defaults to 1.

    Returns:
        np.ndarray: int64 array of shape ``(num_clips, flow_len)``.
    """
    num_flow = total_frames - 1
    clips = np.asarray(frame_inds).reshape(num_clips, clip_len)
    centres = clips[:, clip_len // 2].astype(np.int64)
    starts = centres - flow_len // 2
    last = start_index + num_flow - 1  # index of the last flow frame
    starts = np.clip(starts, start_index,
                     max(start_index, last - flow_len + 1))
    inds = starts[:, None] + np.arange(flow_len)[None, :]
    return np.minimum(inds, last)


@TRANSFORMS.register_module()
class LoadRGBFlowFrames(BaseTransform):
    """Decode aligned RGB frames and stacked optical flow of one clip.

    Runs after mmaction2's ``SampleFrames`` (or ``UniformSample``): the
    sampled indices give the RGB frames, and each of the ``num_clips``
    clips also gets one stack of ``flow_len`` consecutive flow frames
    centred on its middle RGB frame (see :func:`flow_stack_indices`).

    Everything goes into ``results['imgs']`` so that the following
    mmaction2 geometric transforms treat both modalities identically (see
    the module docstring); :class:`FormatRGBFlow` splits it again. Layout
    of ``imgs`` (length ``num_clips * (T + 2 L)``)::

        [rgb (H, W, 3) uint8  x  num_clips * T  (clip-major, RGB order),
         flow (H, W)   uint8  x  num_clips * 2L (clip-major, x/y interleaved)]

    Required keys: ``frame_dir``, ``filename_tmpl`` (RGB, e.g.
    ``'img_{:05}.jpg'``), ``frame_inds``, ``num_clips``, ``clip_len``,
    ``total_frames``, ``start_index``, ``modality`` (must be ``'RGB'``),
    optional ``offset``, ``modality_mask``.

    Added keys: ``imgs``, ``img_shape``, ``original_shape``, ``flow_inds``
    (``(num_clips, L)``), ``rgb_flow_layout``, ``modality_mask``
    (``{rgb_key: bool, flow_key: bool}``).

    Args:
        flow_len (int): Flow frames per stack ``L``; the flow tensor has
            ``2 L`` channels. Defaults to 5 (two-stream convention 10 ch).
        flow_tmpl (str): Flow file template, formatted with ``'x'``/``'y'``
            and the index. Defaults to ``'flow_{}_{:05d}.jpg'``.
        rgb_key (str): Modality name of the RGB stream. Defaults to
            ``'rgb'``.
        flow_key (str): Modality name of the flow stream. Defaults to
            ``'flow'``.
        on_missing (str): A missing or undecodable frame: ``'error'``
            raises :class:`FrameLoadError` naming the clip directory and
            the file; ``'zero'`` fills that whole modality with zeros of the
            normal shape and sets its ``modality_mask`` entry False (the
            other modality must be readable). Defaults to ``'error'``.
        backend_args (dict, optional): mmengine file backend arguments
            (e.g. for petrel). Defaults to None (local disk).
    """

    def __init__(self,
                 flow_len: int = 5,
                 flow_tmpl: str = 'flow_{}_{:05d}.jpg',
                 rgb_key: str = 'rgb',
                 flow_key: str = 'flow',
                 on_missing: str = 'error',
                 backend_args: Optional[Dict] = None) -> None:
        if flow_len < 1:
            raise ValueError(f'flow_len must be >= 1, got {flow_len}')
        if on_missing not in _ON_MISSING:
            raise ValueError(f'on_missing must be one of {_ON_MISSING}, got '
                             f'{on_missing!r}')
        if rgb_key == flow_key:
            raise ValueError('rgb_key and flow_key must differ')
        self.flow_len = flow_len
        self.flow_tmpl = flow_tmpl
        self.rgb_key = rgb_key
        self.flow_key = flow_key
        self.on_missing = on_missing
        self.backend_args = backend_args

    def _read(self, path: str, grayscale: bool) -> np.ndarray:
        """Read one JPEG; RGB channel order for colour images."""
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FrameLoadError(f'{path}: frame file not found (clip '
                                 'not fully extracted?)') from None
        buf = np.frombuffer(data, np.uint8)
        img = cv2.imdecode(
            buf, cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)
        if img is None:
            raise FrameLoadError(f'{path}: cannot decode image (corrupt or '
                                 'empty file)')
        if not grayscale:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img

    def _read_many(self, paths: List[str], grayscale: bool,
                   frame_dir: str) -> List[np.ndarray]:
        """Read ``paths``; duplicates are decoded once and copied.

        Copies matter: ``Flip`` flips list elements in place.
        """
        cache: Dict[str, np.ndarray] = {}
        out = []
        for path in paths:
            if path not in cache:
                cache[path] = self._read(path, grayscale)
                out.append(cache[path])
            else:
                out.append(cache[path].copy())
        shapes = {img.shape for img in out}
        if len(shapes) > 1:
            raise FrameLoadError(f'{frame_dir}: frames of different sizes '
                                 f'{sorted(shapes)}')
        return out

    def transform(self, results: Dict) -> Dict:
        """Load the frames; see the class docstring for keys and layout.

        Args:
            results (dict): Result dict from ``SampleFrames``.

        Returns:
            dict: ``results`` with ``imgs`` etc. added.
        """
        if results.get('modality', 'RGB') != 'RGB':
            raise ValueError(
                f'LoadRGBFlowFrames needs the dataset modality "RGB", got '
                f'{results["modality"]!r}: with "Flow" mmaction2 Flip would '
                'invert half of the combined RGB+flow list.')
        frame_dir = results['frame_dir']
        num_clips = int(results['num_clips'])
        clip_len = int(results['clip_len'])
        total_frames = int(results['total_frames'])
        start_index = int(results.get('start_index', 1))
        offset = int(results.get('offset', 0))
        frame_inds = np.asarray(results['frame_inds']).reshape(-1)
        if frame_inds.size != num_clips * clip_len:
            raise ValueError(
                f'{frame_dir}: {frame_inds.size} frame indices for '
                f'num_clips={num_clips} x clip_len={clip_len}')
        if total_frames < 2:
            raise FrameLoadError(f'{frame_dir}: total_frames={total_frames};'
                                 ' flow needs at least 2 frames')
        flow_inds = flow_stack_indices(frame_inds, num_clips, clip_len,
                                       total_frames, self.flow_len,
                                       start_index)

        rgb_paths = [
            f'{frame_dir}/{results["filename_tmpl"].format(int(i) + offset)}'
            for i in frame_inds
        ]
        flow_paths = [
            f'{frame_dir}/{self.flow_tmpl.format(axis, int(k) + offset)}'
            for k in flow_inds.reshape(-1) for axis in ('x', 'y')
        ]
        rgb, rgb_err = self._try_read(rgb_paths, False, frame_dir)
        flow, flow_err = self._try_read(flow_paths, True, frame_dir)
        if rgb_err is not None and flow_err is not None:
            raise FrameLoadError(f'{frame_dir}: neither modality readable: '
                                 f'{rgb_err}; {flow_err}')
        # Zero-fill a missing modality with the other one's frame size.
        if rgb is None:
            h, w = flow[0].shape[:2]
            rgb = [np.zeros((h, w, 3), np.uint8) for _ in rgb_paths]
        if flow is None:
            h, w = rgb[0].shape[:2]
            flow = [np.zeros((h, w), np.uint8) for _ in flow_paths]
        if rgb[0].shape[:2] != flow[0].shape[:2]:
            raise FrameLoadError(
                f'{frame_dir}: RGB frames are {rgb[0].shape[:2]} but flow '
                f'frames {flow[0].shape[:2]}; extract both at the same size')

        results['imgs'] = rgb + flow
        results['img_shape'] = rgb[0].shape[:2]
        results['original_shape'] = rgb[0].shape[:2]
        results['flow_inds'] = flow_inds
        results[LAYOUT_KEY] = dict(
            num_rgb=len(rgb),
            num_flow=len(flow),
            num_clips=num_clips,
            clip_len=clip_len,
            flow_len=self.flow_len,
            rgb_key=self.rgb_key,
            flow_key=self.flow_key)
        mask = dict(results.get('modality_mask') or {})
        mask[self.rgb_key] = rgb_err is None and mask.get(self.rgb_key, True)
        mask[self.flow_key] = (
            flow_err is None and mask.get(self.flow_key, True))
        results['modality_mask'] = mask
        return results

    def _try_read(self, paths: List[str], grayscale: bool, frame_dir: str
                  ) -> Tuple[Optional[List[np.ndarray]], Optional[str]]:
        """Read all ``paths``; on failure raise or, if tolerated, warn."""
        try:
            return self._read_many(paths, grayscale, frame_dir), None
        except FrameLoadError as e:
            if self.on_missing == 'error':
                raise  # the message names the clip directory and frame
            kind = self.flow_key if grayscale else self.rgb_key
            warnings.warn(f'{frame_dir}: {kind} unavailable ({e}); '
                          'zero-filled and masked out (on_missing="zero")')
            return None, str(e)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(flow_len={self.flow_len}, '
                f'flow_tmpl={self.flow_tmpl!r}, rgb_key={self.rgb_key!r}, '
                f'flow_key={self.flow_key!r}, '
                f'on_missing={self.on_missing!r})')


@TRANSFORMS.register_module()
class FormatRGBFlow(BaseTransform):
    """Split :class:`LoadRGBFlowFrames`'s combined list into two tensors.

    Output (uint8 numpy, the data preprocessor normalises):

    - ``results[rgb_key]``: ``(V, 3, T, H, W)``, the layout of mmaction2's
      ``FormatShape('NCTHW')``;
    - ``results[flow_key]``: ``(V, 2L, H, W)``, channels
      ``x_1, y_1, ..., x_L, y_L`` (two-stream stacking);

    with ``V = num_crops x num_clips`` in mmaction2's crop-major order
    (``ThreeCrop``/``TenCrop`` give ``num_crops`` > 1).

    Mirroring fix-up: a horizontal mirror of a flow image leaves its values
    untouched, but the true motion's x component changes sign. With the
    quantisation ``q = 255 (v + b) / 2b`` the negation is ``255 - q``, so the
    x channels are inverted when ``results['flip']`` is True with direction
    ``'horizontal'`` (the y channels for ``'vertical'``), and in the
    mirrored (odd) views of ``TenCrop``. A zero-filled flow (masked out) is
    left as is.

    Required keys: ``imgs``, ``rgb_flow_layout``; optional ``flip``,
    ``flip_direction``, ``crop_bbox``, ``modality_mask``.
    Added keys: ``rgb_key``, ``flow_key``, ``input_shape``.
    Removed keys: ``imgs``, ``rgb_flow_layout``.
    """

    def transform(self, results: Dict) -> Dict:
        """Split and format; see the class docstring.

        Args:
            results (dict): Result dict after the spatial transforms.

        Returns:
            dict: ``results`` with the two modality arrays.
        """
        if LAYOUT_KEY not in results:
            raise KeyError('FormatRGBFlow needs LoadRGBFlowFrames earlier in '
                           'the pipeline (no "rgb_flow_layout" key)')
        layout = results.pop(LAYOUT_KEY)
        imgs = results.pop('imgs')
        n_rgb, n_flow = layout['num_rgb'], layout['num_flow']
        num_clips, clip_len = layout['num_clips'], layout['clip_len']
        flow_len = layout['flow_len']
        per_crop = n_rgb + n_flow
        if len(imgs) == 0 or len(imgs) % per_crop:
            raise ValueError(
                f'{results.get("frame_dir")}: {len(imgs)} images cannot be '
                f'split into crops of {n_rgb} RGB + {n_flow} flow frames; a '
                'transform between LoadRGBFlowFrames and FormatRGBFlow '
                'changed the number of frames')
        num_crops = len(imgs) // per_crop
        flow_ok = bool(
            (results.get('modality_mask') or {}).get(layout['flow_key'],
                                                     True))
        flip = bool(results.get('flip', False))
        direction = results.get('flip_direction', 'horizontal')
        # TenCrop emits [crop0, mirrored crop0, crop1, ...] and leaves a
        # per-image (N, 4) crop_bbox behind; other croppers leave (4,).
        ten_crop = (
            num_crops == 10 and np.ndim(results.get('crop_bbox')) == 2)

        rgbs, flows = [], []
        for c in range(num_crops):
            block = imgs[c * per_crop:(c + 1) * per_crop]
            rgb = np.stack(block[:n_rgb])  # (num_clips*T, H, W, 3)
            h, w = rgb.shape[1:3]
            rgb = rgb.reshape(num_clips, clip_len, h, w, -1)
            rgbs.append(rgb.transpose(0, 4, 1, 2, 3))  # N, C, T, H, W
            flow = np.stack(block[n_rgb:]).reshape(num_clips, 2 * flow_len, h,
                                                   w)
            if flow_ok:
                mirror_x = flip and direction == 'horizontal'
                if ten_crop and c % 2 == 1:
                    mirror_x = not mirror_x
                if mirror_x:
                    flow[:, 0::2] = 255 - flow[:, 0::2]
                if flip and direction == 'vertical':
                    flow[:, 1::2] = 255 - flow[:, 1::2]
            flows.append(flow)
        rgb_key, flow_key = layout['rgb_key'], layout['flow_key']
        results[rgb_key] = np.ascontiguousarray(np.concatenate(rgbs))
        results[flow_key] = np.ascontiguousarray(np.concatenate(flows))
        results['input_shape'] = {
            rgb_key: results[rgb_key].shape,
            flow_key: results[flow_key].shape
        }
        return results
