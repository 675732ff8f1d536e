"""Tests of AudioVisualDataset, the audio transforms and the synthetic_av
dataset config, on a tiny generated set and hand-made bad files."""
import copy
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from clcr_mm.datasets import AudioVisualDataset
from clcr_mm.datasets.transforms import (AudioClipSample, CheckVideo,
                                         LoadAudio, LogMelSpectrogram,
                                         MediaFileError)
from clcr_mm.registry import DATASETS, MODELS
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / '_base_' / 'datasets' / 'synthetic_av.py'
GEN_PATH = REPO / 'tools' / 'data' / 'synthetic_av' / 'generate.py'
RGB_SHAPE = (1, 3, 8, 56, 56)
AUDIO_SHAPE = (1, 1, 101, 64)


def _load_generator():
    return load_tool('data/synthetic_av/generate.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_av')
    _load_generator().generate(
        str(root), num_train=8, num_val=2, num_test=0, seed=0, workers=1,
        progress=False)
    return root


def dataset_cfg(split: str, root: Path, **overrides) -> dict:
    """The config file's dataset of a split, with data_root overridden."""
    cfg = Config.fromfile(str(CONFIG))
    dataset = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    dataset.data_root = str(root)
    dataset.update(overrides)
    return dataset


def write_video(path: Path, with_audio: bool, num_frames: int = 8) -> None:
    """A small mp4 written with PyAV, optionally without an audio track."""
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('mpeg4', rate=8)
        stream.width = stream.height = 64
        stream.pix_fmt = 'yuv420p'
        if with_audio:
            audio = container.add_stream('aac', rate=16000)
            audio.layout = 'mono'
        for i in range(num_frames):
            frame = np.full((64, 64, 3), 15 * i, np.uint8)
            for packet in stream.encode(
                    av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if with_audio:
            wave = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)
            frame = av.AudioFrame.from_ndarray(
                wave[None].astype(np.float32), format='fltp', layout='mono')
            frame.sample_rate = 16000
            for packet in audio.encode(frame):
                container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


def test_config_train_and_val_samples(data_root):
    lines = (data_root / 'train_list.txt').read_text().splitlines()
    train = DATASETS.build(dataset_cfg('train', data_root))
    assert isinstance(train, AudioVisualDataset) and len(train) == 8
    assert len(train.metainfo['classes']) == 8 == train.num_classes
    info = train.get_data_info(3)
    assert info['filename'] == str(data_root / lines[3].split()[0])
    assert info['audio_path'] is None and info['sample_idx'] == 3

    sample = train[3]
    rgb, audio = sample['inputs']['rgb'], sample['inputs']['audio']
    assert rgb.shape == RGB_SHAPE and rgb.dtype == torch.uint8
    assert audio.shape == AUDIO_SHAPE and audio.dtype == torch.float32
    assert torch.isfinite(audio).all() and audio.std() > 0.5
    data_sample = sample['data_samples']
    assert data_sample.gt_label.item() == int(lines[3].split()[1])
    assert data_sample.modality_mask == {'audio': True}
    assert data_sample.metainfo['img_shape'] == (56, 56)

    val = DATASETS.build(dataset_cfg('val', data_root))
    first, second = val[1], val[1]
    for key in ('rgb', 'audio'):
        assert first['inputs'][key].shape == (RGB_SHAPE if key == 'rgb'
                                              else AUDIO_SHAPE)
        # Testing-time sampling is deterministic.
        assert torch.equal(first['inputs'][key], second['inputs'][key])


def test_batch_through_multimodal_preprocessor(data_root):
    """Collated samples fit the contract's MultiModalDataPreprocessor."""
    dataset = DATASETS.build(dataset_cfg('train', data_root))
    batch = pseudo_collate([dataset[i] for i in range(3)])
    preprocessor = MODELS.build(
        dict(
            type='MultiModalDataPreprocessor',
            preprocessors=dict(
                rgb=dict(
                    type='ActionDataPreprocessor',
                    mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375],
                    format_shape='NCTHW'),
                audio=dict(
                    type='ActionDataPreprocessor', format_shape='NCHW'))))
    out = preprocessor(batch, training=True)
    assert out['inputs']['rgb'].shape == (3, ) + RGB_SHAPE
    assert out['inputs']['audio'].shape == (3, ) + AUDIO_SHAPE
    assert out['inputs']['rgb'].dtype == torch.float32


def test_separate_wav_is_mixed_and_resampled(data_root, tmp_path):
    """'video audio label' lines: stereo 8 kHz wav -> mono 16 kHz."""
    (tmp_path / 'wav').mkdir()
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t),
                       0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    soundfile.write(tmp_path / 'wav' / 'a.wav', stereo, 8000)
    ann = tmp_path / 'ann.txt'
    ann.write_text('videos/train/train_00000.mp4 wav/a.wav 5\n')
    dataset = AudioVisualDataset(
        ann_file=str(ann),
        data_prefix=dict(video=str(data_root), audio=str(tmp_path)),
        num_classes=8,
        pipeline=[dict(type='LoadAudio', sample_rate=16000)])
    info = dataset.get_data_info(0)
    assert info['audio_path'] == str(tmp_path / 'wav' / 'a.wav')
    assert info['label'] == 5
    wave = dataset[0]['audio_wave']
    assert wave.shape == (16000, ) and wave.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 3
    assert abs(np.abs(wave).max() - 0.75) < 0.05  # mean of the channels

    clipped = AudioClipSample(clip_duration=0.5, test_mode=True)(
        dict(audio_wave=wave, audio_sample_rate=16000))
    np.testing.assert_array_equal(clipped['audio_wave'][0],
                                  wave[4000:12000])
    mel = LogMelSpectrogram(sample_rate=16000)(clipped)
    assert mel['audio'].shape == (1, 1, 1 + 8000 // 256, 64)
    assert 'audio_wave' not in mel


def test_clip_sample_pads_and_spreads_views():
    results = dict(audio_wave=np.ones(100, np.float32), audio_sample_rate=100)
    out = AudioClipSample(clip_duration=1.5, num_clips=2)(dict(results))
    assert out['audio_wave'].shape == (2, 150)
    clips = out['audio_wave']
    assert clips[:, :100].all() and not clips[:, 100:].any()  # zero padding
    wave = np.arange(1000, dtype=np.float32)
    out = AudioClipSample(clip_duration=1.0, num_clips=3, test_mode=True)(
        dict(audio_wave=wave, audio_sample_rate=100))
    np.testing.assert_array_equal(out['audio_wave'][:, 0], [0, 450, 900])


def test_corrupt_video_names_the_file(tmp_path):
    bad = tmp_path / 'videos' / 'broken.mp4'
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / 'ann.txt').write_text('videos/broken.mp4 0\n')
    (tmp_path / 'classes.txt').write_text('\n'.join('abcdefgh') + '\n')
    dataset = DATASETS.build(
        dataset_cfg('val', tmp_path, ann_file='ann.txt'))
    with pytest.raises(MediaFileError, match='broken.mp4'):
        dataset[0]
    with pytest.raises(MediaFileError, match='broken.mp4.*corrupt'):
        LoadAudio()(dict(filename=str(bad), audio_path=None))
    with pytest.raises(MediaFileError, match='missing.mp4.*does not exist'):
        CheckVideo()(dict(filename=str(tmp_path / 'missing.mp4')))


def test_video_without_audio_track(tmp_path):
    silent = tmp_path / 'videos' / 'silent.mp4'
    silent.parent.mkdir()
    write_video(silent, with_audio=False, num_frames=16)
    with pytest.raises(MediaFileError, match='silent.mp4.*no audio track'):
        LoadAudio()(dict(filename=str(silent), audio_path=None))

    (tmp_path / 'ann.txt').write_text('videos/silent.mp4 2\n')
    (tmp_path / 'classes.txt').write_text('\n'.join('abcdefgh') + '\n')
    cfg = dataset_cfg('val', tmp_path, ann_file='ann.txt')
    load_audio = next(t for t in cfg.pipeline if t.type == 'LoadAudio')
    load_audio.on_missing = 'zero'
    sample = DATASETS.build(cfg)[0]
    assert sample['inputs']['rgb'].shape == RGB_SHAPE
    audio = sample['inputs']['audio']
    assert audio.shape == AUDIO_SHAPE
    # log(0 + eps) everywhere: the zero waveform, not garbage.
    assert torch.allclose(audio, torch.full_like(audio, np.log(1e-6)))
    assert sample['data_samples'].modality_mask == {'audio': False}


def test_video_with_audio_track_is_read(tmp_path):
    path = tmp_path / 'ok.mp4'
    write_video(path, with_audio=True)
    out = LoadAudio(sample_rate=8000)(dict(filename=str(path)))
    # 1 s of 16 kHz AAC (plus encoder priming/padding) resampled to 8 kHz.
    assert 8000 <= out['audio_wave'].shape[0] < 8000 * 1.2
    assert out['audio_sample_rate'] == 8000
    assert out['modality_mask'] == {'audio': True}


def test_too_short_audio(tmp_path):
    wav = tmp_path / 'short.wav'
    soundfile.write(wav, np.zeros(80, np.float32), 16000)  # 5 ms
    results = dict(filename='unused.mp4', audio_path=str(wav))
    with pytest.raises(MediaFileError, match='short.wav.*too short'):
        LoadAudio(min_duration=0.1)(dict(results))
    out = LoadAudio(min_duration=0.1, on_missing='zero')(dict(results))
    assert out['audio_wave'].shape == (1600, ) and not out['audio_wave'].any()
    assert out['modality_mask'] == {'audio': False}


@pytest.mark.parametrize(
    'content, lineno, message',
    [
        ('a.mp4 0\n\nb.mp4 1\n', 2, 'empty line'),
        ('a.mp4 0\nb.mp4\n', 2, 'got 1 fields'),
        ('a.mp4 a.wav 3 4\n', 1, 'got 4 fields'),
        ('a.mp4 x\n', 1, 'not an integer'),
        ('a.mp4 0\nb.mp4 1\nc.mp4 8\n', 3, r'outside \[0, 8\)'),
        ('a.mp4 -1\n', 1, 'outside'),
    ])
def test_bad_annotation_lines(tmp_path, content, lineno, message):
    ann = tmp_path / 'bad_list.txt'
    ann.write_text(content)
    with pytest.raises(ValueError,
                       match=rf'bad_list.txt.*line {lineno}: .*{message}'):
        AudioVisualDataset(
            ann_file=str(ann), pipeline=[], num_classes=8)


def test_classes_file_and_count_mismatch(tmp_path):
    (tmp_path / 'ann.txt').write_text('a.mp4 1\n')
    (tmp_path / 'classes.txt').write_text('x\ny\n')
    dataset = AudioVisualDataset(
        ann_file='ann.txt', data_root=str(tmp_path), classes='classes.txt',
        pipeline=[])
    assert dataset.metainfo['classes'] == ('x', 'y')
    assert dataset.get_data_info(0)['filename'] == str(tmp_path / 'a.mp4')
    with pytest.raises(ValueError, match='num_classes=3'):
        AudioVisualDataset(
            ann_file='ann.txt', data_root=str(tmp_path),
            classes='classes.txt', num_classes=3, pipeline=[])
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        AudioVisualDataset(
            ann_file='nope.txt', data_root=str(tmp_path), pipeline=[])
