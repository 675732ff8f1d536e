"""Damaged real downloads: each case built in the benchmark's real layout
and run through the real preparation tools and datasets.

Truncated mp4 / flv / avi / wav, a worker that segfaults or hangs, a source
replaced after extraction, file names and list bytes that are not UTF-8,
labels beyond the head. Each test checks the report, the exit status and
that the good files are still there.
"""
import json
import os
import os.path as osp
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from clcr_mm.datasets.transforms import MediaFileError
from clcr_mm.registry import DATASETS
from media_writers import truncate, write_flv, write_mp4, write_wav
from tool_loader import load_tool

ks_tool = load_tool('data/kinetics_sounds/prepare.py')
cremad_tool = load_tool('data/cremad/prepare.py')
ucf_prep = load_tool('data/ucf101/prepare.py')
# tools/data/av_prepare.py, the very module the tools run.
avp = ks_tool.avp
extract = ucf_prep.extract_rgb_flow
KS_CLASSES = avp.read_class_list(str(ks_tool.DEFAULT_CLASSES))
# A Kinetics label folder whose name is Latin-1, not UTF-8 ('caf\xe9').
LATIN1_DIR = os.fsdecode(b'caf\xe9')


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


# --------------------------------------------------------- preparation ---


def _kinetics_replica(root: Path) -> dict:
    """Every KS class annotated once in train.csv; three clips on disk: a
    good one, a good one in a non-UTF-8 folder, a truncated download."""
    ids = {name: f'-K_{i:08d}' for i, name in enumerate(KS_CLASSES)}
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'train.csv').write_text(
        'label,youtube_id,time_start,time_end,split\n' + ''.join(
            f'{name},{yid},0,10,train\n' for name, yid in ids.items()))
    good, odd, cut = KS_CLASSES[:3]
    videos = root / 'videos'
    write_mp4(videos / f'{ids[good]}_000000_000010.mp4', frames=24)
    write_mp4(
        videos / 'train' / LATIN1_DIR / f'{ids[odd]}_000000_000010.mp4',
        frames=24,
        seed=1)
    truncated = videos / f'{ids[cut]}_000000_000010.mp4'
    write_mp4(truncated, frames=40, seed=2, faststart=True)
    truncate(truncated, 0.3)
    return dict(ids=ids, good=good, odd=odd, cut=cut)


def test_kinetics_sounds_truncated_and_non_utf8_name(tmp_path, capsys):
    root = tmp_path / 'kinetics_sounds'
    info = _kinetics_replica(root)
    status = ks_tool.main([
        '--root', str(root), '--splits', 'train', '--workers', '2',
        '--no-progress'
    ])
    assert status == 0
    label = {name: i for i, name in enumerate(KS_CLASSES)}
    listed = (root / 'train_list.txt').read_text(encoding='utf-8')
    lines = listed.splitlines()
    # Both good clips are listed; the non-UTF-8 path through an ASCII link.
    assert lines[0] == (f'videos/{info["ids"][info["good"]]}_000000_000010'
                        f'.mp4 {label[info["good"]]}')
    assert lines[1] == (f'links/{info["ids"][info["odd"]]}_000000_000010'
                        f'.mp4 {label[info["odd"]]}')
    assert len(lines) == 2
    link = root / 'links' / f'{info["ids"][info["odd"]]}_000000_000010.mp4'
    assert os.fsencode(LATIN1_DIR) in os.fsencode(os.readlink(link))
    report = json.loads((root / 'prepare_report.json').read_text())
    bad = {b['clip'].rsplit('_', 2)[0]: b['error'] for b in report['bad']}
    assert list(bad) == [info['ids'][info['cut']]]
    assert 'truncated: video decodes to 1.25 s of 5.00 s' in bad[
        info['ids'][info['cut']]]
    assert report['settings']['duration_tolerance'] == 0.05
    # The cache round-trips the odd path; no temporary file is left.
    cache = json.loads((root / avp.PROBE_CACHE_NAME).read_text())
    assert any(LATIN1_DIR in key for key in cache['entries'])
    assert not list(root.glob('*.tmp'))
    assert '2 clips written of' in capsys.readouterr().out


def test_probe_worker_segfault_is_reported(tmp_path, monkeypatch, capsys):
    root = tmp_path / 'kinetics_sounds'
    info = _kinetics_replica(root)
    victim = f'{info["ids"][info["good"]]}_000000_000010.mp4'
    probe = avp.probe_media

    def crash_on_victim(task):
        # A real segmentation fault of the worker process (fork start:
        # the worker runs this very function).
        if task[0].endswith(victim):
            _segfault()
        return probe(task)

    monkeypatch.setattr(avp, 'probe_media', crash_on_victim)
    status = ks_tool.main(
        ['--root', str(root), '--splits', 'train', '--no-progress'])
    assert status == 2
    assert 'FAILED: 1 files crashed' in capsys.readouterr().out
    report = json.loads((root / 'prepare_report.json').read_text())
    assert report['probe']['crashed'] == 1
    errors = {b['clip'].rsplit('_', 2)[0]: b['error'] for b in report['bad']}
    assert 'killed by SIGSEGV' in errors[info['ids'][info['good']]]
    # The other good clip made it; the crash was not cached as a verdict.
    assert len((root / 'train_list.txt').read_text().splitlines()) == 1
    monkeypatch.setattr(avp, 'probe_media', probe)
    assert ks_tool.main(
        ['--root', str(root), '--splits', 'train', '--no-progress']) == 0
    assert len((root / 'train_list.txt').read_text().splitlines()) == 2


def test_cremad_truncated_flv_and_wav(tmp_path):
    root = tmp_path / 'cremad'
    stems = ['1001_DFA_ANG_XX', '1001_DFA_SAD_XX', '1002_IEO_HAP_XX',
             '1002_IEO_NEU_XX']
    for i, stem in enumerate(stems):
        write_wav(root / 'AudioWAV' / f'{stem}.wav', 1.0, seed=i)
        write_flv(root / 'VideoFlash' / f'{stem}.flv', frames=40)
    truncate(root / 'VideoFlash' / f'{stems[1]}.flv', 0.5)
    truncate(root / 'AudioWAV' / f'{stems[2]}.wav', 0.5)
    (tmp_path / 'train.txt').write_text('\n'.join(stems[:3]) + '\n')
    (tmp_path / 'test.txt').write_text(stems[3] + '\n')
    lists = dict(
        train_list=str(tmp_path / 'train.txt'),
        test_list=str(tmp_path / 'test.txt'),
        val_fraction=0)
    report = cremad_tool.prepare(str(root), **lists, progress=False)
    errors = {b['clip']: b['error'] for b in report['bad']}
    assert set(errors) == set(stems[1:3])
    assert 'truncated: the file decodes to' in errors[stems[1]]
    assert 'truncated: audio decodes to 0.50 s of 1.00 s' in errors[stems[2]]
    assert (root / 'train_list.txt').read_text().splitlines() == [
        f'VideoFlash/{stems[0]}.flv AudioWAV/{stems[0]}.wav 0']
    # A looser tolerance accepts what is there (nothing is re-probed).
    loose = cremad_tool.prepare(
        str(root), **lists, progress=False, duration_tolerance=0.6)
    assert loose['bad'] == [] and loose['probe']['probed'] == 0


def _crash_sleep_or_fail(task: int) -> int:
    if task == 1:
        _segfault()
    if task == 2:
        time.sleep(60)
    if task == 3:
        raise ValueError(f'bad task {task}')
    return task * 10


def test_run_isolated_survives_crash_timeout_and_error():
    out = avp.run_isolated(
        _crash_sleep_or_fail, [0, 1, 2, 3, 4, 5],
        workers=2,
        timeout=5,  # generous: the other tasks take milliseconds
        progress=False)
    assert out[0] == (True, 0) and out[4:] == [(True, 40), (True, 50)]
    assert out[1] == (False, 'worker process killed by SIGSEGV')
    assert out[2] == (False, 'timed out after 5 s (worker killed)')
    assert out[3] == (False, 'ValueError: bad task 3')


# ------------------------------------------------------------- UCF101 ---


def _write_avi(path: str, n: int = 20, shift: int = 0) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 25,
                             (64, 48))
    for t in range(n):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[16:32, t + shift:t + shift + 14] = (30, 200, 230)
        writer.write(frame)
    writer.release()


def _ucf_replica(root: str) -> None:
    videos = osp.join(root, 'UCF-101', 'Biking')
    for g in (1, 2):
        _write_avi(osp.join(videos, f'v_Biking_g0{g}_c01.avi'))
    ann = osp.join(root, 'ucfTrainTestlist')
    os.makedirs(ann)
    Path(ann, 'classInd.txt').write_text('1 Biking\n')
    Path(ann, 'trainlist01.txt').write_text('Biking/v_Biking_g01_c01.avi 1\n')
    Path(ann, 'testlist01.txt').write_text('Biking/v_Biking_g02_c01.avi\n')


def test_ucf101_truncated_avi_and_non_utf8_name(tmp_path):
    root = str(tmp_path / 'ucf101')
    _ucf_replica(root)
    cut = osp.join(root, 'UCF-101', 'Biking', 'v_Biking_g03_c01.avi')
    _write_avi(cut, n=40)
    truncate(cut, 0.4)
    # Unlisted, but in the tree: OpenCV segfaults on its name (also when
    # writing it, hence the rename).
    odd = osp.join(root, 'UCF-101', 'Biking', 'v_Biking_g04_caf.avi')
    _write_avi(odd)
    os.rename(odd, odd.replace('caf', LATIN1_DIR))
    status = ucf_prep.main([
        '--root', root, '--workers', '2', '--splits', '1', '--val-groups', '0'
    ])
    assert status == 2  # lists written, but a clip failed
    report = json.loads(
        Path(root, 'rawframes', extract.REPORT_NAME).read_text())
    assert report['summary'] == dict(
        report['summary'], total=4, done=3, failed=1, skipped=0)
    [failed] = report['failed']
    assert failed['video'].endswith('v_Biking_g03_c01.avi')
    assert 'truncated' in failed['error'] and 'of the 40 frames' in failed[
        'error']
    assert not osp.exists(osp.join(root, 'rawframes', 'Biking',
                                   'v_Biking_g03_c01'))
    odd_dir = os.fsencode(osp.join(root, 'rawframes', 'Biking')) + \
        b'/v_Biking_g04_caf\xe9'
    assert len(os.listdir(odd_dir)) == 20 + 2 * 19 + 1  # + done marker
    assert Path(root, 'ucf101_train_split_1_rawframes.txt').read_text() == \
        'Biking/v_Biking_g01_c01 20 0\n'


def test_ucf101_worker_segfault_does_not_hang(tmp_path, monkeypatch, capsys):
    root = str(tmp_path / 'ucf101')
    _ucf_replica(root)
    extract_clip = extract.extract_clip

    def crash_on_g02(**task):
        if task['video_path'].endswith('g02_c01.avi'):
            _segfault()
        return extract_clip(**task)

    monkeypatch.setattr(extract, 'extract_clip', crash_on_g02)
    out = osp.join(root, 'rawframes')
    t0 = time.time()
    status = extract.main([osp.join(root, 'UCF-101'), out, '--workers', '1'])
    assert time.time() - t0 < 60
    assert status == 2
    report = json.loads(Path(out, extract.REPORT_NAME).read_text())
    assert report['summary']['done'] == 1 and report['summary']['failed'] == 1
    assert 'killed by SIGSEGV' in report['failed'][0]['error']
    assert 'FAILED' in capsys.readouterr().out
    # The good clip is complete, the crashed one left nothing behind.
    assert extract.read_done_marker(
        osp.join(out, 'Biking', 'v_Biking_g01_c01'))['num_frames'] == 20
    assert not osp.exists(osp.join(out, 'Biking', 'v_Biking_g02_c01'))


def test_ucf101_replaced_source_is_extracted_again(tmp_path):
    root = str(tmp_path / 'ucf101')
    _ucf_replica(root)
    video_root, out = osp.join(root, 'UCF-101'), osp.join(root, 'rawframes')
    first = extract.extract_all(video_root, out, progress=False)
    assert first['summary']['done'] == 2
    clip = osp.join(out, 'Biking', 'v_Biking_g01_c01')
    marker = extract.read_done_marker(clip)
    source = osp.join(video_root, 'Biking', 'v_Biking_g01_c01.avi')
    assert marker['source_size'] == os.path.getsize(source)
    assert marker['num_frames'] == marker['expected_frames'] == 20
    # A re-download with more frames replaces the clip.
    _write_avi(source, n=30, shift=5)
    second = extract.extract_all(video_root, out, progress=False)
    assert second['summary'] == dict(
        second['summary'], done=1, skipped=1, source_changed=1)
    assert second['source_changed'] == [clip]
    assert extract.read_done_marker(clip)['num_frames'] == 30
    assert len([n for n in os.listdir(clip) if n.startswith('img_')]) == 30


def test_ucf101_bad_class_index_stops_before_extraction(tmp_path, capsys):
    root = str(tmp_path / 'ucf101')
    _ucf_replica(root)
    Path(root, 'ucfTrainTestlist', 'classInd.txt').write_bytes(
        b'1 Biking\n2 Caf\xe9Dancing\n')
    assert ucf_prep.main(['--root', root, '--workers', '1']) == 1
    err = capsys.readouterr().err
    assert 'classInd.txt:2: byte 0xe9 at column 6 is not valid UTF-8' in err
    assert not osp.exists(osp.join(root, 'rawframes'))  # nothing extracted


# ------------------------------------------------------------ training ---


def test_truncated_video_at_training_names_file_and_follows_on_error(
        tmp_path):
    """A truncated file that reached a list (e.g. prepared with a lax
    tolerance) is a Python error naming it, never a native crash."""
    write_mp4(tmp_path / 'good.mp4', frames=24)
    write_mp4(tmp_path / 'cut.mp4', frames=40, faststart=True)
    truncate(tmp_path / 'cut.mp4', 0.3)
    (tmp_path / 'list.txt').write_text('good.mp4 0\ncut.mp4 1\n')
    pipeline = [
        dict(type='CheckedPyAVInit'),
        dict(type='UniformSample', clip_len=3, num_clips=1),
        dict(type='CheckedPyAVDecode'),
    ]

    def build(**kwargs):
        return DATASETS.build(
            dict(
                type='AudioVisualDataset',
                ann_file='list.txt',
                data_root=str(tmp_path),
                pipeline=pipeline,
                num_classes=2,
                **kwargs))

    with pytest.raises(MediaFileError, match=r"cut\.mp4.*truncated"):
        build()[1]
    skipping = build(on_error='skip')
    sample = skipping[1]  # another sample is drawn instead
    assert sample['filename'].endswith('good.mp4')
    assert len(sample['imgs']) == 3 and skipping.num_skipped >= 1
    # Testing never skips: the final number covers every listed clip.
    with pytest.raises(MediaFileError, match='cut.mp4'):
        build(on_error='skip', test_mode=True)[1]

    # Zero-fill: the clip stays, its video masked out; also for a file
    # that is gone since the list was written.
    (tmp_path / 'list.txt').write_text('good.mp4 0\ncut.mp4 1\ngone.mp4 1\n')
    pipeline[0] = dict(type='CheckedPyAVInit', on_error='zero')
    pipeline[2] = dict(
        type='CheckedPyAVDecode', on_error='zero', zero_shape=(12, 16))
    filling = build()
    good, cut, gone = filling[0], filling[1], filling[2]
    assert good['modality_mask'] == dict(rgb=True)
    assert good['imgs'][0].shape == (48, 64, 3) and good['imgs'][0].any()
    for sample in (cut, gone):
        assert sample['modality_mask'] == dict(rgb=False)
        assert len(sample['imgs']) == 3
        assert sample['imgs'][0].shape == (12, 16, 3)
        assert not np.any(sample['imgs'])


def test_label_beyond_head_and_non_utf8_list(tmp_path):
    (tmp_path / 'ucf.txt').write_text('Biking/v1 20 0\nBiking/v2 20 101\n')
    cfg = dict(
        type='CheckedRawframeDataset',
        ann_file=str(tmp_path / 'ucf.txt'),
        pipeline=[],
        num_classes=101)
    with pytest.raises(ValueError,
                       match=r"ucf\.txt', line 2: label 101 is outside "
                       r'\[0, 101\)'):
        DATASETS.build(cfg)
    (tmp_path / 'ucf.txt').write_bytes(b'Biking/v1 20 0\nBiking/v\xe92 20 1\n')
    with pytest.raises(ValueError, match=r'ucf\.txt:2: byte 0xe9 at column '
                       '9 is not valid UTF-8'):
        DATASETS.build(cfg)
    (tmp_path / 'ucf.txt').write_text('Biking/v1 20 0\nBiking/v2 20 100\n')
    dataset = DATASETS.build(cfg)
    assert [dataset.get_data_info(i)['label'] for i in range(2)] == [0, 100]

    # An AV set prepared with 4 classes for a 28-class head.
    (tmp_path / 'classes.txt').write_text('a\nb\nc\nd\n')
    (tmp_path / 'av.txt').write_text('x.mp4 3\n')
    with pytest.raises(ValueError,
                       match=r'classes\.txt lists 4 classes but the dataset '
                       r'has num_classes=28'):
        DATASETS.build(
            dict(
                type='AudioVisualDataset',
                ann_file='av.txt',
                data_root=str(tmp_path),
                classes='classes.txt',
                num_classes=28,
                pipeline=[]))


def test_kinetics_csv_with_non_utf8_byte(tmp_path):
    csv = tmp_path / 'train.csv'
    csv.write_bytes(b'label,youtube_id,time_start,time_end,split\n'
                    b'bowling,abc,0,10,train\n'
                    b'caf\xe9 dancing,def,0,10,train\n')
    with pytest.raises(avp.AnnotationError,
                       match=r'train\.csv:3: byte 0xe9 at column 4'):
        ks_tool.read_kinetics_csv(str(csv))
