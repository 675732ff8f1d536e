"""Every shipped config trains under DDP's defaults.

mmengine wraps the model in ``MMDistributedDataParallel`` with
``find_unused_parameters=False``: a trainable parameter that gets no
gradient in a training step stops the first multi-GPU step. So every config
under ``configs/`` and ``projects/*/configs/`` is built, runs one loss step
on a tiny batch made here (no data on disk) and must leave a gradient on
every trainable parameter, unless the config asks DDP to look for unused
parameters itself (``model_wrapper_cfg.find_unused_parameters=True``).
"""
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import torch
import torch.nn as nn
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from clcr_mm.models.necks import IntraCEDLevels
from clcr_mm.registry import MODELS

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p.relative_to(REPO).as_posix()
    for p in [*REPO.glob('configs/**/*.py'), *REPO.glob('projects/*/configs/'
                                                          '**/*.py')]
    if '_base_' not in p.parts)
BATCH = 2
BERT_WIDTH = 16
BERT_VOCAB = 3000
SPATIAL = 32  # smallest side a ResNet's stride 32 keeps non-empty
FRAMES = 4
SEQ_LEN = 8


@pytest.fixture(scope='module')
def tiny_bert(tmp_path_factory) -> str:
    """A tiny, randomly initialised BERT saved locally, deep enough for the
    configs' tap layers."""
    transformers = pytest.importorskip('transformers')
    config = transformers.BertConfig(
        vocab_size=BERT_VOCAB, hidden_size=BERT_WIDTH, num_hidden_layers=12,
        num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64)
    path = tmp_path_factory.mktemp('bert') / 'tiny_bert'
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(
        path)
    return str(path)


def first_in_channels(backbone: nn.Module) -> int:
    """Input channels (or features) of a backbone's first conv / linear."""
    for module in backbone.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return module.in_channels
        if isinstance(module, nn.Linear):
            return module.in_features
    raise AssertionError(
        f'{type(backbone).__name__} has no conv or linear layer to read '
        'its input width from; teach this test its input')


def tiny_sample(layout: str, channels: int) -> torch.Tensor:
    """One sample with a view dim of 1, in the modality's layout."""
    shape = dict(
        video=(channels, FRAMES, SPATIAL, SPATIAL),
        image=(channels, SPATIAL, SPATIAL),
        sequence=(SEQ_LEN, channels))[layout]
    return torch.randn(1, *shape)


def tiny_tokens() -> torch.Tensor:
    """One BertTextEncoder sample: (1, L, 3) token ids, mask, segments."""
    ids = torch.randint(100, BERT_VOCAB, (1, SEQ_LEN, 1)).float()
    return torch.cat([ids, torch.ones_like(ids), torch.zeros_like(ids)], -1)


def modality_sample(encoder: nn.Module) -> torch.Tensor:
    if type(encoder.backbone).__name__ == 'BertTextEncoder':
        return tiny_tokens()
    return tiny_sample(encoder.layout, first_in_channels(encoder.backbone))


def tiny_batch(model: nn.Module, regression: bool) -> Tuple[dict, bool]:
    """A batch as a dataloader hands it to the data preprocessor, and
    whether it still has to go through it."""
    preprocess = True
    if type(model).__name__ == 'MMRecognizer3D':  # RGB + pose heatmaps
        # batched (B, V, ...) as mmaction2's preprocessor would give them
        inputs = dict(imgs=torch.randn(BATCH, 1, 3, 8, 64, 64),
                      heatmap_imgs=torch.randn(BATCH, 1, 17, 32, 16, 16))
        preprocess = False
    elif hasattr(model.backbone, 'encoders'):  # CLCR's hierarchy encoder
        inputs = {
            name: [modality_sample(enc) for _ in range(BATCH)]
            for name, enc in model.backbone.encoders.items()
        }
    else:  # a plain mmaction2 recognizer on one (audio) image
        inputs = [
            tiny_sample('image', first_in_channels(model.backbone))
            for _ in range(BATCH)
        ]
    samples = []
    for i in range(BATCH):
        sample = ActionDataSample()
        sample.set_gt_label(torch.tensor([0.5 * i]) if regression else i)
        if isinstance(inputs, dict):
            sample.set_field({m: True for m in inputs}, 'modality_mask')
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples), preprocess


def use_tiny_bert(cfg: Config, bert_dir: str) -> None:
    """Point every BertTextEncoder of the config at a tiny local BERT (the
    configs name a bert-base directory that tests do not have)."""
    encoders = cfg.model.get('backbone', {}).get('modalities', {}) or {}
    for enc in encoders.values():
        if str(enc.get('backbone', {}).get('type')).endswith(
                'BertTextEncoder'):
            enc.backbone.pretrained = bert_dir
            enc.tap_channels = (BERT_WIDTH, ) * 3


def build(config: str,
          monkeypatch=None,
          bert_dir: Optional[str] = None) -> Tuple[Config, nn.Module]:
    """Build a config's model as tools/train.py would, in its own scope;
    a project's local package is made importable as its README's
    ``PYTHONPATH=projects/<name>`` does."""
    parts = Path(config).parts
    if parts[0] == 'projects' and monkeypatch is not None:
        monkeypatch.syspath_prepend(str(REPO / 'projects' / parts[1]))
    cfg = Config.fromfile(str(REPO / config))
    if bert_dir:
        use_tiny_bert(cfg, bert_dir)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'clcr_mm'))
    return cfg, MODELS.build(cfg.model)


def params_without_grad(model: nn.Module, batch: dict,
                        preprocess: bool) -> List[str]:
    """Run one loss step; return the trainable parameters left without a
    gradient."""
    model.train()
    data = model.data_preprocessor(batch, True) if preprocess else batch
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss), f'loss is {loss}'
    loss.backward()
    return [
        name for name, p in model.named_parameters()
        if p.requires_grad and p.grad is None
    ]


def test_every_config_is_collected():
    # the glob must see the benchmarks, the baselines and the projects
    assert 'configs/clcr_synthetic_av.py' in CONFIGS
    assert 'configs/clcr_ucf101_late_fusion.py' in CONFIGS
    assert any(c.startswith('projects/') for c in CONFIGS)
    assert len(CONFIGS) >= 25, CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_one_step_reaches_every_trainable_parameter(config, monkeypatch,
                                                    request):
    bert_dir = None
    if 'BertTextEncoder' in (REPO / config).read_text():
        bert_dir = request.getfixturevalue('tiny_bert')
    cfg, model = build(config, monkeypatch, bert_dir)
    head = cfg.model.get('cls_head', {})
    batch, preprocess = tiny_batch(model, head.get('task') == 'regression')
    unused = params_without_grad(model, batch, preprocess)
    wrapper = cfg.get('model_wrapper_cfg', None) or {}
    if wrapper.get('find_unused_parameters'):
        # unused by design, and the config says so to DDP
        return
    assert not unused, (
        f'{config}: {len(unused)} trainable parameters get no gradient, so '
        f'DDP (find_unused_parameters=False) fails on the first step: '
        f'{unused[:12]}. Build only what the variant uses, or set '
        "model_wrapper_cfg=dict(type='MMDistributedDataParallel', "
        'find_unused_parameters=True) with a comment why.')
    # the IntraCED levels run batched on GPUs ('auto'): the same holds there
    levels = [m for m in model.modules() if isinstance(m, IntraCEDLevels)]
    if levels:
        for module in levels:
            module.batch_levels = True
        model.zero_grad(set_to_none=True)
        batch, preprocess = tiny_batch(model,
                                       head.get('task') == 'regression')
        unused = params_without_grad(model, batch, preprocess)
        assert not unused, (f'{config}, IntraCED levels batched: '
                            f'{unused[:12]} get no gradient')


def test_late_fusion_encoder_builds_only_the_deep_aligners():
    from clcr_mm.models.backbones.hierarchy_encoder import \
        CLCRHierarchyEncoder
    _, model = build('configs/clcr_ucf101_late_fusion.py')
    encoder = model.backbone
    assert isinstance(encoder, CLCRHierarchyEncoder)
    assert encoder.levels == ('deep', )
    for name in encoder.modalities:
        assert encoder.num_tokens(name)[:2] == (0, 0)
        assert encoder.num_tokens(name)[2] > 0
    # parameter names do not depend on which levels are built
    names = {n for n, _ in encoder.named_parameters()}
    assert any(n.startswith('aligners.rgb.2.') for n in names)
    assert not any(n.startswith('aligners.rgb.0.') for n in names)


def test_encoder_rejects_unknown_levels():
    from clcr_mm.models.backbones.hierarchy_encoder import \
        CLCRHierarchyEncoder
    from conftest import sequence_encoder
    with pytest.raises(ValueError, match='subset of'):
        CLCRHierarchyEncoder(
            modalities=dict(a=sequence_encoder(6)), embed_dims=16,
            levels=('deep', 'top'))


def test_encoder_returns_only_its_levels():
    from clcr_mm.models.backbones.hierarchy_encoder import \
        CLCRHierarchyEncoder
    from conftest import sequence_encoder
    encoder = CLCRHierarchyEncoder(
        modalities=dict(a=sequence_encoder(6)), embed_dims=16,
        levels=('deep', 'shallow'))
    assert encoder.levels == ('shallow', 'deep')  # LEVELS order
    levels: Dict[str, dict] = encoder(dict(a=torch.randn(2, 12, 6)))
    assert set(levels) == {'shallow', 'deep'}
    assert levels['deep']['a'].shape == (2, 2, 16)
