"""The parts of ``tools/benchmark/gpu_check.sh``, one per call.

* ``amp``: training steps under mmengine's ``AmpOptimWrapper``, float16
  with a dynamic loss scale and bfloat16, for CLCR and late fusion: losses,
  loss scale, step time, whether every gradient stayed finite.
* ``compile``: eager steps, then ``model.train_step`` compiled exactly as
  mmengine's Runner does for ``compile = dict(...)`` in a config; first
  (compiling) step, steady step time, the graph breaks TorchDynamo
  reports for the loss-mode forward, and the kernels one whole
  ``train_step`` launches eager and compiled (``step_dispatches.py``'s
  profiler count: host dispatches, and GPU kernels on CUDA).
* ``ddp``: run by ``torchrun``; mmengine's ``init_dist`` and
  ``MMDistributedDataParallel`` with DDP's defaults
  (``find_unused_parameters=False``), two steps per variant (DDP reports an
  unused parameter on the step after it).
* ``merge``: collect the parts' JSON records (and the logs of failed parts)
  into one record.

The step time and peak memory of CLCR vs late fusion come from
``model_step.py``, which the shell script calls directly.

Example::

    bash tools/benchmark/gpu_check.sh                 # one GPU, < 8 min
    bash tools/benchmark/gpu_check.sh --device cpu --dry-run   # tiny, CPU
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_utils as bu  # noqa: E402
import model_step as ms  # noqa: E402
import step_dispatches as sd  # noqa: E402

PARTS = ('amp', 'compile', 'ddp', 'merge')
AMP_DTYPES = ('float16', 'bfloat16')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='One part of the GPU check (see gpu_check.sh).')
    parser.add_argument('part', choices=PARTS)
    ms.add_model_args(parser)
    parser.add_argument(
        '--steps', type=int, default=3, help='training steps per variant')
    parser.add_argument(
        '--compile-backend',
        default='inductor',
        help="torch.compile backend (default inductor; 'eager' needs no "
        'compiler, for CPU dry runs)')
    parser.add_argument(
        '--dist-backend',
        default='nccl',
        help="process group backend of the ddp part (default nccl; gloo "
        'on CPU)')
    parser.add_argument(
        '--parts-dir', help='merge: the folder of the parts\' records')
    parser.add_argument('--out', help='write the record as JSON here')
    return parser.parse_args(argv)


def _setup(args: argparse.Namespace):
    import clcr_mm  # noqa: F401  (registers modules, patches mmaction2)
    device = bu.setup_torch(args.device, args.threads)
    setup = ms.prepare(args)
    batch = ms.move_batch(
        ms.make_batch(setup['shapes'], setup['batch_size'],
                      setup['num_classes'], setup['regression'], args.seed),
        device)
    return device, setup, batch


def _build(setup: dict, variant: str, device: torch.device):
    torch.manual_seed(0)
    return bu.build_model(bu.fusion_variant(setup['model_cfg'], variant),
                          device)


def _timed_steps(step: Callable[[], Dict[str, torch.Tensor]],
                 device: torch.device, steps: int) -> Dict[str, Any]:
    """Run ``steps`` training steps; losses and per-step wall times."""
    losses: List[float] = []
    times: List[float] = []
    for _ in range(steps):
        bu.synchronize(device)
        start = time.perf_counter()
        log_vars = step()
        bu.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
        losses.append(float(log_vars['loss']))
    return dict(
        losses=losses,
        losses_finite=all(map(math.isfinite, losses)),
        step_ms=times,
        # the first step pays allocation / autotuning / compilation
        steady_step_ms=bu.summarize([t / 1000 for t in times[1:] or times
                                     ])['median_ms'])


def _grads_finite(model: torch.nn.Module) -> bool:
    return all(
        torch.isfinite(p.grad).all().item() for p in model.parameters()
        if p.grad is not None)


def amp_optim_wrapper(model: torch.nn.Module, cfg, device: torch.device,
                      dtype: str):
    """The config's optimizer in mmengine's ``AmpOptimWrapper`` (dynamic
    loss scale) on CUDA; on CPU, where that wrapper refuses to run, the
    plain ``OptimWrapper`` (the step then runs under CPU autocast)."""
    from mmengine.optim import build_optim_wrapper
    optim_cfg = dict(copy.deepcopy(cfg.get('optim_wrapper', None) or dict(
        optimizer=dict(type='SGD', lr=1e-3, momentum=0.9))))
    if device.type == 'cuda':
        optim_cfg.update(type='AmpOptimWrapper', dtype=dtype,
                         loss_scale='dynamic')
    else:
        optim_cfg['type'] = 'OptimWrapper'
        for key in ('dtype', 'loss_scale'):
            optim_cfg.pop(key, None)
    return build_optim_wrapper(model, optim_cfg)


def amp_part(args: argparse.Namespace) -> Dict[str, Any]:
    device, setup, batch = _setup(args)
    results = {}
    for dtype in AMP_DTYPES:
        for variant in args.variants:
            model = _build(setup, variant, device).train()
            optim = amp_optim_wrapper(model, setup['cfg'], device, dtype)
            cpu_autocast = torch.autocast('cpu', getattr(torch, dtype),
                                          enabled=device.type == 'cpu')

            def step(model=model, optim=optim, ctx=cpu_autocast):
                with ctx:
                    return model.train_step(batch, optim)

            run = _timed_steps(step, device, args.steps)
            scaler = getattr(optim, 'loss_scaler', None)
            run.update(
                optim_wrapper=type(optim).__name__,
                loss_scale=float(scaler.get_scale()) if scaler else None,
                grads_finite=_grads_finite(model),
                cuda_max_allocated_mb=bu.cuda_peak_mb(device))
            results[f'{variant}/{dtype}'] = run
    return dict(results=results,
                ok=all(r['losses_finite'] and r['grads_finite']
                       for r in results.values()))


def compile_part(args: argparse.Namespace) -> Dict[str, Any]:
    device, setup, batch = _setup(args)
    results = {}
    for variant in args.variants:
        model = _build(setup, variant, device).train()
        optim = ms.build_optim_wrapper(model, setup['cfg'], device, False)
        eager = _timed_steps(lambda: model.train_step(batch, optim), device,
                             args.steps)
        eager_launches = sd.count_step(
            lambda: model.train_step(batch, optim), device, warmup=0)
        data = model.data_preprocessor(batch, True)
        explained = torch._dynamo.explain(
            lambda d: model(**d, mode='loss'))(data)
        torch._dynamo.reset()
        # as mmengine's Runner._maybe_compile does for `compile` in a config
        model.train_step = torch.compile(
            model.train_step, backend=args.compile_backend)
        compiled = _timed_steps(lambda: model.train_step(batch, optim),
                                device, args.steps + 1)
        results[variant] = dict(
            eager=eager,
            compiled=compiled,
            train_step_launches=dict(
                eager=eager_launches,
                compiled=sd.count_step(
                    lambda: model.train_step(batch, optim), device,
                    warmup=0)),
            first_compiled_step_ms=compiled['step_ms'][0],
            compiled_over_eager=compiled['steady_step_ms'] /
            eager['steady_step_ms'],
            loss_forward_graph_breaks=explained.graph_break_count,
            loss_forward_graphs=explained.graph_count,
            break_reasons=sorted({
                str(b.reason).splitlines()[0]
                for b in explained.break_reasons
            })[:20])
        torch._dynamo.reset()
    return dict(backend=args.compile_backend, results=results,
                ok=all(r['compiled']['losses_finite']
                       for r in results.values()))


def ddp_part(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """Two DDP training steps per variant; run under torchrun."""
    from mmengine.dist import get_rank, get_world_size, init_dist
    from mmengine.model import MMDistributedDataParallel
    if torch.cuda.is_available():
        init_dist('pytorch', backend=args.dist_backend)
    else:  # init_dist would call torch.cuda.set_device; env:// of torchrun
        torch.distributed.init_process_group(backend=args.dist_backend)
    if args.device.startswith('cuda'):
        args.device = f'cuda:{torch.cuda.current_device()}'
    device, setup, batch = _setup(args)
    results = {}
    for variant in args.variants:
        model = _build(setup, variant, device)
        ddp = MMDistributedDataParallel(
            module=model,
            device_ids=[device.index] if device.type == 'cuda' else None,
            broadcast_buffers=False,
            find_unused_parameters=False)
        optim = ms.build_optim_wrapper(model, setup['cfg'], device, False)
        try:
            run = _timed_steps(lambda: ddp.train_step(batch, optim), device,
                               2)
            run['ok'] = run['losses_finite']
        except RuntimeError as err:  # e.g. a parameter without gradient
            run = dict(ok=False, error=str(err).splitlines()[0])
        results[variant] = run
    record = dict(
        backend=args.dist_backend,
        world_size=get_world_size(),
        find_unused_parameters=False,
        results=results,
        ok=all(r['ok'] for r in results.values()))
    torch.distributed.destroy_process_group()
    return record if get_rank() == 0 else None


def merge_part(args: argparse.Namespace) -> Dict[str, Any]:
    """One record from the parts' records in ``--parts-dir``: each part's
    JSON, or its status and log tail when it left none."""
    parts: Dict[str, Any] = {}
    for name in ('amp', 'compile', 'ddp', 'model_step'):
        path = osp.join(args.parts_dir, f'{name}.json')
        log = osp.join(args.parts_dir, f'{name}.log')
        if osp.isfile(path):
            with open(path) as f:
                parts[name] = json.load(f)
            continue
        if not osp.isfile(log):
            parts[name] = dict(ok=False, error='not run')
            continue
        with open(log, errors='replace') as f:
            tail = f.read()[-3000:]
        parts[name] = dict(ok=False, error='no record written', log=tail)
    step = parts['model_step']
    if 'results' in step:
        summary = dict(
            clcr_over_late_train=step.get('headline_clcr_over_late_train'),
            peak_cuda_mb={
                v: r.get('memory', {}).get('cuda_max_allocated_mb')
                for v, r in step['results'].items()
            },
            train_ms={
                v: r['train']['median_ms']
                for v, r in step['results'].items()
            })
    else:
        summary = None
    return dict(
        benchmark='gpu_check',
        command=os.environ.get('GPU_CHECK_COMMAND', bu.command_line()),
        dry_run=os.environ.get('GPU_CHECK_DRY_RUN') == '1',
        environment=bu.environment(
            torch.device('cuda' if torch.cuda.is_available() else 'cpu')),
        ok={
            name: bool(part.get('ok', 'results' in part))
            for name, part in parts.items()
        },
        step_summary=summary,
        parts=parts)


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    args = parse_args(argv)
    record = dict(
        amp=amp_part, compile=compile_part, ddp=ddp_part,
        merge=merge_part)[args.part](args)
    if record is not None:
        if args.part != 'merge':
            record.update(
                part=args.part,
                config=args.config,
                device=args.device,
                variants=list(args.variants),
                command=bu.command_line())
        bu.write_json(args.out, record)
        print(json.dumps({k: v for k, v in record.items()
                          if k in ('part', 'ok', 'step_summary')}))
    return record


if __name__ == '__main__':
    main()
