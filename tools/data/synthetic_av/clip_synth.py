"""Building blocks shared by the synthetic audio-visual generators
(``tools/data/synthetic_av`` and ``tools/data/synthetic_crosslevel``).

A generator draws one record ("spec") per sample and hands the records to
:func:`write_dataset`, with a module-level ``render(spec, rng) -> (frames,
audio)`` built from :func:`render_frames` and :func:`render_tone_track`.
:func:`write_dataset` renders the clips in parallel worker processes (mmengine
progress bar), writes them as real ``.mp4`` files (MPEG-4 Part 2 video + AAC
audio, PyAV), and writes the split lists, ``classes.txt`` and
``factors.json``. Runs are resumable and byte-identical for equal arguments:
per-sample noise comes from an RNG seeded by ``(seed, split, index)``, files
are written under a temporary name and renamed, and clips are reused only
when ``factors.json`` records the same settings.
"""
import colorsys
import json
import multiprocessing
import os
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
from mmengine.utils import track_parallel_progress, track_progress

SPLITS = ('train', 'val', 'test')
# Fixed per-split codes keep each split's stream independent of the others'
# sizes: changing --num-val does not change the training set.
SPLIT_CODES = {'train': 0, 'val': 1, 'test': 2}

# Hue ranges (degrees) of the colour families; green is left out so that
# the two families never touch.
HUE_RANGES = ((-25.0, 50.0), (180.0, 250.0))  # warm: red..yellow, cool
# Base frequency (Hz) ranges of the pitch registers. A sweep spans one
# octave from the base, so the registers' bands do not overlap either.
F0_RANGES = ((200.0, 320.0), (700.0, 1000.0))
ON_LEVEL, OFF_LEVEL = 1.0, 0.3  # object brightness in on / off frames
# Native FFmpeg AAC encoder priming: the decoded track starts with this many
# (near silent) samples. The synthesis timeline is shifted by it so that
# decoded audio sample m corresponds to time m / sample_rate of the video.
AAC_PRIMING_SAMPLES = 1024
VIDEO_CODEC, AUDIO_CODEC = 'mpeg4', 'aac'

RenderFn = Callable[[dict, np.random.Generator], Tuple[np.ndarray,
                                                       np.ndarray]]


def balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Return ``n`` values in ``[0, k)`` as balanced as possible, shuffled."""
    return rng.permutation(np.arange(n) % k)


def hsv_to_rgb(hue_deg: float, sat: float) -> np.ndarray:
    """RGB in [0, 1] of a fully bright colour, shape (3,)."""
    return np.array(colorsys.hsv_to_rgb(hue_deg / 360.0, sat, 1.0))


def draw_object_params(rng: np.random.Generator, colour: int,
                       start_y: Optional[Tuple[float, float]] = None,
                       end_y: Optional[Tuple[float, float]] = None) -> dict:
    """Draw the look of the blinking object and of its background.

    The draws happen in a fixed order (the output of a generator depends on
    it). Without ``start_y`` / ``end_y`` the object moves on a random linear
    path inside the central 40 % of the frame.

    Args:
        rng (np.random.Generator): The split's RNG.
        colour (int): Colour family, index into ``HUE_RANGES``.
        start_y (tuple[float, float], optional): Range of the vertical start
            position (fraction of the frame) instead of ``(0.3, 0.7)``.
        end_y (tuple[float, float], optional): Same for the end position.

    Returns:
        dict: ``hue_deg``, ``saturation``, ``size_px``, ``start_xy``,
        ``end_xy``, ``background``, ``gradient``, ``visual_noise_std``,
        ``visual_distractor``.
    """
    hue_lo, hue_hi = HUE_RANGES[colour]
    params = dict(
        hue_deg=float(rng.uniform(hue_lo, hue_hi) % 360.0),
        saturation=float(rng.uniform(0.75, 1.0)),
        size_px=float(rng.uniform(16.0, 26.0)))
    if start_y is None:
        params['start_xy'] = rng.uniform(0.3, 0.7, 2).tolist()
        params['end_xy'] = rng.uniform(0.3, 0.7, 2).tolist()
    else:
        params['start_xy'] = [float(rng.uniform(0.3, 0.7)),
                              float(rng.uniform(*start_y))]
        params['end_xy'] = [float(rng.uniform(0.3, 0.7)),
                            float(rng.uniform(*end_y))]
    params.update(
        background=rng.uniform(0.03, 0.15, 3).tolist(),
        gradient=[float(rng.uniform(0, 2 * np.pi)),
                  float(rng.uniform(0.0, 0.1))],
        visual_noise_std=float(rng.uniform(0.03, 0.07)),
        visual_distractor=bool(rng.random() < 0.7))
    return params


def draw_sound_params(rng: np.random.Generator, pitch: int) -> dict:
    """Draw the base frequency and the audio nuisances, in a fixed order.

    Args:
        rng (np.random.Generator): The split's RNG.
        pitch (int): Pitch register, index into ``F0_RANGES``.

    Returns:
        dict: ``f0_hz``, ``snr_db``, ``hum`` (``[Hz, amplitude]`` or None),
        ``num_noise_bursts``, ``peak``.
    """
    f0_lo, f0_hi = F0_RANGES[pitch]
    return dict(
        f0_hz=float(rng.uniform(f0_lo, f0_hi)),
        snr_db=float(rng.uniform(6.0, 14.0)),
        hum=([float(rng.uniform(100.0, 3000.0)),
              float(rng.uniform(0.1, 0.25))]
             if rng.random() < 0.5 else None),
        num_noise_bursts=int(rng.integers(0, 4)),
        peak=float(rng.uniform(0.3, 0.8)))


def blink_pattern(num_frames: int, fps: float, rate_hz: float,
                  phase_frames: int) -> np.ndarray:
    """Whether the object is bright in each frame (50 % duty square wave).

    Args:
        num_frames (int): Number of frames.
        fps (float): Frame rate.
        rate_hz (float): Blinks per second.
        phase_frames (int): Phase of the blink, in frames.

    Returns:
        np.ndarray: Bool array of shape (num_frames,).
    """
    cycles = (np.arange(num_frames) + phase_frames) * (rate_hz / fps)
    return (cycles % 1.0) < 0.5


def render_frames(params: dict, shape: int, on: np.ndarray, size: int,
                  rng: np.random.Generator,
                  background_flash: float = 0.0) -> np.ndarray:
    """Render a blinking object moving over a dark background.

    Args:
        params (dict): Object parameters (see :func:`draw_object_params`).
        shape (int): 0 disk, 1 axis-aligned square.
        on (np.ndarray): Bool (T,), whether the object is bright per frame.
        size (int): Frame height and width in pixels.
        rng (np.random.Generator): RNG for noise and the distractor.
        background_flash (float): Brightness added to the whole background
            in the ``on`` frames (0: only the object blinks).

    Returns:
        np.ndarray: uint8 frames of shape (T, size, size, 3), RGB.
    """
    p = params
    t_len = len(on)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    angle, amp = p['gradient']
    ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / size
    background = (np.asarray(p['background'], np.float32) +
                  np.float32(amp) * (ramp - ramp.mean())[..., None])

    # Linear motion of the object centre, frame by frame.
    alpha = np.linspace(0.0, 1.0, t_len, dtype=np.float32)[:, None]
    start = np.asarray(p['start_xy'], np.float32)
    end = np.asarray(p['end_xy'], np.float32)
    centres = (start + (end - start) * alpha) * size  # (T, 2)
    dx = xx[None] - centres[:, 0, None, None]
    dy = yy[None] - centres[:, 1, None, None]
    radius = p['size_px'] / 2
    if shape == 0:  # disk
        dist = np.sqrt(dx**2 + dy**2)
    else:  # axis-aligned square
        dist = np.maximum(np.abs(dx), np.abs(dy))
    # One-pixel soft edge (anti-aliasing), so size varies continuously.
    mask = np.clip(np.float32(radius + 0.5) - dist, 0.0, 1.0)[..., None]
    level = np.where(on, ON_LEVEL, OFF_LEVEL)
    colour = hsv_to_rgb(p['hue_deg'], p['saturation']).astype(np.float32)
    obj = colour * level[:, None, None, None].astype(np.float32)
    background = np.broadcast_to(background, (t_len, ) + background.shape)
    if background_flash:
        # The whole frame flashes with the object: a tempo cue that no crop
        # or small receptive field can miss.
        background = background + np.float32(background_flash) * on[
            :, None, None, None].astype(np.float32)
    frames = background * (1 - mask) + obj * mask

    if p['visual_distractor']:
        # A small dot of random hue on a random walk that flickers at
        # random (aperiodic, so it carries no rhythm).
        pos = rng.uniform(0.15, 0.85, 2) * size + np.cumsum(
            rng.normal(0, 2.0, (t_len, 2)), axis=0)
        pos = np.clip(pos, 2, size - 2)
        visible = rng.random(t_len) < 0.5
        dot_colour = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.3, 1.0))
        d = np.sqrt((xx[None] - pos[:, 0, None, None])**2 +
                    (yy[None] - pos[:, 1, None, None])**2)
        dot = (np.clip(3.0 - d, 0.0, 1.0) * visible[:, None, None])[..., None]
        frames = frames * (1 - dot) + dot_colour * 0.8 * dot

    frames = frames + p['visual_noise_std'] * rng.standard_normal(
        frames.shape, dtype=np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def audio_times(duration: float, sample_rate: int) -> np.ndarray:
    """Video-timeline time (s) of every sample fed to the AAC encoder.

    Sample ``n`` holds time ``(n + AAC_PRIMING_SAMPLES) / sample_rate``,
    which cancels the encoder's priming delay.

    Args:
        duration (float): Clip duration in seconds.
        sample_rate (int): Audio sample rate.

    Returns:
        np.ndarray: float64 times of shape (N,), N = duration * sample_rate.
    """
    num = int(round(duration * sample_rate))
    return (np.arange(num) + AAC_PRIMING_SAMPLES) / sample_rate


def render_tone_track(params: dict, times: np.ndarray, cycles: np.ndarray,
                      rate_hz: float, chirp: int, timbre: int,
                      sample_rate: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Render gated, swept tones plus noise and distractors.

    A tone sounds in the first half of every beat cycle and sweeps one
    octave (up or down) over its length.

    Args:
        params (dict): Sound parameters (see :func:`draw_sound_params`).
        times (np.ndarray): Times of the samples, see :func:`audio_times`.
        cycles (np.ndarray): Beat cycles elapsed at each time, shape (N,).
        rate_hz (float): Beats per second (sets the tone length).
        chirp (int): 0 up (f0 -> 2 f0), 1 down (2 f0 -> f0).
        timbre (int): 0 sine, 1 with 2nd and 3rd harmonics.
        sample_rate (int): Audio sample rate.
        rng (np.random.Generator): RNG for noise and distractors.

    Returns:
        np.ndarray: float32 mono waveform of shape (N,).
    """
    p = params
    sr = sample_rate
    num = len(times)
    frac = cycles % 1.0
    on = frac < 0.5
    seg_dur = 0.5 / rate_hz
    u = np.where(on, frac / 0.5, 0.0)  # position inside the tone, [0, 1)
    tau = u * seg_dur  # seconds since the tone started
    f0 = p['f0_hz']
    # Exponential one-octave sweep; the phase is the integral of the
    # instantaneous frequency so the tone has no clicks inside a beat.
    if chirp == 0:  # up: f0 -> 2 f0
        phase = 2 * np.pi * f0 * seg_dur / np.log(2) * (2.0**u - 1)
    else:  # down: 2 f0 -> f0
        phase = 2 * np.pi * 2 * f0 * seg_dur / np.log(2) * (1 - 2.0**(-u))
    if timbre == 0:
        tone = np.sin(phase)
    else:
        tone = (np.sin(phase) + 0.5 * np.sin(2 * phase) +
                0.3 * np.sin(3 * phase)) / 1.3
    ramp = 0.01  # 10 ms raised-cosine fades against clicks at the edges
    env = np.clip(np.minimum(tau, seg_dur - tau) / ramp, 0.0, 1.0)
    env = np.sin(0.5 * np.pi * env)**2 * on
    signal = tone * env
    sig_rms = np.sqrt(np.mean(signal[on]**2)) if on.any() else 0.5

    if p['hum'] is not None:
        hum_hz, hum_amp = p['hum']
        signal = signal + hum_amp * np.sin(
            2 * np.pi * hum_hz * times + rng.uniform(0, 2 * np.pi))
    for _ in range(p['num_noise_bursts']):
        # Broadband bursts at random times: loud events off the beat.
        length = int(rng.uniform(0.03, 0.06) * sr)
        start = int(rng.integers(0, max(1, num - length)))
        signal[start:start + length] += rng.uniform(0.3, 0.6) * rng.normal(
            0, 1, len(signal[start:start + length]))
    noise_std = sig_rms / 10**(p['snr_db'] / 20)
    signal = signal + rng.normal(0, noise_std, num)
    signal = signal / max(np.abs(signal).max(), 1e-6) * p['peak']
    return signal.astype(np.float32)


def write_av_file(path: str, frames: np.ndarray, audio: np.ndarray,
                  fps: int, sample_rate: int) -> None:
    """Write frames and mono audio into an mp4 file, atomically.

    The file is written under a temporary name and renamed, so a file at
    ``path`` is always complete.

    Args:
        path (str): Output ``.mp4`` path.
        frames (np.ndarray): uint8 (T, H, W, 3) RGB frames.
        audio (np.ndarray): float32 (N,) mono waveform in [-1, 1].
        fps (int): Frame rate.
        sample_rate (int): Audio sample rate.
    """
    tmp = f'{path}.tmp{os.getpid()}'
    with av.open(tmp, 'w', format='mp4') as container:
        vstream = container.add_stream(VIDEO_CODEC, rate=fps)
        vstream.height, vstream.width = frames.shape[1:3]
        vstream.pix_fmt = 'yuv420p'
        # High bit rate for such tiny frames: compression must not wash
        # out the cues; one thread keeps the encoder deterministic.
        vstream.bit_rate = 600_000
        vstream.codec_context.thread_count = 1
        astream = container.add_stream(AUDIO_CODEC, rate=sample_rate)
        astream.layout = 'mono'
        astream.bit_rate = 64_000
        for frame in frames:
            for packet in vstream.encode(
                    av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        aframe = av.AudioFrame.from_ndarray(
            audio[None], format='fltp', layout='mono')
        aframe.sample_rate = sample_rate
        # PyAV re-chunks the waveform into the encoder's frame size.
        for packet in astream.encode(aframe):
            container.mux(packet)
        for packet in astream.encode(None):
            container.mux(packet)
    os.replace(tmp, path)


def _render_task(task: dict) -> str:
    """Render and write one sample (runs in a worker process).

    Args:
        task (dict): ``spec`` (sample record with rendering settings),
            ``render`` (the generator's render function), ``path`` (output
            file), ``seed``, ``skip`` (keep an existing file).

    Returns:
        str: ``'skipped'`` or ``'written'``.
    """
    path, spec = task['path'], task['spec']
    if task['skip'] and osp.isfile(path) and osp.getsize(path) > 0:
        return 'skipped'
    rng = np.random.default_rng(
        [task['seed'], SPLIT_CODES[spec['split']],
         int(spec['id'].rsplit('_', 1)[1]), 1])
    frames, audio = task['render'](spec, rng)
    write_av_file(path, frames, audio, spec['fps'], spec['sample_rate'])
    return 'written'


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary name + rename)."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def write_dataset(out_dir: str, meta: dict, specs: Sequence[dict],
                  render: RenderFn, render_settings: Dict[str, float],
                  classes: Sequence[str], seed: int,
                  workers: Optional[int] = None,
                  progress: bool = True) -> dict:
    """Render every sample and write the dataset files.

    Existing clips are reused only when ``factors.json`` holds the same
    ``meta``, so ``meta`` must contain every setting that changes any file.

    Args:
        out_dir (str): Output directory.
        meta (dict): Generator settings, stored in ``factors.json``.
        specs (Sequence[dict]): One record per sample with at least ``id``
            (``<split>_<index>``), ``split``, ``video`` (path relative to
            ``out_dir``) and ``label``, in list order.
        render (Callable): Module-level ``render(spec, rng)`` returning
            uint8 frames (T, H, W, 3) and a float32 waveform (N,); picklable,
            it runs in worker processes.
        render_settings (dict): Added to every spec before rendering (not
            stored): ``fps`` and ``sample_rate`` at least.
        classes (Sequence[str]): Class names, index = label.
        seed (int): Global seed of the per-sample noise RNGs.
        workers (int, optional): Worker processes. Defaults to the number
            of usable CPUs.
        progress (bool): Show an mmengine progress bar (on stdout).

    Returns:
        dict: ``written``, ``skipped`` (file counts) and ``seconds``.
    """
    start_time = time.time()
    factors_path = osp.join(out_dir, 'factors.json')
    # Existing videos are reused only if they were made with the same
    # settings (same meta), otherwise every video is rewritten.
    skip = False
    if osp.isfile(factors_path):
        with open(factors_path) as f:
            # compared as JSON (tuples in ``meta`` come back as lists)
            skip = json.load(f).get('meta') == json.loads(json.dumps(meta))
    # The documented layout has videos/<split>/ even for an empty split.
    for split in SPLITS:
        os.makedirs(osp.join(out_dir, 'videos', split), exist_ok=True)
    tasks: List[dict] = []
    for spec in specs:
        path = osp.join(out_dir, spec['video'])
        os.makedirs(osp.dirname(path), exist_ok=True)
        tasks.append(dict(spec={**spec, **render_settings}, render=render,
                          path=path, seed=seed, skip=skip))

    if workers is None:
        workers = len(os.sched_getaffinity(0))
    workers = max(1, min(workers, len(tasks)))
    if workers > 1 and progress:
        results = track_parallel_progress(
            _render_task, tasks, nproc=workers, chunksize=8)
    elif workers > 1:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(_render_task, tasks, chunksize=8)
    elif progress and tasks:
        results = track_progress(_render_task, tasks)
    else:
        results = [_render_task(task) for task in tasks]

    for split in SPLITS:
        lines = [f"{s['video']} {s['label']}\n" for s in specs
                 if s['split'] == split]
        write_text(osp.join(out_dir, f'{split}_list.txt'), ''.join(lines))
    write_text(osp.join(out_dir, 'classes.txt'), '\n'.join(classes) + '\n')
    # factors.json last: its presence (with matching meta) marks a finished
    # run whose files may be reused.
    write_text(factors_path,
               json.dumps(dict(meta=meta, samples=list(specs)), indent=1))
    return dict(written=results.count('written'),
                skipped=results.count('skipped'),
                seconds=time.time() - start_time)
