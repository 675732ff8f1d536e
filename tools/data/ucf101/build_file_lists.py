"""Build mmaction2 rawframe file lists for the three official UCF101 splits.

Reads the official ``ucfTrainTestlist/`` annotations::

    classInd.txt        "1 ApplyEyeMakeup"           (1-based index, class)
    trainlist0{1,2,3}   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    testlist0{1,2,3}    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

and the rawframes directory written by ``extract_rgb_flow.py`` (or by
mmaction2's denseflow tools), and writes, per split ``k``::

    ucf101_train_split_k_rawframes.txt     trainlist0k (mmaction2's name)
    ucf101_val_split_k_rawframes.txt       testlist0k (mmaction2's name)
    ucf101_subtrain_split_k_rawframes.txt  trainlist0k without the
                                           held-out groups
    ucf101_subval_split_k_rawframes.txt    the held-out groups

The held-out validation part is ``--val-groups`` whole groups (``gXX``:
clips of one group share actor and scene, so a random clip split would leak)
drawn with ``--seed`` from the groups of ``trainlist0k``, the same groups
for every class, as the official splits are made. Configs train on
``subtrain``, pick the best checkpoint on ``subval`` and keep the official
test list for the final number.

with mmaction2's ``RawframeDataset`` line format
``<Class>/v_<Class>_gXX_cYY <total_frames> <label0based>``, where
``total_frames`` is the number of ``img_*.jpg`` (flow has one frame less).

As in mmaction2's ``tools/data/parse_file_list.py`` (``parse_ucf101_splits``,
level 2) the label comes from the class folder through ``classInd.txt`` for
both lists; unlike it, the label printed in a train list is checked against
``classInd.txt``, and every problem is reported with file and line number.

Example::

    python tools/data/ucf101/build_file_lists.py \
        --ann-dir data/ucf101/ucfTrainTestlist \
        --rawframes data/ucf101/rawframes --out-dir data/ucf101
"""
import argparse
import os
import os.path as osp
import random
import re
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

from clcr_mm.datasets.annotation_files import AnnotationError

# tools/ is not a package: the preparation code the tools share is
# tools/data/av_prepare.py, imported from its folder.
if osp.dirname(osp.dirname(osp.abspath(__file__))) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from av_prepare import read_lines  # noqa: E402

RGB_PREFIX = 'img_'
FLOW_X_PREFIX = 'flow_x_'
FLOW_Y_PREFIX = 'flow_y_'
ON_MISSING = ('error', 'skip')
LIST_TMPL = 'ucf101_{subset}_split_{split}_rawframes.txt'
# The group of a clip, ``v_<Class>_g<group>_c<clip>``.
GROUP = re.compile(r'_g(\d+)_c\d+$')
# Of the 18 groups of a training list, 3 (1/6) are held out for validation.
DEFAULT_VAL_GROUPS = 3


class SplitFileError(AnnotationError):
    """A problem in a UCF101 annotation file, located by file and line.

    The audio-visual tools' :class:`AnnotationError` under this tool's own
    name (a ``ValueError``, message ``'<file>:<line>: <problem>'``).
    """


class MissingClipError(FileNotFoundError):
    """Clips listed in a split file have no (complete) rawframes."""


def read_class_index(path: str) -> Dict[str, int]:
    """Parse ``classInd.txt``.

    Args:
        path (str): Path of ``classInd.txt``.

    Returns:
        dict[str, int]: Class folder name -> 0-based label.

    Raises:
        FileNotFoundError: The file does not exist.
        SplitFileError: Malformed line, duplicate class or index, or indices
            that are not exactly ``1..N``.
    """
    mapping: Dict[str, int] = {}
    seen_idx: Dict[int, int] = {}
    for lineno, line in read_lines(path, 'split file'):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitFileError(path,
                                 'malformed line, expected "<index> <Class>"',
                                 lineno, line)
        idx, name = int(parts[0]), parts[1]
        if name in mapping:
            raise SplitFileError(path, f'class {name!r} listed twice',
                                 lineno, line)
        if idx in seen_idx:
            raise SplitFileError(
                path, f'index {idx} already used at line {seen_idx[idx]}',
                lineno, line)
        seen_idx[idx] = lineno
        mapping[name] = idx - 1
    if not mapping:
        raise SplitFileError(path, 'no class listed')
    if sorted(seen_idx) != list(range(1, len(seen_idx) + 1)):
        raise SplitFileError(
            path, f'class indices must be exactly 1..{len(seen_idx)}, got '
            f'{sorted(seen_idx)[:5]}...')
    return mapping


def read_split_file(path: str,
                    class_index: Dict[str, int],
                    with_label: bool = True) -> List[Tuple[str, int, int]]:
    """Parse a ``trainlist0k.txt`` or ``testlist0k.txt``.

    Args:
        path (str): Path of the split file.
        class_index (dict[str, int]): From :func:`read_class_index`.
        with_label (bool): The lines must carry a 1-based label (train
            lists). Test lists may omit it; a label given anyway is checked.

    Returns:
        list[tuple[str, int, int]]: ``(clip, label0, lineno)`` where ``clip``
        is ``<Class>/<video stem>``, in file order.

    Raises:
        FileNotFoundError: The file does not exist.
        SplitFileError: Malformed line, unknown class, label that disagrees
            with ``classInd.txt``, or a clip listed twice.
    """
    entries = []
    seen: Dict[str, int] = {}
    for lineno, line in read_lines(path, 'split file'):
        parts = line.split()
        n_expected = (2, ) if with_label else (1, 2)
        if len(parts) not in n_expected:
            form = ('"<Class>/<video>.avi <label>"'
                    if with_label else '"<Class>/<video>.avi"')
            raise SplitFileError(path, f'malformed line, expected {form}',
                                 lineno, line)
        video = parts[0].replace('\\', '/')
        comps = video.split('/')
        if len(comps) != 2 or not all(comps):
            raise SplitFileError(
                path, 'malformed video path, expected "<Class>/<video>.avi"',
                lineno, line)
        cls, name = comps
        if cls not in class_index:
            raise SplitFileError(path,
                                 f'unknown class {cls!r} (not in classInd)',
                                 lineno, line)
        label = class_index[cls]
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise SplitFileError(path,
                                     f'label {parts[1]!r} is not an integer',
                                     lineno, line)
            if int(parts[1]) - 1 != label:
                raise SplitFileError(
                    path, f'label {parts[1]} disagrees with classInd '
                    f'({cls} is {label + 1})', lineno, line)
        clip = f'{cls}/{osp.splitext(name)[0]}'
        if clip in seen:
            raise SplitFileError(
                path, f'{clip} already listed at line {seen[clip]}', lineno,
                line)
        seen[clip] = lineno
        entries.append((clip, label, lineno))
    if not entries:
        raise SplitFileError(path, 'no clip listed')
    return entries


def hold_out_groups(path: str, entries: List[Tuple[str, int, int]],
                    num_groups: int, seed: int
                    ) -> Tuple[List[Tuple[str, int, int]],
                               List[Tuple[str, int, int]], List[int]]:
    """Split a training list's entries by group into rest and held out.

    Args:
        path (str): The training list, for error messages.
        entries (list): From :func:`read_split_file`.
        num_groups (int): Groups to hold out.
        seed (int): Seed of the draw.

    Returns:
        tuple: ``(rest, held_out, groups)``: the entries of the other
        groups and of the held-out ones, in file order, and the sorted
        held-out group numbers.

    Raises:
        SplitFileError: A clip name without a group, or no group left to
            train on.
    """
    group_of = {}
    for clip, _, lineno in entries:
        match = GROUP.search(clip)
        if match is None:
            raise SplitFileError(
                path, f'{clip} has no group "_gXX_cYY" in its name, which '
                'holding out validation groups needs (--val-groups 0 skips '
                'it)', lineno)
        group_of[clip] = int(match[1])
    groups = sorted(set(group_of.values()))
    if num_groups >= len(groups):
        raise SplitFileError(
            path, f'has {len(groups)} groups: cannot hold out {num_groups} '
            'for validation and train on the rest (lower --val-groups)')
    held = sorted(random.Random(seed).sample(groups, num_groups))
    rest = [e for e in entries if group_of[e[0]] not in held]
    val = [e for e in entries if group_of[e[0]] in held]
    return rest, val, held


def read_splits(ann_dir: str,
                splits: Sequence[int] = (1, 2, 3),
                val_groups: int = DEFAULT_VAL_GROUPS,
                seed: int = 0) -> Dict[str, Tuple[str, List, List[int]]]:
    """Parse ``classInd.txt`` and the train and test files of ``splits``.

    Cheap, so ``prepare.py`` runs it before the hours of extraction: a
    broken annotation is reported at once.

    Args:
        ann_dir (str): The ``ucfTrainTestlist`` directory.
        splits (Sequence[int]): Which official splits (1, 2, 3).
        val_groups (int): Groups of each training list held out as the
            ``subval`` list (the rest is ``subtrain``); 0 writes neither.
        seed (int): Seed of the held-out groups.

    Returns:
        dict: Output list name (:data:`LIST_TMPL`) -> ``(split file,
        entries of :func:`read_split_file`, held-out groups or [])``.

    Raises:
        ValueError: A split number other than 1, 2, 3.
        FileNotFoundError: An annotation file is missing.
        SplitFileError: A malformed annotation (file and line named).
    """
    for k in splits:
        if k not in (1, 2, 3):
            raise ValueError(f'UCF101 has splits 1, 2, 3; got {k}')
    class_index = read_class_index(osp.join(ann_dir, 'classInd.txt'))
    parsed = {}
    for k in splits:
        for subset, fname, with_label in (('train', f'trainlist{k:02d}.txt',
                                           True),
                                          ('val', f'testlist{k:02d}.txt',
                                           False)):
            path = osp.join(ann_dir, fname)
            parsed[LIST_TMPL.format(subset=subset, split=k)] = (
                path, read_split_file(path, class_index, with_label), [])
    # After all parsing, so that a malformed line is reported first.
    for k in splits if val_groups > 0 else ():
        path, entries, _ = parsed[LIST_TMPL.format(subset='train', split=k)]
        rest, val, held = hold_out_groups(path, entries, val_groups, seed)
        parsed[LIST_TMPL.format(subset='subtrain', split=k)] = (path, rest,
                                                                held)
        parsed[LIST_TMPL.format(subset='subval', split=k)] = (path, val, held)
    return parsed


def count_frames(clip_dir: str) -> Tuple[int, int, int]:
    """Count RGB and flow frames of one rawframe directory.

    Args:
        clip_dir (str): ``<rawframes>/<Class>/<stem>``.

    Returns:
        tuple[int, int, int]: Numbers of ``img_*``, ``flow_x_*`` and
        ``flow_y_*`` files (all 0 if the directory does not exist).
    """
    n_img = n_x = n_y = 0
    try:
        with os.scandir(clip_dir) as it:
            for e in it:
                n = e.name
                if n.startswith(RGB_PREFIX):
                    n_img += 1
                elif n.startswith(FLOW_X_PREFIX):
                    n_x += 1
                elif n.startswith(FLOW_Y_PREFIX):
                    n_y += 1
    except (FileNotFoundError, NotADirectoryError):
        pass
    return n_img, n_x, n_y


def clip_problem(counts: Tuple[int, int, int],
                 require_flow: bool = True) -> Optional[str]:
    """Why a clip's rawframes are unusable, or ``None`` if they are fine.

    RGB+flow loading reads ``flow_{x,y}_k`` for ``k`` up to
    ``total_frames - 1``, so both flow counts must be at least that.

    Args:
        counts (tuple[int, int, int]): From :func:`count_frames`.
        require_flow (bool): Also require complete flow.

    Returns:
        str | None: Problem description.
    """
    n_img, n_x, n_y = counts
    if n_img == 0:
        return 'no img_*.jpg frames (not extracted, or extraction failed)'
    if require_flow:
        need = max(n_img - 1, 1)
        if n_x < need or n_y < need:
            return (f'incomplete flow: {n_img} img, {n_x} flow_x, {n_y} '
                    f'flow_y (need >= {need} of each)')
    return None


def build_split_lists(ann_dir: str,
                      rawframes_dir: str,
                      out_dir: str,
                      splits: Sequence[int] = (1, 2, 3),
                      on_missing: str = 'error',
                      require_flow: bool = True,
                      val_groups: int = DEFAULT_VAL_GROUPS,
                      seed: int = 0) -> Dict:
    """Write ``ucf101_{train,val,subtrain,subval}_split_{k}_rawframes.txt``.

    Every split file is parsed and checked before anything is written, so an
    error leaves no half-written set of lists.

    Args:
        ann_dir (str): The ``ucfTrainTestlist`` directory.
        rawframes_dir (str): Rawframes root (``<Class>/<stem>/img_*.jpg``).
        out_dir (str): Where the lists go.
        splits (Sequence[int]): Which official splits (1, 2, 3).
        on_missing (str): A listed clip without complete rawframes:
            ``'error'`` raises :class:`MissingClipError` naming them,
            ``'skip'`` leaves it out with a warning and counts it.
        require_flow (bool): A clip needs complete flow to be usable.
        val_groups (int): See :func:`read_splits`.
        seed (int): See :func:`read_splits`.

    Returns:
        dict: Per list file name: ``written`` (lines), ``missing`` (count),
        ``missing_clips`` (list of ``'<file>:<line>: <clip>: <problem>'``)
        and ``held_out_groups`` (of the subtrain/subval lists).

    Raises:
        FileNotFoundError: A split file or ``rawframes_dir`` is missing.
        SplitFileError: A malformed annotation (file and line named).
        MissingClipError: ``on_missing='error'`` and clips are missing.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f'on_missing must be one of {ON_MISSING}, got '
                         f'{on_missing!r}')
    if not osp.isdir(rawframes_dir):
        raise FileNotFoundError(f'rawframes directory not found: '
                                f'{rawframes_dir}')
    counts_cache: Dict[str, Tuple[int, int, int]] = {}
    outputs: Dict[str, List[str]] = {}
    summary: Dict[str, Dict] = {}
    all_missing: List[str] = []
    for out_name, (path, entries, held) in read_splits(
            ann_dir, splits, val_groups, seed).items():
        lines, missing = [], []
        for clip, label, lineno in entries:
            if clip not in counts_cache:
                counts_cache[clip] = count_frames(
                    osp.join(rawframes_dir, clip))
            problem = clip_problem(counts_cache[clip], require_flow)
            if problem is not None:
                missing.append(f'{path}:{lineno}: {clip}: {problem}')
                continue
            lines.append(f'{clip} {counts_cache[clip][0]} {label}')
        outputs[out_name] = lines
        summary[out_name] = dict(
            written=len(lines),
            missing=len(missing),
            missing_clips=missing,
            held_out_groups=held)
        if 'subtrain' not in out_name and 'subval' not in out_name:
            all_missing.extend(missing)  # the same clips as the train list

    if all_missing and on_missing == 'error':
        shown = '\n  '.join(all_missing[:10])
        more = (f'\n  ... and {len(all_missing) - 10} more'
                if len(all_missing) > 10 else '')
        raise MissingClipError(
            f'{len(all_missing)} listed clip(s) have no complete rawframes '
            f'under {rawframes_dir}:\n  {shown}{more}\nRe-run the '
            'extraction (it resumes), check extract_report.json, or pass '
            '--on-missing skip to leave them out.')
    for out_name, info in summary.items():
        if info['missing']:
            warnings.warn(
                f'{out_name}: skipped {info["missing"]} listed clip(s) '
                f'without complete rawframes, e.g. {info["missing_clips"][0]}'
            )

    os.makedirs(out_dir, exist_ok=True)
    for out_name, lines in outputs.items():
        if not lines:
            warnings.warn(f'{out_name}: no usable clip, writing an empty '
                          'list')
        dst = osp.join(out_dir, out_name)
        with open(dst + '.tmp', 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
        os.replace(dst + '.tmp', dst)
    return summary


def print_summary(summary: Dict, out_dir: str) -> None:
    """Print what :func:`build_split_lists` wrote."""
    for out_name, info in summary.items():
        extra = (f' ({info["missing"]} missing clips skipped)'
                 if info['missing'] else '')
        if info['held_out_groups'] and 'subval' in out_name:
            extra += f' (held-out groups {info["held_out_groups"]})'
        print(f'[lists] {osp.join(out_dir, out_name)}: {info["written"]} '
              f'clips{extra}')


def add_list_args(parser: argparse.ArgumentParser) -> None:
    """Add the list options shared with ``prepare.py``."""
    parser.add_argument(
        '--splits',
        type=int,
        nargs='+',
        default=[1, 2, 3],
        help='official splits to write (default: 1 2 3)')
    parser.add_argument(
        '--on-missing',
        choices=ON_MISSING,
        default=None,
        help='a listed clip without complete rawframes: error (default) '
        'or skip with a warning')
    parser.add_argument(
        '--val-groups',
        type=int,
        default=DEFAULT_VAL_GROUPS,
        help='groups of each training list held out (seeded) as the '
        'subval list on which the best checkpoint is picked; the rest is '
        f'the subtrain list (default {DEFAULT_VAL_GROUPS}; 0: neither list)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of the held-out groups (default 0)')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write mmaction2 rawframe lists for the UCF101 splits.')
    parser.add_argument(
        '--ann-dir', required=True, help='the ucfTrainTestlist directory')
    parser.add_argument(
        '--rawframes', required=True, help='rawframes root directory')
    parser.add_argument(
        '--out-dir', required=True, help='where to write the lists')
    parser.add_argument(
        '--rgb-only',
        action='store_true',
        help='do not require optical flow frames')
    add_list_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        summary = build_split_lists(args.ann_dir, args.rawframes,
                                    args.out_dir, args.splits,
                                    args.on_missing or 'error',
                                    not args.rgb_only, args.val_groups,
                                    args.seed)
    except (FileNotFoundError, SplitFileError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print_summary(summary, args.out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
