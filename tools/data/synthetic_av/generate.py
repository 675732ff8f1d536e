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
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import clip_synth as cs  # noqa: E402

GENERATOR_VERSION = 1

SPLITS = cs.SPLITS

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
    rng = np.random.default_rng([seed, cs.SPLIT_CODES[split]])
    labels = cs.balanced(rng, num, 8)
    factors = {name: cs.balanced(rng, num, 2) for name in FACTORS}
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
        # Visual phase on the frame grid (so every sampled frame is clearly
        # on or off); the audio phase follows after a random time offset.
        visual_phase_frames = int(rng.integers(0, round(period_frames)))
        av_offset_s = float(rng.uniform(0.0, 1.0 / rate))
        params = dict(
            rate_hz=rate,
            visual_phase_frames=visual_phase_frames,
            av_offset_s=av_offset_s,
            **cs.draw_object_params(rng, f['colour']),
            **cs.draw_sound_params(rng, f['pitch']))
        sample_id = f'{split}_{i:05d}'
        specs.append(dict(
            id=sample_id, split=split,
            video=f'videos/{split}/{sample_id}.mp4',
            label=int(labels[i]), class_name=names[labels[i]],
            **f, params=params))
    return specs


def visual_on_pattern(spec: dict, num_frames: int) -> np.ndarray:
    """Whether the object is bright in each frame.

    Args:
        spec (dict): Sample record from :func:`sample_split_specs`.
        num_frames (int): Number of frames.

    Returns:
        np.ndarray: Bool array of shape (num_frames,).
    """
    p = spec['params']
    return cs.blink_pattern(num_frames, spec['fps'], p['rate_hz'],
                            p['visual_phase_frames'])


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


def render_sample(spec: dict,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Render the frames and the waveform of one sample.

    Args:
        spec (dict): Sample record with the rendering settings (``fps``,
            ``num_frames``, ``size``, ``sample_rate``, ``duration``).
        rng (np.random.Generator): The sample's noise RNG.

    Returns:
        tuple[np.ndarray, np.ndarray]: uint8 frames (T, H, W, 3) and the
        float32 waveform (N,) fed to the AAC encoder.
    """
    p = spec['params']
    frames = cs.render_frames(p, spec['shape'],
                              visual_on_pattern(spec, spec['num_frames']),
                              spec['size'], rng)
    times = cs.audio_times(spec['duration'], spec['sample_rate'])
    audio = cs.render_tone_track(p, times, _audio_cycles(spec, times),
                                 p['rate_hz'], spec['chirp'], spec['timbre'],
                                 spec['sample_rate'], rng)
    return frames, audio


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
    counts = dict(train=num_train, val=num_val, test=num_test)
    # Everything that changes any file's content: the split sizes count too,
    # since the balanced label assignment depends on them.
    meta = dict(
        generator_version=GENERATOR_VERSION, seed=seed, num_samples=counts,
        size=size, fps=fps,
        num_frames=num_frames, duration=num_frames / fps,
        sample_rate=sample_rate, video_codec=cs.VIDEO_CODEC,
        audio_codec=cs.AUDIO_CODEC, aac_priming_samples=cs.AAC_PRIMING_SAMPLES,
        label_factors=['rhythm', visual_factor, audio_factor],
        label_formula=f'4 * rhythm + 2 * {visual_factor} + {audio_factor}',
        factors={name: dict(values=list(values), modality=modality,
                            level=level)
                 for name, (values, modality, level) in FACTORS.items()},
        rhythm_hz=list(RHYTHM_HZ))
    specs = [spec for split in SPLITS for spec in sample_split_specs(
        split, counts[split], seed, visual_factor, audio_factor, fps)]
    render_settings = dict(fps=fps, num_frames=num_frames, size=size,
                           sample_rate=sample_rate, duration=num_frames / fps)
    return cs.write_dataset(out_dir, meta, specs, render_sample,
                            render_settings,
                            class_names(visual_factor, audio_factor), seed,
                            workers, progress)


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
