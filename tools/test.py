"""Test a checkpoint with mmengine's Runner (mmaction2's arguments).

    python tools/test.py CONFIG CHECKPOINT [--dump results.pkl]
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.runner import Runner

import clcr_mm  # noqa: F401  (registers CLCR; patches mmaction2 1.2.0)

# tools/ is not a package: the setup train.py and test.py share is
# tools/train_test_setup.py, imported from this folder.
if osp.dirname(osp.abspath(__file__)) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from train_test_setup import (add_common_args, apply_common_args,  # noqa: E402
                              init_dist_without_cuda, parse_common,
                              setup_cfg_for_launch, without_yapf)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--dump',
        type=str,
        help='dump predictions (with analysis fields) to a pickle file, '
        'readable by tools/analysis')
    parser.add_argument(
        '--missing',
        nargs='+',
        default=None,
        help='modalities treated as missing at test time')
    add_common_args(parser)
    return parse_common(parser)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Fold the command line into the config."""
    apply_common_args(cfg, args)
    cfg.load_from = args.checkpoint
    if args.missing:
        cfg.model.setdefault('test_cfg', {})
        cfg.model.test_cfg['missing_modalities'] = tuple(args.missing)
    if args.dump is not None:
        if not args.dump.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--dump must be a .pkl file, got {args.dump}')
        cfg.model.setdefault('test_cfg', {})
        cfg.model.test_cfg['return_analysis'] = True
        dump_metric = dict(type='DumpResults', out_file_path=args.dump)
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, (list, tuple)):
            cfg.test_evaluator = [*evaluators, dump_metric]
        else:
            cfg.test_evaluator = [evaluators, dump_metric]
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return setup_cfg_for_launch(cfg)


def main() -> None:
    args = parse_args()
    cfg = without_yapf(merge_args(Config.fromfile(args.config), args))
    init_dist_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
