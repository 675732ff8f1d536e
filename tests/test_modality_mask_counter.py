"""ModalityMaskCounterHook counts the modalities the model removes at test
time (``tools/test.py --missing audio``) and heads its lines as mmengine
heads its own."""
from mmengine.config import Config
from reliability_helpers import (fresh_mmsa_cache_one_thread,  # noqa: F401
                                 tiny_mosi_config, write_mmsa_pickle)
from runner_utils import runner_from

SIZES = dict(train=4, valid=3, test=5)


def mosi_runner(tmp_path, **test_cfg):
    """A tiny CLCR-on-MOSI Runner whose model has ``test_cfg``."""
    write_mmsa_pickle(tmp_path / 'mosi', sizes=SIZES)
    # No best-checkpoint tracking: a stand-alone val() has no train loop.
    cfg = Config.fromfile(
        tiny_mosi_config(tmp_path / 'cfg.py', tmp_path / 'mosi',
                         checkpoint=dict(save_best=None)))
    cfg.model.test_cfg = test_cfg
    return runner_from(cfg, tmp_path / 'work')


def log_text(tmp_path) -> str:
    (log, ) = (tmp_path / 'work').glob('*/*.log')
    return log.read_text()


def test_test_time_removal_is_counted(tmp_path):
    runner = mosi_runner(tmp_path, missing_modalities=('audio', ))
    runner.test()
    assert runner.message_hub.get_scalar('test/missing_audio').current() == 5
    assert runner.message_hub.get_scalar('test/missing_text').current() == 0
    assert ('Epoch(test): modality missing (zero-filled) in 5 samples: '
            'text=0, audio=5, vision=0 (test_cfg.missing_modalities '
            'removes audio)') in log_text(tmp_path)


def test_complete_data_reports_zero_with_mmengine_headings(tmp_path):
    runner = mosi_runner(tmp_path)
    runner.val()
    runner.test()
    log = log_text(tmp_path)
    assert ('Epoch(val) [0]: modality missing (zero-filled) in 3 samples: '
            'text=0, audio=0, vision=0\n') in log
    assert ('Epoch(test): modality missing (zero-filled) in 5 samples: '
            'text=0, audio=0, vision=0\n') in log
    assert 'epoch 0' not in log
