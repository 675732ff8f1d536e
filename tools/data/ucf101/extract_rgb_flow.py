"""Extract RGB frames and TV-L1 / Farneback optical flow from UCF101 videos.

Writes mmaction2's rawframe layout, the one its ``denseflow`` tool produces,
so ``RawframeDataset`` and any mmaction2 rawframe config can read it::

    <out>/<Class>/v_<Class>_gXX_cYY/img_00001.jpg ...      N RGB frames
    <out>/<Class>/v_<Class>_gXX_cYY/flow_x_00001.jpg ...   N-1 flow frames
    <out>/<Class>/v_<Class>_gXX_cYY/flow_y_00001.jpg ...   N-1 flow frames
    <out>/<Class>/v_<Class>_gXX_cYY/.extract_done.json     done marker
    <out>/extract_report.json                              run report

``flow_{x,y}_k`` is the flow from frame ``k`` to frame ``k + 1`` (both
1-based), quantised like denseflow: clip to ``[-bound, bound]`` and map
linearly to ``0..255`` (so 127.5 is zero motion and ``255 - q`` is the exact
negation, which is what a horizontal flip needs).

Decoding uses ``cv2.VideoCapture``, flow uses OpenCV (no external binaries).
The run is resumable: a clip whose done marker exists and records the
source's current size and modification time is skipped; a clip without one
(never started, or interrupted) or whose source changed (a re-download) is
redone from scratch. A clip that cannot be decoded, that decodes to fewer
frames than its container declares (a truncated download; FFmpeg only
complains on stderr), or whose worker process crashes or exceeds the
per-clip timeout (OpenCV can segfault on a bad file) is recorded in
``extract_report.json`` as failed, its partial output removed, and the run
goes on; the command then exits with status 2.

Example::

    python tools/data/ucf101/extract_rgb_flow.py \
        data/ucf101/UCF-101 data/ucf101/rawframes --workers 8
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from clcr_mm.datasets.annotation_files import display_path

# tools/ is not a package: the preparation code the tools share is
# tools/data/av_prepare.py, imported from its folder.
if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from av_prepare import run_isolated  # noqa: E402

DONE_MARKER = '.extract_done.json'
REPORT_NAME = 'extract_report.json'
FLOW_ALGOS = ('farneback', 'tvl1')
RGB_TMPL = 'img_{:05d}.jpg'
FLOW_TMPL = 'flow_{}_{:05d}.jpg'
# A clip that decodes to fewer than (1 - this) of the frames its container
# declares is truncated. AVI frame counts are exact; the slack is for
# containers whose count is an estimate from duration x fps.
DEFAULT_FRAME_TOLERANCE = 0.05
# Seconds one clip may take (TV-L1 on a long 320x240 clip takes minutes).
DEFAULT_CLIP_TIMEOUT = 1800.0


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded (corrupt, empty, too short)."""


def check_flow_algo(algo: str) -> None:
    """Fail early, in the parent process, if ``algo`` cannot run here.

    Args:
        algo (str): ``'farneback'`` or ``'tvl1'``.

    Raises:
        ValueError: ``algo`` is unknown.
        RuntimeError: ``'tvl1'`` was asked for but ``cv2.optflow`` (from
            ``opencv-contrib-python``) is not installed.
    """
    if algo not in FLOW_ALGOS:
        raise ValueError(f'unknown flow algorithm {algo!r}; choose one of '
                         f'{FLOW_ALGOS}')
    if algo == 'tvl1' and not hasattr(cv2, 'optflow'):
        raise RuntimeError(
            'TV-L1 flow needs cv2.optflow, which only opencv-contrib-python '
            f'provides (this cv2 {cv2.__version__} at {cv2.__file__} lacks '
            'it). Install it with `pip install opencv-contrib-python` (same '
            'version as opencv-python) or use --algo farneback.')


class FlowComputer:
    """Dense optical flow between consecutive grey frames.

    Args:
        algo (str): ``'farneback'`` (plain OpenCV, fast) or ``'tvl1'``
            (Dual TV-L1 from ``cv2.optflow``; the usual choice of
            two-stream papers and of denseflow, but several times slower).
    """

    def __init__(self, algo: str = 'farneback') -> None:
        check_flow_algo(algo)
        self.algo = algo
        # One TV-L1 object per process: creating it is cheap but it keeps
        # internal buffers between calls.
        self._tvl1 = (cv2.optflow.DualTVL1OpticalFlow_create()
                      if algo == 'tvl1' else None)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Compute the flow from ``prev`` to ``nxt``.

        Args:
            prev (np.ndarray): uint8 grey frame, shape (H, W).
            nxt (np.ndarray): uint8 grey frame, shape (H, W).

        Returns:
            np.ndarray: float32 flow in pixels, shape (H, W, 2), channel 0 is
            the x (horizontal) component, channel 1 the y component.
        """
        if self._tvl1 is not None:
            return self._tvl1.calc(prev, nxt, None)
        # OpenCV's sample parameters (pyramid 0.5, 3 levels, window 15,
        # 3 iterations, poly_n 5, sigma 1.2): a robust default for 240p.
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5,
                                            1.2, 0)


def quantize_flow(flow: np.ndarray, bound: float = 20.) -> np.ndarray:
    """Quantise one flow component to uint8 as denseflow does.

    ``q = round(255 * (clip(v, -b, b) + b) / (2 b))``.

    Args:
        flow (np.ndarray): float flow component in pixels, any shape.
        bound (float): Clipping bound ``b`` in pixels. Defaults to 20.

    Returns:
        np.ndarray: uint8 array of the same shape.
    """
    flow = np.clip(flow, -bound, bound)
    return np.round((flow + bound) * (255. / (2. * bound))).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = 20.) -> np.ndarray:
    """Invert :func:`quantize_flow` (up to quantisation error).

    Args:
        q (np.ndarray): uint8 quantised flow, any shape.
        bound (float): The bound used to quantise. Defaults to 20.

    Returns:
        np.ndarray: float32 flow in pixels, same shape.
    """
    return q.astype(np.float32) * (2. * bound / 255.) - bound


def resize_short_side(img: np.ndarray,
                      short_side: Optional[int]) -> np.ndarray:
    """Resize so the shorter side equals ``short_side``, keeping the ratio.

    Args:
        img (np.ndarray): Image, shape (H, W) or (H, W, C).
        short_side (int, optional): Target short side; ``None`` or ``0``
            keeps the image as is.

    Returns:
        np.ndarray: The resized image.
    """
    if not short_side:
        return img
    h, w = img.shape[:2]
    if min(h, w) == short_side:
        return img
    scale = short_side / min(h, w)
    new_w = max(1, int(round(w * scale)))
    new_h = max(1, int(round(h * scale)))
    # INTER_AREA avoids aliasing when shrinking; linear when enlarging.
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def source_stat(video_path: str) -> Optional[Dict[str, int]]:
    """Size and modification time of a source video, as a marker keeps them.

    Args:
        video_path (str): The video.

    Returns:
        dict | None: ``source_size`` and ``source_mtime_ns``, or ``None``
        if the file cannot be stat'ed.
    """
    try:
        st = os.stat(video_path)
    except OSError:
        return None
    return dict(source_size=st.st_size, source_mtime_ns=st.st_mtime_ns)


def read_done_marker(clip_dir: str) -> Optional[dict]:
    """Return the content of a clip's done marker, or ``None``.

    Args:
        clip_dir (str): Rawframe directory of one clip.

    Returns:
        dict | None: The marker (``num_frames``, ``expected_frames``,
        ``num_flow``, ``source_size``, ``source_mtime_ns``, settings), or
        ``None`` if absent or unreadable (treated as "not done").
    """
    path = osp.join(clip_dir, DONE_MARKER)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def extract_clip(video_path: str,
                 clip_dir: str,
                 algo: str = 'farneback',
                 bound: float = 20.,
                 short_side: Optional[int] = None,
                 force: bool = False,
                 jpeg_quality: int = 95,
                 frame_tolerance: float = DEFAULT_FRAME_TOLERANCE) -> Dict:
    """Extract RGB frames and quantised flow of one video.

    Frames are streamed (never all held in memory). Output goes straight to
    ``clip_dir``; the done marker is written last, so an interrupted clip has
    no marker and is redone from scratch next time. The marker records the
    source's size and modification time: a replaced source is redone.

    Args:
        video_path (str): Path of the video file.
        clip_dir (str): Output directory of this clip.
        algo (str): Flow algorithm, ``'farneback'`` or ``'tvl1'``.
        bound (float): Flow quantisation bound in pixels.
        short_side (int, optional): Resize frames so the short side is this
            many pixels before writing them and computing flow.
        force (bool): Re-extract even if the done marker exists.
        jpeg_quality (int): JPEG quality of written frames.
        frame_tolerance (float): Share of the container's declared frame
            count that may fail to decode before the clip counts as
            truncated (failed).

    Returns:
        dict: ``video``, ``clip_dir``, ``status`` (``'done'``, ``'skipped'``
        or ``'failed'``), ``num_frames``, ``expected_frames``, ``num_flow``,
        ``error`` (failed only), ``source_changed`` (redone because the
        source differs from the one the marker records),
        ``settings_mismatch`` (skipped clips whose marker records other
        settings), ``seconds``.
    """
    t0 = time.time()
    record = dict(video=video_path, clip_dir=clip_dir)
    stat = source_stat(video_path)
    if not force:
        marker = read_done_marker(clip_dir)
        if marker is not None and stat is not None and any(
                marker.get(k) != v for k, v in stat.items()):
            record['source_changed'] = True
            marker = None
        if marker is not None:
            record.update(
                status='skipped',
                num_frames=marker.get('num_frames'),
                expected_frames=marker.get('expected_frames'),
                num_flow=marker.get('num_flow'),
                seconds=0.)
            # Resuming never destroys finished work, but a clip extracted
            # with other settings is reported so the user can --force.
            wanted = dict(algo=algo, bound=bound, short_side=short_side)
            found = {k: marker.get(k) for k in wanted}
            if found != wanted:
                record['settings_mismatch'] = found
            return record
    try:
        num_frames, expected = _extract_clip_frames(video_path, clip_dir,
                                                    algo, bound, short_side,
                                                    jpeg_quality)
        if expected > 0 and num_frames < expected * (1. - frame_tolerance):
            raise VideoDecodeError(
                f'{display_path(video_path)}: truncated, {num_frames} of the '
                f'{expected} frames its container declares decoded '
                f'(tolerance {frame_tolerance:.0%})')
    except Exception as e:  # noqa: BLE001 -- one bad clip must not stop a run
        # Remove partial output so list building sees the clip as absent.
        shutil.rmtree(clip_dir, ignore_errors=True)
        record.update(
            status='failed',
            error=display_path(f'{type(e).__name__}: {e}'),
            seconds=time.time() - t0)
        return record
    marker = dict(
        video=display_path(osp.basename(video_path)),
        num_frames=num_frames,
        expected_frames=expected,
        num_flow=num_frames - 1,
        algo=algo,
        bound=bound,
        short_side=short_side,
        **(stat or {}))
    tmp = osp.join(clip_dir, DONE_MARKER + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(marker, f)
    os.replace(tmp, osp.join(clip_dir, DONE_MARKER))  # atomic
    record.update(
        status='done',
        num_frames=num_frames,
        expected_frames=expected,
        num_flow=num_frames - 1,
        seconds=time.time() - t0)
    return record


def _write_jpg(path: str, img: np.ndarray, params: List[int]) -> None:
    # imencode + a Python write, not cv2.imwrite: OpenCV cannot take a path
    # whose bytes are not UTF-8 (it crashes), Python's open can.
    ok, buf = cv2.imencode('.jpg', img, params)
    if not ok:
        raise OSError(f'cv2.imencode failed for {display_path(path)}')
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


@contextlib.contextmanager
def _opencv_path(path: str) -> Iterator[str]:
    """A name of ``path`` that OpenCV can open.

    ``cv2.VideoCapture`` crashes the process (segmentation fault) on a str
    path holding bytes that are not UTF-8 (lone surrogates); such a file is
    opened through a symlink with an ASCII name in a temporary directory.

    Args:
        path (str): The video.

    Yields:
        str: ``path`` itself, or the symlink.
    """
    try:
        path.encode('utf-8')
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix='ucf101_extract_') as tmp:
        link = osp.join(tmp, 'video' + osp.splitext(
            display_path(path))[1].encode('ascii', 'replace').decode())
        os.symlink(osp.abspath(path), link)
        yield link


def _extract_clip_frames(video_path: str, clip_dir: str, algo: str,
                         bound: float, short_side: Optional[int],
                         jpeg_quality: int) -> Tuple[int, int]:
    """Do the work of :func:`extract_clip`; raise on any problem.

    Returns:
        tuple[int, int]: Number of RGB frames N decoded and of frames the
        container declares (0 if it does not say).
    """
    if not osp.isfile(video_path):
        raise VideoDecodeError(f'{display_path(video_path)}: file not found')
    if osp.isdir(clip_dir):
        # No done marker (checked by the caller): stale partial output.
        shutil.rmtree(clip_dir)
    os.makedirs(clip_dir)
    flow_fn = FlowComputer(algo)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)]
    with _opencv_path(video_path) as cv_path:
        cap = cv2.VideoCapture(cv_path)
    try:
        if not cap.isOpened():
            raise VideoDecodeError(
                f'{display_path(video_path)}: cv2.VideoCapture cannot open '
                'it (corrupt file or unsupported codec)')
        expected = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        num_frames = 0
        prev_gray = None
        shape = None
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            frame = resize_short_side(frame, short_side)
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise VideoDecodeError(
                    f'{display_path(video_path)}: frame {num_frames + 1} '
                    'has shape '
                    f'{frame.shape}, earlier frames {shape}')
            num_frames += 1
            # cv2 frames are BGR and imencode expects BGR: no conversion.
            _write_jpg(
                osp.join(clip_dir, RGB_TMPL.format(num_frames)), frame,
                params)
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if prev_gray is not None:
                flow = flow_fn(prev_gray, gray)
                k = num_frames - 1  # flow_k: frame k -> frame k + 1
                _write_jpg(
                    osp.join(clip_dir, FLOW_TMPL.format('x', k)),
                    quantize_flow(flow[..., 0], bound), params)
                _write_jpg(
                    osp.join(clip_dir, FLOW_TMPL.format('y', k)),
                    quantize_flow(flow[..., 1], bound), params)
            prev_gray = gray
    finally:
        cap.release()
    if num_frames == 0:
        raise VideoDecodeError(f'{display_path(video_path)}: no frame could '
                               'be decoded (corrupt or empty video)')
    if num_frames < 2:
        raise VideoDecodeError(f'{display_path(video_path)}: only '
                               f'{num_frames} frame decoded, at least 2 are '
                               'needed for flow')
    return num_frames, expected


def list_videos(video_root: str,
                ext: str = '.avi',
                max_clips: Optional[int] = None) -> List[Tuple[str, str]]:
    """List ``<video_root>/<Class>/*<ext>`` videos.

    Args:
        video_root (str): The ``UCF-101`` directory.
        ext (str): Video extension. Defaults to ``'.avi'``.
        max_clips (int, optional): Keep only this many videos, taken
            round-robin over classes so a dry run covers many classes.

    Returns:
        list[tuple[str, str]]: ``(video_path, '<Class>/<stem>')`` pairs,
        sorted by class and name (round-robin order if ``max_clips``).

    Raises:
        FileNotFoundError: ``video_root`` does not exist or holds no video.
    """
    if not osp.isdir(video_root):
        raise FileNotFoundError(f'video directory not found: {video_root}')
    per_class = []
    for cls in sorted(os.listdir(video_root)):
        cls_dir = osp.join(video_root, cls)
        if not osp.isdir(cls_dir):
            continue
        names = sorted(n for n in os.listdir(cls_dir)
                       if n.lower().endswith(ext.lower()))
        per_class.append([(osp.join(cls_dir, n),
                           f'{cls}/{osp.splitext(n)[0]}') for n in names])
    videos = [v for vs in per_class for v in vs]
    if not videos:
        raise FileNotFoundError(
            f'no *{ext} video under {video_root}/<Class>/ (expected the '
            'official UCF-101/<Class>/v_<Class>_gXX_cYY.avi tree)')
    if max_clips is not None and max_clips < len(videos):
        order = []
        depth = 0
        while len(order) < max_clips:
            for vs in per_class:
                if depth < len(vs) and len(order) < max_clips:
                    order.append(vs[depth])
            depth += 1
        videos = order
    return videos


def _worker_init() -> None:
    # Each worker is one process: OpenCV's own thread pool would only
    # oversubscribe the cores.
    cv2.setNumThreads(1)


def _extract_task(task: Dict) -> Dict:
    return extract_clip(**task)


def extract_all(video_root: str,
                out_dir: str,
                algo: str = 'farneback',
                bound: float = 20.,
                short_side: Optional[int] = None,
                workers: int = 1,
                max_clips: Optional[int] = None,
                force: bool = False,
                ext: str = '.avi',
                frame_tolerance: float = DEFAULT_FRAME_TOLERANCE,
                clip_timeout: Optional[float] = DEFAULT_CLIP_TIMEOUT,
                progress: bool = True) -> Dict:
    """Extract every video under ``video_root`` into ``out_dir``.

    Clips run in :func:`run_isolated` worker processes: a clip whose worker
    crashes (OpenCV segfaults on some files) or runs past ``clip_timeout``
    is failed and reported, and the other clips go on.

    Args:
        video_root (str): The ``UCF-101`` directory (``<Class>/*.avi``).
        out_dir (str): Rawframes output directory.
        algo (str): ``'farneback'`` or ``'tvl1'``.
        bound (float): Flow quantisation bound in pixels.
        short_side (int, optional): Resize frames to this short side.
        workers (int): Number of worker processes.
        max_clips (int, optional): Only this many clips (dry runs).
        force (bool): Redo clips that are already done.
        ext (str): Video extension.
        frame_tolerance (float): See :func:`extract_clip`.
        clip_timeout (float, optional): Seconds one clip may take.
        progress (bool): Show mmengine's progress bar.

    Returns:
        dict: The report also written to ``<out_dir>/extract_report.json``:
        ``settings``, ``summary`` (``total``, ``done``, ``skipped``,
        ``failed``, ``source_changed``, ``settings_mismatch``,
        ``seconds``), ``failed`` (list of ``video`` / ``error``),
        ``source_changed`` (clip dirs redone because their source video
        changed) and ``settings_mismatch`` (clip dirs skipped although
        extracted with other settings).
    """
    check_flow_algo(algo)
    if bound <= 0:
        raise ValueError(f'flow bound must be positive, got {bound}')
    videos = list_videos(video_root, ext, max_clips)
    os.makedirs(out_dir, exist_ok=True)
    tasks = [
        dict(
            video_path=path,
            clip_dir=osp.join(out_dir, rel),
            algo=algo,
            bound=bound,
            short_side=short_side,
            force=force,
            frame_tolerance=frame_tolerance) for path, rel in videos
    ]
    t0 = time.time()
    records = []
    for task, (finished, out) in zip(
            tasks,
            run_isolated(_extract_task, tasks, workers, clip_timeout,
                         progress, _worker_init)):
        if not finished:
            # The worker could not clean up after itself.
            shutil.rmtree(task['clip_dir'], ignore_errors=True)
            out = dict(
                video=task['video_path'],
                clip_dir=task['clip_dir'],
                status='failed',
                error=f'{display_path(task["video_path"])}: {out}')
        records.append(out)
    counts = {s: 0 for s in ('done', 'skipped', 'failed')}
    for r in records:
        counts[r['status']] += 1
    failed = sorted(({
        'video': display_path(r['video']),
        'error': r['error']
    } for r in records if r['status'] == 'failed'),
                    key=lambda r: r['video'])
    mismatched = sorted(
        display_path(r['clip_dir']) for r in records
        if 'settings_mismatch' in r)
    changed = sorted(
        display_path(r['clip_dir']) for r in records
        if r.get('source_changed'))
    report = dict(
        settings=dict(
            video_root=osp.abspath(video_root),
            out_dir=osp.abspath(out_dir),
            algo=algo,
            bound=bound,
            short_side=short_side,
            max_clips=max_clips,
            force=force,
            frame_tolerance=frame_tolerance,
            clip_timeout=clip_timeout),
        summary=dict(
            total=len(records), seconds=round(time.time() - t0, 2),
            settings_mismatch=len(mismatched),
            source_changed=len(changed),
            **counts),
        failed=failed,
        source_changed=changed,
        settings_mismatch=mismatched)
    tmp = osp.join(out_dir, REPORT_NAME + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, osp.join(out_dir, REPORT_NAME))
    return report


def print_report(report: Dict, out_dir: str) -> None:
    """Print the summary of :func:`extract_all`."""
    s = report['summary']
    print(f'[extract] {s["total"]} clips: {s["done"]} extracted, '
          f'{s["skipped"]} already done (skipped), {s["failed"]} failed, '
          f'{s["seconds"]:.1f}s. Report: '
          f'{display_path(osp.join(out_dir, REPORT_NAME))}')
    if s.get('source_changed'):
        print(f'[extract] {s["source_changed"]} clips were extracted again '
              'because their source video changed since the last run, e.g. '
              f'{report["source_changed"][0]}')
    if s.get('settings_mismatch'):
        print(f'[extract] WARNING: {s["settings_mismatch"]} skipped clips '
              'were extracted with other settings (algo/bound/short side), '
              f'e.g. {report["settings_mismatch"][0]}; rerun with --force '
              'to redo them.')
    for r in report['failed'][:20]:
        print(f'[extract]   FAILED {r["video"]}: {r["error"]}')
    if len(report['failed']) > 20:
        print(f'[extract]   ... {len(report["failed"]) - 20} more failures '
              'in the report')


def add_extract_args(parser: argparse.ArgumentParser) -> None:
    """Add the extraction options shared with ``prepare.py``."""
    parser.add_argument(
        '--algo',
        choices=FLOW_ALGOS,
        default='farneback',
        help='optical flow algorithm; tvl1 needs opencv-contrib-python '
        '(cv2.optflow), is the usual two-stream choice and is slower')
    parser.add_argument(
        '--bound',
        type=float,
        default=20.,
        help='flow is clipped to [-bound, bound] pixels, then mapped to '
        '0..255 (denseflow convention)')
    parser.add_argument(
        '--short-side',
        type=int,
        default=None,
        help='resize frames so the short side has this many pixels '
        '(default: keep the 320x240 original)')
    parser.add_argument(
        '--workers',
        type=int,
        default=os.cpu_count() or 1,
        help='worker processes (default: all cores)')
    parser.add_argument(
        '--max-clips',
        type=int,
        default=None,
        help='only extract this many clips, spread over classes (dry run)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='re-extract clips that already have a done marker')
    parser.add_argument(
        '--frame-tolerance',
        type=float,
        default=DEFAULT_FRAME_TOLERANCE,
        help='a clip that decodes to fewer than (1 - this) of the frames '
        'its container declares is truncated and reported as failed '
        f'(default: {DEFAULT_FRAME_TOLERANCE})')
    parser.add_argument(
        '--clip-timeout',
        type=float,
        default=DEFAULT_CLIP_TIMEOUT,
        help='seconds one clip may take before its worker is killed and the '
        f'clip reported as failed (default: {DEFAULT_CLIP_TIMEOUT:g})')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Extract RGB frames and optical flow (mmaction2 '
        'rawframe layout) from UCF101 videos with OpenCV.')
    parser.add_argument('video_root', help='UCF-101 dir (<Class>/*.avi)')
    parser.add_argument('out_dir', help='rawframes output dir')
    parser.add_argument('--ext', default='.avi', help='video extension')
    add_extract_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        check_flow_algo(args.algo)
    except (RuntimeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    report = extract_all(args.video_root, args.out_dir, args.algo, args.bound,
                         args.short_side, args.workers, args.max_clips,
                         args.force, args.ext, args.frame_tolerance,
                         args.clip_timeout)
    print_report(report, args.out_dir)
    # Non-zero so that scripts notice clips that still need attention.
    return 2 if report['summary']['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
