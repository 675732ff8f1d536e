"""Train a clcr_mm (or any mmaction2) config with mmengine's Runner.

Same arguments as mmaction2's ``tools/train.py``::

    python tools/train.py configs/clcr_synthetic_av.py
    python tools/train.py CONFIG --resume            # latest checkpoint
    torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch
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
    parser = argparse.ArgumentParser(description='Train a recognizer')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, with no value, from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help="automatic mixed precision with mmengine's AmpOptimWrapper "
        '(CUDA; without a GPU: float32, with a warning)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate with the total batch size')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument(
        '--diff-rank-seed',
        action='store_true',
        help='set a different seed on every rank')
    parser.add_argument(
        '--deterministic',
        action='store_true',
        help='deterministic algorithms (exactly reproducible on CPU)')
    add_common_args(parser)
    return parse_common(parser)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Fold the command line into the config, as mmaction2 does."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    apply_common_args(cfg, args)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if cfg.get('randomness', None) is None:
        cfg.randomness = dict(
            seed=args.seed,
            diff_rank_seed=args.diff_rank_seed,
            deterministic=args.deterministic)
    elif args.seed is not None or args.deterministic:
        cfg.randomness.update(
            seed=args.seed if args.seed is not None else cfg.randomness.get(
                'seed'),
            deterministic=args.deterministic)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return setup_cfg_for_launch(cfg)


def main() -> None:
    args = parse_args()
    cfg = without_yapf(merge_args(Config.fromfile(args.config), args))
    init_dist_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
