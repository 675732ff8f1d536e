"""Kinetics-Sounds, CREMA-D and AVE: the preparation tools on tiny replicas of
the official on-disk layouts, and one training iteration + one evaluation of
each real top config through mmengine's Runner.

Media are real and decodable: mp4 (mpeg4 video + AAC audio) and flv (flv1
video) written with PyAV, wav written with soundfile; broken files are
random bytes or an empty wav.
"""
import copy
import csv
import json
import os
import os.path as osp
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from clcr_mm.registry import TRANSFORMS
from media_writers import (write_flv, write_garbage, write_mp4,
                           write_wav)
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]


def _load_tool(name: str):
    """Import tools/data/<name>/prepare.py."""
    return load_tool(f'data/{name}/prepare.py')


ks_tool = _load_tool('kinetics_sounds')
cremad_tool = _load_tool('cremad')
ave_tool = _load_tool('ave')
# tools/data/av_prepare.py, the very module the tools run.
avp = ks_tool.avp
KS_CLASSES = avp.read_class_list(str(ks_tool.DEFAULT_CLASSES))

# ---------------------------------------------------------------- media ---


def lines_of(path):
    return Path(path).read_text().splitlines()


# ------------------------------------------------------ Kinetics-Sounds ---

KS_HEADER = ['label', 'youtube_id', 'time_start', 'time_end', 'split',
             'is_cc']


def ks_id(i: int) -> str:
    # Real YouTube ids are 11 characters and may hold '-' and '_'.
    return f'-K_{i:08d}'


def write_ks_csv(path, rows, header=KS_HEADER):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def make_kinetics(root: Path) -> dict:
    """Kinetics-400 CSVs (one train row per KS class, plus others) and a
    partial download in the mixed layouts users have."""
    clip = {name: ks_id(i) for i, name in enumerate(KS_CLASSES)}
    train = [[name, clip[name], 0, 10, 'train', 0] for name in KS_CLASSES]
    train.append(['abseiling', '-Kabseiling', 0, 10, 'train', 0])
    val = [['tickling', '-Kval000001', 3, 13, 'val', 0],
           ['laughing', '-Kval000002', 3, 13, 'val', 0],
           ['singing', '-Kval000003', 3, 13, 'val', 0]]
    test = [['tapping pen', '-Ktest00001', 5, 15, 'test', 0]]
    ann = root / 'annotations'
    write_ks_csv(ann / 'train.csv', train)
    write_ks_csv(ann / 'validate.csv', val)
    write_ks_csv(ann / 'test.csv', test)
    videos = root / 'videos'
    # <split>/<label>/<id>_<start>_<end>.mp4: label folders have spaces.
    write_mp4(videos / 'train' / 'playing bagpipes' /
              f'{clip["playing bagpipes"]}_000000_000010.mp4', seed=1)
    # flat <id>_<start>_<end>.mp4
    write_mp4(videos / f'{clip["blowing nose"]}_000000_000010.mp4', seed=2)
    write_garbage(videos / f'{clip["bowling"]}_000000_000010.mp4')
    # another segment of the annotated video: not the annotated clip
    write_mp4(videos / f'{clip["chopping wood"]}_000050_000060.mp4')
    # a non-KS class on disk is ignored
    write_mp4(videos / 'train' / 'abseiling' / '-Kabseiling_000000_000010.mp4')
    # <id>.mp4, trimmed by the downloader
    write_mp4(videos / '-Kval000001.mp4', seed=3)
    write_mp4(videos / '-Kval000002_000003_000013.mp4', audio=False)
    write_mp4(videos / 'test' / 'tapping pen' /
              '-Ktest00001_000005_000015.mkv', seed=4)
    return clip


@pytest.fixture(scope='module')
def ks_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ks') / 'kinetics_sounds'
    clip = make_kinetics(root)
    report = ks_tool.prepare(str(root), workers=2, progress=False)
    return root, clip, report


def test_kinetics_sounds_class_list():
    assert len(KS_CLASSES) == 31 == len(set(KS_CLASSES))
    assert KS_CLASSES == sorted(KS_CLASSES)
    # Renamed in the final Kinetics-400; the preliminary names are gone.
    assert {'blowing out candles', 'dribbling basketball', 'mowing lawn',
            'stomping grapes'} <= set(KS_CLASSES)
    assert not {'typing', 'patting', 'fingerpicking', 'stomping',
                'strumming guitar'} & set(KS_CLASSES)
    header = Path(ks_tool.DEFAULT_CLASSES).read_text()
    assert 'arXiv:1705.08168' in header and 'IBM/AdaMML/issues/3' in header


def test_kinetics_sounds_lists_and_report(ks_root):
    root, clip, report = ks_root
    label = {name: i for i, name in enumerate(KS_CLASSES)}
    assert lines_of(root / 'classes.txt') == KS_CLASSES
    train = lines_of(root / 'train_list.txt')
    # The bagpipes clip is listed through a space-free symlink.
    assert train == [
        f'videos/{clip["blowing nose"]}_000000_000010.mp4 '
        f'{label["blowing nose"]}',
        f'links/{clip["playing bagpipes"]}_000000_000010.mp4 '
        f'{label["playing bagpipes"]}',
    ]
    link = root / 'links' / f'{clip["playing bagpipes"]}_000000_000010.mp4'
    assert link.is_symlink() and 'playing bagpipes' in os.readlink(link)
    assert lines_of(root / 'val_list.txt') == [
        f'videos/-Kval000001.mp4 {label["tickling"]}']
    assert lines_of(root / 'test_list.txt') == [
        f'links/-Ktest00001_000005_000015.mkv {label["tapping pen"]}']

    on_disk = json.loads((root / 'prepare_report.json').read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report['splits']['train'] == dict(
        report['splits']['train'], listed=31, written=2, missing=28, bad=1)
    assert report['splits']['val'] == dict(
        report['splits']['val'], listed=3, written=1, missing=1, bad=1)
    assert report['splits']['train']['per_class']['blowing nose'] == 1
    bad = {b['clip']: b for b in report['bad']}
    assert set(bad) == {f'{clip["bowling"]}_000000_000010',
                        '-Kval000002_000003_000013'}
    assert 'cannot decode' in bad[f'{clip["bowling"]}_000000_000010']['error']
    assert 'no audio track' in bad['-Kval000002_000003_000013']['error']
    assert bad['-Kval000002_000003_000013']['source'].endswith(
        'validate.csv:3')
    missing = {m['clip']: m['reason'] for m in report['missing']}
    assert 'only other segments' in missing[
        f'{clip["chopping wood"]}_000000_000010']
    assert missing['-Kval000003_000003_000013'] == (
        'no file for this YouTube id')
    assert not any('abseiling' in m for m in missing)


def test_kinetics_sounds_rerun_uses_probe_cache(ks_root, tmp_path):
    src, clip, first = ks_root
    root = tmp_path / 'ks'
    shutil.copytree(src, root, symlinks=True)
    # Probes are keyed by absolute path: point the copy's cache at itself.
    cache = (root / avp.PROBE_CACHE_NAME).read_text()
    (root / avp.PROBE_CACHE_NAME).write_text(cache.replace(str(src),
                                                           str(root)))
    num_files = first['probe']['probed']
    assert num_files == 6  # every annotated KS clip on disk, once
    again = ks_tool.prepare(str(root), workers=1, progress=False)
    assert again['probe'] == dict(probed=0, cached=num_files, crashed=0)
    assert again['splits'] == first['splits']
    # A repaired download is probed again and joins the list.
    write_mp4(root / 'videos' / f'{clip["bowling"]}_000000_000010.mp4')
    third = ks_tool.prepare(str(root), workers=1, progress=False)
    assert third['probe'] == dict(probed=1, cached=num_files - 1, crashed=0)
    assert third['splits']['train']['written'] == 3
    forced = ks_tool.prepare(
        str(root), workers=1, force_probe=True, progress=False)
    assert forced['probe'] == dict(probed=num_files, cached=0, crashed=0)


def test_kinetics_sounds_annotation_errors(tmp_path):
    root = tmp_path / 'ks'
    (root / 'videos').mkdir(parents=True)
    ann = root / 'annotations'
    rows = [[name, ks_id(i), 0, 10, 'train', 0]
            for i, name in enumerate(KS_CLASSES)]
    write_ks_csv(ann / 'train.csv', rows)
    write_ks_csv(ann / 'test.csv', rows[:1])
    with pytest.raises(FileNotFoundError, match='validate.csv'):
        ks_tool.prepare(str(root), progress=False)

    write_ks_csv(ann / 'validate.csv', rows[:1])
    bad_rows = copy.deepcopy(rows)
    bad_rows[1][2] = 'zero'
    write_ks_csv(ann / 'train.csv', bad_rows)
    with pytest.raises(avp.AnnotationError,
                       match=r'train\.csv:3: time_start .zero.'):
        ks_tool.prepare(str(root), progress=False)
    bad_rows[1] = bad_rows[1][:4]
    write_ks_csv(ann / 'train.csv', bad_rows)
    with pytest.raises(avp.AnnotationError, match=r'train\.csv:3: 4 fields'):
        ks_tool.prepare(str(root), progress=False)

    write_ks_csv(ann / 'train.csv', rows)
    classes = tmp_path / 'my_classes.txt'
    classes.write_text('# mine\nplaying bagpipes\nplaying the kazoo\n')
    with pytest.raises(avp.AnnotationError,
                       match=r'my_classes\.txt:3: unknown class '
                       r'.playing the kazoo.'):
        ks_tool.prepare(str(root), classes_file=str(classes), progress=False)

    # An unlabelled test CSV (older releases) cannot be used ...
    write_ks_csv(ann / 'test.csv', [[ks_id(0), 0, 10, 'test']],
                 header=['youtube_id', 'time_start', 'time_end', 'split'])
    with pytest.raises(avp.AnnotationError, match=r'test\.csv:1: .*label'):
        ks_tool.prepare(str(root), progress=False)
    # ... but the other splits can be built without it.
    report = ks_tool.prepare(
        str(root), splits=('train', 'val'), progress=False)
    assert set(report['splits']) == {'train', 'val'}
    assert report['splits']['train']['missing'] == 31


# -------------------------------------------------------------- CREMA-D ---

EMOTIONS = ('ANG', 'DIS', 'FEA', 'HAP', 'NEU', 'SAD')


def make_cremad(root: Path, stems) -> None:
    for i, stem in enumerate(stems):
        write_wav(root / 'AudioWAV' / f'{stem}.wav', 1.0 + 0.1 * i, seed=i)
        write_flv(root / 'VideoFlash' / f'{stem}.flv')


CREMAD_STEMS = [f'{actor}_{sentence}_{emotion}_XX'
                for actor in (1001, 1002) for sentence in ('DFA', 'IEO')
                for emotion in EMOTIONS]


@pytest.fixture(scope='module')
def cremad_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('cremad') / 'cremad'
    make_cremad(root, CREMAD_STEMS)
    os.remove(root / 'VideoFlash' / '1002_IEO_SAD_XX.flv')
    write_garbage(root / 'AudioWAV' / '1002_IEO_HAP_XX.wav')
    soundfile.write(str(root / 'AudioWAV' / '1002_IEO_NEU_XX.wav'),
                    np.zeros(0), 16000)
    (root / 'AudioWAV' / 'README.txt').write_text('not a clip')
    return root


def test_cremad_seeded_split(cremad_root):
    root = cremad_root
    # The literature's split: no validation set, val = test.
    report = cremad_tool.prepare(
        str(root), workers=2, progress=False, val_fraction=0)
    assert lines_of(root / 'classes.txt') == list(EMOTIONS)
    train = lines_of(root / 'train_list.txt')
    test = lines_of(root / 'test_list.txt')
    assert lines_of(root / 'val_list.txt') == test
    # 24 clips: round(0.1 * 24) = 2 held out, stratified by emotion (4 clips
    # each: equal remainders, ties go to the lower labels, ANG and DIS).
    splits = report['splits']
    assert (splits['train']['listed'], splits['test']['listed']) == (22, 2)
    assert sorted(int(line.split()[-1]) for line in test) == [0, 1]
    for line in train + test:
        video, audio, label = line.split()
        stem = Path(video).stem
        assert video == f'VideoFlash/{stem}.flv'
        assert audio == f'AudioWAV/{stem}.wav'
        assert EMOTIONS[int(label)] == stem.split('_')[2]
    assert not {Path(x.split()[0]).stem for x in train} & {
        Path(x.split()[0]).stem for x in test}
    # Missing flv, corrupt wav, empty wav: out of the lists, in the report
    # (all three are HAP/NEU/SAD clips, so in the training part).
    assert (splits['train']['written'], splits['train']['missing'],
            splits['train']['bad']) == (19, 1, 2)
    assert [m['clip'] for m in report['missing']] == ['1002_IEO_SAD_XX']
    assert report['missing'][0]['reason'].startswith(
        'video not found: ') and report['missing'][0]['reason'].endswith(
            'VideoFlash/1002_IEO_SAD_XX.flv')
    bad = {b['clip']: b['error'] for b in report['bad']}
    assert set(bad) == {'1002_IEO_HAP_XX', '1002_IEO_NEU_XX'}
    assert 'cannot decode' in bad['1002_IEO_HAP_XX']
    assert 'no audio samples' in bad['1002_IEO_NEU_XX']
    # flv1 video decodes with the installed PyAV (the probe decoded it).
    cache = json.loads((root / avp.PROBE_CACHE_NAME).read_text())['entries']
    flv = cache[f'video:{root / "VideoFlash" / "1001_DFA_ANG_XX.flv"}']
    assert flv['result']['ok'] and flv['result']['video_codec'] == 'flv'

    # By default a seeded, stratified validation split is held out of the
    # training part (round(0.1 * 22) = 2 clips) and the test split is the
    # same; nothing is probed twice.
    again = cremad_tool.prepare(str(root), progress=False)
    assert lines_of(root / 'test_list.txt') == test
    val = lines_of(root / 'val_list.txt')
    held = lines_of(root / 'train_list.txt')
    assert again['splits']['val']['listed'] == 2
    assert again['splits']['train']['listed'] == 20
    assert not set(val) & set(held) and set(val) | set(held) == set(train)
    assert again['settings']['val_is_test'] is False
    assert again['probe'] == dict(
        probed=0, cached=report['probe']['probed'], crashed=0)
    assert cremad_tool.prepare(str(root), progress=False)['splits'] == \
        again['splits']  # seeded
    other = cremad_tool.prepare(
        str(root), seed=3, test_fraction=0.25, progress=False)
    assert other['splits']['test']['listed'] == 6
    assert other['settings']['seed'] == 3
    assert lines_of(root / 'test_list.txt')[:2] != test


def test_flv_frame_count_without_header(cremad_root):
    """mmaction2's PyAVInit reads the frame count from the container
    header, which FLV lacks; the configs' CheckedPyAVInit counts the
    stream's packets and finds what Decord finds, and CheckedPyAVDecode
    returns the frames Decord decodes."""
    path = str(cremad_root / 'VideoFlash' / '1001_DFA_ANG_XX.flv')
    pyav = TRANSFORMS.build(dict(type='PyAVInit'))(dict(filename=path))
    decord = TRANSFORMS.build(dict(type='DecordInit'))(dict(filename=path))
    checked = TRANSFORMS.build(dict(type='CheckedPyAVInit'))(
        dict(filename=path))
    assert pyav['total_frames'] == 0
    assert checked['total_frames'] == decord['total_frames'] == 12
    inds = np.array([0, 5, 11])
    ours = TRANSFORMS.build(dict(type='CheckedPyAVDecode'))(
        dict(checked, frame_inds=inds))['imgs']
    theirs = TRANSFORMS.build(dict(type='DecordDecode'))(
        dict(decord, frame_inds=inds))['imgs']
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape == (48, 64, 3)
        # Same frames; the two libraries' YUV->RGB rounding may differ.
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_cremad_split_files_and_errors(cremad_root, tmp_path):
    train = tmp_path / 'train.csv'
    test = tmp_path / 'test.csv'
    # OGM-GE's csv format (stem,EMOTION) and bare stems both work.
    train.write_text('1001_DFA_ANG_XX,ANG\n1001_DFA_DIS_XX.wav\n'
                     '1009_DFA_ANG_XX\n')
    test.write_text('\ufeff1001_IEO_FEA_XX,FEA\r\n')
    out = tmp_path / 'cremad'
    report = cremad_tool.prepare(
        str(out),
        audio_dir=str(cremad_root / 'AudioWAV'),
        video_dir=str(cremad_root / 'VideoFlash'),
        train_list=str(train),
        test_list=str(test),
        val_fraction=0,
        progress=False)
    assert lines_of(out / 'train_list.txt') == [
        f'{cremad_root}/VideoFlash/1001_DFA_ANG_XX.flv '
        f'{cremad_root}/AudioWAV/1001_DFA_ANG_XX.wav 0',
        f'{cremad_root}/VideoFlash/1001_DFA_DIS_XX.flv '
        f'{cremad_root}/AudioWAV/1001_DFA_DIS_XX.wav 1',
    ]
    assert report['missing'][0]['source'] == f'{train}:3'
    assert len(lines_of(out / 'test_list.txt')) == 1

    def fails(match, **kwargs):
        args = dict(root=str(out), audio_dir=str(cremad_root / 'AudioWAV'),
                    video_dir=str(cremad_root / 'VideoFlash'),
                    train_list=str(train), test_list=str(test),
                    val_fraction=0, progress=False)
        args.update(kwargs)
        with pytest.raises((avp.AnnotationError, FileNotFoundError,
                            ValueError), match=match):
            cremad_tool.prepare(**args)

    fails('split file not found: .*nope.txt',
          test_list=str(tmp_path / 'nope.txt'))
    fails('both --train-list and --test-list', test_list=None)
    fails('3 training clips are too few to hold out --val-fraction 0.1',
          val_fraction=0.1)
    fails('--val-list or --val-fraction, not both', val_list=str(test),
          val_fraction=0.1)
    bad = tmp_path / 'bad.txt'
    bad.write_text('1001_DFA_ANG_XX\n1001_DFA_ANG_XX,HAP\n')
    fails(r'bad\.txt:2: emotion .HAP. disagrees', train_list=str(bad))
    bad.write_text('1001_DFA_ANG_XX,ANG,extra\n')
    fails(r'bad\.txt:1: expected', train_list=str(bad))
    bad.write_text('\n1001_DFA_XYZ_XX\n')
    fails(r'bad\.txt:2: unknown class: emotion code .XYZ.',
          train_list=str(bad))
    bad.write_text('1001_IEO_FEA_XX\n')
    fails(r'test\.csv:1: 1001_IEO_FEA_XX is also listed at .*bad\.txt:1',
          train_list=str(bad))
    # A file in the official tree with an unknown emotion code.
    tree = tmp_path / 'tree'
    shutil.copytree(cremad_root / 'VideoFlash', tree / 'VideoFlash')
    write_wav(tree / 'AudioWAV' / '1001_DFA_BOR_XX.wav')
    with pytest.raises(avp.AnnotationError,
                       match=r'1001_DFA_BOR_XX\.wav: unknown class'):
        cremad_tool.prepare(str(tree), progress=False)


# ------------------------------------------------------------------ AVE ---

AVE_HEADER = 'Category&VideoID&Quality&StartTime&EndTime'


def make_ave(root: Path) -> None:
    rows = {
        'train': [('Church bell', '-ave0000001', 0, 10),
                  ('Banjo', '-ave0000002', 2, 8),
                  ('Banjo', '-ave0000003', 0, 10)],
        'val': [('Male speech, man speaking', '-ave0000004', 1, 9)],
        'test': [('Church bell', '-ave0000005', 0, 10),
                 ('Male speech, man speaking', '-ave0000006', 0, 4)],
    }
    everything = [r for split in rows.values() for r in split]
    (root / 'AVE').mkdir(parents=True)
    (root / 'Annotations.txt').write_text(AVE_HEADER + '\r\n' + ''.join(
        f'{c}&{v}&good&{s}&{e}\r\n' for c, v, s, e in everything))
    for split, name in ave_tool.SPLIT_FILES.items():
        (root / name).write_text(''.join(f'{c}&{v}&good&{s}&{e}\n'
                                         for c, v, s, e in rows[split]))
    for i in (1, 2, 4, 5):
        write_mp4(root / 'AVE' / f'-ave000000{i}.mp4', seed=i)
    write_garbage(root / 'AVE' / '-ave0000006.mp4')


@pytest.fixture(scope='module')
def ave_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('ave') / 'ave'
    make_ave(root)
    with pytest.warns(UserWarning, match='3 categories'):
        report = ave_tool.prepare(str(root), workers=2, progress=False)
    return root, report


def test_ave_lists_and_report(ave_root):
    root, report = ave_root
    assert lines_of(root / 'classes.txt') == [
        'Banjo', 'Church bell', 'Male speech, man speaking']
    assert lines_of(root / 'train_list.txt') == [
        'AVE/-ave0000001.mp4 1', 'AVE/-ave0000002.mp4 0']
    assert lines_of(root / 'val_list.txt') == ['AVE/-ave0000004.mp4 2']
    assert lines_of(root / 'test_list.txt') == ['AVE/-ave0000005.mp4 1']
    assert report['missing'] == [
        dict(split='train', source=f'{root}/trainSet.txt:3',
             clip='-ave0000003',
             reason=f'video not found: {root}/AVE/-ave0000003.mp4')]
    assert [b['clip'] for b in report['bad']] == ['-ave0000006']
    assert report['splits']['test'] == dict(
        report['splits']['test'], listed=2, written=1, missing=0, bad=1)


def test_ave_annotation_errors(tmp_path):
    root = tmp_path / 'ave'
    make_ave(root)
    train = root / 'trainSet.txt'
    good = train.read_text()
    train.write_text(good + 'Dog barking&-ave0000009&good&0&10\n')
    with pytest.raises(avp.AnnotationError,
                       match=r'trainSet\.txt:4: unknown class .Dog barking.'):
        ave_tool.prepare(str(root), progress=False)
    train.write_text(good + 'Banjo&-ave0000009&good&0\n')
    with pytest.raises(avp.AnnotationError,
                       match=r'trainSet\.txt:4: expected 5 "&"-separated'):
        ave_tool.prepare(str(root), progress=False)
    train.write_text(good.replace('Church bell&-ave0000001',
                                  'Banjo&-ave0000001'))
    with pytest.raises(avp.AnnotationError,
                       match=r'trainSet\.txt:1: .*Annotations\.txt:2'):
        ave_tool.prepare(str(root), progress=False)
    train.write_text(good)
    os.remove(root / 'testSet.txt')
    with pytest.raises(FileNotFoundError, match='testSet.txt'):
        ave_tool.prepare(str(root), progress=False)
    # The command line reports the problem in one line, exit status 1.
    assert ave_tool.main(['--root', str(root), '--no-progress']) == 1


def test_stratified_split_properties():
    keys = [f'k{i:02d}' for i in range(30)]
    labels = [i % 3 for i in range(30)]
    rest, held = avp.stratified_split(keys, labels, 0.2, seed=5)
    assert len(held) == 6 and sorted(rest + held) == keys
    assert sorted(labels[keys.index(k)] for k in held) == [0, 0, 1, 1, 2, 2]
    # Independent of the order the keys come in.
    assert avp.stratified_split(keys[::-1], labels[::-1], 0.2,
                                seed=5) == (rest, held)
    assert avp.stratified_split(keys, labels, 0.2, seed=6)[1] != held
    with pytest.raises(ValueError, match='fraction'):
        avp.stratified_split(keys, labels, 1.5)


# ------------------------------------------------------- configs, Runner ---

CONFIGS = dict(
    kinetics_sounds=dict(classes=31, frames=3, root='data/kinetics_sounds'),
    cremad=dict(classes=6, frames=2, root='data/cremad'),
    ave=dict(classes=28, frames=3, root='data/ave'))


@pytest.mark.parametrize('name', list(CONFIGS))
def test_configs(name):
    spec = CONFIGS[name]
    cfg = Config.fromfile(str(REPO / 'configs' / f'clcr_{name}.py'))
    assert cfg.model.cls_head.num_classes == spec['classes']
    assert cfg.model.backbone.modalities.rgb.grids[0][0] == spec['frames']
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.train_cfg.max_epochs == 100
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        assert loader.batch_size == 64
        assert loader.dataset.data_root == spec['root']
        assert loader.dataset.ann_file == f'{split}_list.txt'
        sample = [t for t in loader.dataset.pipeline[0].transforms
                  if t.type == 'UniformSample'][0]
        assert sample.clip_len == spec['frames']
    late = Config.fromfile(
        str(REPO / 'configs' / f'clcr_{name}_late_fusion.py'))
    assert late.model.fusion.type == 'LateFusion'
    assert late.model.intra_ced is None
    assert late.model.cls_head.num_classes == spec['classes']


def _shrink(pipeline):
    """Same transforms, tiny sizes: 32x32 frames and 0.5 s of audio."""
    for t in pipeline:
        if t.type == 'KeyMapper':
            _shrink(t.transforms)
        elif t.type == 'Resize':
            t.scale = (32, 32) if t.get('keep_ratio') is False else (-1, 36)
        elif t.type == 'CenterCrop':
            t.crop_size = 32
        elif t.type == 'AudioClipSample':
            t.clip_duration = 0.5


class _Record(Hook):
    """Keeps what one training run saw and produced."""

    def __init__(self):
        self.shapes, self.losses, self.metrics = [], [], None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.shapes.append({k: tuple(v[0].shape)
                            for k, v in data_batch['inputs'].items()})

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss'].detach()))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = dict(metrics)


def _runner_from(cfg: Config) -> Runner:
    """``Runner.from_cfg`` without handing over the Config object itself.

    Given one, the Runner formats the whole config with yapf for its log
    and its dump (tens of seconds on a busy 2-core machine); built from the
    same fields it trains and evaluates exactly the same.
    """
    cfg = copy.deepcopy(cfg)
    keys = ('model', 'work_dir', 'train_dataloader', 'val_dataloader',
            'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg',
            'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
            'val_evaluator', 'test_evaluator', 'default_hooks',
            'custom_hooks', 'load_from', 'env_cfg', 'log_processor',
            'log_level', 'visualizer', 'default_scope', 'randomness')
    return Runner(**{key: cfg.get(key) for key in keys})


def _prepared_cremad(tmp_path):
    root = tmp_path / 'cremad'
    stems = ['1001_DFA_ANG_XX', '1001_DFA_SAD_XX', '1002_IEO_HAP_XX']
    make_cremad(root, stems)
    (tmp_path / 'train.txt').write_text('\n'.join(stems[:2]) + '\n')
    (tmp_path / 'test.txt').write_text(stems[2] + '\n')
    cremad_tool.prepare(str(root), train_list=str(tmp_path / 'train.txt'),
                        test_list=str(tmp_path / 'test.txt'),
                        val_fraction=0, progress=False)
    return root


@pytest.fixture
def one_thread():
    """Run torch single-threaded for a test.

    The inputs are tiny; on a loaded 2-core machine torch's OpenMP threads
    mostly wait for each other, which made each run several times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_one_training_iteration_and_evaluation(name, request, tmp_path,
                                               one_thread):
    if name == 'cremad':
        root = _prepared_cremad(tmp_path)
    else:
        fixture = dict(kinetics_sounds='ks_root', ave='ave_root')[name]
        root = request.getfixturevalue(fixture)[0]
    assert len(lines_of(root / 'train_list.txt')) == 2  # one batch of 2

    cfg = Config.fromfile(str(REPO / 'configs' / f'clcr_{name}.py'))
    # The tiny AVE replica has 3 of the 28 classes: the datasets refuse a
    # classes.txt that disagrees with the head, so both follow the data.
    num_classes = len(lines_of(root / 'classes.txt'))
    cfg.model.cls_head.num_classes = num_classes
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = str(root)
        loader.dataset.num_classes = num_classes
        _shrink(loader.dataset.pipeline)
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.checkpoint = None  # no 90 MB checkpoint per test
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    runner = _runner_from(cfg)
    record = _Record()
    runner.register_hook(record)
    runner.train()

    frames = CONFIGS[name]['frames']
    assert record.shapes == [dict(rgb=(1, 3, frames, 32, 32),
                                  audio=(1, 1, 51, 128))]
    assert len(record.losses) == 1 and np.isfinite(record.losses[0])
    assert record.losses[0] > 0
    assert 0.0 <= record.metrics['acc/top1'] <= 1.0
    assert runner.iter == 1 and runner.epoch == 1
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
