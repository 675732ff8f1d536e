"""Reliability: interrupted runs resume exactly, several processes evaluate
every sample once, non-finite losses stop the run with a clear message,
zero-filled modalities are counted, bad inputs and mismatched configs fail
early and clearly, and checkpoints load under ``weights_only=True``."""
import io
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from reliability_helpers import (CRASH_ENV, REPO, finish, free_port,
                                 runner_from, scalars, start_train,
                                 subprocess_env, tiny_mosi_config,
                                 write_mmsa_pickle)
from reliability_helpers import \
    fresh_mmsa_cache_one_thread  # noqa: F401  (autouse fixture)



def _default_custom_hooks() -> list:
    cfg = Config.fromfile(str(REPO / 'configs/_base_/default_runtime.py'))
    return [dict(h) for h in cfg.custom_hooks]


def _state(path) -> dict:
    # Plain torch.load: weights_only=True is torch's default.
    return torch.load(path, map_location='cpu')


def _assert_same_tensors(a, b, where=''):
    """Recursively compare nested dicts/lists of tensors exactly."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


# ----------------------------------------------------------------------
# 1. interrupted training
# ----------------------------------------------------------------------
def test_killed_run_resumes_to_identical_weights_and_logs(tmp_path):
    """A run SIGKILLed in the middle of epoch 2 and resumed with
    ``tools/train.py --resume`` ends with the same weights, optimizer
    state and logged scalars as a run that was never interrupted.

    mmengine's EpochBasedTrainLoop restarts the checkpoint's epoch (it
    cannot skip consumed batches), so the checkpoints are per epoch: the
    partial epoch is lost and recomputed, identically thanks to
    ReseedHook (mmengine does not checkpoint RNG states, and the model
    has dropout)."""
    data = tmp_path / 'mosi'
    write_mmsa_pickle(data)  # 8 train samples: 4 iterations per epoch
    hooks = _default_custom_hooks() + [dict(type='KillAfterIterHook')]
    config = tiny_mosi_config(
        tmp_path / 'tiny_mosi.py', data,
        extra=f'custom_imports = dict(imports=["reliability_helpers"], '
        f'allow_failed_imports=False)\ncustom_hooks = {hooks!r}\n')
    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    kill_env = dict(subprocess_env(), **{CRASH_ENV: '6'})  # epoch 2, iter 2
    runs = [start_train(config, whole), start_train(config, killed,
                                                   env=kill_env)]
    out_whole, out_killed = (finish(p) for p in runs)
    assert runs[0].returncode == 0, out_whole[-3000:]
    assert runs[1].returncode == -signal.SIGKILL, out_killed[-3000:]
    assert (killed / 'epoch_1.pth').exists()
    assert not (killed / 'epoch_2.pth').exists()
    # 'Epoch(train) [2][2/4]' was logged just before the kill.
    assert '[2][2/4]' in out_killed and '[2][3/4]' not in out_killed

    resumed = start_train(config, killed, '--resume')
    out_resumed = finish(resumed)
    assert resumed.returncode == 0, out_resumed[-3000:]
    assert 'resumed epoch: 1, iter: 4' in out_resumed

    ref, got = _state(whole / 'epoch_2.pth'), _state(killed / 'epoch_2.pth')
    assert ref['meta']['epoch'] == got['meta']['epoch'] == 2
    assert ref['meta']['iter'] == got['meta']['iter'] == 8
    _assert_same_tensors(ref['state_dict'], got['state_dict'], 'state_dict')
    _assert_same_tensors(ref['optimizer'], got['optimizer'], 'optimizer')
    _assert_same_tensors(ref['param_schedulers'], got['param_schedulers'],
                         'param_schedulers')
    # Training really moved the weights (the comparison is not vacuous).
    first = _state(whole / 'epoch_1.pth')['state_dict']
    assert any(not torch.equal(first[k], ref['state_dict'][k])
               for k in first)

    # Logged scalars: the killed run's epoch 1 (and its partial epoch 2,
    # which the resumed run recomputes) plus the resumed run == the whole
    # run, value for value.
    (whole_log, ) = scalars(whole)
    killed_log, resumed_log = scalars(killed)
    done = [s for s in killed_log if s.get('epoch', 0) <= 1]
    assert done + resumed_log == whole_log
    partial = [s for s in killed_log if s.get('epoch', 0) > 1]
    assert partial and partial == whole_log[len(done):len(done) +
                                            len(partial)]
    assert sum('loss' in s for s in whole_log) == 8  # every iteration
    assert sum('mae' in s for s in whole_log) == 2  # every validation


# ----------------------------------------------------------------------
# 2. several processes
# ----------------------------------------------------------------------
def test_torchrun_two_cpu_processes_evaluate_every_sample_once(tmp_path):
    """``torchrun --nproc_per_node=2 tools/train.py ... --launcher pytorch``
    trains and validates on CPU (gloo). With 7 training and 5 validation
    samples the DefaultSampler pads both to 8 / 6; the gathered
    predictions and the modality counts still cover each sample exactly
    once, and the logged MAE is the MAE of exactly those predictions."""
    data = tmp_path / 'mosi'
    write_mmsa_pickle(data, sizes=dict(train=7, valid=5, test=1))
    dump = tmp_path / 'val_predictions.pkl'
    config = tiny_mosi_config(
        tmp_path / 'ddp_mosi.py', data,
        extra=f'train_cfg = dict(max_epochs=1)\n'
        f'val_evaluator = [dict(type="SentimentRegressionMetric"), '
        f'dict(type="DumpResults", out_file_path={str(dump)!r})]\n')
    work = tmp_path / 'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=1',
           '--nproc_per_node=2', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}',
           str(REPO / 'tools' / 'train.py'), str(config), '--work-dir',
           str(work), '--launcher', 'pytorch']
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out
    # 7 samples -> 4 per rank (one padded) -> 2 iterations of 2 per rank.
    assert 'Epoch(train) [1][2/2]' in out and '[1][3/' not in out

    with open(dump, 'rb') as f:
        preds = pickle.load(f)
    ids = [p['sample_id'] for p in preds]
    assert sorted(ids) == [f'valid{i}$_$0' for i in range(5)]  # 6 -> 5
    pred = np.array([float(p['pred_score'].reshape(-1)[0]) for p in preds])
    gt = np.array([float(p['gt_label'].reshape(-1)[0]) for p in preds])

    (log, ) = scalars(work)
    (val, ) = [s for s in log if 'mae' in s]
    assert val['mae'] == pytest.approx(float(np.abs(pred - gt).mean()),
                                       rel=1e-5)
    assert val['num_samples'] == 5  # ModalityMaskCounterHook, deduplicated
    (train, ) = [s for s in log if 'train_num_samples' in s]
    assert train['train_num_samples'] == 7
    assert 'Epoch(train) [1]: modality missing (zero-filled) in 7 samples' \
        in out


# ----------------------------------------------------------------------
# 3. non-finite losses
# ----------------------------------------------------------------------
def test_nonfinite_loss_stops_naming_iteration_and_term(tmp_path):
    """Finite but huge features (they pass the dataset's NaN/inf check)
    overflow in the encoder at iteration 2; NonFiniteLossHook stops the
    run there, naming the iteration and the loss terms, before the
    CheckpointHook can save the corrupted weights: iter_1.pth exists,
    iter_2.pth does not."""
    data = tmp_path / 'mosi'

    def overflow(d):
        d['train']['text'][3] = 3e38  # sample 3 is in the 2nd batch

    write_mmsa_pickle(data, edit=overflow)
    config = tiny_mosi_config(
        tmp_path / 'nan.py', data, shuffle=False,
        checkpoint=dict(interval=1, by_epoch=False, save_best=None))
    work = tmp_path / 'work'
    runner = runner_from(Config.fromfile(str(config)), work)
    with pytest.raises(FloatingPointError) as err:
        runner.train()
    msg = err.value.args[0]
    assert 'non-finite loss at iteration 2 (epoch 1, batch 1)' in msg
    assert 'loss_cls=nan' in msg or 'loss_cls=inf' in msg
    assert str(work) in msg
    assert runner.iter == 1  # the failing iteration was not counted
    assert (work / 'iter_1.pth').exists()
    assert not (work / 'iter_2.pth').exists()
    saved = _state(work / 'iter_1.pth')['state_dict']
    assert all(torch.isfinite(v).all() for v in saved.values()
               if v.is_floating_point())


# ----------------------------------------------------------------------
# 4. zero-fill is counted, per epoch
# ----------------------------------------------------------------------
def _write_mp4(path, wave=None, num_frames=16, sample_rate=16000):
    """A 64x64 mp4 (8 fps); with an AAC track of ``wave`` unless None."""
    import av
    with av.open(str(path), 'w') as container:
        video = container.add_stream('mpeg4', rate=8)
        video.width = video.height = 64
        video.pix_fmt = 'yuv420p'
        if wave is not None:
            audio = container.add_stream('aac', rate=sample_rate)
            audio.layout = 'mono'
        for i in range(num_frames):
            frame = np.full((64, 64, 3), 10 * i, np.uint8)
            for packet in video.encode(
                    av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if wave is not None:
            frame = av.AudioFrame.from_ndarray(
                wave[None].astype(np.float32), format='fltp', layout='mono')
            frame.sample_rate = sample_rate
            for packet in audio.encode(frame):
                container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


def test_zero_filled_audio_is_counted_every_epoch(tmp_path):
    """configs/clcr_synthetic_av.py with ``LoadAudio(on_missing='zero')``
    on a tiny set where one training and one validation clip have no audio
    track: every train/val/test epoch logs and records exactly one
    zero-filled audio (counts restart each epoch)."""
    from tool_loader import load_tool
    root = tmp_path / 'synthetic_av'
    load_tool('data/synthetic_av/generate.py').generate(
        str(root), num_train=4, num_val=2, num_test=0, seed=0, workers=1,
        progress=False)
    train_lines = (root / 'train_list.txt').read_text().splitlines()
    val_lines = (root / 'val_list.txt').read_text().splitlines()
    for line in (train_lines[1], val_lines[0]):
        _write_mp4(root / line.split()[0], wave=None)  # no audio track
    (root / 'test_list.txt').write_text('\n'.join(val_lines) + '\n')

    cfg = Config.fromfile(str(REPO / 'configs' / 'clcr_synthetic_av.py'))
    for name in ('train', 'val', 'test'):
        loader = cfg[f'{name}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = str(root)
        for t in loader.dataset.pipeline:
            if t['type'] == 'LoadAudio':
                t['on_missing'] = 'zero'
    for m in ('rgb', 'audio'):  # a narrow model: ResNet3d-18 at width 8
        enc = cfg.model.backbone.modalities[m]
        enc.backbone.base_channels = 8
        enc.tap_channels = (16, 32, 64)
    cfg.model.backbone.embed_dims = 32
    cfg.model.inter_cad.out_channels = cfg.model.cls_head.in_channels = 32
    cfg.model.cls_head.topk = (1, )
    cfg.train_cfg.update(max_epochs=2, val_interval=1)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.update(save_best=None, interval=10)
    runner = runner_from(cfg, tmp_path / 'work')
    runner.train()
    runner.test()

    (log_file, ) = (tmp_path / 'work').glob('*/*.log')
    log = log_file.read_text()
    for line in ('Epoch(train) [1]: modality missing (zero-filled) in 4 '
                 'samples: rgb=0, audio=1',
                 'Epoch(train) [2]: modality missing (zero-filled) in 4 '
                 'samples: rgb=0, audio=1',
                 'Epoch(val) [1]: modality missing (zero-filled) in 2 '
                 'samples: rgb=0, audio=1',
                 'Epoch(val) [2]: modality missing (zero-filled) in 2 '
                 'samples: rgb=0, audio=1',
                 'Epoch(test): modality missing (zero-filled) in 2 '
                 'samples: rgb=0, audio=1'):
        assert line in log, line
    (run_log, ) = scalars(tmp_path / 'work')
    train = [s for s in run_log if 'train_missing_audio' in s]
    assert [(s['epoch'], s['train_missing_audio'], s['train_missing_rgb'],
             s['train_num_samples']) for s in train] == [(1, 1, 0, 4),
                                                         (2, 1, 0, 4)]
    val = [s for s in run_log if 'acc/top1' in s]
    assert [(s['missing_audio'], s['num_samples']) for s in val] == [
        (1, 2), (1, 2)]  # (mmengine logs test metrics elsewhere)
    hub = runner.message_hub
    assert hub.get_scalar('test/missing_audio').current() == 1
    assert hub.get_scalar('epoch/train_missing_audio').current() == 1


def test_counter_reports_values_zero_filled_in_place(tmp_path):
    """Samples may also flag values repaired in place (``zero_filled``);
    the hook counts them separately from missing modalities."""
    from mmaction.structures import ActionDataSample

    from clcr_mm.engine.hooks import ModalityMaskCounterHook
    data = tmp_path / 'mosi'
    write_mmsa_pickle(data)
    runner = runner_from(
        Config.fromfile(str(tiny_mosi_config(tmp_path / 'c.py', data))),
        tmp_path / 'work')
    samples = []
    for mask, fixed in (({}, {}), (dict(vision=False), {}),
                        ({}, dict(audio=True, text=False)),
                        (dict(vision=False), dict(audio=True))):
        s = ActionDataSample()
        if mask:
            s.set_field(mask, 'modality_mask')
        if fixed:
            s.set_field(fixed, 'zero_filled')
        samples.append(s)
    hook = ModalityMaskCounterHook()
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, dict(data_samples=samples[:3]))
    hook.after_val_iter(runner, 1, dict(data_samples=samples[3:]))
    hook.after_val_epoch(runner)
    hub = runner.message_hub
    assert hub.get_scalar('val/missing_vision').current() == 2
    assert hub.get_scalar('val/missing_text').current() == 0
    assert hub.get_scalar('val/zero_filled_audio').current() == 2
    assert hub.get_scalar('val/num_samples').current() == 4
    assert 'val/zero_filled_text' not in hub.log_scalars  # never non-zero


# ----------------------------------------------------------------------
# 5. bad inputs and mismatched configs
# ----------------------------------------------------------------------
def test_silent_audio_is_valid_but_too_short_audio_is_not(tmp_path):
    """Silence is audio (a quiet scene): loaded, modality present. Audio
    shorter than ``min_duration`` is unusable: a MediaFileError naming the
    file, or zeros and modality_mask False with ``on_missing='zero'``."""
    from clcr_mm.datasets.transforms import LoadAudio, MediaFileError
    silent_mp4, short_mp4 = tmp_path / 'silent.mp4', tmp_path / 'short.mp4'
    _write_mp4(silent_mp4, wave=np.zeros(16000))
    _write_mp4(short_mp4, wave=np.full(320, 0.5, np.float32))  # 20 ms
    silent_wav = tmp_path / 'silent.wav'
    soundfile.write(silent_wav, np.zeros(8000, np.int16), 8000)

    for results in (dict(filename=str(silent_mp4)),
                    dict(filename='x.mp4', audio_path=str(silent_wav))):
        out = LoadAudio(min_duration=0.5)(results)
        wave = out['audio_wave']
        assert out['modality_mask'] == {'audio': True}
        assert wave.shape[0] >= 16000 and not np.abs(wave).max() > 1e-4

    # 20 ms of AAC decode to at most 3 frames of 1024 samples (~0.19 s).
    with pytest.raises(MediaFileError, match=r'short\.mp4.*too short'):
        LoadAudio(min_duration=0.5)(dict(filename=str(short_mp4)))
    out = LoadAudio(min_duration=0.5, on_missing='zero')(
        dict(filename=str(short_mp4)))
    assert out['modality_mask'] == {'audio': False}
    assert not out['audio_wave'].any()


def _mismatch_runner(tmp_path, dataset_modalities, pad_keys, collect_keys):
    data = tmp_path / 'mosi'
    write_mmsa_pickle(data)
    cfg = Config.fromfile(str(tiny_mosi_config(tmp_path / 'c.py', data)))
    pipeline = [
        dict(type='PadSequenceFeatures', keys=pad_keys, seq_len=8),
        dict(type='PackMultiModalInputs', collect_keys=collect_keys,
             algorithm_keys=('modality_mask', ), meta_keys=('sample_id', ))
    ]
    for name in ('train', 'val', 'test'):
        dataset = cfg[f'{name}_dataloader'].dataset
        dataset.pipeline = pipeline
        dataset.modalities = {m: m for m in dataset_modalities}
        dataset.feat_dims = None
    return runner_from(cfg, tmp_path / 'work')


def test_model_modality_missing_from_pipeline_fails_at_first_batch(
        tmp_path):
    """The model names text/audio/vision; the pipeline packs text/audio
    only: the first training batch fails naming the modality, what the
    batch has and PackActionInputs(collect_keys=...)."""
    runner = _mismatch_runner(tmp_path, ('text', 'audio'), ('text', 'audio'),
                              ('text', 'audio'))
    with pytest.raises(KeyError) as err:
        runner.train()
    msg = err.value.args[0]
    assert "no ['vision']" in msg and "it has ['audio', 'text']" in msg
    assert 'PackActionInputs(collect_keys=' in msg
    assert runner.iter == 0  # the very first batch
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_collect_key_no_transform_produces_fails_naming_it(tmp_path):
    """collect_keys names 'vision' but nothing in the pipeline produces it:
    the first batch fails with a KeyError naming the modality, the
    collect_keys, the sample and the keys that were produced (mmaction2's
    PackActionInputs raises a bare KeyError: 'vision')."""
    runner = _mismatch_runner(tmp_path, ('text', 'audio'), ('text', 'audio'),
                              ('text', 'audio', 'vision'))
    with pytest.raises(KeyError) as err:
        runner.train()
    msg = err.value.args[0]
    assert ("PackMultiModalInputs(collect_keys=('text', 'audio', 'vision')): "
            "the pipeline produced no ['vision']") in msg
    pkl = tmp_path / 'mosi' / 'aligned_50.pkl'
    assert re.search(rf'for sample train\d\$_\$0 of {re.escape(str(pkl))} ',
                     msg)
    assert "(its array keys: ['audio', 'label', 'text'])" in msg
    assert runner.iter == 0


# ----------------------------------------------------------------------
# 6. checkpoints under weights_only=True, and nothing more
# ----------------------------------------------------------------------
class _GetattrReduce:

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


def test_weights_only_allowlist_loads_mmengine_state_and_nothing_else():
    buffer = HistoryBuffer([1.5, 2.5], [1, 1])
    buffer.update(np.float64(3.0))
    state = dict(hub=dict(loss=buffer, eta=np.float64(1.25),
                          counts=np.arange(3, dtype=np.int64)),
                 mean=_GetattrReduce(HistoryBuffer, 'mean'))
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    loaded = torch.load(blob)  # weights_only=True, torch's default
    assert loaded['hub']['loss'].mean() == pytest.approx(7 / 3)
    assert loaded['hub']['eta'] == 1.25
    assert loaded['mean'] is HistoryBuffer.mean

    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer,
                                                    '__class__'),
                      (np.ndarray, 'tofile')):
        blob = io.BytesIO()
        torch.save({'x': _GetattrReduce(obj, name)}, blob)
        blob.seek(0)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(blob)
        blob.seek(0)
        assert torch.load(blob, weights_only=False)['x'] is not None
