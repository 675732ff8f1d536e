"""Prepare CREMA-D (6 emotions, audio + face video) for clcr_mm.

Inputs under ``--root`` (default ``data/cremad``), the official release::

    AudioWAV/1001_DFA_ANG_XX.wav ...    7442 wavs (16 kHz mono)
    VideoFlash/1001_DFA_ANG_XX.flv ...  7442 flv videos (480x360, 30 fps)

A file name is ``<actor>_<sentence>_<emotion>_<level>``; the label is the
emotion code, the 3rd field (classes in alphabetical order, as in OGM-GE):
ANG=0, DIS=1, FEA=2, HAP=3, NEU=4, SAD=5.

Split, one of:

* default: a seeded random split of all clips, ``--test-fraction 0.1``
  held out for testing (7442 clips -> 6698 train / 744 test, the sizes the
  OGM-GE line of work reports), stratified by emotion so both parts keep
  the class balance. Actors are not kept apart (speakers appear in both
  parts), as in that literature.
* ``--train-list`` and ``--test-list`` (optionally ``--val-list``): one
  clip per line, as a file stem (``1001_DFA_ANG_XX``, an extension is
  ignored) optionally followed by ``,<EMOTION>`` -- so OGM-GE's
  ``train.csv``/``test.csv`` can be passed as they are.

The val list, on which training picks its best checkpoint, is held out
from the training part (``--val-fraction``, default 0.1, seeded and
stratified by emotion; or ``--val-list``), so the test split gives the final
number only. ``--val-fraction 0`` makes val = test, as the literature (which
has no validation set and reports test accuracy) does. Writes::

    <root>/{train,val,test}_list.txt  "VideoFlash/x.flv AudioWAV/x.wav label"
    <root>/classes.txt, <root>/prepare_report.json,
    <root>/.prepare_probe_cache.json

Example::

    python tools/data/cremad/prepare.py --root data/cremad --workers 8
"""
import argparse
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

# tools/ is not a package: the preparation code the tools share is
# tools/data/av_prepare.py, imported from its folder.
if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import av_prepare as avp  # noqa: E402

EMOTIONS = ('ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD')
# Share of the training part held out for validation: the checkpoint is
# picked there, so the test split stays for the final number.
DEFAULT_VAL_FRACTION = 0.1
STEM = re.compile(r'^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_'
                  r'(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{1,2})$')
AUDIO_DIR, VIDEO_DIR = 'AudioWAV', 'VideoFlash'
AUDIO_EXT, VIDEO_EXT = '.wav', '.flv'


def emotion_label(stem: str, path: str, lineno: Optional[int] = None,
                  line: Optional[str] = None) -> int:
    """Label of a CREMA-D clip from its file stem.

    Args:
        stem (str): E.g. ``'1001_DFA_ANG_XX'``.
        path (str): File to name in an error (the clip itself or the split
            file listing it).
        lineno (int, optional): Line of ``path`` in an error.
        line (str, optional): The line, quoted in an error.

    Returns:
        int: Index of the emotion code in :data:`EMOTIONS`.

    Raises:
        AnnotationError: Not a CREMA-D name, or an unknown emotion code.
    """
    match = STEM.match(stem)
    if match is None:
        raise avp.AnnotationError(
            path, f'{stem!r} is not a CREMA-D clip name '
            '(<actor>_<sentence>_<emotion>_<level>, e.g. 1001_DFA_ANG_XX)',
            lineno, line)
    if match['emotion'] not in EMOTIONS:
        raise avp.AnnotationError(
            path, f'unknown class: emotion code {match["emotion"]!r} of '
            f'{stem!r} is not one of {EMOTIONS}', lineno, line)
    return EMOTIONS.index(match['emotion'])


def scan_tree(directory: str, ext: str) -> Dict[str, str]:
    """Map the clip stems of one official folder to their files.

    Args:
        directory (str): ``AudioWAV`` or ``VideoFlash``.
        ext (str): ``'.wav'`` or ``'.flv'``.

    Returns:
        dict[str, str]: Stem -> absolute path.

    Raises:
        FileNotFoundError: The folder does not exist.
        AnnotationError: A file with a malformed name or unknown emotion.
    """
    if not osp.isdir(directory):
        raise FileNotFoundError(f'CREMA-D folder not found: {directory}')
    stems = {}
    for name in sorted(os.listdir(directory)):
        stem, file_ext = osp.splitext(name)
        if file_ext.lower() != ext or name.startswith('.'):
            continue
        path = osp.abspath(osp.join(directory, name))
        emotion_label(stem, path)  # validates the name
        stems[stem] = path
    return stems


def read_split_file(path: str) -> List[Tuple[str, str]]:
    """Parse a user split file: ``stem`` or ``stem,EMOTION`` per line.

    Args:
        path (str): The split file.

    Returns:
        list[tuple[str, str]]: ``(stem, 'file:line')`` in file order.

    Raises:
        FileNotFoundError: The file does not exist.
        AnnotationError: A malformed line, an unknown emotion, a given
            emotion that disagrees with the name, or a clip listed twice.
    """
    out, seen = [], {}
    for lineno, line in avp.read_lines(path, 'split file',
                                       skip_comments=True):
        fields = [f.strip() for f in re.split(r'[,\s]+', line) if f.strip()]
        if len(fields) not in (1, 2):
            raise avp.AnnotationError(
                path, 'expected "<stem>" or "<stem>,<EMOTION>"', lineno, line)
        stem = fields[0]
        if osp.splitext(stem)[1].lower() in (AUDIO_EXT, VIDEO_EXT):
            stem = osp.splitext(osp.basename(stem))[0]
        label = emotion_label(stem, path, lineno, line)
        if len(fields) == 2 and fields[1] != EMOTIONS[label]:
            raise avp.AnnotationError(
                path, f'emotion {fields[1]!r} disagrees with the file name '
                f'({EMOTIONS[label]})', lineno, line)
        if stem in seen:
            raise avp.AnnotationError(
                path, f'{stem} already listed at line {seen[stem]}', lineno,
                line)
        seen[stem] = lineno
        out.append((stem, f'{path}:{lineno}'))
    return out


def _check_disjoint(parts: Dict[str, List[Tuple[str, str]]]) -> None:
    """Raise if a clip is in two split files (train/test leakage)."""
    where: Dict[str, str] = {}
    for split, items in parts.items():
        for stem, source in items:
            if stem in where:
                path, lineno = source.rsplit(':', 1)
                raise avp.AnnotationError(
                    path, f'{stem} is also listed at {where[stem]}: the '
                    'splits must not share clips', int(lineno))
            where[stem] = source


def prepare(root: str,
            audio_dir: Optional[str] = None,
            video_dir: Optional[str] = None,
            train_list: Optional[str] = None,
            test_list: Optional[str] = None,
            val_list: Optional[str] = None,
            test_fraction: float = 0.1,
            val_fraction: Optional[float] = None,
            seed: int = 0,
            stratify: bool = True,
            **probe_options) -> Dict:
    """Build the CREMA-D lists.

    Args:
        root (str): Dataset root; outputs go here.
        audio_dir (str, optional): Wav folder; ``<root>/AudioWAV``.
        video_dir (str, optional): Flv folder; ``<root>/VideoFlash``.
        train_list (str, optional): User split file of the train split.
        test_list (str, optional): User split file of the test split
            (needed with ``train_list``).
        val_list (str, optional): User split file of the val split.
        test_fraction (float): Seeded split: share of all clips held out
            for testing.
        val_fraction (float, optional): Share of the training part (the
            seeded split's or ``train_list``'s) held out for validation,
            seeded with ``seed + 1`` and stratified like the test split; 0
            makes val = test. Defaults to :data:`DEFAULT_VAL_FRACTION`, or
            0 when ``val_list`` is given.
        seed (int): Seed of the random split.
        stratify (bool): Stratify the random split by emotion.
        **probe_options: ``workers``, ``force_probe`` and ``progress`` of
            :func:`av_prepare.build_lists`.

    Returns:
        dict: The report of :func:`av_prepare.build_lists`.

    Raises:
        FileNotFoundError: A folder or split file is missing.
        AnnotationError: A malformed file name or split line, an unknown
            emotion, or a clip in two split files.
        ValueError: Only one of ``train_list``/``test_list`` given, or
            ``val_list`` together with ``val_fraction``, or a training
            part too small to hold out a validation clip.
    """
    audio_dir = audio_dir or osp.join(root, AUDIO_DIR)
    video_dir = video_dir or osp.join(root, VIDEO_DIR)
    if (train_list is None) != (test_list is None):
        raise ValueError('give both --train-list and --test-list, or '
                         'neither (seeded random split)')
    if val_list is not None and val_fraction:
        raise ValueError('give --val-list or --val-fraction, not both')
    if val_fraction is None:
        val_fraction = 0.0 if val_list is not None else DEFAULT_VAL_FRACTION
    # User split files are parsed first: a typo there is found before the
    # folders are scanned.
    parts: Dict[str, List[Tuple[str, str]]] = {}
    if train_list is not None:
        parts['train'] = read_split_file(train_list)
        parts['test'] = read_split_file(test_list)
        if val_list is not None:
            parts['val'] = read_split_file(val_list)
        _check_disjoint(parts)
    wavs = scan_tree(audio_dir, AUDIO_EXT)
    flvs = scan_tree(video_dir, VIDEO_EXT)
    if train_list is None:
        # Split over every clip named in either folder, so the split does
        # not change when a file is missing or unreadable.
        stems = sorted(set(wavs) | set(flvs))
        labels = [emotion_label(s, s) for s in stems]
        train, test = avp.stratified_split(stems, labels, test_fraction,
                                           seed, stratify)
        parts['test'] = [(s, wavs.get(s) or flvs[s]) for s in test]
        parts['train'] = [(s, wavs.get(s) or flvs[s]) for s in train]
    if val_fraction > 0:
        source = dict(parts['train'])
        stems = [stem for stem, _ in parts['train']]
        if int(round(val_fraction * len(stems))) == 0:
            raise ValueError(
                f'{len(stems)} training clips are too few to hold out '
                f'--val-fraction {val_fraction} for validation; pass '
                '--val-fraction 0 (val = test) or --val-list')
        train, val = avp.stratified_split(
            stems, [emotion_label(s, source[s]) for s in stems],
            val_fraction, seed + 1, stratify)
        parts['train'] = [(s, source[s]) for s in train]
        parts['val'] = [(s, source[s]) for s in val]
    val_is_test = 'val' not in parts
    if val_is_test:
        parts['val'] = parts['test']

    entries = {}
    for split in avp.SPLITS:
        entries[split] = []
        for stem, source in parts[split]:
            absent = [
                f'{kind} not found: {osp.join(folder, stem + ext)}'
                for kind, table, folder, ext in (
                    ('video', flvs, video_dir, VIDEO_EXT),
                    ('audio', wavs, audio_dir, AUDIO_EXT))
                if stem not in table
            ]
            entries[split].append(
                avp.ClipEntry(
                    split=split,
                    clip_id=stem,
                    label=emotion_label(stem, source),
                    source=source,
                    video=flvs.get(stem),
                    audio=wavs.get(stem),
                    missing_reason='; '.join(absent) or None))
    settings = dict(
        audio_dir=osp.abspath(audio_dir),
        video_dir=osp.abspath(video_dir),
        split=('user split files' if train_list else 'seeded random split'),
        split_files=dict(train=train_list, val=val_list, test=test_list),
        test_fraction=None if train_list else test_fraction,
        val_fraction=val_fraction,
        val_is_test=val_is_test,
        seed=None if train_list and not val_fraction else seed,
        stratified_by_emotion=(None if train_list and not val_fraction else
                               stratify))
    return avp.build_lists(
        root, 'cremad', EMOTIONS, entries, settings=settings, **probe_options)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = avp.make_parser(
        'CREMA-D preparation: labels from the file names, a seeded (or '
        'user-given) split, file checks, clcr_mm lists.', 'data/cremad')
    parser.add_argument('--audio-dir', help='default: <root>/AudioWAV')
    parser.add_argument('--video-dir', help='default: <root>/VideoFlash')
    parser.add_argument(
        '--train-list', help='split file: one clip stem per line')
    parser.add_argument('--test-list', help='split file of the test split')
    parser.add_argument(
        '--val-list',
        help='split file of the val split (default: held out from the '
        'training part, see --val-fraction)')
    parser.add_argument(
        '--test-fraction',
        type=float,
        default=0.1,
        help='random split: share of clips for testing (default 0.1 -> '
        '6698/744)')
    parser.add_argument(
        '--val-fraction',
        type=float,
        default=None,
        help='share of the training part held out (seeded, stratified) for '
        f'validation, i.e. for picking the best checkpoint (default '
        f'{DEFAULT_VAL_FRACTION}, or 0 with --val-list; 0: val = test)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the random split')
    parser.add_argument(
        '--no-stratify',
        action='store_true',
        help='plain random split, not stratified by emotion')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return avp.run_cli(
        prepare,
        args,
        audio_dir=args.audio_dir,
        video_dir=args.video_dir,
        train_list=args.train_list,
        test_list=args.test_list,
        val_list=args.val_list,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        seed=args.seed,
        stratify=not args.no_stratify)


if __name__ == '__main__':
    sys.exit(main())
