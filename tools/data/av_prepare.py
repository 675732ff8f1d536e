"""Shared machinery of the dataset preparation tools.

Tool code, kept out of the ``clcr_mm`` library (which holds only what
training imports); the tools import it from this folder. UCF101's
extraction uses :func:`run_isolated` and :func:`read_lines`;
``tools/data/{kinetics_sounds,cremad,ave}/prepare.py`` each parse their
benchmark's official annotations into :class:`ClipEntry` records (one per
annotated clip, with the label and the ``file:line`` it came from) and hand
them to :func:`build_lists`, which

1. separates clips whose files are not on disk (counted as *missing*),
2. probes every remaining file in parallel worker processes
   (:func:`probe_files`, through :func:`run_isolated`, so a worker that
   crashes or hangs on one file costs that file only): every needed stream
   is decoded to its end and the decoded duration is compared with the
   duration the container (or wav header) declares, so a truncated
   download, a corrupt stream, a video without an audio track or an empty
   wav is found before training,
3. caches each probe result in ``<root>/.prepare_probe_cache.json`` keyed by
   path, size and modification time, so a rerun (after more downloads, or
   after an interruption) only probes new or changed files,
4. writes ``<root>/{train,val,test}_list.txt`` in
   :class:`~clcr_mm.datasets.AudioVisualDataset`'s format (``video label``
   or ``video audio label``, paths relative to ``root`` when inside it),
   ``<root>/classes.txt`` and ``<root>/prepare_report.json`` (counts, and
   every missing or unreadable clip with the reason). Unreadable files are
   left out of the lists and reported; they never stop the run. A file
   whose path has whitespace (e.g. Kinetics label folders such as
   ``playing bagpipes/``) or bytes that are not UTF-8 is listed through a
   symlink in ``<root>/links/``, since the list format separates fields by
   whitespace and list files are UTF-8.

Problems in the annotations themselves (malformed line, bytes that are not
UTF-8, unknown class, missing split file) raise :class:`AnnotationError` /
``FileNotFoundError`` naming the file and line, before any file is probed
or written.
"""
import argparse
import json
import multiprocessing
import os
import os.path as osp
import random
import re
import signal
import struct
import sys
import time
import warnings
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_ready
from typing import (Any, Callable, Dict, Iterable, List, Optional, Sequence,
                    Tuple)

from clcr_mm.datasets.annotation_files import (  # noqa: F401 (tools' API)
    AnnotationError, display_path, read_text_lines)

SPLITS = ('train', 'val', 'test')
LIST_TMPL = '{split}_list.txt'
CLASSES_NAME = 'classes.txt'
REPORT_NAME = 'prepare_report.json'
PROBE_CACHE_NAME = '.prepare_probe_cache.json'
LINK_DIR_NAME = 'links'
# Bump when probe_media changes what it checks: older cache entries are then
# ignored instead of trusted. 2: streams decoded to the end, durations kept.
PROBE_VERSION = 2
# What a probe checks: a video stream; a video stream and an audio track in
# the same container; a stand-alone audio file (wav, flac, ...).
PROBE_KINDS = ('video', 'video+audio', 'audio')
VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v', '.flv')
# A stream whose decoded duration falls short of the declared one by more
# than this share is reported as truncated. Container durations are
# rounded and the last audio packet may be partly padding, so a few percent
# of slack keeps intact files in; a cut download lacks far more.
DEFAULT_DURATION_TOLERANCE = 0.05
# Seconds one worker may spend on one file (a 10 s clip decodes in well
# under a second); a file that hangs the decoder is reported instead.
DEFAULT_FILE_TIMEOUT = 300.0


def read_lines(path: str,
               what: str = 'annotation file',
               skip_comments: bool = False) -> List[Tuple[int, str]]:
    """Non-blank, stripped lines of a text file with 1-based numbers.

    Lines are read by :func:`read_text_lines`; ``strip`` also drops the
    ``\\r`` of CRLF line ends.

    Args:
        path (str): The file.
        what (str): What the file is, for the error message.
        skip_comments (bool): Also skip lines starting with ``#``.

    Returns:
        list[tuple[int, str]]: ``(lineno, line)`` pairs in file order.

    Raises:
        FileNotFoundError: The file does not exist (message names it).
        AnnotationError: A line is not valid UTF-8.
    """
    out = []
    for lineno, line in enumerate(read_text_lines(path, what), 1):
        line = line.strip()
        if line and not (skip_comments and line.startswith('#')):
            out.append((lineno, line))
    return out


def read_class_list(path: str) -> List[str]:
    """Read a class list, one name per line; ``#`` lines are comments.

    Args:
        path (str): The class list file.

    Returns:
        list[str]: Class names; the label of a class is its index.

    Raises:
        FileNotFoundError: The file does not exist.
        AnnotationError: A name is listed twice, or none is listed.
    """
    names: List[str] = []
    seen: Dict[str, int] = {}
    for lineno, name in read_lines(path, 'class list', skip_comments=True):
        if name in seen:
            raise AnnotationError(
                path, f'class {name!r} already listed at line {seen[name]}',
                lineno, name)
        seen[name] = lineno
        names.append(name)
    if not names:
        raise AnnotationError(path, 'no class listed')
    return names


def class_lines(path: str) -> Dict[str, int]:
    """Map each class name of :func:`read_class_list` to its line number.

    Args:
        path (str): The class list file.

    Returns:
        dict[str, int]: Class name -> 1-based line number, so that errors
        about a class can point at the line that names it.
    """
    return {
        name: lineno
        for lineno, name in read_lines(path, 'class list', skip_comments=True)
    }


@dataclass
class ClipEntry:
    """One annotated clip of a split.

    Attributes:
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        clip_id (str): The clip's id in the annotations (YouTube id, file
            stem, ...), for the report.
        label (int): Class index.
        source (str): Where the clip is annotated, ``'file:line'`` (or a
            file path when the annotation is the file itself).
        video (str, optional): Path of the video; ``None`` when no file
            for the clip was found.
        audio (str, optional): Path of a separate audio file; ``None``
            when the audio track of ``video`` is used.
        missing_reason (str, optional): Why ``video`` is ``None``, for the
            report.
    """
    split: str
    clip_id: str
    label: int
    source: str
    video: Optional[str]
    audio: Optional[str] = None
    missing_reason: Optional[str] = None


def _declared_seconds(stream) -> Optional[float]:
    """Duration a stream's header declares, in seconds, or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _probe_container(path: str, need_audio: bool) -> Dict:
    """Decode a media container's video (and audio) stream to the end.

    Decoding everything, not just the first frame, is what finds a download
    cut short: its header still declares the full clip and its first frames
    decode, and then Decord or FFmpeg fail (or crash) at training time on the
    frames that are not there.

    Args:
        path (str): Video file.
        need_audio (bool): Also require a decodable audio track.

    Returns:
        dict: ``ok`` and either ``error`` or the stream properties
        (``width``, ``height``, ``fps``, ``duration``, ``video_codec``,
        ``audio_codec``, ``audio_rate``), ``frames`` (decoded video frames)
        and per decoded stream ``<type>_decoded`` / ``<type>_declared``
        (seconds decoded, seconds the stream's header declares or None)
        and ``container_declared`` (the container's duration, that of its
        longest stream, or None), which :func:`truncation_error` compares.
    """
    import av
    with av.open(path) as container:
        if not container.streams.video:
            return dict(ok=False, error='no video stream')
        vstream = container.streams.video[0]
        streams = [vstream]
        astream = None
        if container.streams.audio:
            astream = container.streams.audio[0]
            streams.append(astream)
        elif need_audio:
            return dict(ok=False, error='no audio track')
        frames = 0
        ends = dict(video=0.0, audio=0.0)
        got_audio = False
        for packet in container.demux(*streams):
            for frame in packet.decode():
                kind = packet.stream.type
                if frame.time is None:
                    continue
                if kind == 'video':
                    frames += 1
                    rate = vstream.average_rate or vstream.guessed_rate
                    step = 1.0 / float(rate) if rate else 0.0
                else:
                    got_audio = True
                    step = frame.samples / float(frame.sample_rate)
                ends[kind] = max(ends[kind], float(frame.time) + step)
        if frames == 0:
            return dict(ok=False, error='no decodable video frame')
        if need_audio and not got_audio:
            return dict(ok=False, error='no decodable audio frame')
        rate = vstream.average_rate or vstream.guessed_rate
        result = dict(
            ok=True,
            width=vstream.codec_context.width,
            height=vstream.codec_context.height,
            fps=float(rate) if rate else None,
            duration=(container.duration / 1e6
                      if container.duration is not None else None),
            video_codec=vstream.codec_context.name,
            audio_codec=astream.codec_context.name if astream else None,
            audio_rate=astream.rate if astream else None,
            frames=frames,
            container_declared=(container.duration / 1e6
                                if container.duration is not None else None),
            video_decoded=ends['video'],
            video_declared=_declared_seconds(vstream))
        if got_audio:
            result.update(
                audio_decoded=ends['audio'],
                audio_declared=_declared_seconds(astream))
        return result


def wav_declared_frames(path: str) -> Optional[int]:
    """Sample frames a RIFF/WAVE header declares in its ``data`` chunk.

    libsndfile (and FFmpeg) silently shorten a wav whose ``data`` chunk
    runs past the end of the file, so the declared size is read here.

    Args:
        path (str): A wav file.

    Returns:
        int | None: Declared frames, or ``None`` if the file is not a plain
        RIFF/WAVE file or declares no size (streamed wavs write 0 or
        0xFFFFFFFF).
    """
    with open(path, 'rb') as f:
        if f.read(4) != b'RIFF':
            return None
        f.read(4)
        if f.read(4) != b'WAVE':
            return None
        block_align = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            chunk, size = head[:4], struct.unpack('<I', head[4:])[0]
            if chunk == b'fmt ':
                fmt = f.read(size)
                if len(fmt) < 14:
                    return None
                block_align = struct.unpack('<H', fmt[12:14])[0]
                f.seek(size % 2, os.SEEK_CUR)
            elif chunk == b'data':
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + size % 2, os.SEEK_CUR)


def _probe_audio_file(path: str) -> Dict:
    """Read a whole audio file with soundfile.

    Args:
        path (str): Audio file (wav, flac, ...).

    Returns:
        dict: ``ok`` and either ``error`` or ``audio_rate``, ``channels``,
        ``duration`` and ``audio_decoded`` / ``audio_declared`` (seconds
        read, seconds a wav header declares or None).
    """
    import soundfile

    # A file object, not the name: soundfile cannot encode a name whose
    # bytes are not UTF-8.
    with open(path, 'rb') as f:
        samples, rate = soundfile.read(f, dtype='float32', always_2d=True)
    if samples.shape[0] == 0:
        return dict(ok=False, error='no audio samples (empty file)')
    declared = None
    if osp.splitext(path)[1].lower() == '.wav':
        frames = wav_declared_frames(path)
        declared = frames / float(rate) if frames is not None else None
    duration = samples.shape[0] / float(rate)
    return dict(
        ok=True,
        audio_rate=rate,
        channels=samples.shape[1],
        duration=duration,
        audio_decoded=duration,
        audio_declared=declared)


def truncation_error(result: Dict, tolerance: float) -> Optional[str]:
    """Say whether a probed file holds less than its header declares.

    Args:
        result (dict): A successful :func:`probe_media` result.
        tolerance (float): Share of the declared duration that may be
            missing (container durations are rounded).

    Returns:
        str | None: The problem, e.g. ``'truncated: video decodes to
        0.60 s of 1.33 s declared'``, or None.
    """
    checks = [(kind, result.get(f'{kind}_decoded'),
               result.get(f'{kind}_declared')) for kind in ('video', 'audio')]
    # Containers without stream durations (mkv, webm, flv) declare only
    # their own, that of the longest stream.
    decoded = [d for _, d, _ in checks if d is not None]
    if decoded:
        checks.append(('the file', max(decoded),
                       result.get('container_declared')))
    for what, decoded, declared in checks:
        if decoded is None or not declared:
            continue
        if decoded < declared * (1.0 - tolerance):
            return (f'truncated: {what} decodes to {decoded:.2f} s of '
                    f'{declared:.2f} s declared (tolerance '
                    f'{tolerance:.0%})')
    return None


def probe_media(task: Tuple[str, str]) -> Dict:
    """Check that one file can be decoded (run in worker processes).

    Any exception is turned into a failed result: one broken download must
    not stop the preparation of tens of thousands of clips.

    Args:
        task (tuple[str, str]): ``(path, kind)``, ``kind`` in
            :data:`PROBE_KINDS`.

    Returns:
        dict: ``ok`` (bool) and ``error`` (str) when not ok, else the
        properties found (see :func:`_probe_container` and
        :func:`_probe_audio_file`).
    """
    path, kind = task
    if kind not in PROBE_KINDS:
        raise ValueError(f'unknown probe kind {kind!r}; one of {PROBE_KINDS}')
    try:
        if kind == 'audio':
            return _probe_audio_file(path)
        return _probe_container(path, need_audio=(kind == 'video+audio'))
    except Exception as e:  # noqa: BLE001 -- reported, never fatal
        return dict(ok=False, error=f'cannot decode: {type(e).__name__}: {e}')


def _describe_exit(exitcode: Optional[int]) -> str:
    """Name how a worker process ended, e.g. ``'killed by SIGSEGV'``."""
    if exitcode is not None and exitcode < 0:
        try:
            return f'killed by {signal.Signals(-exitcode).name}'
        except ValueError:
            return f'killed by signal {-exitcode}'
    return f'exited with status {exitcode}'


def _isolated_worker(fn: Callable, initializer: Optional[Callable],
                     conn) -> None:
    """Loop of a :func:`run_isolated` worker: run tasks until told to stop."""
    if initializer is not None:
        initializer()
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, task = msg
        try:
            out = (True, fn(task))
        except Exception as e:  # noqa: BLE001 -- sent back as a failure
            out = (False, f'{type(e).__name__}: {e}')
        conn.send((index, out))


class _Worker:
    """One worker process of :func:`run_isolated` and its current task."""

    def __init__(self, ctx, fn: Callable,
                 initializer: Optional[Callable]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_isolated_worker,
            args=(fn, initializer, child),
            daemon=True)
        self.proc.start()
        child.close()
        self.index: Optional[int] = None
        self.started = 0.0

    def give(self, index: int, task: Any) -> None:
        self.conn.send((index, task))
        self.index, self.started = index, time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join()
        self.conn.close()


def run_isolated(fn: Callable,
                 tasks: Sequence[Any],
                 workers: int = 1,
                 timeout: Optional[float] = None,
                 progress: bool = True,
                 initializer: Optional[Callable] = None
                 ) -> List[Tuple[bool, Any]]:
    """Run ``fn(task)`` for every task in worker processes that may crash.

    A native crash (e.g. a decoder's segmentation fault) kills only the
    process it happens in, and a :class:`multiprocessing.Pool` then waits
    for that task forever. Here each worker's death and each task's run
    time are watched: a task whose worker dies or exceeds ``timeout`` is
    failed with the reason, the worker is replaced, and the other tasks go
    on. Even ``workers=1`` runs in a child process, for the same reason.

    Args:
        fn (callable): Picklable function of one task.
        tasks (Sequence): The tasks.
        workers (int): Worker processes.
        timeout (float, optional): Seconds a task may run; None: no limit.
        progress (bool): Show mmengine's progress bar.
        initializer (callable, optional): Run once in each new worker.

    Returns:
        list[tuple[bool, Any]]: Per task, in task order, ``(True,
        fn(task))`` or ``(False, reason)`` where ``reason`` names the
        exception, the signal that killed the worker or the timeout.
    """
    from mmengine.utils import ProgressBar
    results: List[Optional[Tuple[bool, Any]]] = [None] * len(tasks)
    if not tasks:
        return []
    ctx = multiprocessing.get_context()
    pending = deque(range(len(tasks)))
    bar = ProgressBar(len(tasks)) if progress else None
    pool = []
    for _ in range(max(1, min(workers, len(tasks)))):
        pool.append(_Worker(ctx, fn, initializer))
    for worker in pool:
        index = pending.popleft() if pending else None
        if index is not None:
            worker.give(index, tasks[index])

    def finish(worker: _Worker, out: Tuple[bool, Any]) -> None:
        results[worker.index] = out
        worker.index = None
        if bar is not None:
            bar.update()

    while any(w.index is not None for w in pool):
        busy = [w for w in pool if w.index is not None]
        wait_for_ready([w.conn for w in busy] + [w.proc.sentinel
                                                 for w in busy],
                       timeout=1.0)
        for i, worker in enumerate(pool):
            if worker.index is None:
                continue
            failure = None
            if worker.conn.poll():
                try:
                    _, out = worker.conn.recv()
                except (EOFError, OSError):  # it died: the pipe closed
                    failure = 'died'
                else:
                    finish(worker, out)
            elif not worker.proc.is_alive():
                failure = 'died'
            elif (timeout is not None
                  and time.monotonic() - worker.started > timeout):
                failure = f'timed out after {timeout:g} s (worker killed)'
            if failure is not None:
                worker.stop(kill=True)  # reaps it: its exit code is known
                if failure == 'died':
                    failure = ('worker process '
                               f'{_describe_exit(worker.proc.exitcode)}')
                finish(worker, (False, failure))
                worker = pool[i] = _Worker(ctx, fn, initializer)
            if worker.index is None and pending:
                index = pending.popleft()
                worker.give(index, tasks[index])
    for worker in pool:
        worker.stop()
    if bar is not None:
        bar.file.write('\n')
    return results


class ProbeCache:
    """Probe results persisted in a json file, keyed by path and stat.

    An entry is reused only when the file's size and modification time and
    the probe kind are unchanged and it was written by the same
    :data:`PROBE_VERSION`; anything else is probed again.

    Args:
        path (str, optional): Cache file; ``None`` keeps it in memory only.
        load (bool): Read the existing file. ``False`` starts empty (every
            file is probed again) but :meth:`save` still writes the file.
            Defaults to True.
    """

    def __init__(self, path: Optional[str], load: bool = True) -> None:
        self.path = path
        self.entries: Dict[str, Dict] = {}
        if load and path and osp.isfile(path):
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                data = {}  # corrupt cache (e.g. killed mid-write): rebuild
            if data.get('version') == PROBE_VERSION:
                self.entries = data.get('entries', {})

    @staticmethod
    def _stat(path: str) -> Optional[Tuple[int, int]]:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def lookup(self, path: str, kind: str) -> Optional[Dict]:
        """Return the cached result of ``(path, kind)`` if still valid.

        Args:
            path (str): Absolute file path.
            kind (str): Probe kind.

        Returns:
            dict | None: The result, or ``None`` if it must be probed.
        """
        entry = self.entries.get(f'{kind}:{path}')
        stat = self._stat(path)
        if entry is None or stat is None:
            return None
        if [entry.get('size'), entry.get('mtime_ns')] != list(stat):
            return None
        return entry.get('result')

    def store(self, path: str, kind: str, result: Dict) -> None:
        """Remember the result of probing ``(path, kind)``.

        Args:
            path (str): Absolute file path.
            kind (str): Probe kind.
            result (dict): What :func:`probe_media` returned.
        """
        stat = self._stat(path)
        if stat is None:
            return
        self.entries[f'{kind}:{path}'] = dict(
            size=stat[0], mtime_ns=stat[1], result=result)

    def save(self) -> None:
        """Write the cache atomically (a crash never leaves half a file)."""
        if not self.path:
            return
        _write_json(self.path,
                    dict(version=PROBE_VERSION, entries=self.entries))


def probe_files(tasks: Sequence[Tuple[str, str]],
                workers: int = 1,
                cache: Optional[ProbeCache] = None,
                progress: bool = True,
                chunk_size: int = 512,
                timeout: Optional[float] = DEFAULT_FILE_TIMEOUT
                ) -> Tuple[Dict, Dict[str, int]]:
    """Probe many files in parallel, reusing and updating a cache.

    Work is done in chunks and the cache is saved after each one, so an
    interrupted run loses at most one chunk. Files are probed by
    :func:`run_isolated`: a file that crashes or hangs its worker gets a
    failed result saying so, which is not cached (a rerun tries again).

    Args:
        tasks (Sequence[tuple[str, str]]): ``(path, kind)`` pairs.
        workers (int): Worker processes.
        cache (ProbeCache, optional): Cache to read and update.
        progress (bool): Show mmengine's progress bar.
        chunk_size (int): Files probed between two cache saves.
        timeout (float, optional): Seconds one file may take.

    Returns:
        tuple[dict, dict]: ``(path, kind) -> result`` for every task, and
        the counts ``probed`` (decoded now), ``cached`` (reused) and
        ``crashed`` (worker died or timed out).
    """
    results: Dict[Tuple[str, str], Dict] = {}
    todo = []
    for task in OrderedDict.fromkeys(tuple(t) for t in tasks):
        hit = cache.lookup(*task) if cache is not None else None
        if hit is not None:
            results[task] = hit
        else:
            todo.append(task)
    counts = dict(probed=len(todo), cached=len(results), crashed=0)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start:start + chunk_size]
        out = run_isolated(probe_media, chunk, workers, timeout, progress)
        for task, (finished, result) in zip(chunk, out):
            if not finished:
                counts['crashed'] += 1
                results[task] = dict(ok=False, error=f'probe {result}')
                continue
            results[task] = result
            if cache is not None:
                cache.store(task[0], task[1], result)
        if cache is not None:
            cache.save()
    return results, counts


def rel_to_root(path: str, root: str) -> str:
    """Path as written in a list: relative to ``root`` when inside it.

    AudioVisualDataset joins list paths to ``data_root``; an absolute path
    (a video directory elsewhere, e.g. on another disk) survives that join.

    Args:
        path (str): File path.
        root (str): Dataset root.

    Returns:
        str: ``root``-relative path with ``/`` separators, or the absolute
        path.
    """
    path, root = osp.abspath(path), osp.abspath(root)
    rel = osp.relpath(path, root)
    if rel.startswith(os.pardir + os.sep) or rel == os.pardir:
        return path
    return rel.replace(os.sep, '/')


class _LinkFarm:
    """Whitespace-free symlinks for files whose path has whitespace.

    AudioVisualDataset splits list lines on whitespace, but common layouts
    have spaces in folder names (Kinetics label folders such as
    ``videos/train/playing bagpipes/``). Such a file is listed through a
    symlink ``<root>/links/<name>`` (whitespace in the name replaced by
    ``_``) that points at it; a rerun reuses or updates the links. A path
    with bytes that are not UTF-8 (list files are UTF-8 text) is linked
    the same way, each such byte replaced by ``_``.

    Args:
        root (str): Dataset root.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = osp.join(root, LINK_DIR_NAME)
        self.claimed: Dict[str, str] = {}  # link name -> target, this run

    def listable(self, path: str) -> str:
        """Return the path to write in a list for ``path``.

        Args:
            path (str): File path.

        Returns:
            str: :func:`rel_to_root` of ``path``, or of a symlink to it when
            that contains whitespace or bytes that are not UTF-8.

        Raises:
            OSError: The symlink cannot be created (e.g. a file system
                without symlinks).
        """
        rel = rel_to_root(path, self.root)
        if rel.isprintable() and not any(c.isspace() for c in rel):
            return rel  # lone surrogates (undecodable bytes) are unprintable
        target = osp.abspath(path)
        name = os.fsencode(osp.basename(target)).decode('utf-8', 'replace')
        stem, ext = osp.splitext(
            re.sub(r'\s+', '_', name.replace('\ufffd', '_')))
        name, k = stem + ext, 0
        while self.claimed.get(name, target) != target:
            k += 1
            name = f'{stem}_{k}{ext}'
        self.claimed[name] = target
        link = osp.join(self.dir, name)
        if not (osp.islink(link) and os.readlink(link) == target):
            os.makedirs(self.dir, exist_ok=True)
            tmp = link + '.tmp'
            if osp.lexists(tmp):
                os.remove(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        return rel_to_root(link, self.root)


def _write_text(path: str, text: str) -> None:
    tmp = path + '.tmp'
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    except BaseException:
        if osp.lexists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)  # atomic: readers never see half a file


def _write_json(path: str, obj) -> None:
    # ASCII escapes keep paths with undecodable bytes (lone surrogates)
    # writable, and json.load gives the same str back.
    _write_text(path, json.dumps(obj, indent=1, ensure_ascii=True) + '\n')


def build_lists(root: str,
                dataset: str,
                classes: Sequence[str],
                entries: Dict[str, List[ClipEntry]],
                workers: int = 1,
                force_probe: bool = False,
                progress: bool = True,
                min_audio_duration: float = 0.1,
                duration_tolerance: float = DEFAULT_DURATION_TOLERANCE,
                file_timeout: Optional[float] = DEFAULT_FILE_TIMEOUT,
                settings: Optional[Dict] = None) -> Dict:
    """Probe the clips' files and write lists, classes and report.

    Args:
        root (str): Dataset root; outputs go here.
        dataset (str): Benchmark name, for the report.
        classes (Sequence[str]): Class names; label i is ``classes[i]``.
        entries (dict[str, list[ClipEntry]]): Clips per split (a subset of
            :data:`SPLITS`), in the order they should be listed.
        workers (int): Probe worker processes.
        force_probe (bool): Ignore the probe cache (probe everything).
        progress (bool): Show progress bars.
        min_audio_duration (float): A stand-alone audio file shorter than
            this (seconds) is reported as unusable; matches ``LoadAudio``'s
            ``min_duration`` so the lists only hold clips it accepts.
        duration_tolerance (float): Share of a stream's declared duration
            that may be missing before the file counts as truncated (see
            :func:`truncation_error`).
        file_timeout (float, optional): Seconds one file's probe may take
            before its worker is killed and the file reported.
        settings (dict, optional): Tool settings recorded in the report.

    Returns:
        dict: The report also written to ``<root>/prepare_report.json``:
        ``splits`` (per split ``listed``, ``written``, ``missing``, ``bad``,
        ``per_class``), ``missing`` and ``bad`` (one record per clip with
        ``split``, ``source``, ``clip`` and ``reason``/``error``) and
        ``probe`` (``probed``/``cached``/``crashed`` counts).

    Raises:
        ValueError: An unknown split name or a label out of range.
    """
    if not 0.0 <= duration_tolerance < 1.0:
        raise ValueError('duration_tolerance must be in [0, 1), got '
                         f'{duration_tolerance}')
    for split, clips in entries.items():
        if split not in SPLITS:
            raise ValueError(f'unknown split {split!r}; one of {SPLITS}')
        for clip in clips:
            if not 0 <= clip.label < len(classes):
                raise ValueError(f'{clip.source}: label {clip.label} outside '
                                 f'[0, {len(classes)})')
    os.makedirs(root, exist_ok=True)
    missing, present = [], []
    for split, clips in entries.items():
        for clip in clips:
            reason = clip.missing_reason
            if reason is None:
                if not clip.video or not osp.isfile(clip.video):
                    reason = f'video not found: {clip.video}'
                elif clip.audio is not None and not osp.isfile(clip.audio):
                    reason = f'audio not found: {clip.audio}'
            if reason is not None:
                missing.append(
                    dict(split=split, source=clip.source, clip=clip.clip_id,
                         reason=reason))
            else:
                present.append((split, clip))

    def tasks_of(clip: ClipEntry) -> List[Tuple[str, str]]:
        video = osp.abspath(clip.video)
        if clip.audio is None:
            return [(video, 'video+audio')]
        return [(video, 'video'), (osp.abspath(clip.audio), 'audio')]

    # A forced run ignores old results but still records new ones, for the
    # next (non-forced) run.
    cache = ProbeCache(
        osp.join(root, PROBE_CACHE_NAME), load=not force_probe)
    results, probe_counts = probe_files(
        [t for _, clip in present for t in tasks_of(clip)],
        workers,
        cache,
        progress,
        timeout=file_timeout)

    links = _LinkFarm(root)
    bad, lines = [], {split: [] for split in entries}
    for split, clip in present:
        errors = []
        for path, kind in tasks_of(clip):
            result = results[(path, kind)]
            where = display_path(path)
            if not result.get('ok'):
                errors.append(f'{where}: {result.get("error")}')
            elif truncation_error(result, duration_tolerance):
                errors.append(
                    f'{where}: '
                    f'{truncation_error(result, duration_tolerance)}')
            elif (kind == 'audio' and result.get('duration') is not None
                  and result['duration'] < min_audio_duration):
                errors.append(f'{where}: audio too short '
                              f'({result["duration"]:.3f} s < '
                              f'{min_audio_duration} s)')
        if errors:
            bad.append(
                dict(split=split, source=clip.source, clip=clip.clip_id,
                     error='; '.join(errors)))
            continue
        paths = [clip.video] + ([clip.audio] if clip.audio else [])
        try:
            fields = [links.listable(path) for path in paths]
        except OSError as e:
            bad.append(
                dict(split=split, source=clip.source, clip=clip.clip_id,
                     error=f'its path has whitespace and no symlink could '
                     f'be made in {links.dir}: {e}'))
            continue
        lines[split].append((' '.join(fields), clip.label))

    summary = {}
    for split in SPLITS:
        if split not in entries:
            continue
        per_class = Counter(classes[label] for _, label in lines[split])
        summary[split] = dict(
            listed=len(entries[split]),
            written=len(lines[split]),
            missing=sum(m['split'] == split for m in missing),
            bad=sum(b['split'] == split for b in bad),
            list_file=LIST_TMPL.format(split=split),
            per_class={name: per_class.get(name, 0) for name in classes})
    report = dict(
        dataset=dataset,
        root=osp.abspath(root),
        created=time.strftime('%Y-%m-%d %H:%M:%S'),
        settings=dict(
            settings or {},
            duration_tolerance=duration_tolerance,
            file_timeout=file_timeout,
            min_audio_duration=min_audio_duration),
        num_classes=len(classes),
        classes=list(classes),
        splits=summary,
        probe=probe_counts,
        missing=missing,
        bad=bad)

    for split, split_lines in lines.items():
        if not split_lines:
            warnings.warn(f'{dataset}: the {split} split has no usable clip; '
                          f'{LIST_TMPL.format(split=split)} is empty (see '
                          f'{osp.join(root, REPORT_NAME)})')
        _write_text(
            osp.join(root, LIST_TMPL.format(split=split)),
            ''.join(f'{fields} {label}\n' for fields, label in split_lines))
    _write_text(osp.join(root, CLASSES_NAME),
                ''.join(name + '\n' for name in classes))
    _write_json(osp.join(root, REPORT_NAME), report)
    return report


def format_summary(report: Dict) -> str:
    """A few human-readable lines about what :func:`build_lists` wrote.

    Args:
        report (dict): The report.

    Returns:
        str: One line per split plus totals and the report's path.
    """
    root = report['root']
    out = []
    for split, info in report['splits'].items():
        out.append(
            f'[{report["dataset"]}] {osp.join(root, info["list_file"])}: '
            f'{info["written"]} clips written of {info["listed"]} annotated '
            f'({info["missing"]} missing on disk, {info["bad"]} unreadable)')
    probe = report['probe']
    out.append(f'[{report["dataset"]}] {report["num_classes"]} classes; '
               f'probed {probe["probed"]} files, {probe["cached"]} from the '
               f'cache; details in {osp.join(root, REPORT_NAME)}')
    if probe.get('crashed'):
        out.append(f'[{report["dataset"]}] FAILED: {probe["crashed"]} files '
                   'crashed or hung their probe process (listed as bad in '
                   'the report; a rerun probes them again)')
    return '\n'.join(out)


def index_videos(video_dir: str,
                 extensions: Iterable[str] = VIDEO_EXTENSIONS
                 ) -> Dict[str, List[str]]:
    """Map file stems to the video files below a directory (recursively).

    Args:
        video_dir (str): Directory to scan (symlinks are followed).
        extensions (Iterable[str]): Video extensions (lower case, with dot).

    Returns:
        dict[str, list[str]]: File stem -> sorted absolute paths (more than
        one when the same stem appears in several folders).

    Raises:
        FileNotFoundError: ``video_dir`` does not exist.
    """
    if not osp.isdir(video_dir):
        raise FileNotFoundError(f'video directory not found: {video_dir}')
    exts = tuple(e.lower() for e in extensions)
    index: Dict[str, List[str]] = {}
    for dirpath, _, filenames in os.walk(video_dir, followlinks=True):
        for name in filenames:
            stem, ext = osp.splitext(name)
            if ext.lower() in exts and not name.startswith('.'):
                index.setdefault(stem, []).append(
                    osp.abspath(osp.join(dirpath, name)))
    for paths in index.values():
        paths.sort()
    return index


def stratified_split(keys: Sequence[str],
                     labels: Sequence[int],
                     fraction: float,
                     seed: int = 0,
                     stratify: bool = True) -> Tuple[List[str], List[str]]:
    """Seeded random split of ``keys`` into ``(rest, held_out)``.

    ``round(fraction * len(keys))`` keys are held out. With ``stratify``
    each label contributes in proportion to its size (largest-remainder
    rounding, so the total is exact), which keeps the class balance of both
    parts equal to the whole. The result depends only on the set of keys,
    their labels and the seed (keys are sorted first), not on the order in
    which files were found.

    Args:
        keys (Sequence[str]): Unique item keys.
        labels (Sequence[int]): Label of each key.
        fraction (float): Share held out, in ``[0, 1]``.
        seed (int): Random seed.
        stratify (bool): Stratify by label.

    Returns:
        tuple[list[str], list[str]]: The remaining keys and the held-out
        keys, each sorted.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1]``, duplicate keys, or
            ``keys``/``labels`` of different lengths.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f'fraction must be in [0, 1], got {fraction}')
    if len(keys) != len(labels):
        raise ValueError('keys and labels differ in length')
    if len(set(keys)) != len(keys):
        raise ValueError('keys must be unique')
    label_of = dict(zip(keys, labels))
    ordered = sorted(keys)
    rng = random.Random(seed)
    total = int(round(fraction * len(ordered)))
    if not stratify:
        held = set(rng.sample(ordered, total))
    else:
        groups: Dict[int, List[str]] = {}
        for key in ordered:
            groups.setdefault(label_of[key], []).append(key)
        quotas = {g: fraction * len(v) for g, v in groups.items()}
        take = {g: int(q) for g, q in quotas.items()}
        # Largest remainders get the leftover items; ties by label.
        for g in sorted(quotas, key=lambda g: (take[g] - quotas[g], g)):
            if sum(take.values()) >= total:
                break
            take[g] += 1
        held = set()
        for g in sorted(groups):
            held.update(rng.sample(groups[g], take[g]))
    return ([k for k in ordered if k not in held],
            [k for k in ordered if k in held])


def add_file_check_args(parser) -> None:
    """Add the options every prepare tool shares.

    They set :func:`build_lists`' ``workers``, ``force_probe``,
    ``progress``, ``duration_tolerance`` and ``file_timeout``;
    :func:`run_cli` passes them on.

    Args:
        parser (argparse.ArgumentParser): The tool's parser (or one of its
            argument groups).
    """
    parser.add_argument(
        '--workers',
        type=int,
        default=max(1, min(8, os.cpu_count() or 1)),
        help='parallel probe processes (default: min(8, CPUs))')
    parser.add_argument(
        '--force-probe',
        action='store_true',
        help='re-check every file instead of trusting the probe cache')
    parser.add_argument(
        '--duration-tolerance',
        type=float,
        default=DEFAULT_DURATION_TOLERANCE,
        help='a stream that decodes to less than (1 - this) of the duration '
        'its header declares is reported as truncated (default: '
        f'{DEFAULT_DURATION_TOLERANCE})')
    parser.add_argument(
        '--file-timeout',
        type=float,
        default=DEFAULT_FILE_TIMEOUT,
        help='seconds the check of one file may take before its worker is '
        f'killed and the file reported (default: {DEFAULT_FILE_TIMEOUT:g})')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bars')


def make_parser(description: str, default_root: str):
    """The command line parser of a prepare tool, before its own options.

    It has ``--root`` and, in a group listed after the tool's options, those
    of :func:`add_file_check_args`: all that :func:`run_cli` reads.

    Args:
        description (str): What the tool does, for ``--help``.
        default_root (str): Default of ``--root`` (``data/<benchmark>``).

    Returns:
        argparse.ArgumentParser: The parser; the tool adds its options.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--root', default=default_root, help='dataset root')
    add_file_check_args(parser.add_argument_group('file checks'))
    return parser


def run_cli(prepare_fn, args, **kwargs) -> int:
    """Run a prepare function for a command line tool.

    Annotation problems become one ``error: ...`` line on stderr and exit
    status 1 instead of a traceback, since they are the user's to fix. Files
    whose check crashed or hung its worker give exit status 2 after the
    lists and the report are written: the run did not check everything.

    Args:
        prepare_fn (callable): The tool's ``prepare`` function; returns the
            report of :func:`build_lists`, to which it passes the options
            of :func:`add_file_check_args`.
        args (argparse.Namespace): The command line parsed by a
            :func:`make_parser` parser: gives ``root`` and the options of
            :func:`add_file_check_args`.
        **kwargs: The tool's own arguments of ``prepare_fn``.

    Returns:
        int: Exit status.
    """
    try:
        report = prepare_fn(
            root=args.root,
            **kwargs,
            workers=args.workers,
            force_probe=args.force_probe,
            progress=not args.no_progress,
            duration_tolerance=args.duration_tolerance,
            file_timeout=args.file_timeout)
    except (FileNotFoundError, AnnotationError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(display_path(format_summary(report)))
    return 2 if report['probe'].get('crashed') else 0
