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
naming the file, which the dataset's ``on_error`` policy then handles.
"""
from typing import Dict

import numpy as np
from mmcv.transforms import BaseTransform

from clcr_mm.datasets.annotation_files import display_path
from clcr_mm.datasets.transforms.audio import MediaFileError
from clcr_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class CheckedPyAVInit(BaseTransform):
    """Open a video with PyAV and count its frames.

    The count comes from the header when it has one, else from the video
    packets of the stream (demuxed, not decoded: cheap), so containers
    without a frame count (flv, webm, mkv) are sampled correctly.

    Required keys: ``filename``.
    Added keys: ``video_reader`` (an open ``av`` container),
    ``total_frames``.
    """

    def transform(self, results: Dict) -> Dict:
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
    ``original_shape``, ``img_shape``. ``video_reader`` is set to None.
    """

    def transform(self, results: Dict) -> Dict:
        """Decode the frames.

        Args:
            results (dict): Result dict from a sampler.

        Returns:
            dict: ``results`` with the frames.

        Raises:
            MediaFileError: A frame cannot be decoded or is missing.
        """
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
        imgs = [frames[int(i)] for i in inds]
        results['imgs'] = imgs
        results['original_shape'] = imgs[0].shape[:2]
        results['img_shape'] = imgs[0].shape[:2]
        return results
