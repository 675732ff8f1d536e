"""Tests of tools/data/synthetic_av/generate.py: determinism, file contents
(frames, audio track, the cues the labels rely on) and rerun behaviour."""
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
GEN_PATH = REPO / 'tools' / 'data' / 'synthetic_av' / 'generate.py'
SMALL = dict(num_train=8, num_val=2, num_test=2)


def _load_generator():
    return load_tool('data/synthetic_av/generate.py')


gen = _load_generator()


def decode(path):
    """Return (frames (T, H, W, 3) uint8, mono audio (N,), audio rate)."""
    with av.open(str(path)) as container:
        frames = np.stack([
            f.to_ndarray(format='rgb24') for f in container.decode(video=0)
        ])
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 1
        rate = stream.rate
        audio = np.concatenate(
            [f.to_ndarray() for f in container.decode(stream)], axis=1)[0]
    return frames, audio, rate


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic_av')
    summary = gen.generate(str(out), seed=0, workers=1, progress=False,
                           **SMALL)
    return out, summary


def read_outputs(out):
    return {
        name: (out / name).read_text()
        for name in ('train_list.txt', 'val_list.txt', 'test_list.txt',
                     'classes.txt', 'factors.json')
    }


def test_layout_labels_and_balance(small_set):
    out, summary = small_set
    assert summary['written'] == sum(SMALL.values())
    factors = json.loads((out / 'factors.json').read_text())
    samples = factors['samples']
    assert len(samples) == sum(SMALL.values())
    classes = (out / 'classes.txt').read_text().split()
    assert len(classes) == 8 and len(set(classes)) == 8
    train_lines = (out / 'train_list.txt').read_text().splitlines()
    assert len(train_lines) == SMALL['num_train']
    for line, sample in zip(train_lines,
                            [s for s in samples if s['split'] == 'train']):
        rel, label = line.split()
        assert rel == sample['video'] == f"videos/train/{sample['id']}.mp4"
        assert (out / rel).is_file()
        assert int(label) == sample['label']
        # The documented formula: 4 * rhythm + 2 * colour + chirp.
        assert sample['label'] == (4 * sample['rhythm'] +
                                   2 * sample['colour'] + sample['chirp'])
        assert classes[sample['label']] == sample['class_name']
    # 8 training samples, 8 balanced classes: each label exactly once.
    assert sorted(int(line.split()[1]) for line in train_lines) == list(
        range(8))
    assert factors['meta']['label_factors'] == ['rhythm', 'colour', 'chirp']


def test_video_and_audio_track(small_set):
    out, _ = small_set
    factors = json.loads((out / 'factors.json').read_text())
    sample = factors['samples'][0]
    path = out / sample['video']
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == 'mpeg4'
        assert container.streams.audio[0].codec_context.name == 'aac'
    frames, audio, rate = decode(path)
    assert frames.shape == (16, 64, 64, 3)
    assert rate == 16000
    assert audio.shape[0] >= 2 * 16000
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.1


def test_cues_are_in_the_files(small_set):
    """The blink and the gated tone follow the recorded rhythm and phase."""
    out, _ = small_set
    factors = json.loads((out / 'factors.json').read_text())
    meta = factors['meta']
    for sample in factors['samples'][:4]:
        spec = dict(sample, fps=meta['fps'])
        frames, audio, rate = decode(out / sample['video'])
        # The object covers > 150 pixels; the distractor dot < 30: the
        # 100th brightest pixel value is the object's brightness.
        bright = np.sort(frames.max(axis=3).reshape(len(frames), -1),
                         axis=1)[:, -100]
        on = gen.visual_on_pattern(spec, len(frames))
        assert on.any() and (~on).any()
        assert bright[on].min() > bright[~on].max()

        # 20 ms RMS windows well inside tones vs well inside gaps.
        win = rate // 50
        starts = np.arange(0, rate * 2 - win, win)
        rms = np.sqrt([np.mean(audio[s:s + win]**2) for s in starts])
        centre = (starts + win / 2) / rate
        cycles = gen._audio_cycles(spec, centre) % 1.0
        margin = 0.04 * sample['params']['rate_hz']  # 40 ms off the edges
        inside_on = (cycles > margin) & (cycles < 0.5 - margin)
        inside_off = (cycles > 0.5 + margin) & (cycles < 1 - margin)
        assert np.median(rms[inside_on]) > 1.5 * np.median(rms[inside_off])


def test_deterministic_and_seed_dependent(small_set, tmp_path):
    out, _ = small_set
    again = tmp_path / 'again'
    gen.generate(str(again), seed=0, workers=1, progress=False, **SMALL)
    assert read_outputs(again) == read_outputs(out)
    rel = 'videos/val/val_00001.mp4'
    for a, b in zip(decode(out / rel), decode(again / rel)):
        np.testing.assert_array_equal(a, b)

    other = tmp_path / 'other'
    gen.generate(str(other), seed=1, workers=1, progress=False, **SMALL)
    first = json.loads((out / 'factors.json').read_text())['samples']
    second = json.loads((other / 'factors.json').read_text())['samples']
    assert [s['params'] for s in first] != [s['params'] for s in second]


def test_parallel_equals_serial(small_set, tmp_path):
    out, _ = small_set
    parallel = tmp_path / 'parallel'
    summary = gen.generate(str(parallel), seed=0, workers=2, progress=True,
                           **SMALL)
    assert summary['written'] == sum(SMALL.values())
    assert read_outputs(parallel) == read_outputs(out)
    rel = 'videos/train/train_00005.mp4'
    for a, b in zip(decode(out / rel), decode(parallel / rel)):
        np.testing.assert_array_equal(a, b)


def test_rerun_skips_complete_files(tmp_path):
    out = tmp_path / 'rerun'
    sizes = dict(num_train=3, num_val=1, num_test=0)
    gen.generate(str(out), seed=0, workers=1, progress=False, **sizes)
    video = out / 'videos' / 'train' / 'train_00001.mp4'
    mtime = video.stat().st_mtime_ns
    summary = gen.generate(str(out), seed=0, workers=1, progress=False,
                           **sizes)
    assert (summary['written'], summary['skipped']) == (0, 4)
    assert video.stat().st_mtime_ns == mtime
    # A deleted file is written again; nothing else is.
    video.unlink()
    summary = gen.generate(str(out), seed=0, workers=1, progress=False,
                           **sizes)
    assert (summary['written'], summary['skipped']) == (1, 3)
    assert video.is_file()
    # Other settings (split sizes change the label assignment, seeds
    # everything): every file is rewritten.
    summary = gen.generate(str(out), seed=0, workers=1, progress=False,
                           num_train=4, num_val=1, num_test=0)
    assert (summary['written'], summary['skipped']) == (5, 0)
    summary = gen.generate(str(out), seed=3, workers=1, progress=False,
                           **sizes)
    assert (summary['written'], summary['skipped']) == (4, 0)
    assert not [p for p in os.listdir(out / 'videos' / 'train')
                if '.tmp' in p]


def test_cli_rejects_bad_factor():
    with pytest.raises(SystemExit):
        gen.parse_args(['--visual-factor', 'pitch'])
    with pytest.raises(ValueError, match='fps'):
        gen.generate('unused', fps=10, progress=False)
