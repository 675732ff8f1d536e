"""Valid lengths: what lies past a sample's length never changes a result.

The sequence encoder, the level poolings and the baseline fusions are
checked directly; the whole recognizer (CLCR, late fusion, concat) is
checked once it hands ``valid_lengths`` to the encoder and the token masks
to the fusion (the recognizer side of the contract)."""
import pytest
import torch
from mmaction.structures import ActionDataSample
from mmengine.registry import MODELS

from clcr_mm.models.backbones.temporal_encoder import TemporalConvEncoder
from clcr_mm.models.utils import LEVELS
from conftest import sequence_encoder, tiny_model_cfg

LENGTHS = dict(a=torch.tensor([12, 5, 1, 0]), b=torch.tensor([3, 12, 7, 9]))


def _pair(batch=4, length=12):
    """The same valid steps, padded with zeros in one copy and noise in the
    other."""
    zeros, noise = {}, {}
    for i, m in enumerate(('a', 'b')):
        x = torch.randn(batch, length, 6 + i)
        valid = torch.arange(length)[None] < LENGTHS[m][:, None]
        zeros[m] = x * valid[..., None]
        noise[m] = torch.where(valid[..., None], x, 5 * torch.randn_like(x))
    return zeros, noise


def _encoder(dims=16):
    encoder = MODELS.build(
        dict(
            type='CLCRHierarchyEncoder',
            embed_dims=dims,
            modalities=dict(a=sequence_encoder(6), b=sequence_encoder(7))))
    return encoder.eval()


def test_encoder_tokens_and_masks_ignore_padding():
    encoder = _encoder()
    zeros, noise = _pair()
    with torch.no_grad():
        out_z, masks = encoder(zeros, lengths=LENGTHS,
                               return_token_masks=True)
        out_n = encoder(noise, lengths=LENGTHS)
        unmasked = encoder(noise)
    for level in LEVELS:
        for m in ('a', 'b'):
            mask = masks[level][m]
            assert mask.shape == out_z[level][m].shape[:2]
            assert mask.dtype == torch.bool
            # every sample keeps a valid token, even with length 0
            assert mask.any(1).all()
            diff = (out_z[level][m] - out_n[level][m]).abs()
            assert diff.max() < 1e-5, (level, m)
            # without lengths the padding leaks into the tokens
            assert (out_z[level][m] - unmasked[level][m]).abs().max() > 1e-3
    # shallow grid 8 over 12 steps: length 5 covers bins 0..3 (bin 3 is
    # steps 4-5), length 1 covers bin 0 only.
    assert masks['shallow']['a'][1].tolist() == [True] * 4 + [False] * 4
    assert masks['shallow']['a'][2].tolist() == [True] + [False] * 7
    assert masks['shallow']['a'][3].tolist() == [True] + [False] * 7
    assert masks['deep']['b'][0].tolist() == [True, False]


def test_token_masks_all_true_for_modalities_without_lengths():
    encoder = _encoder()
    zeros, _ = _pair()
    with torch.no_grad():
        _, masks = encoder(zeros, lengths=dict(a=LENGTHS['a']),
                           return_token_masks=True)
        _, no_lengths = encoder(zeros, return_token_masks=True)
    assert masks['mid']['b'].all() and masks['mid']['b'].shape == (4, 4)
    assert not masks['mid']['a'].all()
    assert all(m.all() for level in no_lengths.values()
               for m in level.values())


@pytest.mark.parametrize('fusion', ['LateFusion', 'ConcatFusion'])
def test_baseline_fusions_pool_only_valid_tokens(fusion):
    encoder = _encoder()
    neck = MODELS.build(
        dict(type=fusion, modalities=('a', 'b'), embed_dims=16,
             level='shallow')).eval()
    zeros, noise = _pair()
    outs = []
    with torch.no_grad():
        for inputs in (zeros, noise):
            levels, masks = encoder(inputs, lengths=LENGTHS,
                                    return_token_masks=True)
            outs.append(neck(levels, None, masks))
        leaky = neck(encoder(noise, lengths=LENGTHS))
    key = 'feat' if fusion == 'ConcatFusion' else 'modality_feats'
    assert (outs[0][key] - outs[1][key]).abs().max() < 1e-5
    # pooling over all tokens (no masks) gives something else
    assert (outs[1][key] - leaky[key]).abs().max() > 1e-4


def test_lengths_errors_name_the_modality():
    encoder = _encoder()
    zeros, _ = _pair()
    with pytest.raises(ValueError, match=r"modality 'a'.*shape \(4,\)"):
        encoder(zeros, lengths=dict(a=torch.tensor([1, 2])))
    with pytest.raises(KeyError, match='not among the modalities'):
        encoder(zeros, lengths=dict(c=torch.tensor([1, 2, 3, 4])))


@pytest.mark.parametrize('field,value,message', [
    ('in_channels', 0, r'in_channels must be an int in \[1, inf\)'),
    ('channels', -8, r'channels must be an int in \[1, inf\)'),
    ('strides', (1, 0), r'strides\[1\] must be an int in \[1, inf\)'),
    ('strides', (), 'strides must be a non-empty sequence'),
    ('kernel_size', 4, 'kernel_size must be odd'),
    ('kernel_size', 2.5, r'kernel_size must be an int'),
    ('dropout', 1.0, r'dropout must be a number in \[0, 1\)'),
])
def test_temporal_encoder_validates_config(field, value, message):
    kwargs = dict(in_channels=5)
    kwargs[field] = value
    with pytest.raises(ValueError, match='TemporalConvEncoder: ' + message):
        TemporalConvEncoder(**kwargs)


def _samples(batch=4, with_lengths=True):
    samples = []
    for b in range(batch):
        sample = ActionDataSample().set_gt_label(b % 4)
        if with_lengths:
            sample.set_metainfo(dict(valid_lengths={
                m: int(v[b])
                for m, v in LENGTHS.items()
            }))
        samples.append(sample)
    return samples


RECOGNIZERS = dict(
    clcr={},
    late_fusion=dict(
        intra_ced=None, inter_cad=None,
        fusion=dict(type='LateFusion'),
        cls_head=dict(type='LateFusionHead', num_modalities=2,
                      num_classes=4, in_channels=32),
        loss_sep=None, loss_cross=None, loss_budget=None, loss_align=None),
    concat=dict(
        intra_ced=None, inter_cad=None,
        fusion=dict(type='ConcatFusion', out_channels=32),
        loss_sep=None, loss_cross=None, loss_budget=None, loss_align=None))


@pytest.mark.parametrize('variant', sorted(RECOGNIZERS))
def test_recognizer_predictions_ignore_padding(variant):
    model = MODELS.build(tiny_model_cfg(**RECOGNIZERS[variant])).eval()
    zeros, noise = _pair()
    scores = {}
    with torch.no_grad():
        for with_lengths in (True, False):
            scores[with_lengths] = [
                model({m: x[:, None]
                       for m, x in inputs.items()},
                      _samples(with_lengths=with_lengths),
                      mode='tensor') for inputs in (zeros, noise)
            ]
    assert (scores[True][0] - scores[True][1]).abs().max() < 1e-5
    # without valid_lengths the padding changes the predictions
    assert (scores[False][0] - scores[False][1]).abs().max() > 1e-3
