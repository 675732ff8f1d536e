"""Tests of MMSAFeatureDataset, PadSequenceFeatures, the MOSI/MOSEI configs
and tools/data/mmsa/check_pickle.py, on tiny pickles in the MMSA layout."""
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger

from clcr_mm.datasets.mmsa_dataset import (MMSAFeatureDataset,
                                           clear_mmsa_cache,
                                           load_mmsa_pickle)
from clcr_mm.datasets.transforms.sequence import PadSequenceFeatures
from clcr_mm.registry import DATASETS
from clcr_mm import register_all_modules
from mmsa_replica import DIMS, SIZES, write_pickle
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
def build_from_config(dataset: str, root: Path, loader: str = 'train',
                      **overrides) -> MMSAFeatureDataset:
    register_all_modules()
    cfg = Config.fromfile(REPO / 'configs/_base_/datasets' / f'{dataset}.py')
    ds_cfg = cfg[f'{loader}_dataloader'].dataset
    ds_cfg.data_root = str(root)
    ds_cfg.update(overrides)
    return DATASETS.build(ds_cfg)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_mmsa_cache()
    yield
    clear_mmsa_cache()


def test_config_aligned_mosi_shapes_labels_and_padding(tmp_path):
    path = write_pickle(tmp_path)
    raw = pickle.load(open(path, 'rb'))['train']
    ds = build_from_config('mosi', tmp_path)
    assert len(ds) == SIZES['train']
    assert ds.get_feature_dims() == DIMS['mosi']

    packed = ds[1]
    inputs, sample = packed['inputs'], packed['data_samples']
    for name, dim in DIMS['mosi'].items():
        assert inputs[name].shape == (1, 50, dim)
        assert inputs[name].dtype == torch.float32
    # Regression label survives PackActionInputs as a float (a numpy label
    # would be cast to long by mmaction's format_label: -0.6 -> 0).
    assert sample.gt_label.dtype == torch.float32
    assert sample.gt_label.shape == (1, )
    assert sample.gt_label.item() == pytest.approx(-0.6)
    assert sample.sample_id == 'vidtrain1$_$2'
    assert sample.valid_lengths == dict(text=50, audio=7, vision=50)
    assert sample.modality_mask == dict(text=True, audio=True, vision=True)
    np.testing.assert_array_equal(inputs['audio'][0].numpy(),
                                  raw['audio'][1])
    np.testing.assert_allclose(inputs['text'][0].numpy(), raw['text'][1],
                               rtol=1e-6)

    # A pseudo-collated batch, as the dataloader builds it.
    batch = pseudo_collate([ds[i] for i in range(len(ds))])
    assert set(batch['inputs']) == {'text', 'audio', 'vision'}
    assert torch.stack(batch['inputs']['vision']).shape == (len(ds), 1, 50,
                                                            20)
    assert len(batch['data_samples']) == len(ds)


def test_valid_and_test_splits_share_one_load(tmp_path):
    write_pickle(tmp_path)
    train = build_from_config('mosi', tmp_path, 'train')
    valid = build_from_config('mosi', tmp_path, 'val')
    test = build_from_config('mosi', tmp_path, 'test')
    assert (len(train), len(valid), len(test)) == (4, 2, 3)
    assert valid.test_mode and valid.split == 'valid'
    assert test[0]['data_samples'].sample_id == 'vidtest0$_$1'
    # One object per file and process; converted to float32 in place.
    data = load_mmsa_pickle(str(tmp_path / 'aligned_50.pkl'))
    assert data['train']['text'].dtype == np.float32
    assert train._store.features['text'].base is data['train']['text'] or \
        train._store.features['text'] is data['train']['text']


def test_unaligned_truncates_pads_and_clips_lengths(tmp_path):
    path = write_pickle(tmp_path, 'mosi', aligned=False)
    raw = pickle.load(open(path, 'rb'))['train']
    ds = build_from_config(
        'mosi', tmp_path, ann_file='unaligned_50.pkl',
        pipeline=[
            dict(type='PadSequenceFeatures',
                 keys=('text', 'audio', 'vision'),
                 seq_len=dict(audio=50, vision=600)),
            dict(type='PackMultiModalInputs',
                 collect_keys=('text', 'audio', 'vision'),
                 algorithm_keys=('modality_mask', ),
                 meta_keys=('sample_id', 'valid_lengths'))
        ])
    packed = ds[0]
    audio, vision = packed['inputs']['audio'], packed['inputs']['vision']
    assert audio.shape == (1, 50, 5)  # 375 -> first 50 steps
    np.testing.assert_array_equal(audio[0].numpy(), raw['audio'][0][:50])
    assert vision.shape == (1, 600, 20)  # 500 -> padded with zeros
    np.testing.assert_array_equal(vision[0, :500].numpy(), raw['vision'][0])
    assert not vision[0, 500:].any()
    assert packed['inputs']['text'].shape == (1, 50, 768)  # kept as stored
    # audio_lengths[0] == 375 is clipped to the truncated length.
    assert packed['data_samples'].valid_lengths == dict(
        text=10, audio=50, vision=3)


def test_mosi_nan_raises_naming_file_split_id_and_key(tmp_path):

    def add_nan(data):
        data['valid']['audio'][1, 0, 2] = np.nan

    path = write_pickle(tmp_path, edit=add_nan)
    build_from_config('mosi', tmp_path, 'train')  # train split is clean
    with pytest.raises(ValueError) as err:
        build_from_config('mosi', tmp_path, 'val')
    msg = str(err.value)
    for part in (str(path), "'valid'", 'vidvalid1$_$2', "'audio'",
                 "nonfinite='zero'"):
        assert part in msg


def test_mosei_config_zeroes_audio_inf_but_not_vision_nan(tmp_path):

    def add_inf(data):
        data['train']['audio'][2, :4, 0] = -np.inf
        data['train']['audio'][0, 1, 1] = np.inf

    path = write_pickle(tmp_path, 'mosei', edit=add_inf)
    raw = pickle.load(open(path, 'rb'))['train']
    ds = build_from_config('mosei', tmp_path)
    assert ds.nonfinite == dict(text='error', audio='zero', vision='error')
    audio = ds[2]['inputs']['audio'][0].numpy()
    assert audio.shape == (50, 74)
    assert np.isfinite(audio).all()
    assert not audio[:4, 0].any()
    np.testing.assert_array_equal(audio[:4, 1:], raw['audio'][2][:4, 1:])
    assert np.isfinite(ds[0]['inputs']['audio'].numpy()).all()
    # The shared cache keeps the original values for other datasets.
    cached = load_mmsa_pickle(str(path))['train']['audio']
    assert np.isneginf(cached[2, :4, 0]).all()

    def add_nan(data):
        data['test']['vision'][0, 0, 0] = np.nan

    clear_mmsa_cache()  # same path rewritten within one mtime tick
    write_pickle(tmp_path, 'mosei', edit=add_nan)
    with pytest.raises(ValueError, match='vidtest0'):
        build_from_config('mosei', tmp_path, 'test')


def test_missing_key_and_split_raise_keyerror_naming_them(tmp_path):

    def drop_vision(data):
        del data['train']['vision']

    path = write_pickle(tmp_path, edit=drop_vision)
    with pytest.raises(KeyError) as err:
        build_from_config('mosi', tmp_path)
    assert "'vision'" in str(err.value) and str(path) in str(err.value)

    def drop_split(data):
        del data['valid']

    clear_mmsa_cache()
    write_pickle(tmp_path, edit=drop_split)
    with pytest.raises(KeyError, match="no split 'valid'"):
        build_from_config('mosi', tmp_path, 'val')


def test_wrong_feature_dims_and_bad_args(tmp_path):
    write_pickle(tmp_path, 'mosei')
    with pytest.raises(ValueError, match='feature dim 74, expected 5'):
        build_from_config('mosi', tmp_path)  # MOSEI pickle, MOSI config
    with pytest.raises(ValueError, match='split must be one of'):
        MMSAFeatureDataset(ann_file='x.pkl', split='val')
    with pytest.raises(ValueError, match='nonfinite'):
        MMSAFeatureDataset(ann_file='x.pkl', nonfinite='drop')
    with pytest.raises(FileNotFoundError, match='missing.pkl'):
        MMSAFeatureDataset(ann_file=str(tmp_path / 'missing.pkl'))


def test_text_bert_zero_length_mask_and_subset(tmp_path):

    def empty_vision(data):
        data['train']['vision_lengths'][3] = 0
        data['train']['vision'][3] = 0

    path = write_pickle(tmp_path, edit=empty_vision)
    ds = MMSAFeatureDataset(
        ann_file=str(path),
        modalities=dict(text='text_bert', vision='vision'),
        indices=[0, 3])
    assert len(ds) == 2
    info = ds.get_data_info(1)  # row 3 of the split
    assert info['row'] == 3 and info['sample_id'] == 'vidtrain3$_$4'
    assert info['text'].shape == (50, 3)  # (3, L) token rows -> (L, 3)
    assert info['valid_lengths']['text'] == 5  # from the attention mask
    assert info['modality_mask'] == dict(text=True, vision=False)
    assert info['label'].dtype == torch.float32
    assert info['label'].item() == pytest.approx(2.8)


def test_pad_sequence_features_unit():
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    results = dict(a=feats, seq_lengths=dict(a=4), sample_id='s')
    out = PadSequenceFeatures(keys='a', seq_len=2, pad_side='start')(results)
    np.testing.assert_array_equal(out['a'], feats[None, 2:])  # last steps
    assert out['a'].dtype == np.float32 and out['seq_lengths']['a'] == 2

    out = PadSequenceFeatures(keys=('a', ), seq_len=6, pad_value=-1.)(
        dict(a=feats))
    assert out['a'].shape == (1, 6, 3)
    np.testing.assert_array_equal(out['a'][0, 4:], -1.)

    with pytest.raises(KeyError, match="'b' is missing from sample 's'"):
        PadSequenceFeatures(keys=('b', ))(dict(a=feats, sample_id='s'))
    with pytest.raises(ValueError, match='shape'):
        PadSequenceFeatures(keys=('a', ))(dict(a=np.zeros(3)))
    with pytest.raises(ValueError, match='not in keys'):
        PadSequenceFeatures(keys=('a', ), seq_len=dict(b=3))


def _check_pickle_main():
    return load_tool('data/mmsa/check_pickle.py').main


def test_check_pickle_tool(tmp_path, capsys):
    main = _check_pickle_main()

    def add_inf(data):
        data['test']['audio'][0, 0, 0] = -np.inf

    path = write_pickle(tmp_path, 'mosei', edit=add_inf)
    assert main([str(path), '--dataset', 'mosei']) == 0
    out = capsys.readouterr().out
    assert '-inf=1 samples_affected=1' in out and 'WARN test/audio' in out
    assert main([str(path), '--dataset', 'mosei', '--strict-nonfinite']) == 1
    assert main([str(path), '--dataset', 'mosi']) == 1
    assert 'ERROR train/audio: feature dim 74, mosi expects 5' in \
        capsys.readouterr().out

    def drop_labels(data):
        del data['valid']['regression_labels']

    clear_mmsa_cache()
    bad = write_pickle(tmp_path / 'bad', edit=drop_labels)
    assert main([str(bad)]) == 1
    assert "ERROR valid: missing key 'regression_labels'" in \
        capsys.readouterr().out


class _RunsCode:
    """What a crafted pickle does: unpickling calls ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.marker}', )


def test_restricted_unpickler_refuses_code_accepts_mmsa_arrays(
        tmp_path, capsys):
    marker = tmp_path / 'pwned'

    def plant(data):
        data['train']['annotations'] = _RunsCode(marker)

    path = write_pickle(tmp_path, edit=plant)
    with pytest.raises(ValueError) as err:
        build_from_config('mosi', tmp_path)
    assert str(path) in str(err.value)
    assert 'refusing to load posix.system' in str(err.value)
    main = _check_pickle_main()
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert 'ERROR' in out and 'refusing to load posix.system' in out
    assert not marker.exists()  # neither reader ran the payload

    # Object / str arrays and numpy scalars (as in the published files) and
    # the protocol-2 encoding (bytes via _codecs.encode) are admitted.
    def numpy_containers(data):
        split = data['train']
        split['id'] = np.array(split['id'], dtype=object)
        split['raw_text'] = np.array(split['raw_text'])
        split['annotations'] = np.array(['Positive'] * 4, dtype=object)
        split['scale'] = np.float64(3.0)

    clear_mmsa_cache()
    path = write_pickle(tmp_path / 'ok', edit=numpy_containers)
    data = pickle.load(open(path, 'rb'))
    with open(path, 'wb') as f:
        pickle.dump(data, f, protocol=2)
    ds = build_from_config('mosi', tmp_path / 'ok')
    assert ds[3]['data_samples'].sample_id == 'vidtrain3$_$4'
    assert ds.get_data_info(0)['raw_text'] == 'train sentence 0'


class _Messages(logging.Handler):
    """Collects the messages of mmengine's current logger."""

    def __init__(self) -> None:
        super().__init__()
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def pop(self) -> str:
        text = '\n'.join(self.messages)
        self.messages.clear()
        return text


def test_unaligned_config_keeps_every_step_and_cut_is_logged(tmp_path):
    write_pickle(tmp_path, 'mosi', aligned=False)
    register_all_modules()
    cfg = Config.fromfile(REPO / 'configs/clcr_mosi_unaligned.py')
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = str(tmp_path)
    packed = DATASETS.build(ds_cfg)[0]
    assert packed['inputs']['audio'].shape == (1, 375, 5)
    assert packed['inputs']['vision'].shape == (1, 500, 20)
    assert packed['data_samples'].valid_lengths == dict(
        text=10, audio=375, vision=3)

    # An explicit seq_len cuts, but never silently.
    ds_cfg.pipeline[0].seq_len = dict(audio=20)
    logger, log = MMLogger.get_current_instance(), _Messages()
    logger.addHandler(log)
    try:
        ds = DATASETS.build(ds_cfg)
        logged = log.pop()
        assert ("PadSequenceFeatures(seq_len=20) cuts modality 'audio' in 2 "
                'of 4 samples (valid lengths up to 375 steps)') in logged
        assert 'unaligned_50.pkl' in logged
        assert ds[0]['data_samples'].valid_lengths['audio'] == 20
        assert 'seq_len=20 cuts' in log.pop()
        ds[2]
        assert 'seq_len=20 cuts' not in log.pop()  # warned the first time
    finally:
        logger.removeHandler(log)


@pytest.mark.parametrize('kwargs,message', [
    (dict(seq_len=0), r"seq_len\['a'\] must be an int in \[1, inf\)"),
    (dict(seq_len=dict(a=2.5)), r"seq_len\['a'\] must be an int"),
    (dict(pad_value=float('nan')), 'pad_value must be a number'),
])
def test_pad_sequence_features_validates_config(kwargs, message):
    with pytest.raises(ValueError, match='PadSequenceFeatures: ' + message):
        PadSequenceFeatures(keys='a', **kwargs)
