"""Prepare Kinetics-Sounds (31 classes) for clcr_mm in one command.

Inputs under ``--root`` (default ``data/kinetics_sounds``)::

    annotations/train.csv      Kinetics-400 annotation CSVs with columns
    annotations/validate.csv   label,youtube_id,time_start,time_end,split
    annotations/test.csv       [,is_cc] (also found as val.csv,
                               kinetics_train.csv, ...)
    videos/...                 the downloaded clips, any folder layout:
                               <split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4,
                               flat <youtube_id>_<start:06d>_<end:06d>.mp4, or
                               <youtube_id>.mp4 (.mkv/.webm/... too)

Clips are found by YouTube id (and segment, when the file name has one), so
any downloader's layout works. Only rows whose label is one of the classes
in ``classes.txt`` next to this script (or ``--classes``) are used; rows
whose clip is not on disk are counted as missing in the report. Writes::

    <root>/{train,val,test}_list.txt   "<video> <label>" (audio is read
                                       from the video's audio track)
    <root>/classes.txt
    <root>/prepare_report.json         counts, missing and unreadable clips
    <root>/.prepare_probe_cache.json   probe results (reruns skip them)
    <root>/links/                      symlinks for paths with spaces

``train.csv`` -> train, ``validate.csv`` -> val, ``test.csv`` -> test.
Example::

    python tools/data/kinetics_sounds/prepare.py --root data/kinetics_sounds \
        --workers 8
"""
import argparse
import csv
import os.path as osp
import re
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

# tools/ is not a package: the preparation code the tools share is
# tools/data/av_prepare.py, imported from its folder.
if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import av_prepare as avp  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
DEFAULT_CLASSES = osp.join(HERE, 'classes.txt')
# File names under which the Kinetics-400 annotation CSV of each split has
# been distributed (CVDF mirror, DeepMind release, mmaction2 tools).
CSV_CANDIDATES = dict(
    train=('train.csv', 'kinetics_train.csv', 'kinetics-400_train.csv',
           'kinetics400_train.csv'),
    val=('validate.csv', 'val.csv', 'kinetics_val.csv',
         'kinetics-400_val.csv', 'kinetics400_val.csv'),
    test=('test.csv', 'kinetics_test.csv', 'kinetics-400_test.csv',
          'kinetics400_test.csv'))
REQUIRED_COLUMNS = ('label', 'youtube_id', 'time_start', 'time_end')
# <youtube_id>_<start:06d>_<end:06d>; YouTube ids may contain '_' and '-',
# the two zero-padded times make the split unambiguous.
CLIP_NAME = re.compile(r'^(?P<yid>.+)_(?P<start>\d{6})_(?P<end>\d{6})$')


@dataclass
class KineticsRow:
    """One row of a Kinetics annotation CSV."""
    label: str
    youtube_id: str
    start: int
    end: int
    source: str  # 'file:line'


def find_split_csv(ann_dir: str, split: str) -> str:
    """Locate the annotation CSV of a split.

    Args:
        ann_dir (str): Directory holding the CSVs.
        split (str): ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        str: Path of the first existing candidate name.

    Raises:
        FileNotFoundError: None exists; the message lists what was tried.
    """
    for name in CSV_CANDIDATES[split]:
        path = osp.join(ann_dir, name)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'annotation CSV of the {split} split not found: tried '
        f'{", ".join(osp.join(ann_dir, n) for n in CSV_CANDIDATES[split])} '
        f'(pass --{split}-csv, or --splits without {split})')


def _parse_time(value: str, column: str, path: str, lineno: int,
                line: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise avp.AnnotationError(
            path, f'{column} {value!r} is not a number', lineno,
            line) from None


def read_kinetics_csv(path: str) -> List[KineticsRow]:
    """Parse a Kinetics annotation CSV.

    Args:
        path (str): The CSV (header ``label,youtube_id,time_start,
            time_end,split[,is_cc]``; column order is taken from it).

    Returns:
        list[KineticsRow]: Rows in file order.

    Raises:
        FileNotFoundError: The file does not exist.
        AnnotationError: Bytes that are not UTF-8, missing columns (e.g.
            an unlabelled test CSV), a row with the wrong number of fields,
            an empty id or label, or a time that is not a number; file and
            line are named.
    """
    text_lines = avp.read_text_lines(path, 'annotation CSV')
    reader = csv.reader(text_lines)
    header = next(reader, None)
    if header is None:
        raise avp.AnnotationError(path, 'empty file, expected a header')
    header = [h.strip() for h in header]
    absent = [c for c in REQUIRED_COLUMNS if c not in header]
    if absent:
        raise avp.AnnotationError(
            path, f'header lacks column(s) {absent} (an unlabelled test '
            'CSV cannot be used; pass --splits train val to skip it)', 1,
            ','.join(header))
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}
    rows = []
    for fields in reader:
        lineno = reader.line_num
        line = text_lines[lineno - 1]
        if not line.strip():
            continue
        if len(fields) != len(header):
            raise avp.AnnotationError(
                path, f'{len(fields)} fields, the header has {len(header)}',
                lineno, line)
        label = fields[col['label']].strip()
        yid = fields[col['youtube_id']].strip()
        if not label or not yid:
            raise avp.AnnotationError(path, 'empty label or youtube_id',
                                      lineno, line)
        rows.append(
            KineticsRow(
                label=label,
                youtube_id=yid,
                start=_parse_time(fields[col['time_start']], 'time_start',
                                  path, lineno, line),
                end=_parse_time(fields[col['time_end']], 'time_end', path,
                                lineno, line),
                source=f'{path}:{lineno}'))
    return rows


def index_clips(video_dir: str
                ) -> Dict[str, List[Tuple[Optional[int], Optional[int],
                                          str]]]:
    """Index the downloaded clips by YouTube id.

    Args:
        video_dir (str): Directory scanned recursively.

    Returns:
        dict: YouTube id -> list of ``(start, end, path)``; ``start`` and
        ``end`` are ``None`` for files named ``<youtube_id>.<ext>``.
    """
    index: Dict[str, List[Tuple[Optional[int], Optional[int], str]]] = {}
    for stem, paths in avp.index_videos(video_dir).items():
        match = CLIP_NAME.match(stem)
        if match:
            key, start, end = (match['yid'], int(match['start']),
                               int(match['end']))
        else:
            key, start, end = stem, None, None
        for path in paths:
            index.setdefault(key, []).append((start, end, path))
    return index


def locate_clip(index: Dict, row: KineticsRow
                ) -> Tuple[Optional[str], Optional[str]]:
    """Find the file of an annotated clip.

    A file named with the row's segment wins; a file named by the id alone
    is taken as the trimmed clip. A file of the same video but another
    segment is a different clip and not used.

    Args:
        index (dict): From :func:`index_clips`.
        row (KineticsRow): The annotation.

    Returns:
        tuple[str | None, str | None]: The path, or ``None`` and the reason
        it is missing.
    """
    candidates = index.get(row.youtube_id, [])
    if not candidates:
        return None, 'no file for this YouTube id'
    exact = [p for s, e, p in candidates if (s, e) == (row.start, row.end)]
    if exact:
        return exact[0], None
    plain = [p for s, e, p in candidates if s is None]
    if plain:
        return plain[0], None
    others = ', '.join(osp.basename(p) for _, _, p in candidates)
    return None, (f'only other segments of this video on disk ({others}); '
                  f'the annotation asks for {row.start}-{row.end} s')


def prepare(root: str,
            ann_dir: Optional[str] = None,
            video_dir: Optional[str] = None,
            classes_file: str = DEFAULT_CLASSES,
            splits: Sequence[str] = avp.SPLITS,
            csv_files: Optional[Dict[str, str]] = None,
            **probe_options) -> Dict:
    """Build the Kinetics-Sounds lists from Kinetics-400 CSVs and clips.

    Args:
        root (str): Dataset root; outputs go here.
        ann_dir (str, optional): CSV directory; ``<root>/annotations``.
        video_dir (str, optional): Clip directory; ``<root>/videos``.
        classes_file (str): Class list (one Kinetics label per line).
        splits (Sequence[str]): Splits to build.
        csv_files (dict[str, str], optional): Explicit CSV per split,
            overriding the search in ``ann_dir``.
        **probe_options: ``workers``, ``force_probe`` and ``progress`` of
            :func:`av_prepare.build_lists`.

    Returns:
        dict: The report of :func:`av_prepare.build_lists`.

    Raises:
        FileNotFoundError: A CSV, the class list or the video directory is
            missing.
        AnnotationError: A malformed CSV row, or a class of the class list
            that no CSV row has (a misspelt or renamed class).
    """
    ann_dir = ann_dir or osp.join(root, 'annotations')
    video_dir = video_dir or osp.join(root, 'videos')
    csv_files = dict(csv_files or {})
    for split in splits:
        if split not in avp.SPLITS:
            raise ValueError(f'unknown split {split!r}; one of {avp.SPLITS}')
    classes = avp.read_class_list(classes_file)
    label_of = {name: i for i, name in enumerate(classes)}
    # Parse every CSV before the (slow) directory scan and probing, so an
    # annotation problem is reported at once.
    rows = {}
    for split in splits:
        path = csv_files.get(split) or find_split_csv(ann_dir, split)
        rows[split] = read_kinetics_csv(path)
        csv_files[split] = path
    seen_labels = {r.label for split_rows in rows.values() for r in split_rows}
    lines_of_class = avp.class_lines(classes_file)
    for name in classes:
        if name not in seen_labels:
            raise avp.AnnotationError(
                classes_file,
                f'unknown class {name!r}: no row of '
                f'{", ".join(csv_files.values())} has this label (check the '
                'spelling against the Kinetics-400 label names)',
                lines_of_class[name], name)

    index = index_clips(video_dir)
    entries = {}
    for split in splits:
        entries[split] = []
        for row in rows[split]:
            if row.label not in label_of:
                continue  # one of the other Kinetics-400 classes
            path, reason = locate_clip(index, row)
            entries[split].append(
                avp.ClipEntry(
                    split=split,
                    clip_id=f'{row.youtube_id}_{row.start:06d}_'
                    f'{row.end:06d}',
                    label=label_of[row.label],
                    source=row.source,
                    video=path,
                    missing_reason=reason))
    settings = dict(
        ann_dir=osp.abspath(ann_dir),
        video_dir=osp.abspath(video_dir),
        classes_file=osp.abspath(classes_file),
        csv_files={k: osp.abspath(v)
                   for k, v in csv_files.items()},
        audio='audio track of the video')
    return avp.build_lists(
        root,
        'kinetics_sounds',
        classes,
        entries,
        settings=settings,
        **probe_options)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = avp.make_parser(
        'Kinetics-Sounds preparation: select the classes from the '
        'Kinetics-400 CSVs, find and check the downloaded clips, write the '
        'clcr_mm lists.', 'data/kinetics_sounds')
    parser.add_argument(
        '--ann-dir', help='Kinetics CSV directory (default: <root>/'
        'annotations)')
    parser.add_argument(
        '--video-dir', help='downloaded clips (default: <root>/videos)')
    parser.add_argument(
        '--classes',
        default=DEFAULT_CLASSES,
        help='class list, one Kinetics label per line (default: the 31 '
        'classes shipped next to this script)')
    parser.add_argument(
        '--splits',
        nargs='+',
        choices=avp.SPLITS,
        default=list(avp.SPLITS),
        help='splits to build (default: train val test)')
    for split in avp.SPLITS:
        parser.add_argument(
            f'--{split}-csv', help=f'annotation CSV of the {split} split '
            f'(default: found in the annotation directory)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    csv_files = {
        split: getattr(args, f'{split}_csv')
        for split in avp.SPLITS if getattr(args, f'{split}_csv')
    }
    return avp.run_cli(
        prepare,
        args,
        ann_dir=args.ann_dir,
        video_dir=args.video_dir,
        classes_file=args.classes,
        splits=args.splits,
        csv_files=csv_files)


if __name__ == '__main__':
    sys.exit(main())
