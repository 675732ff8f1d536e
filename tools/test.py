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
from train_test_setup import (add_runner_args, finish_config,  # noqa: E402
                              parse_common, run_tool)


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
    add_runner_args(parser)
    return parse_common(parser)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Fold the command line into the config."""
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
    return finish_config(cfg, args)


def main() -> None:
    run_tool(parse_args(), merge_args, lambda runner, args: runner.test())


if __name__ == '__main__':
    main()
