"""Run a real config for one short epoch through mmengine's Runner."""
import time
from pathlib import Path

from mmengine.config import Config
from mmengine.runner import Runner

REPO = Path(__file__).resolve().parents[1]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def tiny_runner(config: str, work_dir: Path, data_root: str = None,
                batch_size: int = 2, **cfg_options) -> Runner:
    """Build a Runner from ``configs/<config>`` for a one-epoch smoke run.

    Args:
        config (str): Path relative to ``configs/``.
        work_dir (Path): Work dir of the run.
        data_root (str, optional): Overrides every dataloader's
            ``dataset.data_root``.
        batch_size (int): Batch size of every dataloader.
        **cfg_options: Merged into the config (``merge_from_dict``).

    Returns:
        Runner: Ready to ``train()``, ``val()`` or ``test()``.
    """
    cfg = Config.fromfile(REPO / 'configs' / config)
    for loader in LOADERS:
        cfg[loader].update(
            batch_size=batch_size, num_workers=0, persistent_workers=False)
        if data_root is not None:
            cfg[loader].dataset.data_root = data_root
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.update(save_best=None, max_keep_ckpts=1)
    cfg.merge_from_dict(cfg_options)
    cfg.setdefault('randomness', dict(seed=0))
    return runner_from(cfg, work_dir)


# Every argument of Runner.__init__ that a config sets.
RUNNER_KEYS = ('model', 'work_dir', 'train_dataloader', 'val_dataloader',
               'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg',
               'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
               'val_evaluator', 'test_evaluator', 'default_hooks',
               'custom_hooks', 'env_cfg', 'log_processor', 'log_level',
               'visualizer', 'default_scope', 'randomness', 'load_from',
               'resume', 'launcher')


def runner_from(cfg: Config, work_dir: Path) -> Runner:
    """A Runner from the config's fields, in this process.

    ``Runner(**fields)`` rather than ``Runner.from_cfg``: given the Config
    itself, the Runner also dumps it through yapf, which costs tens of
    seconds per test on 2 cores.

    Args:
        cfg (Config): A full config (model, loops, dataloaders, hooks).
        work_dir (Path): Work dir of the run.

    Returns:
        Runner: Not yet started, launcher ``'none'``.
    """
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    # Keys the config lacks keep the Runner's defaults, as in from_cfg. A
    # unique experiment name: mmengine names its logger, visualizer and
    # scope instances after it (by default config name + timestamp in
    # seconds), so two Runners started within one second would share a
    # logger and the second run's log would land in the first's work dir.
    return Runner(
        experiment_name=f'{Path(work_dir).name}_{time.time_ns()}',
        **{key: cfg[key] for key in RUNNER_KEYS if key in cfg})
