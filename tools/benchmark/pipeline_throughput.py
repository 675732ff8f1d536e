"""Does the input pipeline keep up with training?

For each data set kind the script builds the training dataset from the
project's dataset config on small data generated in a temporary directory
(in the real on-disk layout, by the project's own data tools), then
measures:

* ``per_worker_sps``: samples/s of ``dataset[i]`` (load + decode +
  transforms + pack) in one process with one torch thread, which is what
  one DataLoader worker delivers;
* ``loader_sps`` (``--loader-workers N``): samples/s of a real
  ``torch.utils.data.DataLoader`` with N worker processes and mmengine's
  ``pseudo_collate``, as the runner uses it;
* ``model_sps``: samples/s a CLCR training step consumes (mmengine
  ``train_step`` of the benchmark's config at the pipeline's real output
  shapes, all cores, median of ``--model-repeats``), or the value from a
  ``model_step.py`` JSON (``--model-json``);

and from them ``workers_to_keep_up`` = model_sps / per_worker_sps and
``loading_share`` = the share of CPU time that loading takes when workers
and training share the same cores (per-sample loading time / (loading +
training time per sample x training threads)); ``loading_share_cpu`` and
``loading_cores_per_training_core`` are the same from process CPU times
(robust on a busy machine).

Rows (``--rows``):

* ``synthetic_av``: video + audio decoding of the embedded synthetic AV
  benchmark (real .mp4 files with AAC audio from
  ``tools/data/synthetic_av/generate.py``), ``configs/clcr_synthetic_av.py``;
* ``ucf101``: rawframe RGB + flow loading in the UCF101 layout: a few
  320x240 MJPG .avi clips (UCF101's size) written with OpenCV, run through
  ``tools/data/ucf101/prepare.py`` (frames + Farneback flow + lists),
  ``configs/clcr_ucf101.py``;
* ``mosi``: MOSI-style feature loading from a pickle with the real MMSA keys
  and dimensions (text 768, audio 5, vision 20; aligned, 50 steps),
  ``configs/clcr_mosi.py``.

A row whose data code or config is not in the repository is skipped with a
message naming what is missing.

Example::

    python tools/benchmark/pipeline_throughput.py \\
        --out work_dirs/bench/pipeline_throughput.json
"""
import argparse
import importlib.util
import os
import os.path as osp
import pickle
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_utils as bu  # noqa: E402

ROWS = ('synthetic_av', 'ucf101', 'mosi')
# Per row: dataset base config and the CLCR config that consumes it.
ROW_CONFIGS = dict(
    synthetic_av=('configs/_base_/datasets/synthetic_av.py',
                  'configs/clcr_synthetic_av.py'),
    ucf101=('configs/_base_/datasets/ucf101_rgb_flow.py',
            'configs/clcr_ucf101.py'),
    mosi=('configs/_base_/datasets/mosi.py', 'configs/clcr_mosi.py'))
UCF_SIZE = (320, 240)  # UCF101 frames are 320x240


class Skip(Exception):
    """A row cannot run (a piece of the data code is missing)."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Input pipeline throughput (samples/s per worker) vs '
        'the samples/s a CLCR training step consumes.')
    parser.add_argument(
        '--rows',
        nargs='+',
        default=list(ROWS),
        choices=ROWS,
        help='which pipelines (default: all)')
    parser.add_argument(
        '--samples',
        type=int,
        default=24,
        help='samples timed per pipeline (default 24)')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed samples (default 2)')
    parser.add_argument(
        '--num-clips',
        type=int,
        default=8,
        help='clips generated per video data set (default 8)')
    parser.add_argument(
        '--ucf-frames',
        type=int,
        default=48,
        help='frames per generated UCF101 clip (default 48, about 2 s)')
    parser.add_argument(
        '--loader-workers',
        type=int,
        default=2,
        help='also time a DataLoader with this many workers (0 = skip; '
        'default 2)')
    parser.add_argument(
        '--skip-model',
        action='store_true',
        help='do not measure the model (no comparison unless --model-json)')
    parser.add_argument(
        '--model-json',
        action='append',
        default=[],
        metavar='ROW=PATH',
        help='take model samples/s from a model_step.py JSON instead of '
        'measuring, e.g. synthetic_av=work_dirs/bench/model_step.json')
    parser.add_argument(
        '--model-batch-size',
        type=int,
        default=None,
        help="batch size of the model measurement (default: the config's, "
        'at most 8 on CPU)')
    parser.add_argument(
        '--model-repeats',
        type=int,
        default=3,
        help='timed training steps of the model (default 3)')
    parser.add_argument(
        '--threads',
        type=int,
        default=0,
        help='torch threads of the model step (default 0 = all cores)')
    parser.add_argument(
        '--device', default='cpu', help="model device (default cpu)")
    parser.add_argument(
        '--amp', action='store_true', help='model step under autocast')
    parser.add_argument(
        '--work-dir',
        help='where to generate the data (default: a temporary directory, '
        'removed at the end)')
    parser.add_argument('--seed', type=int, default=0, help='seed')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------
# data generation, in the real on-disk layouts
# ----------------------------------------------------------------------
def _import_tool(rel_path: str, name: str):
    """Import a script under tools/ by path (tools/ is not a package)."""
    path = osp.join(bu.REPO_ROOT, rel_path)
    if not osp.isfile(path):
        raise Skip(f'{rel_path} is not in the repository yet')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_synthetic_av(root: str, args: argparse.Namespace) -> None:
    gen = _import_tool('tools/data/synthetic_av/generate.py',
                       '_bench_synthetic_av_generate')
    gen.generate(
        out_dir=root,
        num_train=args.num_clips,
        num_val=1,
        num_test=1,
        seed=args.seed,
        workers=1)


def make_ucf101(root: str, args: argparse.Namespace) -> None:
    """A few UCF101-sized clips in the official layout, then the project's
    preparation tool (frame + flow extraction and split lists)."""
    import cv2
    prep = _import_tool('tools/data/ucf101/prepare.py', '_bench_ucf_prepare')
    classes = ('ApplyEyeMakeup', 'Biking')
    rng = np.random.default_rng(args.seed)
    width, height = UCF_SIZE
    train, test = [], []
    for c_idx, cls in enumerate(classes):
        os.makedirs(osp.join(root, 'UCF-101', cls), exist_ok=True)
        for g in range(1, args.num_clips // len(classes) + 2):
            name = f'{cls}/v_{cls}_g{g:02d}_c01.avi'
            writer = cv2.VideoWriter(
                osp.join(root, 'UCF-101', name),
                cv2.VideoWriter_fourcc(*'MJPG'), 25, (width, height))
            if not writer.isOpened():
                raise Skip('OpenCV cannot write MJPG .avi files here')
            # Textured background and a moving block: flow is non-trivial
            # and JPEGs compress like natural frames, not like flat colour.
            background = rng.integers(0, 255, (height // 8, width // 8, 3),
                                      dtype=np.uint8)
            background = cv2.resize(background, (width, height))
            for t in range(args.ucf_frames):
                frame = background.copy()
                x = (8 + 4 * t) % (width - 60)
                frame[80:140, x:x + 60] = (30 + 50 * c_idx, 200, 230)
                writer.write(frame)
            writer.release()
            # group 1 goes to the test list, the others train (split 1)
            (test if g == 1 else train).append(name)
    ann = osp.join(root, 'ucfTrainTestlist')
    os.makedirs(ann, exist_ok=True)
    with open(osp.join(ann, 'classInd.txt'), 'w') as f:
        f.write(''.join(f'{i + 1} {c}\r\n' for i, c in enumerate(classes)))
    with open(osp.join(ann, 'trainlist01.txt'), 'w') as f:
        f.write(''.join(
            f'{n} {classes.index(n.split("/")[0]) + 1}\r\n' for n in train))
    with open(osp.join(ann, 'testlist01.txt'), 'w') as f:
        f.write(''.join(f'{n}\r\n' for n in test))
    # One held-out validation group: the config trains on the rest.
    prep.prepare(root, workers=1, splits=(1, ), val_groups=1)


def make_mosi(root: str, args: argparse.Namespace) -> None:
    """An aligned MOSI pickle with the real MMSA keys, dtypes, dimensions
    and zero padding (see tools/data/mmsa/README.md)."""
    rng = np.random.default_rng(args.seed)
    length = 50
    dims = dict(text=768, audio=5, vision=20)
    data = {}
    for split, n in (('train', max(args.num_clips, 8)), ('valid', 2),
                     ('test', 2)):
        lengths = rng.integers(5, length + 1, n)

        def feats(dim: int) -> np.ndarray:
            x = rng.standard_normal((n, length, dim)).astype(np.float32)
            for i, v in enumerate(lengths):
                x[i, v:] = 0
            return x

        labels = rng.uniform(-3, 3, n).astype(np.float32)
        text_bert = np.zeros((n, 3, length))
        for i, v in enumerate(lengths):
            text_bert[i, 0, :v] = rng.integers(100, 3000, v)
            text_bert[i, 1, :v] = 1
        data[split] = {
            'raw_text': [f'{split} {i}' for i in range(n)],
            'audio': feats(dims['audio']),
            'vision': feats(dims['vision']),
            'id': [f'v{split}{i}$_${i}' for i in range(n)],
            'text': feats(dims['text']),
            'text_bert': text_bert,
            'audio_lengths': list(lengths),
            'vision_lengths': list(lengths),
            'annotations': ['Positive'] * n,
            'classification_labels': np.sign(labels) + 1,
            'regression_labels': labels,
        }
    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, 'aligned_50.pkl'), 'wb') as f:
        pickle.dump(data, f)


MAKERS: Dict[str, Callable[[str, argparse.Namespace], None]] = dict(
    synthetic_av=make_synthetic_av, ucf101=make_ucf101, mosi=make_mosi)


# ----------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------
def build_dataset(row: str, root: str):
    """The training dataset of the row's dataset config, on ``root``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from clcr_mm.registry import DATASETS
    ds_rel, _ = ROW_CONFIGS[row]
    path = osp.join(bu.REPO_ROOT, ds_rel)
    if not osp.isfile(path):
        raise Skip(f'{ds_rel} is not in the repository yet')
    cfg = Config.fromfile(path)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = root
    init_default_scope('clcr_mm')
    try:
        return DATASETS.build(ds_cfg), cfg
    except KeyError as err:  # a dataset / transform not registered yet
        raise Skip(f'cannot build the {row} dataset: {err}') from err


def time_dataset(dataset, samples: int, warmup: int) -> Dict[str, Any]:
    """Per-sample time of ``dataset[i]`` in this process, one thread.

    Returns:
        dict: median / mean ms per sample, samples/s per worker, and the
        packed per-sample input shapes.
    """
    threads = torch.get_num_threads()
    # A DataLoader worker runs with one torch thread; so do we here.
    torch.set_num_threads(1)
    try:
        n = len(dataset)
        for i in range(warmup):
            dataset[i % n]
        times, cpu = [], []
        for i in range(samples):
            start, cpu_start = time.perf_counter(), time.process_time()
            packed = dataset[(warmup + i) % n]
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
    finally:
        torch.set_num_threads(threads)
    shapes = {
        k: list(v.shape)
        for k, v in packed['inputs'].items()
    } if isinstance(packed['inputs'], dict) else list(packed['inputs'].shape)
    mean = sum(times) / len(times)
    return dict(
        per_sample_median_ms=statistics.median(times) * 1000,
        per_sample_mean_ms=mean * 1000,
        # CPU time (all threads of this process, e.g. FFmpeg's decoder
        # threads): what a sample costs the machine, whatever the load.
        per_sample_cpu_ms=sum(cpu) / len(cpu) * 1000,
        per_worker_sps=1 / mean,
        packed_shapes=shapes)


def time_loader(dataset, workers: int, samples: int,
                batch_size: int) -> Dict[str, Any]:
    """Samples/s of a DataLoader with ``workers`` processes, after its
    first batch (worker start-up excluded)."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader, RandomSampler
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=samples + batch_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=pseudo_collate)
    it = iter(loader)
    first = next(it)
    start = time.perf_counter()
    count = 0
    for batch in it:
        count += len(batch['data_samples'])
    elapsed = time.perf_counter() - start
    del first
    return dict(workers=workers, batch_size=batch_size,
                samples=count, loader_sps=count / elapsed if elapsed else
                float('nan'))


def model_consumption(row: str, shapes: Dict[str, list],
                      args: argparse.Namespace) -> Dict[str, Any]:
    """Samples/s of CLCR training steps at the pipeline's output shapes."""
    import model_step as ms
    _, model_rel = ROW_CONFIGS[row]
    path = osp.join(bu.REPO_ROOT, model_rel)
    if not osp.isfile(path):
        raise Skip(f'{model_rel} is not in the repository yet')
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    device = bu.setup_torch(args.device, args.threads)
    batch_size = args.model_batch_size or cfg.train_dataloader.batch_size
    if device.type == 'cpu' and not args.model_batch_size:
        batch_size = min(batch_size, 8)
    model_cfg = cfg.model.to_dict()
    head = model_cfg['cls_head']
    # per-sample shapes without the view dim
    per_sample = {m: tuple(s[1:]) for m, s in shapes.items()}
    batch = ms.move_batch(
        ms.make_batch(per_sample, batch_size, head.get('num_classes', 2),
                      head.get('task') == 'regression', args.seed), device)
    bench = ms.Bench('clcr', model_cfg, cfg, device, args.amp)
    cpu: Dict[str, List[float]] = {}
    times = bu.interleaved_times({'clcr': lambda: bench.train_step(batch)},
                                 device, args.model_repeats, 1,
                                 cpu_times=cpu)['clcr']
    median = statistics.median(times)
    return dict(
        source=f'measured: {model_rel} train_step',
        batch_size=batch_size,
        step_median_ms=median * 1000,
        step_cpu_median_ms=statistics.median(cpu['clcr']) * 1000,
        model_sps=batch_size / median,
        threads=torch.get_num_threads())


def model_from_json(path: str) -> Dict[str, Any]:
    import json
    with open(path) as f:
        record = json.load(f)
    train = record['results']['clcr']['train']
    return dict(
        source=f'{path} (model_step.py)',
        batch_size=record['batch_size'],
        step_median_ms=train['median_ms'],
        step_cpu_median_ms=train.get('cpu_median_ms'),
        model_sps=train['samples_per_s'],
        threads=record['environment']['threads'])


def run_row(row: str, args: argparse.Namespace, work_dir: str,
            model_json: Dict[str, str]) -> Dict[str, Any]:
    root = osp.join(work_dir, row)
    start = time.perf_counter()
    MAKERS[row](root, args)
    made = time.perf_counter() - start
    dataset, ds_cfg = build_dataset(row, root)
    result: Dict[str, Any] = dict(
        status='ok', samples_in_dataset=len(dataset),
        data_generation_s=made)
    result.update(time_dataset(dataset, args.samples, args.warmup))
    if args.loader_workers > 0:
        result['loader'] = time_loader(
            dataset, args.loader_workers, args.samples,
            min(ds_cfg.train_dataloader.batch_size, 8))
    model = None
    if row in model_json:
        model = model_from_json(model_json[row])
    elif not args.skip_model:
        model = model_consumption(row, result['packed_shapes'], args)
    if model is not None:
        result['model'] = model
        result['workers_to_keep_up'] = model['model_sps'] / result[
            'per_worker_sps']
        load_s = 1 / result['per_worker_sps']
        # core-seconds per sample: loading runs on one core per worker,
        # training on `threads` cores
        train_core_s = model['threads'] / model['model_sps']
        result['loading_share'] = load_s / (load_s + train_core_s)
        if model.get('step_cpu_median_ms'):
            # The same from CPU times, which a busy machine hardly changes:
            # loading CPU per sample against training CPU per sample.
            load_cpu = result['per_sample_cpu_ms']
            train_cpu = model['step_cpu_median_ms'] / model['batch_size']
            result['loading_share_cpu'] = load_cpu / (load_cpu + train_cpu)
            # cores of loading needed per core of (single-threaded) training
            result['loading_cores_per_training_core'] = load_cpu / train_cpu
    return result


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import clcr_mm  # noqa: F401
    device = bu.setup_torch(args.device, args.threads)
    model_json = {}
    for item in args.model_json:
        row, sep, path = item.partition('=')
        if not sep or row not in ROWS:
            raise ValueError(f'--model-json expects ROW=PATH with ROW in '
                             f'{ROWS}, got {item!r}')
        model_json[row] = path
    tmp = None
    if args.work_dir:
        work_dir = args.work_dir
        os.makedirs(work_dir, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix='clcr_pipeline_')
        work_dir = tmp.name
    results: Dict[str, Any] = {}
    try:
        for row in args.rows:
            try:
                results[row] = run_row(row, args, work_dir, model_json)
            except Skip as skip:
                results[row] = dict(status='skipped', reason=str(skip))
                print(f'[{row}] skipped: {skip}', flush=True)
            except Exception as err:  # report the row, go on with others
                results[row] = dict(
                    status='error',
                    reason=f'{type(err).__name__}: {err}',
                    traceback=traceback.format_exc(limit=5))
                print(f'[{row}] error: {type(err).__name__}: {err}',
                      flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    record = dict(
        benchmark='pipeline_throughput',
        command='python tools/benchmark/pipeline_throughput.py ' +
        ' '.join(argv),
        samples=args.samples,
        environment=bu.environment(device),
        results=results)
    rows: List[dict] = []
    for row, r in results.items():
        rows.append(
            dict(
                pipeline=row,
                status=r['status'],
                ms_per_sample=r.get('per_sample_mean_ms'),
                cpu_ms_per_sample=r.get('per_sample_cpu_ms'),
                per_worker_sps=r.get('per_worker_sps'),
                loader_sps=r.get('loader', {}).get('loader_sps'),
                model_sps=r.get('model', {}).get('model_sps'),
                workers_needed=r.get('workers_to_keep_up'),
                loading_share=r.get('loading_share'),
                loading_share_cpu=r.get('loading_share_cpu')))
    print(bu.format_table(rows, list(rows[0])) if rows else 'no rows')
    for row, r in results.items():
        if r['status'] != 'ok':
            print(f"{row}: {r['status']}: {r['reason']}")
        else:
            print(f"{row}: packed shapes {r['packed_shapes']}")
    bu.write_json(args.out, record)
    return record


if __name__ == '__main__':
    main()
