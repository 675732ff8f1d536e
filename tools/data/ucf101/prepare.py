"""Prepare UCF101 (RGB + optical flow) for clcr_mm in one command.

Expects the official download under ``--root``::

    <root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    <root>/ucfTrainTestlist/{classInd,trainlist0k,testlist0k}.txt

and produces::

    <root>/rawframes/<Class>/v_<Class>_gXX_cYY/{img,flow_x,flow_y}_%05d.jpg
    <root>/rawframes/extract_report.json
    <root>/ucf101_{train,val,subtrain,subval}_split_{1,2,3}_rawframes.txt

The annotations (``classInd.txt`` and the split files of ``--splits``) are
parsed first, so a broken one is reported before hours of extraction. Step 1
is ``extract_rgb_flow.py`` (resumable: re-running skips finished clips whose
source is unchanged), step 2 ``build_file_lists.py``. The exit status is 1
for an annotation or missing-clip error, 2 when clips failed to extract (the
lists are written all the same, see ``--on-missing``), else 0. Example::

    python tools/data/ucf101/prepare.py --root data/ucf101 --workers 8
"""
import argparse
import importlib.util
import os.path as osp
import sys
from types import ModuleType
from typing import Dict, Optional, Sequence

HERE = osp.dirname(osp.abspath(__file__))


def _import_sibling(name: str) -> ModuleType:
    """Import ``<this dir>/<name>.py`` as module ``name``.

    Done by path because ``tools/`` is not a package, and checked by file
    because another ``tools/data/*`` directory may hold a module of the same
    name (e.g. in one pytest session).
    """
    path = osp.join(HERE, f'{name}.py')
    module = sys.modules.get(name)
    if module is not None and osp.abspath(getattr(module, '__file__',
                                                  '')) == path:
        return module
    # Plain module name + our directory on sys.path: multiprocessing workers
    # (fork or spawn) can then import the extraction worker by name.
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


extract_rgb_flow = _import_sibling('extract_rgb_flow')
build_file_lists = _import_sibling('build_file_lists')


def prepare(root: str,
            video_dir: Optional[str] = None,
            ann_dir: Optional[str] = None,
            rawframes_dir: Optional[str] = None,
            out_dir: Optional[str] = None,
            algo: str = 'farneback',
            bound: float = 20.,
            short_side: Optional[int] = None,
            workers: int = 1,
            max_clips: Optional[int] = None,
            force: bool = False,
            splits: Sequence[int] = (1, 2, 3),
            on_missing: Optional[str] = None,
            frame_tolerance: float = extract_rgb_flow.DEFAULT_FRAME_TOLERANCE,
            clip_timeout: Optional[float] = extract_rgb_flow.
            DEFAULT_CLIP_TIMEOUT,
            val_groups: int = build_file_lists.DEFAULT_VAL_GROUPS,
            seed: int = 0) -> Dict:
    """Extract frames + flow, then write the split lists.

    Args:
        root (str): Dataset root, e.g. ``data/ucf101``.
        video_dir (str, optional): Defaults to ``<root>/UCF-101``.
        ann_dir (str, optional): Defaults to ``<root>/ucfTrainTestlist``.
        rawframes_dir (str, optional): Defaults to ``<root>/rawframes``.
        out_dir (str, optional): Lists directory, defaults to ``root``.
        algo (str): ``'farneback'`` or ``'tvl1'``.
        bound (float): Flow quantisation bound in pixels.
        short_side (int, optional): Resize frames to this short side.
        workers (int): Extraction worker processes.
        max_clips (int, optional): Extract only this many clips (dry run).
        force (bool): Re-extract finished clips.
        splits (Sequence[int]): Splits to write lists for.
        on_missing (str, optional): ``'error'`` or ``'skip'`` for listed
            clips without rawframes; defaults to ``'skip'`` when
            ``max_clips`` is set (a dry run lacks most clips), else
            ``'error'``.
        frame_tolerance (float): Share of a clip's declared frames that may
            fail to decode before it counts as truncated.
        clip_timeout (float, optional): Seconds one clip may take.
        val_groups (int): Groups of each training list held out as the
            validation list (``subval``; the rest is ``subtrain``).
        seed (int): Seed of the held-out groups.

    Returns:
        dict: ``extract`` (the extraction report) and ``lists`` (the list
        summary of :func:`build_file_lists.build_split_lists`).
    """
    video_dir = video_dir or osp.join(root, 'UCF-101')
    ann_dir = ann_dir or osp.join(root, 'ucfTrainTestlist')
    rawframes_dir = rawframes_dir or osp.join(root, 'rawframes')
    out_dir = out_dir or root
    if on_missing is None:
        on_missing = 'skip' if max_clips is not None else 'error'
    # Check annotations first: a typo in a path or a broken line should not
    # cost an extraction run.
    if not osp.isfile(osp.join(ann_dir, 'classInd.txt')):
        raise FileNotFoundError(
            f'{osp.join(ann_dir, "classInd.txt")} not found: unpack '
            'UCF101TrainTestSplits-RecognitionTask.zip into ' + ann_dir)
    build_file_lists.read_splits(ann_dir, splits, val_groups, seed)
    report = extract_rgb_flow.extract_all(
        video_dir,
        rawframes_dir,
        algo=algo,
        bound=bound,
        short_side=short_side,
        workers=workers,
        max_clips=max_clips,
        force=force,
        frame_tolerance=frame_tolerance,
        clip_timeout=clip_timeout)
    extract_rgb_flow.print_report(report, rawframes_dir)
    summary = build_file_lists.build_split_lists(
        ann_dir,
        rawframes_dir,
        out_dir,
        splits,
        on_missing=on_missing,
        val_groups=val_groups,
        seed=seed)
    build_file_lists.print_summary(summary, out_dir)
    return dict(extract=report, lists=summary)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='UCF101 RGB + optical flow preparation: frame and flow '
        'extraction, then mmaction2 rawframe lists for the 3 splits.')
    parser.add_argument(
        '--root',
        default='data/ucf101',
        help='dataset root holding UCF-101/ and ucfTrainTestlist/')
    parser.add_argument('--video-dir', help='default: <root>/UCF-101')
    parser.add_argument('--ann-dir', help='default: <root>/ucfTrainTestlist')
    parser.add_argument('--rawframes', help='default: <root>/rawframes')
    parser.add_argument('--out-dir', help='lists dir, default: <root>')
    extract_rgb_flow.add_extract_args(parser)
    build_file_lists.add_list_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        extract_rgb_flow.check_flow_algo(args.algo)
        result = prepare(
            args.root,
            video_dir=args.video_dir,
            ann_dir=args.ann_dir,
            rawframes_dir=args.rawframes,
            out_dir=args.out_dir,
            algo=args.algo,
            bound=args.bound,
            short_side=args.short_side,
            workers=args.workers,
            max_clips=args.max_clips,
            force=args.force,
            splits=args.splits,
            on_missing=args.on_missing,
            frame_tolerance=args.frame_tolerance,
            clip_timeout=args.clip_timeout,
            val_groups=args.val_groups,
            seed=args.seed)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        # SplitFileError is a ValueError, MissingClipError a
        # FileNotFoundError: both name the file (and line) at fault.
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 2 if result['extract']['summary']['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
