"""Video decoding that turns a damaged file into an error naming it.

mmaction2's ``DecordInit``/``DecordDecode`` run native code that can crash
the whole process (a segmentation fault in a DataLoader worker, naming no
file) on a truncated download, and its ``PyAVInit``/``PyAVDecode`` take the
frame count from the container header (0 for flv, webm and mkv) and silently
repeat frames when fewer decode than the header promised. The two transforms
here are drop-in replacements for either pair, around the same samplers
(``SampleFrames``, ``UniformSample``)::

    dict(type='CheckedPyAVInit'),
    dict(type='UniformSample', clip_len=3, num_clips=1),
    dict(type='CheckedPyAVDecode'),

Any failure raises :class:`~clcr_mm.datasets.transforms.MediaFileError`
naming the file, which the dataset's ``on_error`` policy then handles; or,
with ``on_error='zero'`` on both transforms, the clip's frames are zeros and
``results['modality_mask'][name]`` is False, as ``LoadAudio`` does for a
missing audio (the model then treats the modality as missing). Inside a
``KeyMapper``, map ``modality_mask`` out as well.
"""
import logging
from typing import Dict, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from clcr_mm.datasets.annotation_files import display_path
from clcr_mm.datasets.transforms.audio import MediaFileError
from clcr_mm.registry import TRANSFORMS

_ON_ERROR = ('raise', 'zero')


def _check_on_error(on_error: str) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(
            f'on_error must be one of {_ON_ERROR}, got {on_error!r}')
    return on_error


@TRANSFORMS.register_module()
class CheckedPyAVInit(BaseTransform):
    """Open a video with PyAV and count its frames.

    The count comes from the header when it has one, else from the video
    packets of the stream (demuxed, not decoded: cheap), so containers
    without a frame count (flv, webm, mkv) are sampled correctly.

    Required keys: ``filename``.
    Added keys: ``video_reader`` (an open ``av`` container, or None for a
    file that failed under ``on_error='zero'``, with its error in
    ``video_error``), ``total_frames``.

    Args:
        on_error (str): ``'raise'`` a :class:`MediaFileError`, or ``'zero'``:
            leave the reader None (with ``total_frames=1``) so that
            :class:`CheckedPyAVDecode` fills zeros. Defaults to ``'raise'``.
    """

    def __init__(self, on_error: str = 'raise') -> None:
        self.on_error = _check_on_error(on_error)

    def transform(self, results: Dict) -> Dict:
        """Open the video, applying ``on_error``.

        Args:
            results (dict): Result dict with ``filename``.

        Returns:
            dict: ``results`` with ``video_reader`` and ``total_frames``.
        """
        try:
            return self._open(results)
        except MediaFileError as e:
            if self.on_error == 'raise':
                raise
            # One frame to sample; CheckedPyAVDecode reports the error.
            results['video_reader'] = None
            results['video_error'] = str(e)
            results['total_frames'] = 1
            return results

    def _open(self, results: Dict) -> Dict:
        """Open the video.

        Args:
            results (dict): Result dict with ``filename``.

        Returns:
            dict: ``results`` with ``video_reader`` and ``total_frames``.

        Raises:
            MediaFileError: The file is missing, is not a video, or has no
                video frame.
        """
        import av
        path = results['filename']
        name = display_path(path)
        try:
            container = av.open(path)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise MediaFileError(
                f"cannot open video '{name}': missing, corrupt or not a "
                f'video ({e})') from e
        try:
            if not container.streams.video:
                raise MediaFileError(f"'{name}' has no video stream")
            total = container.streams.video[0].frames
            if total <= 0:
                total = sum(1 for packet in container.demux(video=0)
                            if packet.size)
                container.seek(0)
        except av.FFmpegError as e:
            container.close()
            raise MediaFileError(
                f"cannot read video '{name}': corrupt ({e})") from e
        except MediaFileError:
            container.close()
            raise
        if total <= 0:
            container.close()
            raise MediaFileError(f"video '{name}' has no frame")
        results['video_reader'] = container
        results['total_frames'] = total
        return results


@TRANSFORMS.register_module()
class CheckedPyAVDecode(BaseTransform):
    """Decode the sampled frames of a :class:`CheckedPyAVInit` video.

    Frames are decoded in order up to the last sampled index (as mmaction2's
    ``PyAVDecode`` in its ``'accurate'`` mode), and the container is closed.
    A decoder error, or a stream that ends before the last sampled frame (a
    truncated file whose header promises more), raises instead of repeating
    frames.

    Required keys: ``video_reader``, ``frame_inds``, ``filename``.
    Added keys: ``imgs`` (list of (H, W, 3) uint8 RGB frames),
    ``original_shape``, ``img_shape``, ``modality_mask`` (``name`` set).
    ``video_reader`` is set to None.

    Args:
        name (str): Modality name in ``results['modality_mask']``. Defaults
            to ``'rgb'``.
        on_error (str): ``'raise'`` a :class:`MediaFileError`, or
            ``'zero'``: frames of zeros of ``zero_shape`` and the modality
            masked out (the first case per worker is logged, with the
            file). Defaults to ``'raise'``.
        zero_shape (tuple[int, int]): (H, W) of zero frames; the following
            crops and resizes bring them to the input size. Defaults to
            (256, 340), a typical short-side-256 frame.
    """

    def __init__(self,
                 name: str = 'rgb',
                 on_error: str = 'raise',
                 zero_shape: Tuple[int, int] = (256, 340)) -> None:
        self.name = name
        self.on_error = _check_on_error(on_error)
        self.zero_shape = tuple(zero_shape)
        self.num_zero_filled = 0

    def transform(self, results: Dict) -> Dict:
        """Decode the frames, applying ``on_error``.

        Args:
            results (dict): Result dict from a sampler.

        Returns:
            dict: ``results`` with the frames and the modality mask.

        Raises:
            MediaFileError: A frame cannot be decoded or is missing, and
                ``on_error='raise'``.
        """
        present = True
        try:
            if results['video_reader'] is None:
                raise MediaFileError(results.pop('video_error'))
            imgs = self._decode(results)
        except MediaFileError as e:
            if self.on_error == 'raise':
                raise
            if self.num_zero_filled == 0:
                # Once per worker: a log line per sample would flood.
                print_log(
                    f'CheckedPyAVDecode: {e}; using zeros and '
                    f"modality_mask['{self.name}']=False (further cases are "
                    'not reported)',
                    logger='current',
                    level=logging.WARNING)
            self.num_zero_filled += 1
            present = False
            zero = np.zeros(self.zero_shape + (3, ), np.uint8)
            imgs = [zero] * np.asarray(results['frame_inds']).size
        results['imgs'] = imgs
        results['original_shape'] = imgs[0].shape[:2]
        results['img_shape'] = imgs[0].shape[:2]
        results.setdefault('modality_mask', {})[self.name] = present
        return results

    def _decode(self, results: Dict) -> list:
        """Decode the sampled frames and close the container."""
        import av
        container = results['video_reader']
        name = display_path(results['filename'])
        inds = np.asarray(results['frame_inds']).reshape(-1)
        wanted = set(int(i) for i in inds)
        last = max(wanted)
        frames = {}
        index = -1
        try:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    frames[index] = frame.to_rgb().to_ndarray()
                if index >= last:
                    break
        except (av.FFmpegError, ValueError) as e:
            raise MediaFileError(
                f"cannot decode video '{name}' after frame {index}: corrupt "
                f'or truncated ({e})') from e
        finally:
            container.close()
            results['video_reader'] = None
        if len(frames) < len(wanted):
            raise MediaFileError(
                f"video '{name}' ends after {index + 1} frames but frame "
                f"{last} was sampled ({results.get('total_frames')} counted): "
                'truncated')
        return [frames[int(i)] for i in inds]
