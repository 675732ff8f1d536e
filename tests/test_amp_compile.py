"""``--amp`` and ``compile`` in a config: every test runs its training
steps on the device present, the real CUDA paths where a GPU is (AMP with a
loss scaler, Inductor), harmless ones on CPU (AMP falls back to float32 with
a warning, the model traces under TorchDynamo's eager backend), plus the
bfloat16 autocast the benchmark scripts use."""
import logging
import math
import os
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from reliability_helpers import (RUNNER_KEYS, runner_from, scalars,
                                 tiny_mosi_config, write_mmsa_pickle)
from reliability_helpers import \
    fresh_mmsa_cache_one_thread  # noqa: F401  (autouse fixture)
from tool_loader import load_tool

without_yapf = load_tool('train_test_setup.py').without_yapf


def _tiny_cfg(tmp_path, extra: str = '') -> Config:
    data = tmp_path / 'mosi'
    write_mmsa_pickle(data, sizes=dict(train=4, valid=2, test=2))
    path = tiny_mosi_config(tmp_path / 'cfg.py', data,
                            extra='train_cfg = dict(max_epochs=1)\n' + extra)
    return Config.fromfile(str(path))


def _train_losses(work_dir) -> list:
    (run, ) = scalars(work_dir)
    return [line['loss'] for line in run if 'loss' in line]


class _LogRecords(logging.Handler):
    """Collects the messages of mmengine's current logger."""

    def __init__(self) -> None:
        super().__init__()
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_amp_flag_is_cuda_amp_or_float32_fallback(tmp_path, monkeypatch):
    """``tools/train.py --amp`` sets mmengine's AmpOptimWrapper and trains
    in mixed precision with a loss scaler on CUDA; without CUDA the launch
    setup turns it back into OptimWrapper with a warning and training runs
    in float32. Either way a real training run takes its steps."""
    train = load_tool('train.py')
    cfg = _tiny_cfg(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['train.py', cfg.filename, '--amp'])
    logger, records = MMLogger.get_current_instance(), _LogRecords()
    logger.addHandler(records)
    try:
        cfg = train.merge_args(cfg, train.parse_args())
    finally:
        logger.removeHandler(records)
    cuda = torch.cuda.is_available()
    if cuda:
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.loss_scale == 'dynamic'
    else:
        assert cfg.optim_wrapper.type == 'OptimWrapper'
        assert 'loss_scale' not in cfg.optim_wrapper
        assert any('AMP needs CUDA' in m for m in records.messages)
    runner = runner_from(cfg, tmp_path / 'work')
    runner.train()
    wrapper = runner.optim_wrapper
    if cuda:
        assert type(wrapper).__name__ == 'AmpOptimWrapper'
        # the dynamic loss scaler really scaled this run's losses
        assert wrapper.loss_scaler.get_scale() > 1
    else:
        assert type(wrapper).__name__ == 'OptimWrapper'
    # master weights stay float32 under AMP too
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())
    losses = _train_losses(tmp_path / 'work')
    assert len(losses) == 2 and all(map(math.isfinite, losses))


def test_compile_config_trains(tmp_path):
    """``compile`` in a config (mmengine compiles ``model.train_step``):
    the CLCR model traces with its graph breaks (the token budget's k is
    a Python int) and trains. The CPU test uses TorchDynamo's ``eager``
    backend, which needs no C++ compiler; on CUDA, Inductor."""
    backend = 'inductor' if torch.cuda.is_available() else 'eager'
    cfg = _tiny_cfg(tmp_path, f'compile = dict(backend={backend!r})\n')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.launcher = 'none'
    # Given the config, the Runner reads ``compile`` from it.
    runner = Runner(**{key: cfg.get(key)
                       for key in RUNNER_KEYS}, cfg=without_yapf(cfg))
    runner.train()
    # mmengine replaced the bound method by the compiled function.
    assert 'train_step' in vars(runner.model)
    losses = _train_losses(tmp_path / 'work')
    assert len(losses) == 2 and all(map(math.isfinite, losses))


def test_bfloat16_autocast(tmp_path):
    """The benchmarks' ``--amp`` on CPU (and bfloat16 AMP on CUDA): the
    CLCR loss and its backward run under ``torch.autocast(<device>,
    torch.bfloat16)`` on the device the Runner put the model on, with the
    matrix products in bfloat16 and finite losses and gradients."""
    runner = runner_from(_tiny_cfg(tmp_path), tmp_path / 'work')
    model = runner.model.train()
    device = next(model.parameters()).device.type
    data = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    with torch.autocast(device, dtype=torch.bfloat16):
        losses = model(**data, mode='loss')
        intra = model.extract_feat(data['inputs'], data['data_samples'])
    assert intra['fused']['feat'].dtype == torch.bfloat16
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get('CLCR_TEST_INDUCTOR')),
    reason='Inductor on the CPU compiles C++ for minutes; set '
    'CLCR_TEST_INDUCTOR=1 to run it here')
def test_fusion_compiles_with_inductor_and_matches_eager():
    """``compile_fusion`` with Inductor, the backend GPU users get: the
    graph from the tokens to the losses compiles (on the CPU, torch 2.11's
    C++ vectoriser once failed on IntraCED's block bias) and gives eager's
    losses and gradients, with the levels batched and one by one."""
    from conftest import tiny_inputs, tiny_model_cfg, tiny_samples
    from clcr_mm.registry import MODELS
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    inputs = {m: x.to(device) for m, x in tiny_inputs().items()}
    samples = tiny_samples(masks=[dict(b=False), None, None, None])
    for batch_levels in (True, False):
        torch.manual_seed(0)
        cfg = tiny_model_cfg(batch_levels=batch_levels)
        cfg['intra_ced'] = dict(cfg['intra_ced'], dropout=0.0)
        cfg['inter_cad'] = dict(cfg['inter_cad'], dropout=0.0)
        eager = MODELS.build(cfg).to(device).train()
        compiled = MODELS.build(dict(cfg, compile_fusion=True)).to(device)
        compiled.load_state_dict(eager.state_dict())
        compiled.train()
        results = []
        for model in (eager, compiled):
            torch.manual_seed(1)  # the encoders' dropout
            loss, log = model.parse_losses(model(inputs, samples, 'loss'))
            loss.backward()
            results.append((log, {n: p.grad for n, p in
                                  model.named_parameters()
                                  if p.grad is not None}))
        (log_e, grads_e), (log_c, grads_c) = results
        for key, value in log_e.items():
            assert torch.allclose(log_c[key], value, atol=1e-4), key
        assert grads_c.keys() == grads_e.keys()
        for name, grad in grads_e.items():
            assert torch.allclose(grads_c[name], grad, atol=1e-4,
                                  rtol=1e-3), name
        torch._dynamo.reset()
