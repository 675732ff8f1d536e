"""Helpers shared by the tools in ``tools/analysis``: load a config and a
checkpoint, build the test dataloader and evaluator through mmengine, and
write results."""
import json
import os
import os.path as osp
from typing import Any, Dict, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint

import clcr_mm  # noqa: F401  (registers CLCR; patches mmaction2 1.2.0)
from clcr_mm.registry import MODELS


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                data_root: Optional[str] = None,
                batch_size: Optional[int] = None,
                num_workers: Optional[int] = None) -> Config:
    """Read a config, apply ``--cfg-options`` and common loader overrides
    (``data_root`` to every dataloader, batch size and workers to the test
    dataloader)."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        for split in ('train', 'val', 'test'):
            if cfg.get(f'{split}_dataloader') is not None:
                cfg[f'{split}_dataloader'].dataset.data_root = data_root
    loader = cfg.test_dataloader
    if batch_size is not None:
        loader.batch_size = batch_size
    if num_workers is not None:
        loader.num_workers = num_workers
        if num_workers == 0:
            loader.persistent_workers = False
    init_default_scope(cfg.get('default_scope', 'clcr_mm'))
    return cfg


def build_model(cfg: Config, checkpoint: Optional[str],
                device: str = 'cpu') -> torch.nn.Module:
    """Build ``cfg.model`` and load ``checkpoint`` (mmengine's loader).

    ``checkpoint`` ``None`` or ``'none'`` gives the model as a Runner
    initialises it before training (``init_weights`` under seed 0): a
    random-feature control for the analyses.
    """
    model = MODELS.build(cfg.model)
    if checkpoint and checkpoint.lower() != 'none':
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    else:
        torch.manual_seed(0)
        model.init_weights()
    return model.to(device).eval()


def build_test_loader(cfg: Config, split: str = 'test'):
    """mmengine's dataloader for ``cfg.<split>_dataloader``."""
    loader_cfg = cfg.get(f'{split}_dataloader')
    if loader_cfg is None:
        raise ValueError(f'the config has no {split}_dataloader')
    return Runner.build_dataloader(loader_cfg, seed=0)


def build_evaluator(cfg: Config, dataset: Any,
                    split: str = 'test') -> Evaluator:
    """A fresh :class:`Evaluator` from ``cfg.<split>_evaluator``."""
    metrics = cfg.get(f'{split}_evaluator')
    evaluator = Evaluator(metrics)
    evaluator.dataset_meta = getattr(dataset, 'metainfo', None)
    return evaluator


def pick_metric(metrics: Dict[str, float], key: Optional[str]) -> str:
    """The metric to report: ``key`` or the first ``top1`` one."""
    if key is not None:
        if key not in metrics:
            raise KeyError(f'metric {key!r} not among {sorted(metrics)}')
        return key
    for name in metrics:
        if 'top1' in name:
            return name
    return next(iter(metrics))


def write_json(path: str, payload: Any) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(payload, f, indent=2, default=_jsonable)
        f.write('\n')


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, 'tolist'):
        return value.tolist()
    raise TypeError(f'cannot write {type(value).__name__} to JSON')


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]
                   ) -> str:
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---' for _ in header) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(str(c) for c in row) + ' |')
    return '\n'.join(lines)


def use_agg() -> Any:
    """matplotlib with the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt
