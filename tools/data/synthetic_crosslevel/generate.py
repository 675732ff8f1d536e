"""Generate the seeded cross-level audio-visual benchmark of clcr-mm.

The second embedded benchmark, built to contain what CLCR is about (see
``README.md`` next to this file). Every sample is a real short ``.mp4``
file (MPEG-4 Part 2 video + AAC audio), rendered with the same building
blocks as ``tools/data/synthetic_av`` (``clip_synth.py``) and decoded by the
same pipeline. ``label = 8 * sync + 4 * direction + 2 * colour + timbre``
(16 classes):

* ``sync`` (cross-modal relation): whether the visual pulse and the audio
  beat have the same tempo. Each tempo alone is uniform and independent of
  the label, so no sum of per-modality scores can compute ``sync``;
* ``direction`` (shared, cross-level): rising / falling, seen only at a
  coarse time scale (the object drifts up or down over the whole clip) and
  heard only at a fine one (every tone sweeps up or down in a fraction of a
  second);
* ``colour`` (visual private) and ``timbre`` (audio private): ordinary
  per-modality factors;
* ``shape`` (visual private shortcut): equals ``sync`` in a fraction
  ``--shortcut`` of the training clips, independent of everything in
  val / test.

Usage::

    python tools/data/synthetic_crosslevel/generate.py \\
        [--out-dir data/synthetic_crosslevel] [--num-train 640 \\
        --num-val 160 --num-test 160] [--seed 0] [--shortcut 0.9] \\
        [--workers N]

The output is a pure function of the arguments (not of ``--workers``); a
rerun with the same arguments keeps the clips already written.
"""
import argparse
import itertools
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                            'synthetic_av'))
import clip_synth as cs  # noqa: E402

GENERATOR_VERSION = 2

# Binary factors: name -> (value names, modality, how it is planted).
# ``modality`` names the input stream(s) that carry the factor; 'relation'
# means neither stream alone carries any information about it.
FACTORS: Dict[str, Tuple[Tuple[str, str], str, str]] = {
    'sync': (('different', 'same'), 'relation',
             'visual tempo == audio tempo'),
    'direction': (('rising', 'falling'), 'shared',
                  'visual coarse (drift over the clip), audio fine (sweep '
                  'inside every tone)'),
    'colour': (('warm', 'cool'), 'visual', 'shallow'),
    'timbre': (('sine', 'harmonic'), 'audio', 'mid'),
    'visual_tempo': (('slow', 'fast'), 'visual',
                     'temporal (whole-frame flash)'),
    'audio_tempo': (('slow', 'fast'), 'audio', 'temporal (mid)'),
    'shape': (('disk', 'square'), 'visual',
              'deep; shortcut: equals sync in --shortcut of the train clips'),
    'pitch': (('low', 'high'), 'audio', 'shallow'),
}
# The label's bits, most significant first.
LABEL_FACTORS = ('sync', 'direction', 'colour', 'timbre')
LABEL_FORMULA = '8 * sync + 4 * direction + 2 * colour + timbre'
NUM_CLASSES = 16
# The generative factors each modality renders (everything else about a
# clip is continuous nuisance or noise). ``sync`` and ``direction`` are
# functions of these: sync = (visual_tempo == audio_tempo).
VISIBLE = dict(
    rgb=('visual_tempo', 'direction', 'colour', 'shape'),
    audio=('audio_tempo', 'direction', 'timbre', 'pitch'))
# Best test accuracy reachable (labels balanced, nuisances independent, as
# in val / test): derived in README.md and checked from the label table in
# tests/test_synthetic_crosslevel.py.
CEILINGS = dict(rgb_only=0.25, audio_only=0.25, late_fusion=0.75,
                fusion=1.0)

TEMPO_HZ = (1.0, 2.0)  # slow, fast: blinks or beats per second
# Brightness the whole background gains in the visual "on" frames. A small
# blinking object alone left the visual tempo out of rgb's pooled features
# (docs/results/README.md, section 6): a relation gives no per-modality
# gradient, so its halves must be salient enough to be encoded unasked.
BACKGROUND_FLASH = 0.4
# Vertical object position (fraction of the frame) at the start and the end
# of a clip: rising objects move up (to smaller y) by 0.2-0.5 of the frame.
LOW_Y, HIGH_Y = (0.6, 0.75), (0.25, 0.4)


def label_of(sync: int, direction: int, colour: int, timbre: int) -> int:
    """The class index of a combination of the label's factors."""
    return 8 * sync + 4 * direction + 2 * colour + timbre


def class_names() -> List[str]:
    """Names of the 16 classes, indexed by label.

    Returns:
        list[str]: ``'<sync>-<direction>-<colour>-<timbre>'`` per label.
    """
    names = [''] * NUM_CLASSES
    for bits in itertools.product((0, 1), repeat=len(LABEL_FACTORS)):
        names[label_of(*bits)] = '-'.join(
            FACTORS[name][0][bit] for name, bit in zip(LABEL_FACTORS, bits))
    return names


def sample_split_specs(split: str, num: int, seed: int, fps: int,
                       shortcut: float) -> List[dict]:
    """Draw the factors and rendering parameters of one split.

    Args:
        split (str): One of ``clip_synth.SPLITS``.
        num (int): Number of samples.
        seed (int): Global seed.
        fps (int): Video frame rate, for the visual phase in frames.
        shortcut (float): In the train split, the fraction of clips whose
            ``shape`` equals ``sync``; ignored in val / test, where
            ``shape`` is balanced and independent.

    Returns:
        list[dict]: One JSON-serialisable record per sample with ``id``,
        ``split``, ``video``, ``label``, ``class_name``, every binary factor
        of ``FACTORS`` (int) and ``params``.
    """
    rng = np.random.default_rng([seed, cs.SPLIT_CODES[split]])
    labels = cs.balanced(rng, num, NUM_CLASSES)
    factors = {name: (labels >> (len(LABEL_FACTORS) - 1 - bit)) & 1
               for bit, name in enumerate(LABEL_FACTORS)}
    # Each tempo alone is a fair coin independent of the label: only their
    # relation carries sync.
    factors['visual_tempo'] = cs.balanced(rng, num, 2)
    factors['audio_tempo'] = np.where(factors['sync'] == 1,
                                      factors['visual_tempo'],
                                      1 - factors['visual_tempo'])
    factors['pitch'] = cs.balanced(rng, num, 2)
    if split == 'train':
        # Exactly round(shortcut * num) clips agree, at random positions.
        agree = rng.permutation(np.arange(num) < round(shortcut * num))
        factors['shape'] = np.where(agree, factors['sync'],
                                    1 - factors['sync'])
    else:
        factors['shape'] = cs.balanced(rng, num, 2)
    names = class_names()
    specs = []
    for i in range(num):
        f = {name: int(factors[name][i]) for name in FACTORS}
        visual_hz = TEMPO_HZ[f['visual_tempo']]
        audio_hz = TEMPO_HZ[f['audio_tempo']]
        # Visual phase on the frame grid (every frame clearly on or off);
        # the audio beat's phase is independent of it.
        start_y, end_y = (LOW_Y, HIGH_Y) if f['direction'] == 0 else (
            HIGH_Y, LOW_Y)
        params = dict(
            visual_rate_hz=visual_hz,
            audio_rate_hz=audio_hz,
            visual_phase_frames=int(rng.integers(0, round(fps / visual_hz))),
            audio_phase_cycles=float(rng.uniform(0.0, 1.0)),
            **cs.draw_object_params(rng, f['colour'], start_y, end_y),
            **cs.draw_sound_params(rng, f['pitch']))
        sample_id = f'{split}_{i:05d}'
        specs.append(dict(
            id=sample_id, split=split,
            video=f'videos/{split}/{sample_id}.mp4',
            label=int(labels[i]), class_name=names[labels[i]],
            **f, params=params))
    return specs


def audio_cycles(spec: dict, times: np.ndarray) -> np.ndarray:
    """Audio beat cycles elapsed at each time (seconds, video timeline).

    Args:
        spec (dict): Sample record.
        times (np.ndarray): Times in seconds, any shape.

    Returns:
        np.ndarray: Cycles, same shape as ``times``; the tone sounds where
        the fractional part is below 0.5.
    """
    p = spec['params']
    return times * p['audio_rate_hz'] + p['audio_phase_cycles']


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
    on = cs.blink_pattern(spec['num_frames'], spec['fps'],
                          p['visual_rate_hz'], p['visual_phase_frames'])
    frames = cs.render_frames(p, spec['shape'], on, spec['size'], rng,
                              background_flash=BACKGROUND_FLASH)
    times = cs.audio_times(spec['duration'], spec['sample_rate'])
    # The tone's sweep direction is the audio side of `direction`.
    audio = cs.render_tone_track(p, times, audio_cycles(spec, times),
                                 p['audio_rate_hz'], spec['direction'],
                                 spec['timbre'], spec['sample_rate'], rng)
    return frames, audio


def generate(out_dir: str = 'data/synthetic_crosslevel',
             num_train: int = 640,
             num_val: int = 160,
             num_test: int = 160,
             seed: int = 0,
             shortcut: float = 0.9,
             workers: Optional[int] = None,
             size: int = 64,
             fps: int = 8,
             num_frames: int = 16,
             sample_rate: int = 16000,
             progress: bool = True) -> dict:
    """Generate the cross-level audio-visual dataset.

    Args:
        out_dir (str): Output directory.
        num_train (int): Number of training samples.
        num_val (int): Number of validation samples.
        num_test (int): Number of test samples.
        seed (int): Global seed; the output is a function of the arguments.
        shortcut (float): Fraction of training clips whose shape equals
            ``sync``, in [0, 1]; 0.5 plants no shortcut.
        workers (int, optional): Worker processes. Defaults to the number
            of usable CPUs.
        size (int): Frame height and width in pixels.
        fps (int): Frame rate, a multiple of 4 so that both tempos have
            whole on / off half-periods.
        num_frames (int): Frames per video (``duration = num_frames/fps``).
        sample_rate (int): Audio sample rate in Hz.
        progress (bool): Show an mmengine progress bar (on stdout).

    Returns:
        dict: ``written``, ``skipped`` (file counts) and ``seconds``.
    """
    if fps % 4:
        raise ValueError(f'fps must be a multiple of 4, got {fps}')
    if not 0.0 <= shortcut <= 1.0:
        raise ValueError(f'shortcut must be in [0, 1], got {shortcut}')
    counts = dict(train=num_train, val=num_val, test=num_test)
    meta = dict(
        generator_version=GENERATOR_VERSION, seed=seed, num_samples=counts,
        shortcut=shortcut, size=size, fps=fps, num_frames=num_frames,
        duration=num_frames / fps, sample_rate=sample_rate,
        video_codec=cs.VIDEO_CODEC, audio_codec=cs.AUDIO_CODEC,
        aac_priming_samples=cs.AAC_PRIMING_SAMPLES,
        label_factors=list(LABEL_FACTORS), label_formula=LABEL_FORMULA,
        factors={name: dict(values=list(values), modality=modality,
                            level=level)
                 for name, (values, modality, level) in FACTORS.items()},
        visible=VISIBLE, ceilings=CEILINGS, tempo_hz=list(TEMPO_HZ),
        background_flash=BACKGROUND_FLASH)
    specs = [spec for split in cs.SPLITS for spec in sample_split_specs(
        split, counts[split], seed, fps, shortcut)]
    render_settings = dict(fps=fps, num_frames=num_frames, size=size,
                           sample_rate=sample_rate, duration=num_frames / fps)
    return cs.write_dataset(out_dir, meta, specs, render_sample,
                            render_settings, class_names(), seed, workers,
                            progress)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the cross-level audio-visual benchmark.')
    parser.add_argument('--out-dir', default='data/synthetic_crosslevel')
    parser.add_argument('--num-train', type=int, default=640)
    parser.add_argument('--num-val', type=int, default=160)
    parser.add_argument('--num-test', type=int, default=160)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--shortcut', type=float, default=0.9,
        help='fraction of training clips whose shape equals sync '
        '(0.5: no shortcut)')
    parser.add_argument(
        '--workers', type=int, default=None,
        help='worker processes (default: number of usable CPUs)')
    parser.add_argument('--size', type=int, default=64,
                        help='frame height and width')
    parser.add_argument('--fps', type=int, default=8)
    parser.add_argument('--num-frames', type=int, default=16)
    parser.add_argument('--sample-rate', type=int, default=16000)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    summary = generate(
        out_dir=args.out_dir, num_train=args.num_train,
        num_val=args.num_val, num_test=args.num_test, seed=args.seed,
        shortcut=args.shortcut, workers=args.workers, size=args.size,
        fps=args.fps, num_frames=args.num_frames,
        sample_rate=args.sample_rate)
    print(f"\nsynthetic_crosslevel: wrote {summary['written']} and kept "
          f"{summary['skipped']} videos in {args.out_dir} "
          f"({summary['seconds']:.1f} s)", file=sys.stderr)


if __name__ == '__main__':
    main()
