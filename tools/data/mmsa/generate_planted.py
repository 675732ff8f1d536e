"""Write a planted CMU-MOSI / MOSEI replica in the MMSA pickle format.

Every split holds MMSA's keys, dims, dtypes and zero padding after each
sample's valid length, so the file goes through ``MMSAFeatureDataset``,
``check_pickle.py`` and MMSA's own loader unchanged. The label is planted
from three per-sample factors, each drawn uniformly from [-1, 1]:

* ``planted_text`` t: carried by the text features (and by the token ids of
  ``text_bert``: positive-word ids are likelier when t > 0);
* ``planted_audio`` a and ``planted_vision`` v: carried by the audio and
  vision features;

``regression_labels = clip(3 * (w_text * t + w_inter * a * v) + noise, -3,
3)``. The cross-modal interaction ``a * v`` is invisible to each modality
alone (its mean given a, or given v, is 0), so an additive late fusion of
unimodal predictions can learn at most the text part, while a model that
fuses audio and vision can learn all of it. Each feature step is
``latent * amplitude * u_m + noise`` on the valid steps (``u_m`` a fixed
random unit direction per modality), zeros after them (or noise with
``--pad-noise``, to check that models ignore the padding).

Usage::

    python tools/data/mmsa/generate_planted.py data/planted_mosi/aligned_50.pkl
    python tools/data/mmsa/generate_planted.py \\
        data/planted_mosi/unaligned_50.pkl --layout unaligned

The output is a pure function of the arguments (seeded numpy generator).
"""
import argparse
import os
import os.path as osp
import pickle
from typing import Dict, List, Optional, Sequence

import numpy as np

# Feature widths of the published pickles (BERT text, COVAREP, Facet).
DIMS = dict(
    mosi=dict(text=768, audio=5, vision=20),
    mosei=dict(text=768, audio=74, vision=35))
# (text, audio, vision) stored lengths of the published pickles.
LENGTHS = dict(
    aligned=dict(mosi=(50, 50, 50), mosei=(50, 50, 50)),
    unaligned=dict(mosi=(50, 375, 500), mosei=(50, 500, 500)))
SPLIT_CODES = dict(train=0, valid=1, test=2)
# BERT ids: [CLS], [SEP], and two disjoint "word" ranges.
CLS_ID, SEP_ID = 101, 102
POSITIVE_IDS, NEGATIVE_IDS = (2000, 3000), (3000, 4000)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write a planted MMSA-format pickle')
    parser.add_argument('out', help='output .pkl path')
    parser.add_argument('--dataset', choices=sorted(DIMS), default='mosi')
    parser.add_argument('--layout', choices=sorted(LENGTHS),
                        default='aligned')
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-valid', type=int, default=150)
    parser.add_argument('--num-test', type=int, default=300)
    parser.add_argument('--w-text', type=float, default=0.5,
                        help='weight of the text factor in the label')
    parser.add_argument('--w-inter', type=float, default=0.5,
                        help='weight of the audio x vision interaction')
    parser.add_argument('--amplitude', type=float, default=1.0,
                        help='planted signal per step, in noise std units')
    parser.add_argument('--label-noise', type=float, default=0.1)
    parser.add_argument('--min-valid', type=float, default=0.2,
                        help='shortest valid length, as a fraction of the '
                        'stored length')
    parser.add_argument('--pad-noise', action='store_true',
                        help='fill the steps after each valid length with '
                        'noise instead of zeros')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for name in ('num_train', 'num_valid', 'num_test'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if not 0 < args.min_valid <= 1:
        parser.error('--min-valid must be in (0, 1]')
    return args


def _features(rng: np.random.Generator, latent: np.ndarray,
              direction: np.ndarray, lengths: np.ndarray, stored: int,
              amplitude: float, pad_noise: bool) -> np.ndarray:
    """(N, stored, D) float32: planted signal + noise, padded after
    ``lengths``."""
    num, dim = len(latent), len(direction)
    feats = rng.standard_normal((num, stored, dim), dtype=np.float32)
    signal = (amplitude * latent)[:, None, None] * direction[None, None]
    valid = np.arange(stored)[None] < lengths[:, None]
    feats += (signal * valid[..., None]).astype(np.float32)
    if not pad_noise:
        feats *= valid[..., None]
    return feats


def _text_bert(rng: np.random.Generator, text: np.ndarray,
               lengths: np.ndarray, stored: int) -> np.ndarray:
    """(N, 3, stored) ids / attention mask / segment ids, MMSA's layout."""
    num = len(text)
    positive = rng.random((num, stored)) < ((1 + text) / 2)[:, None]
    ids = np.where(positive, rng.integers(*POSITIVE_IDS, (num, stored)),
                   rng.integers(*NEGATIVE_IDS, (num, stored)))
    ids[:, 0] = CLS_ID
    rows = np.arange(num)
    ids[rows, lengths - 1] = SEP_ID
    mask = np.arange(stored)[None] < lengths[:, None]
    out = np.zeros((num, 3, stored), dtype=np.float64)
    out[:, 0] = ids * mask
    out[:, 1] = mask
    return out


def make_split(split: str, num: int, args: argparse.Namespace,
               directions: Dict[str, np.ndarray]) -> dict:
    """One split in MMSA's layout, with the planted factors attached."""
    rng = np.random.default_rng([args.seed, SPLIT_CODES[split]])
    stored = dict(zip(('text', 'audio', 'vision'),
                      LENGTHS[args.layout][args.dataset]))
    factors = {m: rng.uniform(-1, 1, num) for m in stored}
    lengths = {
        m: rng.integers(max(2, int(args.min_valid * n)), n + 1, num)
        for m, n in stored.items()
    }
    label = 3 * (args.w_text * factors['text'] +
                 args.w_inter * factors['audio'] * factors['vision'])
    label = np.clip(label + args.label_noise * rng.standard_normal(num),
                    -3, 3).astype(np.float32)
    out = {
        m: _features(rng, factors[m], directions[m], lengths[m], stored[m],
                     args.amplitude, args.pad_noise)
        for m in stored
    }
    out.update({
        'text_bert': _text_bert(rng, factors['text'], lengths['text'],
                                stored['text']),
        'audio_lengths': lengths['audio'].tolist(),
        'vision_lengths': lengths['vision'].tolist(),
        'regression_labels': label,
        'classification_labels': (np.sign(label) + 1).astype(np.float32),
        'annotations': [['Negative', 'Neutral', 'Positive'][int(c)]
                        for c in np.sign(label) + 1],
        'id': [f'planted{split}{i:05d}$_$1' for i in range(num)],
        'raw_text': [f'planted {split} sample {i}' for i in range(num)],
    })
    for m, values in factors.items():
        out[f'planted_{m}'] = values.astype(np.float32)
    return out


def generate(args: argparse.Namespace) -> Dict[str, dict]:
    """Build all three splits.

    Returns:
        dict: ``{'train': ..., 'valid': ..., 'test': ...}``.
    """
    rng = np.random.default_rng([args.seed, 99])
    directions = {}
    for m, dim in DIMS[args.dataset].items():
        u = rng.standard_normal(dim)
        directions[m] = (u / np.linalg.norm(u)).astype(np.float32)
    sizes = dict(train=args.num_train, valid=args.num_valid,
                 test=args.num_test)
    return {s: make_split(s, n, args, directions) for s, n in sizes.items()}


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    args = parse_args(argv)
    data = generate(args)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump(data, f, protocol=4)
    os.replace(tmp, args.out)  # an existing file is always complete
    sizes = ', '.join(f'{s} {len(d["id"])}' for s, d in data.items())
    lines = [f'{args.out}: {args.dataset} {args.layout}, {sizes}']
    for split, d in data.items():
        y = d['regression_labels']
        lines.append(f'  {split}: label mean {y.mean():+.2f} std '
                     f'{y.std():.2f}; audio steps {d["audio"].shape[1]}, '
                     f'vision steps {d["vision"].shape[1]}')
    print('\n'.join(lines))
    return lines


if __name__ == '__main__':
    main()
