"""BertTextEncoder and configs/clcr_mosi_bert.py with a tiny, randomly
initialised BERT saved to a temp dir (nothing is downloaded)."""
import pytest
import torch

from clcr_mm.models.backbones import BertTextEncoder
from runner_utils import tiny_runner
from test_mmsa_dataset import write_pickle

transformers = pytest.importorskip('transformers')

WIDTH = 16


@pytest.fixture
def bert_dir(tmp_path):
    config = transformers.BertConfig(
        vocab_size=3000, hidden_size=WIDTH, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64)
    torch.manual_seed(1)
    path = tmp_path / 'tiny_bert'
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(
        path)
    return path


def _tokens(lengths, length=12, seed=0):
    """(B, L, 3) ids / mask / segments, random ids in the padding too."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, 3000, (len(lengths), length), generator=gen)
    mask = torch.arange(length)[None] < torch.tensor(lengths)[:, None]
    segments = torch.zeros(len(lengths), length)
    return torch.stack([ids.float(), mask.float(), segments], -1)


def test_bert_encoder_loads_local_weights_and_ignores_padding(bert_dir):
    encoder = BertTextEncoder(str(bert_dir), tap_layers=(0, 1, 2)).eval()
    encoder.init_weights()  # must not re-initialise the loaded weights
    saved = transformers.BertModel.from_pretrained(
        bert_dir, local_files_only=True, add_pooling_layer=False)
    for key, value in saved.state_dict().items():
        assert torch.equal(encoder.bert.state_dict()[key], value), key
    lengths = torch.tensor([12, 4, 1])
    with torch.no_grad():
        a = encoder(_tokens([12, 4, 1], seed=0), lengths)
        b = encoder(_tokens([12, 4, 1], seed=0).index_put_(
            (torch.tensor([1]), torch.arange(4, 12), torch.tensor([0])),
            torch.full((8, ), 7.)), lengths)
    assert a.shape == (3, WIDTH, 12)
    assert (a - b).abs().max() < 1e-5
    assert not a[1, :, 4:].any()
    assert encoder.tap_lengths(lengths)['levels.2'] is lengths


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(tap_layers=(0, 1, 3)), ValueError,
     r'BertTextEncoder: tap_layers\[2\] must be an int in \[0, 2\]'),
    (dict(tap_layers=(1, 2)), ValueError, 'tap_layers needs 3 entries'),
    (dict(pretrained='missing_dir'), FileNotFoundError,
     "local directory .* got 'missing_dir'"),
])
def test_bert_encoder_validates_config(bert_dir, kwargs, error, message):
    args = dict(pretrained=str(bert_dir))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        BertTextEncoder(**args)


def test_mosi_bert_config_fine_tunes_bert_with_its_own_lr(tmp_path,
                                                          bert_dir):
    write_pickle(tmp_path / 'mosi', aligned=False)
    runner = tiny_runner(
        'clcr_mosi_bert.py', tmp_path / 'work',
        data_root=str(tmp_path / 'mosi'),
        model=dict(
            backbone=dict(
                modalities=dict(
                    text=dict(
                        backbone=dict(
                            pretrained=str(bert_dir), tap_layers=(1, 2, 2)),
                        tap_channels=(WIDTH, ) * 3)))))
    bert = runner.model.backbone.encoders['text'].backbone.bert
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    runner.train()
    dataset = runner.train_dataloader.dataset
    assert dataset.modalities['text'] == 'text_bert'
    assert dataset.ann_file.endswith('unaligned_50.pkl')
    lrs = [
        group['lr'] for group in runner.optim_wrapper.optimizer.param_groups
        if any(p is bert.embeddings.word_embeddings.weight
               for p in group['params'])
    ]
    assert lrs == [pytest.approx(1e-3 * 0.05)]
    changed = [k for k, v in bert.state_dict().items()
               if not torch.equal(v, before[k])]
    assert 'encoder.layer.0.attention.self.query.weight' in changed
    metrics = runner.test()
    assert set(metrics) >= {'mae', 'corr', 'acc2_non0'}
