"""UCF101 RGB + flow preparation, lists, and the rgb/flow data pipeline.

A tiny replica of the official download (real MJPG .avi files with a moving
square, CRLF split files, the HandstandPushups/HandStandPushups case quirk)
is built in a temporary directory and run through the real tools.
"""
import json
import os
import os.path as osp
import random
import sys
import warnings

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import Compose

from clcr_mm import register_all_modules
from clcr_mm.registry import DATASETS, TRANSFORMS
from tool_loader import load_tool
from ucf101_replica import (CLASSES, NUM_FRAMES, SPEED, H, W, make_download,
                            write_video)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL_DIR = osp.join(REPO, 'tools', 'data', 'ucf101')
CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'ucf101_rgb_flow.py')


def _load(name: str, filename: str):
    """Import a tools/data/ucf101 script (``name`` is kept for callers)."""
    return load_tool(f'data/ucf101/{filename}')


prep = _load('_test_ucf101_prepare', 'prepare.py')
# The very modules prepare.py runs (it loads its siblings by path).
extract = prep.extract_rgb_flow
lists = prep.build_file_lists


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ucf') / 'ucf101')
    make_download(root)
    # Two groups per training list here: hold one out for validation.
    result = prep.prepare(root, workers=2, val_groups=1)
    return root, result


def _clip(root, folder='Biking', stem='v_Biking_g01_c01'):
    return osp.join(root, 'rawframes', folder, stem)


def test_extraction_counts_and_flow(prepared):
    root, result = prepared
    summary = result['extract']['summary']
    assert summary['done'] == 6 and summary['failed'] == 1
    for folder, fname_cls, groups in CLASSES:
        for g in groups:
            d = _clip(root, folder, f'v_{fname_cls}_g{g:02d}_c01')
            names = os.listdir(d)
            n_img, n_x, n_y = (sum(n.startswith(p) for n in names)
                               for p in ('img_', 'flow_x_', 'flow_y_'))
            assert (n_img, n_x, n_y) == (NUM_FRAMES, NUM_FRAMES - 1,
                                         NUM_FRAMES - 1)
            assert extract.read_done_marker(d)['num_frames'] == NUM_FRAMES
    d = _clip(root)
    img = cv2.imread(osp.join(d, 'img_00001.jpg'))
    assert img.shape == (H, W, 3)
    # Flow 4 is frame 4 -> 5: the square (x from 8 + 3*3) moves +3 px in x.
    fx = extract.dequantize_flow(cv2.imread(osp.join(d, 'flow_x_00004.jpg'),
                                            0))
    fy = extract.dequantize_flow(cv2.imread(osp.join(d, 'flow_y_00004.jpg'),
                                            0))
    x0 = 8 + SPEED * 3
    inside_x = fx[18:30, x0 + 2:x0 + 12]
    assert abs(float(np.median(inside_x)) - SPEED) < 1.0
    assert abs(float(np.median(fy[18:30, x0 + 2:x0 + 12]))) < 0.5
    # Static corners: (near) zero motion.
    assert abs(float(np.median(fx[:6, :6]))) < 0.5


def test_quantisation_matches_denseflow():
    q = extract.quantize_flow(np.array([-25., -20., 0., 20., 30.]), 20.)
    assert q.tolist() == [0, 0, 128, 255, 255]
    # 255 - q is the negated flow (what FormatRGBFlow does on a flip).
    v = np.array([-7.3, 2.1, 13.])
    back = extract.dequantize_flow(255 - extract.quantize_flow(v, 20.), 20.)
    np.testing.assert_allclose(back, -v, atol=40 / 255)


def test_corrupt_video_reported_and_not_fatal(prepared):
    root, result = prepared
    with open(osp.join(root, 'rawframes', 'extract_report.json')) as f:
        report = json.load(f)
    assert report['summary']['failed'] == 1
    (bad, ) = report['failed']
    assert bad['video'].endswith('v_Biking_g09_c01.avi')
    assert 'Error' in bad['error']
    # No partial output left behind for the corrupt clip.
    assert not osp.exists(_clip(root, stem='v_Biking_g09_c01'))


def test_rerun_skips_finished_clips(prepared):
    root, _ = prepared
    frame = osp.join(_clip(root), 'img_00003.jpg')
    mtime = os.stat(frame).st_mtime_ns
    report = extract.extract_all(
        osp.join(root, 'UCF-101'), osp.join(root, 'rawframes'), workers=1)
    assert report['summary']['skipped'] == 6
    assert report['summary']['done'] == 0
    assert report['summary']['failed'] == 1  # retried, still corrupt
    assert report['summary']['settings_mismatch'] == 0
    assert os.stat(frame).st_mtime_ns == mtime
    # Other settings: still skipped (never destroys work) but reported.
    report = extract.extract_all(
        osp.join(root, 'UCF-101'),
        osp.join(root, 'rawframes'),
        bound=10.,
        workers=1)
    assert report['summary']['settings_mismatch'] == 6
    assert os.stat(frame).st_mtime_ns == mtime


def test_interrupted_clip_is_redone(tmp_path):
    video = str(tmp_path / 'v_X_g01_c01.avi')
    write_video(video, n=4)
    clip_dir = str(tmp_path / 'out' / 'X' / 'v_X_g01_c01')
    os.makedirs(clip_dir)
    # Leftovers of an interrupted run: no done marker, stale frames.
    open(osp.join(clip_dir, 'img_00099.jpg'), 'wb').close()
    rec = extract.extract_clip(video, clip_dir)
    assert rec['status'] == 'done' and rec['num_frames'] == 4
    assert not osp.exists(osp.join(clip_dir, 'img_00099.jpg'))
    assert extract.extract_clip(video, clip_dir)['status'] == 'skipped'


def test_tvl1_needs_contrib(monkeypatch):
    if hasattr(cv2, 'optflow'):
        extract.check_flow_algo('tvl1')  # available here: no error
        monkeypatch.delattr(cv2, 'optflow')
    with pytest.raises(RuntimeError, match='opencv-contrib-python'):
        extract.check_flow_algo('tvl1')
    with pytest.raises(ValueError, match='unknown flow algorithm'):
        extract.check_flow_algo('brox')


def test_lists_content(prepared):
    root, _ = prepared
    with open(osp.join(root, 'ucf101_train_split_1_rawframes.txt')) as f:
        train = f.read().splitlines()
    with open(osp.join(root, 'ucf101_val_split_1_rawframes.txt')) as f:
        val = f.read().splitlines()
    assert train == [
        f'Biking/v_Biking_g02_c01 {NUM_FRAMES} 0',
        f'Biking/v_Biking_g03_c01 {NUM_FRAMES} 0',
        f'HandstandPushups/v_HandStandPushups_g02_c01 {NUM_FRAMES} 1',
        f'HandstandPushups/v_HandStandPushups_g03_c01 {NUM_FRAMES} 1',
    ]
    assert val == [
        f'Biking/v_Biking_g01_c01 {NUM_FRAMES} 0',
        f'HandstandPushups/v_HandStandPushups_g01_c01 {NUM_FRAMES} 1',
    ]
    for k in (2, 3):
        assert osp.isfile(
            osp.join(root, f'ucf101_val_split_{k}_rawframes.txt'))
    # The validation list holds whole groups (the seeded draw of 1 of the
    # training groups 2, 3), the same for every class; with the rest it
    # makes up the training list.
    with open(osp.join(root, 'ucf101_subtrain_split_1_rawframes.txt')) as f:
        subtrain = f.read().splitlines()
    with open(osp.join(root, 'ucf101_subval_split_1_rawframes.txt')) as f:
        subval = f.read().splitlines()
    summary = prepared[1]['lists']
    [held] = summary['ucf101_subval_split_1_rawframes.txt']['held_out_groups']
    assert held in (2, 3)
    assert subval == [line for line in train if f'_g0{held}_' in line]
    assert subtrain == [line for line in train if f'_g0{held}_' not in line]
    assert len(subval) == 2 and len(subtrain) == 2
    # Seeded: the same draw again; too many groups is an error.
    again = lists.read_splits(
        osp.join(root, 'ucfTrainTestlist'), (1, ), val_groups=1)
    assert again['ucf101_subval_split_1_rawframes.txt'][2] == [held]
    with pytest.raises(lists.SplitFileError,
                       match=r'trainlist01\.txt: has 2 groups: cannot hold '
                       'out 2'):
        lists.read_splits(
            osp.join(root, 'ucfTrainTestlist'), (1, ), val_groups=2)


def _ann_copy(root, tmp_path):
    ann = tmp_path / 'ann'
    ann.mkdir(parents=True)
    src = osp.join(root, 'ucfTrainTestlist')
    for name in os.listdir(src):
        (ann / name).write_bytes(open(osp.join(src, name), 'rb').read())
    return ann


@pytest.mark.parametrize('bad_line, problem', [
    ('Running/v_Running_g01_c01.avi 1', 'unknown class'),
    ('Biking/v_Biking_g01_c01.avi', 'malformed line'),
    ('Biking/v_Biking_g01_c01.avi two', 'not an integer'),
    ('Biking/v_Biking_g01_c01.avi 2', 'disagrees with classInd'),
    ('v_Biking_g01_c01.avi 1', 'malformed video path'),
])
def test_bad_split_line_names_file_and_line(prepared, tmp_path, bad_line,
                                            problem):
    root, _ = prepared
    ann = _ann_copy(root, tmp_path)
    path = ann / 'trainlist02.txt'
    good = path.read_text().splitlines()
    path.write_text('\n'.join(good[:1] + [bad_line] + good[1:]) + '\n')
    with pytest.raises(lists.SplitFileError) as info:
        lists.build_split_lists(
            str(ann), osp.join(root, 'rawframes'), str(tmp_path / 'out'))
    msg = str(info.value)
    assert f'{path}:2' in msg and problem in msg
    # Nothing written when any split is bad.
    assert not (tmp_path / 'out').exists()


def test_bad_class_index_and_missing_split_file(prepared, tmp_path):
    root, _ = prepared
    ann = _ann_copy(root, tmp_path)
    (ann / 'classInd.txt').write_text('1 Biking\n1 HandstandPushups\n')
    with pytest.raises(lists.SplitFileError, match=r'classInd.txt:2: index'):
        lists.build_split_lists(str(ann), osp.join(root, 'rawframes'),
                                str(tmp_path), val_groups=1)
    ann = _ann_copy(root, tmp_path / 'b')
    os.remove(ann / 'testlist03.txt')
    with pytest.raises(FileNotFoundError, match='testlist03.txt'):
        lists.build_split_lists(str(ann), osp.join(root, 'rawframes'),
                                str(tmp_path), val_groups=1)
    # The command-line entry point turns it into a message, not a traceback.
    assert lists.main([
        '--ann-dir',
        str(ann), '--rawframes',
        osp.join(root, 'rawframes'), '--out-dir',
        str(tmp_path), '--val-groups', '1'
    ]) == 1


def test_listed_clip_without_frames(prepared, tmp_path):
    root, _ = prepared
    ann = _ann_copy(root, tmp_path)
    path = ann / 'testlist01.txt'
    path.write_text(path.read_text() + 'Biking/v_Biking_g09_c01.avi\n')
    with pytest.raises(lists.MissingClipError) as info:
        lists.build_split_lists(
            str(ann), osp.join(root, 'rawframes'), str(tmp_path / 'o1'),
            splits=[1], val_groups=1)
    assert f'{path}:3: Biking/v_Biking_g09_c01' in str(info.value)
    with pytest.warns(UserWarning, match='skipped 1 listed clip'):
        summary = lists.build_split_lists(
            str(ann),
            osp.join(root, 'rawframes'),
            str(tmp_path / 'o2'),
            splits=[1],
            on_missing='skip',
            val_groups=1)
    info = summary['ucf101_val_split_1_rawframes.txt']
    assert info['written'] == 2 and info['missing'] == 1


# ---------------------------------------------------------------- pipeline


@pytest.fixture(scope='module')
def cfg():
    register_all_modules()
    return Config.fromfile(CONFIG)


def _build(cfg, loader, data_root):
    ds_cfg = cfg[loader].dataset.copy()
    ds_cfg.data_root = data_root
    return DATASETS.build(ds_cfg)


@pytest.mark.parametrize('loader, views', [('train_dataloader', 1),
                                           ('val_dataloader', 1),
                                           ('test_dataloader', 5)])
def test_config_dataset_shapes(prepared, cfg, loader, views):
    root, _ = prepared
    np.random.seed(0)
    random.seed(0)
    ds = _build(cfg, loader, root)
    # subtrain, subval and the test list: 2 clips each here.
    assert len(ds) == 2
    out = ds[0]
    rgb, flow = out['inputs']['rgb'], out['inputs']['flow']
    assert tuple(rgb.shape) == (views, 3, cfg.clip_len, cfg.crop_size,
                                cfg.crop_size)
    assert tuple(flow.shape) == (views, 2 * cfg.flow_len, cfg.crop_size,
                                 cfg.crop_size)
    sample = out['data_samples']
    assert sample.modality_mask == {'rgb': True, 'flow': True}
    assert int(sample.gt_label) == 0  # first line is Biking
    # Real motion reaches the flow tensor: the moving square makes some x
    # values clearly differ from the zero-motion level 128 (above it, or
    # below it after a random flip), while y stays near 128.
    x_dev = (flow[:, 0::2].int() - 128).abs()
    y_dev = (flow[:, 1::2].int() - 128).abs()
    assert int(x_dev.max()) > 12
    assert float(x_dev.float().mean()) > float(y_dev.float().mean())


def _pattern():
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx * 5 + yy * 2) % 256).astype(np.uint8)


def _write_png_as(path, img):
    # Lossless content under the .jpg name (cv2.imdecode sniffs the format),
    # so RGB and flow frames hold exactly the same pixel values.
    ok, buf = cv2.imencode('.png', img)
    assert ok
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def _synthetic_clip(tmp_path, n=12):
    d = tmp_path / 'rawframes' / 'A' / 'v_A_g01_c01'
    d.mkdir(parents=True)
    pat = _pattern()
    for i in range(1, n + 1):
        _write_png_as(str(d / f'img_{i:05d}.jpg'), np.dstack([pat] * 3))
        if i < n:
            _write_png_as(str(d / f'flow_x_{i:05d}.jpg'), pat)
            _write_png_as(str(d / f'flow_y_{i:05d}.jpg'), pat)
    return d


def _results(d, n=12):
    return dict(
        frame_dir=str(d),
        total_frames=n,
        label=0,
        filename_tmpl='img_{:05d}.jpg',
        start_index=1,
        modality='RGB')


def test_rgb_and_flow_get_identical_crop_and_flip(cfg, tmp_path):
    d = _synthetic_clip(tmp_path)
    # The config's train pipeline without the final packing.
    pipeline = Compose(cfg.train_pipeline[:-1])
    seen_flip = set()
    for seed in range(8):
        np.random.seed(seed)
        random.seed(seed)
        res = pipeline(_results(d))
        rgb, flow = res['rgb'], res['flow']
        assert rgb.shape == (1, 3, 8, 224, 224)
        assert flow.shape == (1, 10, 224, 224)
        ref = rgb[0, 0, 0]  # R channel of frame 0, same in every frame
        assert ref.std() > 10  # the pattern survived: comparison is real
        # Same crop / resize / flip: y flow equals the RGB image exactly.
        for c in range(1, 10, 2):
            np.testing.assert_array_equal(flow[0, c], ref)
        # x flow too, negated (255 - q) when mirrored.
        expect_x = 255 - ref if res['flip'] else ref
        for c in range(0, 10, 2):
            np.testing.assert_array_equal(flow[0, c], expect_x)
        seen_flip.add(bool(res['flip']))
    assert seen_flip == {True, False}


def test_ten_crop_mirrored_views_negate_flow_x(tmp_path):
    d = _synthetic_clip(tmp_path)
    pipeline = Compose([
        dict(type='SampleFrames', clip_len=2, frame_interval=2, num_clips=1,
             test_mode=True),
        dict(type='LoadRGBFlowFrames', flow_len=3),
        dict(type='TenCrop', crop_size=32),
        dict(type='FormatRGBFlow'),
    ])
    res = pipeline(_results(d))
    rgb, flow = res['rgb'], res['flow']
    assert rgb.shape == (10, 3, 2, 32, 32) and flow.shape == (10, 6, 32, 32)
    for v in range(10):
        ref = rgb[v, 0, 0]
        np.testing.assert_array_equal(flow[v, 1], ref)
        np.testing.assert_array_equal(flow[v, 0],
                                      255 - ref if v % 2 else ref)


def test_flow_stack_indices():
    from clcr_mm.datasets.transforms.rawframes import flow_stack_indices

    # Centre frame 5 (index T // 2 of 1..8) -> flows 3..7.
    inds = flow_stack_indices(np.arange(1, 9), 1, 8, 100, 5)
    assert inds.tolist() == [[3, 4, 5, 6, 7]]
    inds = flow_stack_indices(np.array([1, 3, 5, 7]), 1, 4, 100, 5)
    assert inds.tolist() == [[3, 4, 5, 6, 7]]
    # Near the end: shifted inside the N-1 = 9 flows of a 10-frame clip.
    inds = flow_stack_indices(np.array([7, 8, 9, 10]), 1, 4, 10, 5)
    assert inds.tolist() == [[5, 6, 7, 8, 9]]
    # Two clips; a clip shorter than L + 1 frames repeats the last flow.
    inds = flow_stack_indices(np.array([1, 2, 3, 1]), 2, 2, 4, 5)
    assert inds.tolist() == [[1, 2, 3, 3, 3], [1, 2, 3, 3, 3]]


def test_missing_flow_frame(tmp_path):
    d = _synthetic_clip(tmp_path)
    os.remove(d / 'flow_y_00005.jpg')
    sample = dict(type='SampleFrames', clip_len=4, frame_interval=1,
                  num_clips=1, test_mode=True)
    strict = Compose([sample, dict(type='LoadRGBFlowFrames', flow_len=5)])
    with pytest.raises(FileNotFoundError) as info:
        strict(_results(d))
    assert str(d / 'flow_y_00005.jpg') in str(info.value)

    tolerant = Compose([
        sample,
        dict(type='LoadRGBFlowFrames', flow_len=5, on_missing='zero'),
        dict(type='Flip', flip_ratio=1.0),
        dict(type='FormatRGBFlow'),
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        res = tolerant(_results(d))
    assert any('flow_y_00005.jpg' in str(w.message) for w in caught)
    assert res['modality_mask'] == {'rgb': True, 'flow': False}
    assert res['flow'].shape == (1, 10, H, W)
    assert not res['flow'].any()  # zeros, not inverted to 255 by the flip
    assert res['rgb'].any()


def test_corrupt_frame_and_wrong_modality(tmp_path):
    d = _synthetic_clip(tmp_path)
    with open(d / 'img_00002.jpg', 'wb') as f:
        f.write(b'not an image')
    load = TRANSFORMS.build(dict(type='LoadRGBFlowFrames', flow_len=2))
    res = _results(d)
    res.update(frame_inds=np.array([1, 2]), num_clips=1, clip_len=2)
    with pytest.raises(FileNotFoundError, match='img_00002.jpg: cannot '
                       'decode'):
        load(dict(res))
    res.update(modality='Flow')
    with pytest.raises(ValueError, match='modality "RGB"'):
        load(dict(res))


def test_prepare_command_line_dry_run(tmp_path):
    """The documented one command, run as a script, with --max-clips."""
    import subprocess
    root = str(tmp_path / 'ucf101')
    make_download(root)
    proc = subprocess.run([
        sys.executable,
        osp.join(TOOL_DIR, 'prepare.py'), '--root', root, '--max-clips', '2',
        '--workers', '1', '--splits', '1', '--val-groups', '1'
    ],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '2 extracted' in proc.stdout
    # Round-robin over classes: the g01 clip of each class, i.e. split 1's
    # test list; absent clips are skipped in a dry run.
    with open(osp.join(root, 'ucf101_val_split_1_rawframes.txt')) as f:
        assert len(f.read().splitlines()) == 2
    with open(osp.join(root, 'ucf101_train_split_1_rawframes.txt')) as f:
        assert f.read() == ''
    # A wrong root is a one-line error, not a traceback.
    proc = subprocess.run([
        sys.executable,
        osp.join(TOOL_DIR, 'prepare.py'), '--root',
        str(tmp_path / 'nowhere')
    ],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert 'classInd.txt' in proc.stderr and 'Traceback' not in proc.stderr
