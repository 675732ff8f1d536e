"""Command-line pieces shared by ``tools/train.py`` and ``tools/test.py``.

Tool code, kept out of the ``clcr_mm`` library (which holds only what
training imports); the two tools import it from this folder.
"""
import argparse
import contextlib
import gc
import os
import os.path as osp
from typing import Callable, Iterator

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """Add mmaction2's ``--work-dir``, ``--cfg-options``, ``--launcher`` and
    ``--local_rank`` arguments.

    Args:
        parser (argparse.ArgumentParser): Parser to extend.
    """
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy format')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_common(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` for launchers that pass it as an
    argument rather than in the environment."""
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_common_args(cfg: Config, args: argparse.Namespace) -> None:
    """Set the launcher and the work dir (``./work_dirs/<config name>`` by
    default, as mmaction2 does).

    Args:
        cfg (Config): Config, changed in place.
        args (argparse.Namespace): Parsed arguments with ``config``,
            ``work_dir`` and ``launcher``.
    """
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])


def setup_cfg_for_launch(cfg: Config) -> Config:
    """Make a config runnable on the machine at hand.

    - Distributed runs on a machine without CUDA use the gloo backend
      (NCCL needs GPUs) and wrap the model in DDP without ``device_ids``
      (mmengine passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for
      CPU modules), so ``torchrun ... --launcher pytorch`` works on CPU
      together with :func:`init_dist_without_cuda`.
    - mmengine's ``AmpOptimWrapper`` needs CUDA (or NPU/MLU); without it
      ``--amp`` falls back to the plain ``OptimWrapper`` with a warning, so
      the same command line is harmless on CPU.

    Args:
        cfg (Config): The merged config; changed in place.

    Returns:
        Config: The same config.
    """
    if torch.cuda.is_available():
        return cfg
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if cfg.get('launcher', 'none') != 'none':
        wrapper = cfg.get('model_wrapper_cfg', None) or dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        # build_from_cfg lets config keys win over the Runner's defaults.
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    optim = cfg.get('optim_wrapper', None)
    if optim is not None and optim.get('type') == 'AmpOptimWrapper':
        print_log(
            'AMP needs CUDA; no GPU here, so training runs in float32 with '
            'OptimWrapper', logger='current', level=30)
        optim['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim.pop(key, None)
    return cfg


def init_dist_without_cuda(cfg: Config) -> None:
    """Start the process group of a ``torchrun`` launch on a CPU machine.

    mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``
    unconditionally, which fails without a GPU ("Found no NVIDIA driver").
    The Runner skips its own initialisation when a process group exists, so
    on a machine without CUDA we create it here, from the ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` variables torchrun
    sets, with the backend of ``env_cfg.dist_cfg`` (gloo after
    :func:`setup_cfg_for_launch`). With CUDA, or for other launchers,
    nothing is done and mmengine initialises as usual.

    Args:
        cfg (Config): The merged config (``launcher`` set).
    """
    if (cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available()
            or not torch_dist.is_available() or torch_dist.is_initialized()):
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'gloo')
    torch_dist.init_process_group(
        backend=backend,
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **dist_cfg)


@contextlib.contextmanager
def process_group_destroyed_at_exit() -> Iterator[None]:
    """Destroy the default process group when the block ends, also on error.

    Neither mmengine's Runner nor ``init_dist`` ever destroys the process
    group it runs in. Left to interpreter shutdown, a rank that finishes
    first closes its gloo connections while another still holds them, and
    that rank aborts (``terminate called without an active exception``,
    SIGABRT): ``torchrun`` reports a failed job although training finished
    and saved. So every rank waits for the others at a barrier, then
    destroys the group. After an error the barrier is skipped (the other
    ranks may never reach it; ``torchrun`` stops them) and the group is
    destroyed at once.

    The Runner is referenced by its own loops and hooks, so without a
    collection it, its DDP wrapper and the reducer holding the group would
    only be freed at interpreter shutdown, after the group is gone and
    while a faster rank may already have closed its connections. They are
    collected before the barrier, while every rank is still connected.
    """
    try:
        yield
    except BaseException:
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        raise
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def finish_config(cfg: Config, args: argparse.Namespace) -> Config:
    """The last step of a tool's ``merge_args``: the common arguments, then
    ``--cfg-options`` (which win over everything else), then
    :func:`setup_cfg_for_launch`.

    Args:
        cfg (Config): The config with the tool's own arguments folded in;
            changed in place.
        args (argparse.Namespace): Parsed arguments (see
            :func:`add_runner_args`).

    Returns:
        Config: The config, ready for :func:`run_tool`.
    """
    apply_common_args(cfg, args)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return setup_cfg_for_launch(cfg)


def run_tool(args: argparse.Namespace,
             merge_args: Callable[[Config, argparse.Namespace], Config],
             action: Callable[[Runner, argparse.Namespace], None]) -> None:
    """The ``main`` of ``tools/train.py`` and ``tools/test.py``.

    Builds the config of ``args.config`` with the tool's ``merge_args``,
    starts the process group of a CPU ``torchrun`` launch, builds mmengine's
    Runner and runs ``action`` on it; the process group is destroyed
    afterwards, also when the run fails.

    Args:
        args (argparse.Namespace): The parsed command line.
        merge_args (Callable): ``merge_args(cfg, args)`` returns the config
            with the command line folded in (ending with
            :func:`finish_config`).
        action (Callable): ``action(runner, args)``, e.g. training.
    """
    cfg = without_yapf(merge_args(Config.fromfile(args.config), args))
    with process_group_destroyed_at_exit():
        init_dist_without_cuda(cfg)
        action(Runner.from_cfg(cfg), args)


def without_yapf(cfg: Config) -> Config:
    """Return ``cfg`` with mmengine's ``format_python_code=False``.

    mmengine's Runner asks for ``cfg.pretty_text`` for its log, for the
    config dump, for the visualizer and again for every checkpoint it saves
    (``meta['cfg']``): ten calls in a two-epoch run. Each runs yapf over the
    whole config, seconds apiece for a CLCR config (yapf's line-splitting
    search on the nested model dicts), about as long as importing torch.
    Unformatted, the text is still valid Python, one key per line, and
    takes milliseconds. (``Config.fromfile(..., format_python_code=False)``
    does not pass the flag on for ordinary configs in mmengine 0.10.7,
    hence this copy.)

    Args:
        cfg (Config): The merged config.

    Returns:
        Config: A config with the same content, file name, text and
        environment variables.
    """
    return Config(
        cfg.to_dict(),
        cfg_text=cfg.text,
        filename=cfg.filename,
        env_variables=cfg.env_variables,
        format_python_code=False)
