"""Tests of the cross-level benchmark: tools/data/synthetic_crosslevel
(determinism, resumability, layout, factor / label consistency, the cues in
the decoded files, the accuracy ceilings of each model family) and one short
training run of configs/clcr_synthetic_crosslevel.py through mmengine's
Runner."""
import itertools
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import av
import numpy as np
import pytest
from mmengine.config import Config
from runner_utils import tiny_runner
from tool_loader import load_tool

gen = load_tool('data/synthetic_crosslevel/generate.py')

SMALL = dict(num_train=20, num_val=4, num_test=4)
LIST_FILES = ('train_list.txt', 'val_list.txt', 'test_list.txt',
              'classes.txt', 'factors.json')


def decode(path):
    """Return (frames (T, H, W, 3) uint8, mono audio (N,), audio rate)."""
    with av.open(str(path)) as container:
        frames = np.stack([
            f.to_ndarray(format='rgb24') for f in container.decode(video=0)
        ])
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        audio = np.concatenate(
            [f.to_ndarray() for f in container.decode(stream)], axis=1)[0]
    return frames, audio, rate


def read_outputs(out: Path) -> dict:
    texts = {name: (out / name).read_text() for name in LIST_FILES}
    texts.update({
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.glob('videos/*/*.mp4'))
    })
    return texts


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic_crosslevel')
    summary = gen.generate(str(out), seed=0, workers=1, progress=False,
                           **SMALL)
    return out, summary


def samples_of(out: Path) -> list:
    return json.loads((out / 'factors.json').read_text())['samples']


# ----------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------
def test_layout_and_label_formula(small_set):
    out, summary = small_set
    assert summary['written'] == sum(SMALL.values())
    data = json.loads((out / 'factors.json').read_text())
    samples, meta = data['samples'], data['meta']
    classes = (out / 'classes.txt').read_text().split()
    assert len(classes) == 16 and len(set(classes)) == 16
    assert meta['label_formula'] == gen.LABEL_FORMULA
    assert set(meta['factors']) == set(gen.FACTORS)
    for split, num in (('train', 20), ('val', 4), ('test', 4)):
        lines = (out / f'{split}_list.txt').read_text().splitlines()
        records = [s for s in samples if s['split'] == split]
        assert len(lines) == len(records) == num
        for line, s in zip(lines, records):
            rel, label = line.split()
            assert rel == s['video'] == f"videos/{split}/{s['id']}.mp4"
            assert (out / rel).is_file() and int(label) == s['label']
            assert s['label'] == (8 * s['sync'] + 4 * s['direction'] +
                                  2 * s['colour'] + s['timbre'])
            assert classes[s['label']] == s['class_name']
            # the relation: same tempo in both streams <=> sync
            assert s['sync'] == int(s['visual_tempo'] == s['audio_tempo'])
            p = s['params']
            assert p['visual_rate_hz'] == gen.TEMPO_HZ[s['visual_tempo']]
            assert p['audio_rate_hz'] == gen.TEMPO_HZ[s['audio_tempo']]
            # rising objects end higher (smaller y) than they start
            rise = p['start_xy'][1] - p['end_xy'][1]
            assert (rise > 0.15) if s['direction'] == 0 else (rise < -0.15)
    train = [s for s in samples if s['split'] == 'train']
    # 20 clips over 16 balanced classes: every class at least once
    assert len({s['label'] for s in train}) == 16
    # the shortcut: shape == sync in exactly round(0.9 * 20) = 18 clips
    assert sum(s['shape'] == s['sync'] for s in train) == 18
    assert meta['shortcut'] == 0.9


def test_shortcut_only_in_train(tmp_path):
    """A specs-only check on larger splits (no rendering): the shortcut
    holds at the requested rate in train and is absent in val / test;
    each tempo alone says nothing about sync anywhere."""
    for split, rate in (('train', 0.9), ('train', 0.5), ('val', 0.9),
                        ('test', 0.9)):
        specs = gen.sample_split_specs(split, 320, 0, 8, rate)
        agree = np.mean([s['shape'] == s['sync'] for s in specs])
        expected = rate if split == 'train' else 0.5
        assert abs(agree - expected) <= (0.0 if split == 'train' else 0.1)
        for tempo in ('visual_tempo', 'audio_tempo'):
            counts = Counter((s[tempo], s['sync']) for s in specs)
            assert all(abs(c - 80) <= 16 for c in counts.values()), counts
    # the control set without the shortcut has the same val / test clips
    for split in ('val', 'test'):
        assert gen.sample_split_specs(split, 32, 0, 8, 0.9) == \
            gen.sample_split_specs(split, 32, 0, 8, 0.5)
    with pytest.raises(ValueError, match='shortcut'):
        gen.generate(str(tmp_path), shortcut=1.5, progress=False)
    with pytest.raises(ValueError, match='fps'):
        gen.generate(str(tmp_path), fps=10, progress=False)


def test_deterministic_resumable_and_parallel(small_set, tmp_path):
    out, _ = small_set
    again = tmp_path / 'again'
    gen.generate(str(again), seed=0, workers=2, progress=True, **SMALL)
    assert read_outputs(again) == read_outputs(out)  # byte-identical
    video = again / 'videos' / 'train' / 'train_00003.mp4'
    mtime = video.stat().st_mtime_ns
    video.unlink()
    (again / 'videos' / 'val' / 'val_00001.mp4').unlink()
    summary = gen.generate(str(again), seed=0, workers=1, progress=False,
                           **SMALL)
    assert (summary['written'], summary['skipped']) == (2, 26)
    assert read_outputs(again) == read_outputs(out)
    assert video.stat().st_mtime_ns != mtime
    # another shortcut rate changes the settings: everything is rewritten
    summary = gen.generate(str(again), seed=0, workers=1, progress=False,
                           shortcut=0.5, **SMALL)
    assert summary['written'] == sum(SMALL.values())
    train = [s for s in samples_of(again) if s['split'] == 'train']
    assert sum(s['shape'] == s['sync'] for s in train) == 10


def test_cues_are_in_the_files(small_set):
    """Decoded clips carry the planted cues: the blink (object and whole
    background) at the visual tempo, the vertical drift of `direction`, the tone gated at the audio tempo
    and swept in the direction of `direction`."""
    out, _ = small_set
    meta = json.loads((out / 'factors.json').read_text())['meta']
    for s in samples_of(out)[:6]:
        p = s['params']
        frames, audio, rate = decode(out / s['video'])
        assert frames.shape == (16, 64, 64, 3) and rate == 16000
        # the object covers > 150 pixels, the distractor dot < 30
        bright = np.sort(frames.max(axis=3).reshape(16, -1), axis=1)[:, -100]
        on = gen.cs.blink_pattern(16, meta['fps'], p['visual_rate_hz'],
                                  p['visual_phase_frames'])
        assert bright[on].min() > bright[~on].max()
        # the whole background flashes with it: the median pixel (the
        # object covers < 17 %) is brighter in every on frame by about
        # gen.BACKGROUND_FLASH
        median = np.median(frames.reshape(16, -1), axis=1) / 255
        assert median[on].min() - median[~on].max() > (
            0.75 * gen.BACKGROUND_FLASH)
        # vertical centre of the bright object, first vs last on-frame
        ys = [np.argwhere(f.max(axis=2) >= 0.8 * b)[:, 0].mean()
              for f, b in zip(frames, bright)]
        first, last = np.flatnonzero(on)[[0, -1]]
        moved_up = ys[first] - ys[last]
        assert (moved_up > 0) if s['direction'] == 0 else (moved_up < 0)

        # tones: 20 ms RMS windows inside tones vs inside gaps
        win = rate // 50
        starts = np.arange(0, rate * 2 - win, win)
        centre = (starts + win / 2) / rate
        frac = gen.audio_cycles(s, centre) % 1.0
        rms = np.sqrt([np.mean(audio[i:i + win]**2) for i in starts])
        margin = 0.04 * p['audio_rate_hz']
        inside_on = (frac > margin) & (frac < 0.5 - margin)
        inside_off = (frac > 0.5 + margin) & (frac < 1 - margin)
        assert np.median(rms[inside_on]) > 1.5 * np.median(rms[inside_off])
        # sweep: the dominant frequency late in a tone vs early in it
        early, late = [], []
        for i in np.flatnonzero(inside_on):
            seg = audio[starts[i]:starts[i] + win] * np.hanning(win)
            spectrum = np.abs(np.fft.rfft(seg, 4 * win))
            band = np.fft.rfftfreq(4 * win, 1 / rate)
            keep = (band > 0.8 * p['f0_hz']) & (band < 2.2 * p['f0_hz'])
            peak = band[keep][spectrum[keep].argmax()]
            (early if frac[i] < 0.25 else late).append(peak)
        rising = np.median(late) > np.median(early)
        assert rising == (s['direction'] == 0)


# ----------------------------------------------------------------------
# ceilings, from the label table
# ----------------------------------------------------------------------
def label_table() -> list:
    """Every combination of the rendered binary factors, each equally
    likely, as in val / test (no shortcut there)."""
    names = ('visual_tempo', 'audio_tempo', 'direction', 'colour', 'timbre',
             'shape', 'pitch')
    rows = []
    for values in itertools.product((0, 1), repeat=len(names)):
        row = dict(zip(names, values))
        row['sync'] = int(row['visual_tempo'] == row['audio_tempo'])
        row['label'] = gen.label_of(row['sync'], row['direction'],
                                    row['colour'], row['timbre'])
        rows.append(row)
    return rows


def bayes_ceiling(rows: list, visible: tuple) -> float:
    """Accuracy of the best classifier that sees only ``visible``."""
    groups = defaultdict(Counter)
    for row in rows:
        groups[tuple(row[f] for f in visible)][row['label']] += 1
    return sum(max(c.values()) for c in groups.values()) / len(rows)


def test_unimodal_and_fusion_ceilings():
    rows = label_table()
    assert set(gen.VISIBLE['rgb']) | set(gen.VISIBLE['audio']) == \
        set(rows[0]) - {'sync', 'label'}
    assert bayes_ceiling(rows, gen.VISIBLE['rgb']) == \
        gen.CEILINGS['rgb_only'] == 0.25
    assert bayes_ceiling(rows, gen.VISIBLE['audio']) == \
        gen.CEILINGS['audio_only'] == 0.25
    both = tuple(dict.fromkeys(gen.VISIBLE['rgb'] + gen.VISIBLE['audio']))
    assert bayes_ceiling(rows, both) == gen.CEILINGS['fusion'] == 1.0


def test_late_fusion_ceiling():
    """Late fusion predicts argmax_k s_k(v) + t_k(a) (averaged unimodal
    logits; v, a the states each modality sees). Upper bound: fix every
    factor but the two tempos; the four clips (vt, at) in {0,1}^2 have label
    L1 where vt == at and L0 != L1 elsewhere. Getting all four right needs
    D(vt, at) = g(vt) + h(at) > 0 on the diagonal and < 0 off it (g, h the
    score differences between L1 and L0), but the two diagonal values and
    the two off-diagonal ones have the same sum g(0)+g(1)+h(0)+h(1): at
    least one of the four is wrong, so accuracy <= 3/4. Lower bound: an
    explicit additive scorer reaches 3/4."""
    rows = label_table()
    groups = defaultdict(dict)
    for row in rows:
        rest = tuple(v for k, v in row.items() if k not in (
            'visual_tempo', 'audio_tempo', 'sync', 'label'))
        groups[rest][(row['visual_tempo'], row['audio_tempo'])] = row['label']
    assert len(groups) * 4 == len(rows)
    for cells in groups.values():
        same, diff = cells[(0, 0)], cells[(0, 1)]
        assert same != diff
        assert cells[(1, 1)] == same and cells[(1, 0)] == diff
    upper = 1 - len(groups) / len(rows)

    # scorer: per-modality evidence for each label bit it sees, plus
    # tempo terms that get three of the four tempo pairs right
    g, h = (-1.0, 1.0), (2.0, -0.5)

    def visual_score(k, row):
        sync_k, dir_k, col_k = k >> 3, (k >> 2) & 1, (k >> 1) & 1
        return (10 * (row['direction'] == dir_k) +
                10 * (row['colour'] == col_k) +
                g[row['visual_tempo']] * (2 * sync_k - 1))

    def audio_score(k, row):
        sync_k, dir_k, tim_k = k >> 3, (k >> 2) & 1, k & 1
        return (10 * (row['direction'] == dir_k) +
                10 * (row['timbre'] == tim_k) +
                h[row['audio_tempo']] * (2 * sync_k - 1))

    correct = 0
    for row in rows:
        scores = [visual_score(k, row) + audio_score(k, row)
                  for k in range(gen.NUM_CLASSES)]
        correct += int(np.argmax(scores) == row['label'])
    lower = correct / len(rows)
    assert math.isclose(lower, upper)
    assert upper == gen.CEILINGS['late_fusion'] == 0.75


# ----------------------------------------------------------------------
# the configs
# ----------------------------------------------------------------------
CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
CONFIGS = sorted(CONFIG_DIR.rglob('clcr_synthetic_crosslevel*.py'))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
CROSSLEVEL_EPOCHS = 10  # the benchmark's schedule, longer than synthetic_av's
COMPARED = ('model', 'train_cfg', 'optim_wrapper', 'param_scheduler',
            'default_hooks', 'custom_hooks', 'randomness') + LOADERS


def comparable(cfg: Config) -> dict:
    return {key: cfg.get(key) for key in COMPARED}


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_configs_are_their_synthetic_av_counterparts(path):
    """Every variant is its clcr_synthetic_av counterpart (so changes to
    the model, schedule or variant flow in) with only the data root, the
    class count and the number of epochs changed."""
    cfg = Config.fromfile(path)
    assert cfg.model.cls_head.num_classes == gen.NUM_CLASSES
    assert cfg.train_cfg.max_epochs == CROSSLEVEL_EPOCHS
    root = 'data/synthetic_crosslevel'
    if path.stem.endswith('_noshortcut'):
        root += '_noshortcut'
    for loader in LOADERS:
        assert cfg[loader].dataset.data_root == root
    twin = path.with_name(path.name.replace('crosslevel', 'av'))
    if path.stem.endswith('_noshortcut'):
        ref = Config.fromfile(CONFIG_DIR / 'clcr_synthetic_crosslevel.py')
        for loader in LOADERS:
            cfg[loader].dataset.data_root = ref[loader].dataset.data_root
        assert comparable(cfg) == comparable(ref)
    else:
        assert twin.exists(), f'{path.name} has no {twin.name}'
        ref = Config.fromfile(twin)
        cfg.model.cls_head.num_classes = ref.model.cls_head.num_classes
        cfg.train_cfg.max_epochs = ref.train_cfg.max_epochs
        for loader in LOADERS:
            cfg[loader].dataset.data_root = ref[loader].dataset.data_root
        assert comparable(cfg) == comparable(ref)


@pytest.mark.parametrize(
    'term', ['loss_sep', 'loss_cross', 'loss_budget', 'loss_align',
             'loss_level'])
def test_regulariser_alone_ablations_remove_one_loss(term):
    """``clcr_synthetic_av_wo_<term>`` is the CLCR config with that one
    regulariser removed (its cross-level twin follows, tested above)."""
    cfg = Config.fromfile(CONFIG_DIR / 'ablations' /
                          f'clcr_synthetic_av_wo_{term}.py')
    ref = Config.fromfile(CONFIG_DIR / 'clcr_synthetic_av.py')
    assert ref.model[term] is not None and cfg.model[term] is None
    ref.model[term] = None
    assert comparable(cfg) == comparable(ref)


def test_every_ablation_and_baseline_exists():
    names = {p.stem for p in CONFIGS}
    for variant in ('', '_late_fusion', '_concat', '_rgb_only',
                    '_audio_only', '_noshortcut'):
        assert f'clcr_synthetic_crosslevel{variant}' in names
    for what in ('budget', 'exchange', 'hierarchy', 'intercad',
                 'regularisers', 'loss_sep', 'loss_cross', 'loss_budget',
                 'loss_align', 'loss_level'):
        assert f'clcr_synthetic_crosslevel_wo_{what}' in names


# ----------------------------------------------------------------------
# the config, through mmengine's Runner
# ----------------------------------------------------------------------
def test_config_trains_through_runner(small_set, tmp_path):
    out, _ = small_set
    runner = tiny_runner(
        'clcr_synthetic_crosslevel.py', tmp_path / 'run', data_root=str(out),
        batch_size=4, **{'train_dataloader.dataset.indices': 8})
    assert runner.model.cls_head.num_classes == 16
    runner.train()
    scalars = [json.loads(line) for line in next(
        (tmp_path / 'run').glob('*/vis_data/scalars.json')).read_text(
        ).splitlines()]
    losses = [r['loss'] for r in scalars if 'loss' in r]
    assert losses and all(math.isfinite(v) for v in losses)
    val = [r for r in scalars if 'acc/top1' in r]
    assert val and 0.0 <= val[-1]['acc/top1'] <= 1.0
    assert runner.test()['acc/top1'] >= 0.0
