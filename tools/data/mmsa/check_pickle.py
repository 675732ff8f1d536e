"""Validate an MMSA feature pickle (CMU-MOSI / CMU-MOSEI) and print a report.

Usage::

    python tools/data/mmsa/check_pickle.py data/mosi/aligned_50.pkl \
        --dataset mosi

For every split it lists each key's type/shape/dtype, the NaN / +inf / -inf
counts of every feature array, the valid-length statistics and the label
distribution, then checks the MMSA layout: splits ``train``/``valid``/
``test``, the required keys, equal sample counts, the feature widths of
``--dataset`` and finite labels. Problems print as ``ERROR`` and make the exit
status 1; non-finite features print as ``WARN`` (the published MOSEI audio
holds -inf, which the MOSEI config zeroes) unless ``--strict-nonfinite``.

The file is read with the dataset's restricted unpickler, so checking a
downloaded pickle never runs code: a pickle that names any callable besides
numpy's array reconstruction is reported as an ``ERROR`` and not loaded.
"""
import argparse
import sys
from typing import Dict, List, Optional

import numpy as np

from clcr_mm.datasets.mmsa_dataset import (CHANNEL_FIRST_KEYS, SPLITS,
                                           load_mmsa_pickle)

# Feature widths of the MMSA pickles: BERT text, COVAREP audio, Facet vision.
EXPECTED_DIMS = dict(
    mosi=dict(text=768, audio=5, vision=20),
    mosei=dict(text=768, audio=74, vision=35))
REQUIRED_KEYS = ('text', 'audio', 'vision', 'regression_labels', 'id')
FEATURE_KEYS = ('text', 'text_bert', 'audio', 'vision')


def describe(value) -> str:
    """One-line type/shape/dtype description of a pickle value."""
    if isinstance(value, np.ndarray):
        return f'ndarray shape={value.shape} dtype={value.dtype}'
    if isinstance(value, (list, tuple)):
        return f'{type(value).__name__} len={len(value)}'
    return type(value).__name__


def nonfinite_summary(arr: np.ndarray) -> Dict[str, int]:
    """Count NaN, +inf, -inf and affected samples, in sample blocks."""
    out = dict(nan=0, posinf=0, neginf=0, samples=0)
    if not np.issubdtype(arr.dtype, np.floating):
        return out  # integer arrays cannot hold NaN/inf
    for start in range(0, len(arr), 512):
        block = arr[start:start + 512]
        nan, posinf, neginf = (np.isnan(block), np.isposinf(block),
                               np.isneginf(block))
        out['nan'] += int(nan.sum())
        out['posinf'] += int(posinf.sum())
        out['neginf'] += int(neginf.sum())
        bad = (nan | posinf | neginf).reshape(len(block), -1).any(1)
        out['samples'] += int(bad.sum())
    return out


def check_split(name: str, split: dict, dataset: Optional[str],
                strict_nonfinite: bool) -> List[str]:
    """Print the report of one split.

    Args:
        name (str): Split name.
        split (dict): The split's key -> value dict.
        dataset (str, optional): ``'mosi'`` or ``'mosei'`` to check widths.
        strict_nonfinite (bool): Treat non-finite features as errors.

    Returns:
        list[str]: Error messages (empty when the split is fine).
    """
    errors = []
    print(f'[{name}]')
    for key in sorted(split):
        print(f'  {key:24s} {describe(split[key])}')
    for key in REQUIRED_KEYS:
        if key not in split:
            errors.append(f'{name}: missing key {key!r}')
    if 'regression_labels' not in split:
        return errors
    labels = np.asarray(split['regression_labels'],
                        dtype=np.float64).reshape(-1)
    num = len(labels)
    print(f'  samples: {num}')

    for key in FEATURE_KEYS:
        if key not in split:
            continue
        arr = np.asarray(split[key])
        if arr.ndim != 3:
            errors.append(f'{name}/{key}: expected 3 dims, got {arr.shape}')
            continue
        if arr.shape[0] != num:
            errors.append(f'{name}/{key}: {arr.shape[0]} samples, labels '
                          f'have {num}')
        if key in CHANNEL_FIRST_KEYS:
            continue  # token ids: no width / finiteness check needed
        want = EXPECTED_DIMS.get(dataset, {}).get(key)
        if want is not None and arr.shape[2] != want:
            errors.append(f'{name}/{key}: feature dim {arr.shape[2]}, '
                          f'{dataset} expects {want}')
        stats = nonfinite_summary(arr)
        line = (f'  {key}: L={arr.shape[1]} D={arr.shape[2]} '
                f"nan={stats['nan']} +inf={stats['posinf']} "
                f"-inf={stats['neginf']} samples_affected={stats['samples']}")
        print(line)
        if stats['samples']:
            msg = (f'{name}/{key}: {stats["samples"]} samples hold '
                   'non-finite values')
            if strict_nonfinite:
                errors.append(msg)
            else:
                print(f'  WARN {msg}')
        length_key = f'{key}_lengths'
        if length_key in split:
            lengths = np.asarray(split[length_key]).reshape(-1)
            if len(lengths) != num:
                errors.append(f'{name}/{length_key}: {len(lengths)} '
                              f'entries, expected {num}')
            elif num:
                print(f'  {length_key}: min={lengths.min()} '
                      f'mean={lengths.mean():.1f} max={lengths.max()} '
                      f'zero={int((lengths == 0).sum())} '
                      f'over_L={int((lengths > arr.shape[1]).sum())}')

    if num:
        finite = np.isfinite(labels)
        if not finite.all():
            errors.append(f'{name}/regression_labels: '
                          f'{int((~finite).sum())} non-finite labels')
        good = labels[finite]
        if good.size:
            print(f'  labels: min={good.min():.3f} max={good.max():.3f} '
                  f'mean={good.mean():.3f} '
                  f'negative={int((good < 0).sum())} '
                  f'zero={int((good == 0).sum())} '
                  f'positive={int((good > 0).sum())}')
    if 'id' in split:
        ids = [str(i) for i in split['id']]
        if len(ids) != num:
            errors.append(f'{name}/id: {len(ids)} ids, expected {num}')
        duplicates = len(ids) - len(set(ids))
        if duplicates:
            print(f'  WARN {name}/id: {duplicates} duplicate ids')
    return errors


def main(argv: Optional[List[str]] = None) -> int:
    """Run the checks; returns the exit status (0 ok, 1 problems)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('pickle', help='path to aligned_50.pkl / '
                        'unaligned_50.pkl')
    parser.add_argument(
        '--dataset',
        choices=sorted(EXPECTED_DIMS),
        help='check the feature widths of this dataset')
    parser.add_argument(
        '--strict-nonfinite',
        action='store_true',
        help='treat NaN/inf in features as errors')
    args = parser.parse_args(argv)

    try:
        data = load_mmsa_pickle(args.pickle)
    except (OSError, ValueError) as e:
        print(f'ERROR {e}')
        return 1
    print(f'{args.pickle}: top-level keys {sorted(data)}')
    errors = []
    for name in SPLITS:
        if name not in data:
            errors.append(f'missing split {name!r}')
            continue
        errors += check_split(name, data[name], args.dataset,
                              args.strict_nonfinite)
    for msg in errors:
        print(f'ERROR {msg}')
    print('OK' if not errors else f'{len(errors)} problem(s) found')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
