"""Config adjustments shared by ``tools/train.py`` and ``tools/test.py``."""
import torch
from mmengine.config import Config
from mmengine.logging import print_log


def setup_cfg_for_launch(cfg: Config) -> Config:
    """Make a config runnable on the machine at hand.

    - Distributed runs on a machine without CUDA use the gloo backend
      (NCCL needs GPUs), so ``torchrun ... --launcher pytorch`` works on CPU.
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
    optim = cfg.get('optim_wrapper', None)
    if optim is not None and optim.get('type') == 'AmpOptimWrapper':
        print_log(
            'AMP needs CUDA; no GPU here, so training runs in float32 with '
            'OptimWrapper', logger='current', level=30)
        optim['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim.pop(key, None)
    return cfg
