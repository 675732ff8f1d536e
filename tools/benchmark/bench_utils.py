"""Helpers shared by the scripts in ``tools/benchmark``.

Timing on a shared, busy machine is noisy, so every comparison here is
*interleaved*: the candidates run in turn (ABCABC..., with the order rotated
every round) and each reports the median of its rounds. Slow drifts in the
machine's load then hit every candidate alike instead of whichever happened
to run last.
"""
import contextlib
import copy
import json
import math
import os
import os.path as osp
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

# Fusion variants compared by the benchmarks; 'clcr' is the config as given.
VARIANTS = ('clcr', 'late', 'concat')


# ----------------------------------------------------------------------
# devices, threads, autocast
# ----------------------------------------------------------------------
def setup_torch(device: str, threads: Optional[int]) -> torch.device:
    """Pick the device and the number of intra-op CPU threads.

    Args:
        device (str): ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        threads (int, optional): CPU threads for torch; None or 0 = every
            core this process may use.

    Returns:
        torch.device: The device to run on.

    Raises:
        RuntimeError: If CUDA is asked for but not available.
    """
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(
            f'--device {device} asked for, but torch sees no CUDA device; '
            'use --device cpu')
    torch.set_num_threads(threads or available_cores())
    return torch.device(device)


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity / cgroups)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def autocast(device: torch.device, enabled: bool):
    """``torch.autocast`` for the device: float16 on CUDA, bfloat16 on CPU
    (the only low-precision type CPU autocast supports); a no-op context
    when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------
def _proc_status_kb(field: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (Linux), or None."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_mb() -> Optional[float]:
    """Resident set size now, in MiB (None where /proc is missing)."""
    kb = _proc_status_kb('VmRSS')
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    Reads ``VmHWM`` from /proc/self/status, which :func:`reset_peak_rss`
    can reset; elsewhere falls back to ``getrusage``'s ``ru_maxrss`` (kB on
    Linux, bytes on macOS), a high-water mark over the process lifetime.
    """
    kb = _proc_status_kb('VmHWM')
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == 'darwin' else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process.

    Writing ``5`` to /proc/self/clear_refs (Linux >= 4.0) sets VmHWM back to
    the current RSS, so a later :func:`peak_rss_mb` reports the peak of the
    code in between. Free heap memory is first handed back to the system
    (glibc ``malloc_trim``); otherwise a step could reuse it without raising
    the RSS and its peak would be under-reported.

    Returns:
        bool: Whether the reset worked; if not, peaks are lifetime peaks.
    """
    _malloc_trim()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """Return free glibc heap pages to the OS (no-op elsewhere)."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_cuda_peak(device: torch.device) -> None:
    """Reset ``torch.cuda.max_memory_allocated`` on a CUDA device."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mb(device: torch.device) -> Optional[float]:
    """``torch.cuda.max_memory_allocated`` in MiB, None off CUDA."""
    if device.type != 'cuda':
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


# ----------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------
def interleaved_times(
        candidates: Dict[str, Callable[[], Any]],
        device: torch.device,
        repeats: int,
        warmup: int = 1,
        inner: int = 1,
        progress: bool = False,
        cpu_times: Optional[Dict[str, List[float]]] = None
) -> Dict[str, List[float]]:
    """Time several callables in interleaved rounds.

    Every callable first runs ``warmup`` times (allocator, oneDNN primitive
    caches and cuDNN autotuning settle), then ``repeats`` rounds follow; in
    each round every callable runs ``inner`` times back to back and its
    mean time per call is recorded. The order of the candidates rotates
    from round to round (ABC, BCA, CAB, ...), so neither position nor a
    drift in the machine's load favours one of them.

    Args:
        candidates (dict[str, callable]): Name -> function without
            arguments doing one unit of work (e.g. one training step).
        device (torch.device): Synchronised before reading the clock.
        repeats (int): Timed rounds (>= 1).
        warmup (int): Untimed calls per candidate before the rounds.
        inner (int): Calls per candidate and round.
        progress (bool): Show mmengine's progress bar over the rounds.
        cpu_times (dict, optional): If given, filled like the result with
            the CPU time (``time.process_time``, all threads of this
            process) per call. On a machine shared with other jobs, CPU time
            of a single-threaded run barely depends on how long the job
            waited for a core, unlike wall time; with several threads it
            also counts threads spinning at barriers.

    Returns:
        dict[str, list[float]]: Seconds per call, one entry per round, in
        round order (so entry ``i`` of two candidates is a matched pair).
    """
    if repeats < 1 or inner < 1:
        raise ValueError(f'repeats and inner must be >= 1, got {repeats}, '
                         f'{inner}')
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    synchronize(device)
    times: Dict[str, List[float]] = {name: [] for name in names}
    if cpu_times is not None:
        cpu_times.update({name: [] for name in names})
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(repeats, file=sys.stderr)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(inner):
                candidates[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / inner)
            if cpu_times is not None:
                cpu_times[name].append(
                    (time.process_time() - cpu_start) / inner)
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return times


def summarize(times: Sequence[float]) -> Dict[str, float]:
    """Median, min, max and median absolute deviation of a list of times,
    in milliseconds."""
    ms = [t * 1000 for t in times]
    med = statistics.median(ms)
    return dict(
        median_ms=med,
        min_ms=min(ms),
        max_ms=max(ms),
        mad_ms=statistics.median(abs(x - med) for x in ms),
        rounds=len(ms))


def paired_ratio(numerator: Sequence[float],
                 denominator: Sequence[float]) -> float:
    """Median over rounds of the per-round ratio: robust to load drifts,
    because both members of a pair ran within the same round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): the exponent p of
    y ~ x^p."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    var = sum((a - mx)**2 for a in lx)
    if var == 0:
        return float('nan')
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / var


def linear_fit(xs: Sequence[float],
               ys: Sequence[float]) -> Tuple[float, float, float]:
    """Least-squares line y = a + b x.

    Returns:
        tuple[float, float, float]: Intercept a, slope b and R^2.
    """
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx)**2 for x in xs)
    if sxx == 0:
        return my, float('nan'), float('nan')
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my)**2 for y in ys)
    ss_res = sum((y - intercept - slope * x)**2 for x, y in zip(xs, ys))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return intercept, slope, r2


def two_term_fit(x1: Sequence[float], x2: Sequence[float],
                 ys: Sequence[float]) -> Tuple[float, float, float]:
    """Least-squares y = a x1 + b x2 (no intercept).

    Used to split a cost into a part linear in the tokens (projections,
    feed-forward) and a part linear in the query-key pairs (attention).

    Returns:
        tuple[float, float, float]: a, b and R^2 (about the mean of y).
    """
    s11 = sum(a * a for a in x1)
    s22 = sum(b * b for b in x2)
    s12 = sum(a * b for a, b in zip(x1, x2))
    s1y = sum(a * y for a, y in zip(x1, ys))
    s2y = sum(b * y for b, y in zip(x2, ys))
    det = s11 * s22 - s12 * s12
    if det == 0:
        return float('nan'), float('nan'), float('nan')
    a = (s1y * s22 - s2y * s12) / det
    b = (s2y * s11 - s1y * s12) / det
    my = sum(ys) / len(ys)
    ss_tot = sum((y - my)**2 for y in ys)
    ss_res = sum((y - a * u - b * v)**2 for u, v, y in zip(x1, x2, ys))
    return a, b, (1 - ss_res / ss_tot) if ss_tot > 0 else 1.0


# ----------------------------------------------------------------------
# model configs
# ----------------------------------------------------------------------
def fusion_variant(model_cfg: dict, variant: str) -> dict:
    """Derive a baseline from a CLCR model config.

    The encoders, data preprocessor and head settings stay; only the fusion
    changes, exactly as ``configs/clcr_synthetic_av_late_fusion.py`` and
    ``configs/clcr_synthetic_av_concat.py`` do it: no IntraCED / InterCAD,
    a baseline fusion neck, no CLCR regularisers, and only the deep level's
    aligners in the encoder (the only level the baselines fuse).

    Args:
        model_cfg (dict): A ``CLCRRecognizer`` config with ``inter_cad``.
        variant (str): ``'clcr'`` (returned unchanged), ``'late'``
            (:class:`LateFusion` + :class:`LateFusionHead`) or ``'concat'``
            (:class:`ConcatFusion` + the config's head).

    Returns:
        dict: A new model config.
    """
    if variant not in VARIANTS:
        raise ValueError(f'variant must be one of {VARIANTS}, got '
                         f'{variant!r}')
    cfg = copy.deepcopy(model_cfg)
    if variant == 'clcr':
        if cfg.get('inter_cad') is None:
            raise ValueError('the config is not a CLCR model (no inter_cad); '
                             'give the CLCR config, the baselines are '
                             'derived from it')
        return cfg
    dims = cfg['backbone'].get('embed_dims', 256)
    num_mod = len(cfg['backbone']['modalities'])
    cfg.update(
        intra_ced=None,
        inter_cad=None,
        loss_sep=None,
        loss_cross=None,
        loss_budget=None,
        loss_align=None)
    # both baselines fuse the deep level only, and build no other aligners
    cfg['backbone'] = dict(cfg['backbone'], levels=('deep', ))
    head = dict(cfg['cls_head'])
    if variant == 'late':
        cfg['fusion'] = dict(type='LateFusion')
        head.update(type='LateFusionHead', num_modalities=num_mod)
    else:
        cfg['fusion'] = dict(type='ConcatFusion', out_channels=dims)
        head['in_channels'] = dims
    cfg['cls_head'] = head
    return cfg


def build_model(model_cfg: dict, device: torch.device) -> torch.nn.Module:
    """Build a model from the ``clcr_mm`` registry.

    ``init_weights`` is not called: speed does not depend on the values of
    the weights (PyTorch's default init keeps them finite), and mmengine
    would log every parameter.
    """
    from mmengine.registry import init_default_scope

    from clcr_mm.registry import MODELS
    init_default_scope('clcr_mm')
    return MODELS.build(copy.deepcopy(model_cfg)).to(device)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------
# environment and output
# ----------------------------------------------------------------------
def environment(device: torch.device) -> Dict[str, Any]:
    """What the numbers depend on: versions, threads, CPU, GPU, load."""
    info: Dict[str, Any] = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cores=available_cores(),
        cpu=_cpu_model(),
        device=str(device),
        platform=platform.platform())
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    try:
        info['load_average'] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def write_json(path: Optional[str], payload: Dict[str, Any]) -> None:
    """Write the results as indented JSON (directories are created)."""
    if not path:
        return
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write('\n')


def format_table(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table; floats get 2 decimals (4 under 0.1)."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return 'nan'
            return f'{value:.4f}' if abs(value) < 0.1 else f'{value:.2f}'
        return '-' if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [
        max([len(c)] + [len(r[i]) for r in cells])
        for i, c in enumerate(columns)
    ]
    lines = ['  '.join(c.rjust(w) for c, w in zip(columns, widths))]
    lines.append('  '.join('-' * w for w in widths))
    lines += ['  '.join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return '\n'.join(lines)


def command_line() -> str:
    """The command that is running, for the JSON record."""
    return ' '.join([osp.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:]) \
        if sys.argv and sys.argv[0] else ''


# ----------------------------------------------------------------------
# reference implementations from another git revision (before / after)
# ----------------------------------------------------------------------
REFERENCE_FILES = dict(
    IntraCED='clcr_mm/models/necks/intra_ced.py',
    InterCAD='clcr_mm/models/necks/inter_cad.py')


def validate_rev(rev: str) -> str:
    """The full hash of the commit that git revision ``rev`` names.

    Checked before ``rev`` goes anywhere near a git command line: a value
    starting with ``-`` would be read as an option.

    Args:
        rev (str): A revision from the command line (``--reference-rev``).

    Returns:
        str: The 40-digit commit hash.

    Raises:
        ValueError: If ``rev`` is empty, starts with ``-``, or names no
            commit of this repository.
    """
    import subprocess
    if not rev or rev.startswith('-'):
        raise ValueError(
            f'--reference-rev {rev!r} is not a git revision (empty, or '
            "starts with '-', which git would read as an option)")
    proc = subprocess.run(['git', 'rev-parse', '--verify', '--quiet',
                           '--end-of-options', f'{rev}^{{commit}}'],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(
            f'--reference-rev {rev!r} names no commit of the git repository '
            f'{REPO_ROOT}')
    return proc.stdout.strip()


def resolve_rev(rev: str) -> str:
    """The short commit hash a git revision names now (``HEAD`` moves)."""
    return validate_rev(rev)[:7]


def load_reference_classes(rev: str) -> Dict[str, type]:
    """IntraCED and InterCAD as they were at git revision ``rev``.

    Lets a benchmark time the old and the new implementation interleaved in
    one process (the fairest before/after comparison on a noisy machine).
    The old source is executed as a module of the same package, so its
    relative imports resolve; its registry decorator is dropped, since the
    names are taken by the current classes. Both versions have the same
    parameters, so state dicts move between them.

    Args:
        rev (str): Any git revision of this repository, e.g. ``HEAD``.

    Returns:
        dict[str, type]: ``{'IntraCED': cls, 'InterCAD': cls}``.
    """
    import importlib.util
    import subprocess
    import types
    commit = validate_rev(rev)
    classes = {}
    for name, path in REFERENCE_FILES.items():
        try:
            source = subprocess.run(['git', 'show', f'{commit}:{path}'],
                                    cwd=REPO_ROOT,
                                    check=True,
                                    capture_output=True,
                                    text=True).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            raise RuntimeError(
                f'cannot read {path} at git revision {rev!r} in '
                f'{REPO_ROOT}: {getattr(err, "stderr", err)}') from err
        source = source.replace('@MODELS.register_module()', '')
        package = path.rsplit('/', 1)[0].replace('/', '.')
        mod_name = f'{package}._reference_{name.lower()}'
        spec = importlib.util.spec_from_loader(mod_name, loader=None)
        module = types.ModuleType(mod_name)
        module.__spec__ = spec
        module.__package__ = package
        module.__file__ = f'{rev}:{path}'
        exec(compile(source, module.__file__, 'exec'), module.__dict__)
        classes[name] = getattr(module, name)
    return classes


def swap_reference(model: torch.nn.Module,
                   classes: Dict[str, type]) -> torch.nn.Module:
    """Replace a CLCRRecognizer's IntraCED / InterCAD modules by reference
    classes holding the same weights (and the same train/eval mode)."""

    def swap(module: torch.nn.Module) -> torch.nn.Module:
        cls = classes[type(module).__name__]
        new = cls.__new__(cls)
        # Same constructor arguments are not recorded, so clone the object:
        # attributes and submodules stay, only the methods change.
        new.__dict__.update(copy.deepcopy(module.__dict__))
        return new

    if getattr(model, 'intra_ced', None) is not None:
        for level in list(model.intra_ced):
            model.intra_ced[level] = swap(model.intra_ced[level])
    if getattr(model, 'inter_cad', None) is not None:
        model.inter_cad = swap(model.inter_cad)
    return model
