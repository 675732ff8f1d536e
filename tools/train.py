"""Train a clcr_mm (or any mmaction2) config with mmengine's Runner.

Same arguments as mmaction2's ``tools/train.py``::

    python tools/train.py configs/clcr_synthetic_av.py
    python tools/train.py CONFIG --resume            # latest checkpoint
    python tools/train.py CONFIG --test-after        # then test the best
    torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.fileio import dump
from mmengine.runner import Runner, find_latest_checkpoint

import clcr_mm  # noqa: F401  (registers CLCR; patches mmaction2 1.2.0)

# tools/ is not a package: the setup train.py and test.py share is
# tools/train_test_setup.py, imported from this folder.
if osp.dirname(osp.abspath(__file__)) not in sys.path:
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from train_test_setup import (add_runner_args, finish_config,  # noqa: E402
                              parse_common, run_tool)

TEST_AFTER_FILE = 'test_after.json'


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
        '--test-after',
        action='store_true',
        help='when training ends, test the checkpoint selected on the '
        'validation split (the best_*.pth of save_best; the last checkpoint, '
        f'with a warning, if there is none) and write {TEST_AFTER_FILE} to '
        'the work dir')
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
    add_runner_args(parser)
    return parse_common(parser)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Fold the command line into the config, as mmaction2 does."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
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
    return finish_config(cfg, args)


def checkpoint_to_test(runner: Runner) -> str:
    """The checkpoint selected on validation, for ``--test-after``.

    That is the ``best_*.pth`` that mmengine's CheckpointHook (``save_best``)
    recorded in the message hub (the first indicator's, by name, if there
    are several); without one (no validation, no ``save_best``) the last
    checkpoint of the work dir, with a warning.

    Args:
        runner (Runner): The runner after training.

    Returns:
        str: Path of the checkpoint.

    Raises:
        FileNotFoundError: If the work dir holds no checkpoint at all.
    """
    info = runner.message_hub.runtime_info
    keys = sorted(k for k in info
                  if k == 'best_ckpt' or k.startswith('best_ckpt_'))
    if keys and osp.isfile(info[keys[0]]):
        runner.logger.info(f'--test-after: testing {info[keys[0]]}, the best '
                           'checkpoint on the validation split')
        return info[keys[0]]
    last = find_latest_checkpoint(runner.work_dir)
    if last is None:
        raise FileNotFoundError(
            f'--test-after: no checkpoint in {runner.work_dir} to test; '
            'enable the CheckpointHook (default_hooks.checkpoint)')
    runner.logger.warning(
        f'--test-after: no best checkpoint (validation off or no save_best), '
        f'testing the last checkpoint {last} instead')
    return last


def test_after_training(runner: Runner) -> dict:
    """Test :func:`checkpoint_to_test` on the test split through the Runner
    and write ``{checkpoint, metrics}`` to ``<work_dir>/test_after.json``.

    Args:
        runner (Runner): The runner after training.

    Returns:
        dict: The test metrics.
    """
    checkpoint = checkpoint_to_test(runner)
    runner.load_checkpoint(checkpoint)
    metrics = runner.test()
    if is_main_process():
        dump(dict(checkpoint=checkpoint, metrics=metrics),
             osp.join(runner.work_dir, TEST_AFTER_FILE), indent=2)
    return metrics


def train(runner: Runner, args: argparse.Namespace) -> None:
    """Train, then test the selected checkpoint with ``--test-after``."""
    runner.train()
    if args.test_after:
        test_after_training(runner)


def main() -> None:
    run_tool(parse_args(), merge_args, train)


if __name__ == '__main__':
    main()
