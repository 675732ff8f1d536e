"""Turn the synthetic audio-visual benchmark into an RGB + optical-flow
rawframe dataset, so the two-stream project trains on a CPU in minutes.

The videos of ``data/synthetic_av`` go through the very tool that prepares
UCF101 (``tools/data/ucf101/extract_rgb_flow.py``: RGB JPEGs + quantised
Farneback flow in mmaction2's rawframe layout), and list files in
mmaction2's rawframe format are written next to them::

    data/synthetic_rgb_flow/
    ├── rawframes/{train,val,test}/<clip>/   img_*.jpg, flow_{x,y}_*.jpg
    ├── train_list.txt   # "train/train_00000 16 1": dir, frames, label
    ├── val_list.txt
    ├── test_list.txt
    └── classes.txt

Labels: optical flow and RGB frames cannot hear, so the audio-only ``chirp``
bit of the synthetic label is dropped. The visual label is
``2 * rhythm + colour`` (4 classes: slow/fast blink x warm/cool object),
read from ``factors.json``. RGB sees both factors; flow sees the blink (as
brightness-change motion) and the object's motion, not its colour.

Usage (repository root)::

    python tools/data/synthetic_av/generate.py
    python projects/two_stream_tsn/tools/build_synthetic_rgb_flow.py \
        --src data/synthetic_av --out data/synthetic_rgb_flow --workers 2
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
from types import ModuleType
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
SPLITS = ('train', 'val', 'test')
VISUAL_CLASSES = ('slow-warm', 'slow-cool', 'fast-warm', 'fast-cool')


def load_extractor() -> ModuleType:
    """Import ``tools/data/ucf101/extract_rgb_flow.py`` (not a package).

    Imported under its plain module name with its directory on ``sys.path``,
    so that multiprocessing workers can unpickle its worker function.
    """
    here = osp.join(REPO_ROOT, 'tools', 'data', 'ucf101')
    path = osp.join(here, 'extract_rgb_flow.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'UCF101 extraction tool not found: {path}')
    if here not in sys.path:
        sys.path.insert(0, here)
    spec = importlib.util.spec_from_file_location('extract_rgb_flow', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules['extract_rgb_flow'] = module
    spec.loader.exec_module(module)
    return module


def visual_label(sample: dict) -> int:
    """``2 * rhythm + colour`` of one ``factors.json`` record.

    Args:
        sample (dict): A record of ``factors.json['samples']``.

    Returns:
        int: The visual class in ``[0, 4)``.
    """
    return 2 * int(sample['rhythm']) + int(sample['colour'])


def write_lists(src: str, out: str) -> Dict[str, int]:
    """Write ``<split>_list.txt`` and ``classes.txt`` under ``out``.

    Args:
        src (str): The synthetic_av root (with ``factors.json`` and the
            ``<split>_list.txt`` files).
        out (str): Output root, whose ``rawframes`` are already extracted.

    Returns:
        dict[str, int]: Number of clips per split.

    Raises:
        FileNotFoundError: A listed clip has no complete rawframes.
        KeyError: A listed video has no record in ``factors.json``.
    """
    factors_path = osp.join(src, 'factors.json')
    with open(factors_path) as f:
        records = {s['video']: s for s in json.load(f)['samples']}
    counts = {}
    for split in SPLITS:
        list_path = osp.join(src, f'{split}_list.txt')
        lines: List[str] = []
        with open(list_path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                video = line.split()[0]
                if video not in records:
                    raise KeyError(f'{list_path}, line {lineno}: {video} has '
                                   f'no record in {factors_path}')
                # videos/<split>/<name>.mp4 -> <split>/<name>
                clip = osp.splitext(osp.relpath(video, 'videos'))[0]
                clip_dir = osp.join(out, 'rawframes', clip)
                num = len([
                    n for n in os.listdir(clip_dir)
                    if n.startswith('img_') and n.endswith('.jpg')
                ]) if osp.isdir(clip_dir) else 0
                if num < 2:
                    raise FileNotFoundError(
                        f'{clip_dir}: no extracted frames for {video} '
                        f'({list_path}, line {lineno})')
                lines.append(f'{clip} {num} {visual_label(records[video])}')
        with open(osp.join(out, f'{split}_list.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        counts[split] = len(lines)
    with open(osp.join(out, 'classes.txt'), 'w') as f:
        f.write('\n'.join(VISUAL_CLASSES) + '\n')
    return counts


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--src', default='data/synthetic_av',
                        help='synthetic_av root made by generate.py')
    parser.add_argument('--out', default='data/synthetic_rgb_flow',
                        help='output root')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--algo', default='farneback',
                        choices=('farneback', 'tvl1'))
    # The synthetic object moves about a pixel per frame on 64x64 frames;
    # a 5 px bound keeps that motion well above JPEG quantisation.
    parser.add_argument('--bound', type=float, default=5.0,
                        help='flow clip bound in pixels (UCF101 uses 20)')
    parser.add_argument('--force', action='store_true',
                        help='re-extract clips that are already done')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(osp.join(args.src, 'factors.json')):
        print(f'error: {args.src} is not a synthetic_av root (no '
              'factors.json); run tools/data/synthetic_av/generate.py first',
              file=sys.stderr)
        return 2
    extractor = load_extractor()
    report = extractor.extract_all(
        osp.join(args.src, 'videos'),
        osp.join(args.out, 'rawframes'),
        algo=args.algo,
        bound=args.bound,
        workers=args.workers,
        force=args.force,
        ext='.mp4')
    if report['failed']:
        for item in report['failed']:
            print(f"error: {item['video']}: {item['error']}", file=sys.stderr)
        return 1
    counts = write_lists(args.src, args.out)
    print(f'synthetic_rgb_flow: {counts} clips, 4 classes, in {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
