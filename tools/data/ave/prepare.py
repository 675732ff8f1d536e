"""Prepare AVE (Audio-Visual Event, 28 classes) for clcr_mm.

Inputs under ``--root`` (default ``data/ave``), the official
``AVE_Dataset.zip`` unpacked::

    AVE/<VideoID>.mp4        4143 ten-second YouTube clips
    Annotations.txt          a header line
                             "Category&VideoID&Quality&StartTime&EndTime",
                             then one line per video
    trainSet.txt             same line format (3339 videos), no header
    valSet.txt               (402 videos)
    testSet.txt              (402 videos)

AVE annotates the event's segment inside each clip; like the audio-visual
classification literature (OGM-GE, PMR, ...) we use it as video-level
classification: the label is the video's Category. The classes are the
distinct Categories of ``Annotations.txt`` in sorted (alphabetical) order
(28 classes; label i = line i of ``classes.txt``). Writes::

    <root>/{train,val,test}_list.txt   "AVE/<VideoID>.mp4 <label>" (audio
                                       is read from the video's track)
    <root>/classes.txt, <root>/prepare_report.json,
    <root>/.prepare_probe_cache.json

Example::

    python tools/data/ave/prepare.py --root data/ave --workers 8
"""
import argparse
import os.path as osp
import sys
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

# tools/ is not a package: the preparation code the tools share is
# tools/data/av_prepare.py, imported from its folder.
if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import av_prepare as avp  # noqa: E402

NUM_CLASSES = 28
FIELDS = ('Category', 'VideoID', 'Quality', 'StartTime', 'EndTime')
SPLIT_FILES = dict(train='trainSet.txt', val='valSet.txt', test='testSet.txt')


@dataclass
class AVERow:
    """One annotation line of AVE."""
    category: str
    video_id: str
    start: int
    end: int
    source: str  # 'file:line'


def read_ave_file(path: str) -> List[AVERow]:
    """Parse ``Annotations.txt`` or a split file.

    A first line equal to the header (``Category&VideoID&...``) is skipped
    in any of them.

    Args:
        path (str): The file.

    Returns:
        list[AVERow]: Rows in file order.

    Raises:
        FileNotFoundError: The file does not exist.
        AnnotationError: Not 5 ``&``-separated fields, an empty category or
            id, times that are not integers, or a video listed twice.
    """
    rows, seen = [], {}
    for lineno, line in avp.read_lines(path, 'AVE annotation file'):
        fields = [f.strip() for f in line.split('&')]
        if lineno == 1 and fields[:2] == list(FIELDS[:2]):
            continue  # header
        if len(fields) != len(FIELDS):
            raise avp.AnnotationError(
                path, f'expected {len(FIELDS)} "&"-separated fields '
                f'({"&".join(FIELDS)}), got {len(fields)}', lineno, line)
        category, video_id, _, start, end = fields
        if not category or not video_id:
            raise avp.AnnotationError(path, 'empty Category or VideoID',
                                      lineno, line)
        try:
            start_s, end_s = int(start), int(end)
        except ValueError:
            raise avp.AnnotationError(
                path, 'StartTime and EndTime must be integers (seconds)',
                lineno, line) from None
        if video_id in seen:
            raise avp.AnnotationError(
                path, f'video {video_id} already listed at line '
                f'{seen[video_id]}', lineno, line)
        seen[video_id] = lineno
        rows.append(
            AVERow(category, video_id, start_s, end_s, f'{path}:{lineno}'))
    return rows


def prepare(root: str,
            ann_dir: Optional[str] = None,
            video_dir: Optional[str] = None,
            **probe_options) -> Dict:
    """Build the AVE lists.

    Args:
        root (str): Dataset root; outputs go here.
        ann_dir (str, optional): Folder of ``Annotations.txt`` and the
            split files; ``root``.
        video_dir (str, optional): Folder of the mp4s; ``<root>/AVE``.
        **probe_options: ``workers``, ``force_probe`` and ``progress`` of
            :func:`av_prepare.build_lists`.

    Returns:
        dict: The report of :func:`av_prepare.build_lists`.

    Raises:
        FileNotFoundError: An annotation file is missing.
        AnnotationError: A malformed line, a split line whose category is
            not in ``Annotations.txt`` (unknown class) or disagrees with
            it.
    """
    ann_dir = ann_dir or root
    video_dir = video_dir or osp.join(root, 'AVE')
    ann_path = osp.join(ann_dir, 'Annotations.txt')
    annotations = read_ave_file(ann_path)
    classes = sorted({row.category for row in annotations})
    if len(classes) != NUM_CLASSES:
        warnings.warn(f'{ann_path} has {len(classes)} categories, the '
                      f'official AVE has {NUM_CLASSES}; set num_classes = '
                      f'{len(classes)} in the config if this is intended')
    label_of = {name: i for i, name in enumerate(classes)}
    category_of = {row.video_id: row for row in annotations}

    entries = {}
    for split, name in SPLIT_FILES.items():
        path = osp.join(ann_dir, name)
        entries[split] = []
        for row in read_ave_file(path):
            lineno = int(row.source.rsplit(':', 1)[1])
            if row.category not in label_of:
                raise avp.AnnotationError(
                    path, f'unknown class {row.category!r} (not a Category '
                    f'of {ann_path})', lineno)
            ref = category_of.get(row.video_id)
            if ref is not None and ref.category != row.category:
                raise avp.AnnotationError(
                    path, f'video {row.video_id} is {row.category!r} here '
                    f'but {ref.category!r} at {ref.source}', lineno)
            entries[split].append(
                avp.ClipEntry(
                    split=split,
                    clip_id=row.video_id,
                    label=label_of[row.category],
                    source=row.source,
                    video=osp.join(video_dir, f'{row.video_id}.mp4')))
    settings = dict(
        ann_dir=osp.abspath(ann_dir),
        video_dir=osp.abspath(video_dir),
        classes='sorted Categories of Annotations.txt',
        task='video-level classification (event segments not used)',
        audio='audio track of the video')
    return avp.build_lists(
        root, 'ave', classes, entries, settings=settings, **probe_options)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = avp.make_parser(
        'AVE preparation: classes from Annotations.txt, the official '
        'train/val/test split, file checks, clcr_mm lists.', 'data/ave')
    parser.add_argument(
        '--ann-dir', help='folder of Annotations.txt and {train,val,test}'
        'Set.txt (default: <root>)')
    parser.add_argument('--video-dir', help='mp4 folder (default: <root>/AVE)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return avp.run_cli(
        prepare, args, ann_dir=args.ann_dir, video_dir=args.video_dir)


if __name__ == '__main__':
    sys.exit(main())
