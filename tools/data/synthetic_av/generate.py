"""Generate the seeded synthetic audio-visual benchmark of clcr-mm.

Every sample is a real short ``.mp4`` file (MPEG-4 Part 2 video + AAC audio,
written with PyAV) whose label needs BOTH modalities:

* a SHARED cue seen and heard: the rhythm (``slow`` 1 Hz / ``fast`` 2 Hz) at
  which an object blinks (bright / dim) and a tone is gated on / off;
* a PRIVATE visual cue (default: the colour family of the object, a shallow
  cue) and a PRIVATE audio cue (default: the direction of the tone's pitch
  sweep, a deeper time-frequency cue).

``label = 4 * rhythm + 2 * visual_cue + audio_cue`` (8 classes), so a video
-only model can reach at most 50 % and so can an audio-only one; the fused
model can reach 100 %. The other factors (object shape, motion, pitch
register, timbre, phase, the time offset between modalities, noise and
distractors) are nuisances, recorded in ``factors.json`` for probing.
See ``README.md`` next to this file for the full description.

Usage::

    python tools/data/synthetic_av/generate.py [--out-dir data/synthetic_av]
        [--num-train 600 --num-val 150 --num-test 150] [--seed 0]
        [--workers N]

The output is a pure function of the arguments: per-sample parameters come
from a per-split RNG and per-sample noise from an RNG seeded by
``(seed, split, index)``, so the number of workers does not matter. A rerun
with the same arguments keeps the videos already written (files are written
to a temporary name and renamed, so an existing file is complete).
"""
import argparse
import colorsys
import json
import multiprocessing
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
from mmengine.utils import track_parallel_progress, track_progress

GENERATOR_VERSION = 1

SPLITS = ('train', 'val', 'test')
# Fixed per-split codes keep each split's stream independent of the others'
# sizes: changing --num-val does not change the training set.
SPLIT_CODES = {'train': 0, 'val': 1, 'test': 2}

# Binary factors: name -> (value names, modality, semantic level).
FACTORS: Dict[str, Tuple[Tuple[str, str], str, str]] = {
    'rhythm': (('slow', 'fast'), 'shared', 'temporal (mid)'),
    'colour': (('warm', 'cool'), 'visual', 'shallow'),
    'shape': (('disk', 'square'), 'visual', 'deep'),
    'pitch': (('low', 'high'), 'audio', 'shallow'),
    'chirp': (('up', 'down'), 'audio', 'deep'),
    'timbre': (('sine', 'harmonic'), 'audio', 'mid'),
}
VISUAL_LABEL_FACTORS = ('colour', 'shape')
AUDIO_LABEL_FACTORS = ('chirp', 'pitch', 'timbre')

RHYTHM_HZ = (1.0, 2.0)  # slow, fast: beats per second in both modalities
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


def class_names(visual_factor: str = 'colour',
                audio_factor: str = 'chirp') -> List[str]:
    """Names of the 8 classes, indexed by label.

    Args:
        visual_factor (str): Visual private factor of the label.
        audio_factor (str): Audio private factor of the label.

    Returns:
        list[str]: ``'<rhythm>-<visual value>-<audio value>'`` per label.
    """
    names = []
    for label in range(8):
        rhythm, vis, aud = label // 4, (label // 2) % 2, label % 2
        names.append('-'.join((FACTORS['rhythm'][0][rhythm],
                               FACTORS[visual_factor][0][vis],
                               FACTORS[audio_factor][0][aud])))
    return names


def _balanced(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Return ``n`` values in ``[0, k)`` as balanced as possible, shuffled."""
    return rng.permutation(np.arange(n) % k)


def sample_split_specs(split: str, num: int, seed: int,
                       visual_factor: str, audio_factor: str,
                       fps: int) -> List[dict]:
    """Draw the factors and rendering parameters of one split.

    Args:
        split (str): One of ``SPLITS``.
        num (int): Number of samples.
        seed (int): Global seed.
        visual_factor (str): Visual factor entering the label.
        audio_factor (str): Audio factor entering the label.
        fps (int): Video frame rate, for the visual phase in frames.

    Returns:
        list[dict]: One JSON-serialisable record per sample with ``id``,
        ``split``, ``video``, ``label``, every binary factor (int) and
        ``params`` (continuous rendering parameters).
    """
    rng = np.random.default_rng([seed, SPLIT_CODES[split]])
    labels = _balanced(rng, num, 8)
    factors = {name: _balanced(rng, num, 2) for name in FACTORS}
    # The label fixes the rhythm and the two private label factors; the
    # remaining binary factors stay balanced and independent nuisances.
    factors['rhythm'] = labels // 4
    factors[visual_factor] = (labels // 2) % 2
    factors[audio_factor] = labels % 2
    names = class_names(visual_factor, audio_factor)
    specs = []
    for i in range(num):
        f = {name: int(values[i]) for name, values in factors.items()}
        rate = RHYTHM_HZ[f['rhythm']]
        period_frames = fps / rate
        hue_lo, hue_hi = HUE_RANGES[f['colour']]
        f0_lo, f0_hi = F0_RANGES[f['pitch']]
        # Visual phase on the frame grid (so every sampled frame is clearly
        # on or off); the audio phase follows after a random time offset.
        visual_phase_frames = int(rng.integers(0, round(period_frames)))
        av_offset_s = float(rng.uniform(0.0, 1.0 / rate))
        params = dict(
            rate_hz=rate,
            visual_phase_frames=visual_phase_frames,
            av_offset_s=av_offset_s,
            hue_deg=float(rng.uniform(hue_lo, hue_hi) % 360.0),
            saturation=float(rng.uniform(0.75, 1.0)),
            size_px=float(rng.uniform(16.0, 26.0)),
            start_xy=rng.uniform(0.3, 0.7, 2).tolist(),
            end_xy=rng.uniform(0.3, 0.7, 2).tolist(),
            background=rng.uniform(0.03, 0.15, 3).tolist(),
            gradient=[float(rng.uniform(0, 2 * np.pi)),
                      float(rng.uniform(0.0, 0.1))],
            visual_noise_std=float(rng.uniform(0.03, 0.07)),
            visual_distractor=bool(rng.random() < 0.7),
            f0_hz=float(rng.uniform(f0_lo, f0_hi)),
            snr_db=float(rng.uniform(6.0, 14.0)),
            hum=([float(rng.uniform(100.0, 3000.0)),
                  float(rng.uniform(0.1, 0.25))]
                 if rng.random() < 0.5 else None),
            num_noise_bursts=int(rng.integers(0, 4)),
            peak=float(rng.uniform(0.3, 0.8)),
        )
        sample_id = f'{split}_{i:05d}'
        specs.append(dict(
            id=sample_id, split=split,
            video=f'videos/{split}/{sample_id}.mp4',
            label=int(labels[i]), class_name=names[labels[i]],
            **f, params=params))
    return specs


def _hsv_to_rgb(hue_deg: float, sat: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue_deg / 360.0, sat, 1.0))


def visual_on_pattern(spec: dict, num_frames: int) -> np.ndarray:
    """Whether the object is bright in each frame.

    Args:
        spec (dict): Sample record from :func:`sample_split_specs`.
        num_frames (int): Number of frames.

    Returns:
        np.ndarray: Bool array of shape (num_frames,).
    """
    p = spec['params']
    fps = spec['fps']
    cycles = (np.arange(num_frames) + p['visual_phase_frames']) * (
        p['rate_hz'] / fps)
    return (cycles % 1.0) < 0.5


def audio_on_pattern(spec: dict, times: np.ndarray) -> np.ndarray:
    """Whether the tone sounds at each time (seconds, video timeline).

    The audio beat lags the visual beat by ``params['av_offset_s']``.

    Args:
        spec (dict): Sample record.
        times (np.ndarray): Times in seconds, any shape.

    Returns:
        np.ndarray: Bool array, same shape as ``times``.
    """
    return (_audio_cycles(spec, times) % 1.0) < 0.5


def _audio_cycles(spec: dict, times: np.ndarray) -> np.ndarray:
    p = spec['params']
    visual_phase_cycles = p['visual_phase_frames'] * p['rate_hz'] / spec['fps']
    return (times - p['av_offset_s']) * p['rate_hz'] + visual_phase_cycles


def render_video(spec: dict, rng: np.random.Generator) -> np.ndarray:
    """Render the frames of one sample.

    Args:
        spec (dict): Sample record (with ``fps``, ``num_frames``, ``size``).
        rng (np.random.Generator): RNG for noise and the distractor.

    Returns:
        np.ndarray: uint8 frames of shape (T, H, W, 3), RGB.
    """
    p = spec['params']
    t_len, size = spec['num_frames'], spec['size']
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
    if spec['shape'] == 0:  # disk
        dist = np.sqrt(dx**2 + dy**2)
    else:  # axis-aligned square
        dist = np.maximum(np.abs(dx), np.abs(dy))
    # One-pixel soft edge (anti-aliasing), so size varies continuously.
    mask = np.clip(np.float32(radius + 0.5) - dist, 0.0, 1.0)[..., None]
    level = np.where(visual_on_pattern(spec, t_len), ON_LEVEL, OFF_LEVEL)
    colour = _hsv_to_rgb(p['hue_deg'], p['saturation']).astype(np.float32)
    obj = colour * level[:, None, None, None].astype(np.float32)
    frames = background[None] * (1 - mask) + obj * mask

    if p['visual_distractor']:
        # A small dot of random hue on a random walk that flickers at
        # random (aperiodic, so it carries no rhythm).
        pos = rng.uniform(0.15, 0.85, 2) * size + np.cumsum(
            rng.normal(0, 2.0, (t_len, 2)), axis=0)
        pos = np.clip(pos, 2, size - 2)
        visible = rng.random(t_len) < 0.5
        dot_colour = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.3, 1.0))
        d = np.sqrt((xx[None] - pos[:, 0, None, None])**2 +
                    (yy[None] - pos[:, 1, None, None])**2)
        dot = (np.clip(3.0 - d, 0.0, 1.0) * visible[:, None, None])[..., None]
        frames = frames * (1 - dot) + dot_colour * 0.8 * dot

    frames = frames + p['visual_noise_std'] * rng.standard_normal(
        frames.shape, dtype=np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def render_audio(spec: dict, rng: np.random.Generator) -> np.ndarray:
    """Render the waveform of one sample, as fed to the AAC encoder.

    Sample ``n`` holds time ``(n + AAC_PRIMING_SAMPLES) / sample_rate`` of
    the video timeline, which cancels the encoder's priming delay.

    Args:
        spec (dict): Sample record (with ``sample_rate``, ``duration``).
        rng (np.random.Generator): RNG for noise and distractors.

    Returns:
        np.ndarray: float32 mono waveform of shape (N,), N = duration * sr.
    """
    p = spec['params']
    sr = spec['sample_rate']
    num = int(round(spec['duration'] * sr))
    times = (np.arange(num) + AAC_PRIMING_SAMPLES) / sr
    cycles = _audio_cycles(spec, times)
    frac = cycles % 1.0
    on = frac < 0.5
    seg_dur = 0.5 / p['rate_hz']
    u = np.where(on, frac / 0.5, 0.0)  # position inside the tone, [0, 1)
    tau = u * seg_dur  # seconds since the tone started
    f0 = p['f0_hz']
    # Exponential one-octave sweep; the phase is the integral of the
    # instantaneous frequency so the tone has no clicks inside a beat.
    if spec['chirp'] == 0:  # up: f0 -> 2 f0
        phase = 2 * np.pi * f0 * seg_dur / np.log(2) * (2.0**u - 1)
    else:  # down: 2 f0 -> f0
        phase = 2 * np.pi * 2 * f0 * seg_dur / np.log(2) * (1 - 2.0**(-u))
    if spec['timbre'] == 0:
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
            ``path`` (output file), ``seed``, ``skip`` (keep existing file).

    Returns:
        str: ``'skipped'`` or ``'written'``.
    """
    path, spec = task['path'], task['spec']
    if task['skip'] and osp.isfile(path) and osp.getsize(path) > 0:
        return 'skipped'
    rng = np.random.default_rng(
        [task['seed'], SPLIT_CODES[spec['split']],
         int(spec['id'].rsplit('_', 1)[1]), 1])
    frames = render_video(spec, rng)
    audio = render_audio(spec, rng)
    write_av_file(path, frames, audio, spec['fps'], spec['sample_rate'])
    return 'written'


def _write_text(path: str, text: str) -> None:
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def generate(out_dir: str = 'data/synthetic_av',
             num_train: int = 600,
             num_val: int = 150,
             num_test: int = 150,
             seed: int = 0,
             workers: Optional[int] = None,
             size: int = 64,
             fps: int = 8,
             num_frames: int = 16,
             sample_rate: int = 16000,
             visual_factor: str = 'colour',
             audio_factor: str = 'chirp',
             progress: bool = True) -> dict:
    """Generate the synthetic audio-visual dataset.

    Args:
        out_dir (str): Output directory.
        num_train (int): Number of training samples.
        num_val (int): Number of validation samples.
        num_test (int): Number of test samples.
        seed (int): Global seed; the output is a function of the arguments.
        workers (int, optional): Worker processes. Defaults to the number
            of usable CPUs.
        size (int): Frame height and width in pixels.
        fps (int): Frame rate; should be a multiple of 4 so that both beat
            rates (1 and 2 Hz) have whole on / off half-periods.
        num_frames (int): Frames per video (``duration = num_frames/fps``).
        sample_rate (int): Audio sample rate in Hz.
        visual_factor (str): Visual factor in the label, one of
            ``VISUAL_LABEL_FACTORS``.
        audio_factor (str): Audio factor in the label, one of
            ``AUDIO_LABEL_FACTORS``.
        progress (bool): Show an mmengine progress bar (on stdout).

    Returns:
        dict: ``written``, ``skipped`` (file counts) and ``seconds``.
    """
    if visual_factor not in VISUAL_LABEL_FACTORS:
        raise ValueError(f'visual_factor must be one of '
                         f'{VISUAL_LABEL_FACTORS}, got {visual_factor!r}')
    if audio_factor not in AUDIO_LABEL_FACTORS:
        raise ValueError(f'audio_factor must be one of '
                         f'{AUDIO_LABEL_FACTORS}, got {audio_factor!r}')
    if fps % 4:
        raise ValueError(f'fps must be a multiple of 4, got {fps}')
    start_time = time.time()
    counts = dict(train=num_train, val=num_val, test=num_test)
    # Everything that changes any file's content: the split sizes count too,
    # since the balanced label assignment depends on them.
    meta = dict(
        generator_version=GENERATOR_VERSION, seed=seed, num_samples=counts,
        size=size, fps=fps,
        num_frames=num_frames, duration=num_frames / fps,
        sample_rate=sample_rate, video_codec=VIDEO_CODEC,
        audio_codec=AUDIO_CODEC, aac_priming_samples=AAC_PRIMING_SAMPLES,
        label_factors=['rhythm', visual_factor, audio_factor],
        label_formula=f'4 * rhythm + 2 * {visual_factor} + {audio_factor}',
        factors={name: dict(values=list(values), modality=modality,
                            level=level)
                 for name, (values, modality, level) in FACTORS.items()},
        rhythm_hz=list(RHYTHM_HZ))
    factors_path = osp.join(out_dir, 'factors.json')
    # Existing videos are reused only if they were made with the same
    # settings (same meta), otherwise every video is rewritten.
    skip = False
    if osp.isfile(factors_path):
        with open(factors_path) as f:
            skip = json.load(f).get('meta') == meta
    render = dict(fps=fps, num_frames=num_frames, size=size,
                  sample_rate=sample_rate, duration=num_frames / fps)

    all_specs, tasks = [], []
    for split in SPLITS:
        os.makedirs(osp.join(out_dir, 'videos', split), exist_ok=True)
        specs = sample_split_specs(split, counts[split], seed, visual_factor,
                                   audio_factor, fps)
        all_specs.extend(specs)
        for spec in specs:
            tasks.append(dict(
                spec={**spec, **render},
                path=osp.join(out_dir, spec['video']), seed=seed, skip=skip))

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
        lines = [f"{s['video']} {s['label']}\n" for s in all_specs
                 if s['split'] == split]
        _write_text(osp.join(out_dir, f'{split}_list.txt'), ''.join(lines))
    _write_text(osp.join(out_dir, 'classes.txt'),
                '\n'.join(class_names(visual_factor, audio_factor)) + '\n')
    # factors.json last: its presence (with matching meta) marks a finished
    # run whose files may be reused.
    _write_text(factors_path,
                json.dumps(dict(meta=meta, samples=all_specs), indent=1))
    return dict(written=results.count('written'),
                skipped=results.count('skipped'),
                seconds=time.time() - start_time)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the synthetic audio-visual benchmark.')
    parser.add_argument('--out-dir', default='data/synthetic_av')
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-val', type=int, default=150)
    parser.add_argument('--num-test', type=int, default=150)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--workers', type=int, default=None,
        help='worker processes (default: number of usable CPUs)')
    parser.add_argument('--size', type=int, default=64,
                        help='frame height and width')
    parser.add_argument('--fps', type=int, default=8)
    parser.add_argument('--num-frames', type=int, default=16)
    parser.add_argument('--sample-rate', type=int, default=16000)
    parser.add_argument('--visual-factor', default='colour',
                        choices=VISUAL_LABEL_FACTORS,
                        help='visual private factor that enters the label')
    parser.add_argument('--audio-factor', default='chirp',
                        choices=AUDIO_LABEL_FACTORS,
                        help='audio private factor that enters the label')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    summary = generate(
        out_dir=args.out_dir, num_train=args.num_train,
        num_val=args.num_val, num_test=args.num_test, seed=args.seed,
        workers=args.workers, size=args.size, fps=args.fps,
        num_frames=args.num_frames, sample_rate=args.sample_rate,
        visual_factor=args.visual_factor, audio_factor=args.audio_factor)
    print(f"\nsynthetic_av: wrote {summary['written']} and kept "
          f"{summary['skipped']} videos in {args.out_dir} "
          f"({summary['seconds']:.1f} s)", file=sys.stderr)


if __name__ == '__main__':
    main()
