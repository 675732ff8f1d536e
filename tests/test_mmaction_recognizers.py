"""CLCR parts inside mmaction2's own multimodal recognizer (issue 14).

Every model here is built from an mmaction2-scope config
(``default_scope='mmaction'``, ``custom_imports``) and run in ``loss``,
``predict`` and ``tensor`` modes; the README's config fragments are read
from the README itself.
"""
import copy
import os
import os.path as osp
import pickle
import re
import runpy
import subprocess
import sys

import pytest
import torch
from mmaction.registry import MODELS as MMACTION_MODELS
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from conftest import tiny_inputs, tiny_model_cfg, tiny_samples

from clcr_mm.models import CLCRFusionHead
from clcr_mm.registry import MODELS as CLCR_MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RGBPOSE_CFG = osp.join(REPO, 'projects', 'rgbpose_clcr', 'configs',
                       'rgbpose-conv3d_clcr-head_ntu60-xsub.py')
MM_HEADER = ("default_scope = 'mmaction'\n"
             "custom_imports = dict(imports=['clcr_mm'], "
             "allow_failed_imports=False)\n")


def readme_fragments() -> dict:
    """``# fragment: <name>`` code blocks of README's "Using CLCR parts"."""
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = text.split('## Using CLCR parts', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```python\n(# fragment: (\S+)\n.*?)```', section,
                        re.S)
    return {name: code for code, name in blocks}


def load_config(tmp_path, text: str, name: str = 'cfg.py') -> Config:
    path = tmp_path / name
    path.write_text(text)
    return Config.fromfile(str(path))


def build_mm(model_cfg: dict):
    """Build under mmaction2's scope, as mmaction2's tools/train.py does."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        return MMACTION_MODELS.build(copy.deepcopy(model_cfg))


def scoped(cfg: dict) -> dict:
    """Prefix the conftest model's clcr_mm types with their scope."""
    cfg = copy.deepcopy(cfg)

    def visit(node):
        if isinstance(node, dict):
            if isinstance(node.get('type'), str) and '.' not in node['type']:
                node['type'] = 'clcr_mm.' + node['type']
            for value in node.values():
                visit(value)

    visit(cfg)
    return cfg


def twin_models(tmp_path):
    """A CLCRRecognizer and the MMRecognizer3D + CLCRFusionHead config
    with the same parts, the latter loaded from an mmaction2-scope file,
    sharing weights through the head's key mapping."""
    ref_cfg = scoped(tiny_model_cfg(
        loss_level=dict(type='LevelWeightEntropyLoss', loss_weight=0.01)))
    fusion = {key: ref_cfg[key] for key in (
        'intra_ced', 'inter_cad', 'loss_sep', 'loss_cross', 'loss_budget',
        'loss_align', 'loss_level')}
    fusion.update(modalities=('a', 'b'), embed_dims=32)
    head = dict(ref_cfg['cls_head'], type='clcr_mm.CLCRFusionHead',
                fusion=fusion)
    model_cfg = dict(type='MMRecognizer3D', backbone=ref_cfg['backbone'],
                     cls_head=head)
    cfg = load_config(tmp_path, MM_HEADER + f'model = {model_cfg!r}\n')
    reference = CLCR_MODELS.build(ref_cfg)
    model = build_mm(cfg.model)
    state = CLCRFusionHead.map_recognizer_state(reference.state_dict())
    model.load_state_dict(state, strict=True)
    return reference.eval(), model.eval()


def copy_inputs(inputs: dict) -> dict:
    # MMRecognizer3D folds views into the batch in place
    return {k: v.clone() for k, v in inputs.items()}


def test_fusion_head_in_mmrecognizer3d_matches_clcr_recognizer(tmp_path):
    reference, model = twin_models(tmp_path)
    assert type(model).__name__ == 'MMRecognizer3D'
    inputs = tiny_inputs(views=2)
    with torch.no_grad():
        ref_pred = reference(copy_inputs(inputs), tiny_samples(),
                             mode='predict')
        pred = model(copy_inputs(inputs), tiny_samples(), mode='predict')
        ref_scores = reference(copy_inputs(inputs), mode='tensor')
        scores = model(copy_inputs(inputs), mode='tensor', stage='head')
        ref_losses = reference(copy_inputs(inputs), tiny_samples(),
                               mode='loss')
        losses = model(copy_inputs(inputs), tiny_samples(), mode='loss')
    assert scores.shape == (8, 4)
    torch.testing.assert_close(scores, ref_scores)
    for got, want in zip(pred, ref_pred):
        torch.testing.assert_close(got.pred_score, want.pred_score)
        assert got.pred_label == want.pred_label
    # the same terms, each under its own key, with the same values
    assert set(losses) == set(ref_losses)
    for key in ('loss_cls', 'loss_sep', 'loss_cross', 'loss_budget',
                'loss_align', 'loss_level', 'budget_k_mid_a'):
        torch.testing.assert_close(losses[key], ref_losses[key])


def test_fusion_head_applies_the_samples_modality_masks(tmp_path):
    reference, model = twin_models(tmp_path)
    masks = [dict(b=False), None, dict(a=False), None]
    inputs = tiny_inputs(views=2)
    # as a pipeline that zero-fills a missing modality delivers them
    inputs['b'][0] = 0
    inputs['a'][2] = 0
    with torch.no_grad():
        want = reference(copy_inputs(inputs), tiny_samples(masks=masks),
                         mode='predict')
        got = model(copy_inputs(inputs), tiny_samples(masks=masks),
                    mode='predict')
        unmasked = model(copy_inputs(inputs), tiny_samples(),
                         mode='predict')
        losses = model(copy_inputs(inputs), tiny_samples(masks=masks),
                       mode='loss')
        ref_losses = reference(copy_inputs(inputs),
                               tiny_samples(masks=masks), mode='loss')
    for g, w in zip(got, want):
        torch.testing.assert_close(g.pred_score, w.pred_score)
    # the mask is not a no-op: sample 0 scores differ without it
    assert not torch.allclose(got[0].pred_score, unmasked[0].pred_score)
    torch.testing.assert_close(unmasked[1].pred_score, got[1].pred_score)
    torch.testing.assert_close(losses['loss_sep'], ref_losses['loss_sep'])


def test_fusion_head_trains_with_label_smoothing(tmp_path):
    _, model = twin_models(tmp_path)
    model.train()
    model.cls_head.label_smooth_eps = 0.2
    losses = model(copy_inputs(tiny_inputs()), tiny_samples(), mode='loss')
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    # the regularisers reach the fusion's own parameters
    grad = model.cls_head.fusion.intra_ced['shallow'].private_proj['a'][
        0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert {'loss_cls', 'loss_sep', 'loss_align', 'loss_budget',
            'top1_acc'} <= set(losses)


def test_hierarchy_encoder_takes_keywords_or_a_dict(tmp_path):
    _, model = twin_models(tmp_path)
    encoder = model.backbone
    inputs = {k: v[:, 0] for k, v in tiny_inputs(batch=2).items()}
    by_keyword = encoder(**inputs)
    by_dict = encoder(inputs)
    torch.testing.assert_close(by_keyword['deep']['b'], by_dict['deep']['b'])
    with pytest.raises(TypeError, match='not both or neither'):
        encoder(inputs, a=inputs['a'])
    with pytest.raises(KeyError, match="no input for \\['b'\\]"):
        encoder(a=inputs['a'])


def test_readme_mmrecognizer3d_fragment_runs_all_modes(tmp_path):
    cfg = load_config(tmp_path, readme_fragments()['mmrecognizer3d'])
    assert cfg.default_scope == 'mmaction'
    model = build_mm(cfg.model)
    assert type(model.cls_head).__name__ == 'CLCRFusionHead'
    # two samples as PackActionInputs packs them, collated as the
    # dataloader does
    batch = pseudo_collate([
        dict(inputs=dict(rgb=torch.randint(0, 255, (1, 3, 2, 32, 32)).float(),
                         audio=torch.randn(1, 1, 64, 32)),
             data_samples=ActionDataSample().set_gt_label(i))
        for i in range(2)
    ])
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss_cls'])
    assert {'loss_sep', 'loss_cross', 'loss_budget', 'loss_align'} <= set(
        losses)
    model.eval()
    data = model.data_preprocessor(copy.deepcopy(batch), training=False)
    out = model(**data, mode='predict')
    assert out[0].pred_score.shape == (8, )
    torch.testing.assert_close(out[0].pred_score.sum(), torch.tensor(1.))
    data = model.data_preprocessor(copy.deepcopy(batch), training=False)
    levels = model(data['inputs'], mode='tensor')
    assert levels['mid']['audio'].shape == (2, 8, 128)


def test_readme_neck_fragment_follows_the_neck_contract(tmp_path):
    cfg = load_config(tmp_path, MM_HEADER + readme_fragments()['neck'])
    neck = build_mm(cfg.neck).eval()
    maps = (torch.randn(2, 2048, 4, 7, 7), torch.randn(2, 512, 8, 7, 7))
    fused, loss_aux = neck(maps)
    assert fused['feat'].shape == (2, 64) and loss_aux == {}
    fused2, loss_aux = neck(maps, data_samples=tiny_samples(batch=2))
    torch.testing.assert_close(fused2['feat'], fused['feat'])
    assert loss_aux['loss_sep'] > 0
    assert 'budget_rho_deep' in loss_aux
    with pytest.raises(ValueError, match="modality 'pose'.*fix in_channels"):
        neck((maps[0], torch.randn(2, 256, 8, 7, 7)))
    token_neck = build_mm(dict(cfg.neck, in_channels=None))
    with pytest.raises(TypeError, match='for backbone feature maps set'):
        token_neck(maps)
    levels = neck.to_levels(maps)
    assert levels['shallow']['pose'].shape == (2, 64, 64)
    fused3, _ = token_neck(levels)
    assert fused3['feat'].shape == (2, 64)
    narrow = {level: {m: t[..., :32] for m, t in tokens.items()}
              for level, tokens in levels.items()}
    with pytest.raises(ValueError, match="tokens of 'rgb' are 32 wide"):
        token_neck(narrow)
    with pytest.raises(KeyError, match="no input for \\['pose'\\]"):
        token_neck({level: dict(rgb=t['rgb']) for level, t in levels.items()})
    with pytest.raises(ValueError, match="'rgb' gave 2 feature maps"):
        neck(((maps[0], maps[0]), maps[1]))


def test_rgbpose_project_config_replaces_rgbpose_head():
    cfg = Config.fromfile(RGBPOSE_CFG)
    # mmaction2's config, inherited: its backbone and data pipeline stay
    assert cfg.model.type == 'MMRecognizer3D'
    assert cfg.model.backbone.type == 'RGBPoseConv3D'
    assert cfg.model.cls_head.type == 'clcr_mm.CLCRFusionHead'
    assert 'loss_components' not in cfg.model.cls_head
    model = build_mm(cfg.model)
    inputs = dict(imgs=torch.randn(1, 1, 3, 8, 64, 64),
                  heatmap_imgs=torch.randn(1, 1, 17, 32, 16, 16))
    losses = model(inputs, [ActionDataSample().set_gt_label(3)],
                   mode='loss')
    assert {'loss_cls', 'loss_sep', 'loss_align', 'loss_level'} <= set(
        losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_rgbpose_synthetic_configs_differ_only_in_the_head():
    configs = osp.dirname(RGBPOSE_CFG)
    baseline = Config.fromfile(
        osp.join(configs, 'rgbpose-conv3d_rgbpose-head_synthetic-rgbpose.py'))
    clcr = Config.fromfile(
        osp.join(configs, 'rgbpose-conv3d_clcr-head_synthetic-rgbpose.py'))
    assert baseline.model.cls_head.type == 'RGBPoseHead'
    assert baseline.model.cls_head.num_classes == 4
    assert clcr.model.cls_head.num_classes == 4
    assert baseline.load_from is None and clcr.load_from is None
    for key in ('train_dataloader', 'val_dataloader', 'train_cfg',
                'optim_wrapper'):
        assert baseline[key] == clcr[key], key
    assert baseline.model.backbone == clcr.model.backbone


def test_rgbpose_project_hierarchy_encoder_taps_both_pathways():
    """MMRecognizer3D calls CLCR's encoder as backbone(imgs=...,
    heatmap_imgs=...), three stages of each pathway become the levels."""
    cfg = Config.fromfile(
        osp.join(osp.dirname(RGBPOSE_CFG),
                 'clcr-hierarchy_slowonly-rgb-pose_synthetic-rgbpose.py'))
    assert cfg.model.type == 'MMRecognizer3D'
    model = build_mm(cfg.model)
    inputs = dict(imgs=torch.randn(2, 1, 3, 8, 64, 64),
                  heatmap_imgs=torch.randn(2, 1, 17, 32, 16, 16))
    levels = model(copy_inputs(inputs), mode='tensor')
    assert {m: t.shape[1] for m, t in levels['shallow'].items()} == dict(
        imgs=64, heatmap_imgs=32)
    losses = model(copy_inputs(inputs), tiny_samples(batch=2), mode='loss')
    assert {'loss_cls', 'loss_sep', 'loss_cross', 'loss_level'} <= set(
        losses)
    model.eval()
    with torch.no_grad():
        pred = model(copy_inputs(inputs), tiny_samples(batch=2),
                     mode='predict')
    assert pred[0].pred_score.shape == (4, )


def test_rgbpose_project_trains_one_iteration_with_mmaction2_train_py(
        tmp_path):
    """The generated pose annotations + videos go through mmaction2's own
    ``PoseDataset`` pipeline and packaged ``tools/train.py``: one training
    iteration and one validation pass, the regularisers in the log."""
    import mmaction
    generator_path = osp.join(REPO, 'projects', 'rgbpose_clcr', 'tools',
                         'build_synthetic_rgbpose.py')
    generator = runpy.run_path(generator_path)
    data = tmp_path / 'data'
    assert generator['build'](str(data), num_train=2, num_val=2) == []
    with open(data / 'synthetic_rgbpose.pkl', 'rb') as f:
        annos = pickle.load(f)
    assert annos['split'] == dict(xsub_train=['00000', '00001'],
                                  xsub_val=['00002', '00003'])
    assert annos['annotations'][0]['keypoint'].shape == (1, 32, 17, 2)
    train_py = osp.join(osp.dirname(mmaction.__file__), '.mim', 'tools',
                        'train.py')
    options = [
        f'{loader}.{key}={value}'
        for loader in ('train_dataloader', 'val_dataloader')
        for key, value in (
            ('dataset.ann_file', data / 'synthetic_rgbpose.pkl'),
            ('dataset.data_prefix.video', data / 'videos'),
            ('batch_size', 2), ('num_workers', 0),
            ('persistent_workers', False))
    ] + ['train_cfg.max_epochs=1', 'param_scheduler=None',
         'default_hooks.checkpoint=None', 'default_hooks.logger.interval=1']
    cfg = osp.join(osp.dirname(RGBPOSE_CFG),
                   'rgbpose-conv3d_clcr-head_synthetic-rgbpose.py')
    proc = subprocess.run(
        [sys.executable, train_py, cfg, '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', *options],
        cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)
    log = proc.stdout
    assert proc.returncode == 0, log[-3000:]
    assert 'Epoch(train) [1][1/1]' in log and 'loss_sep' in log, log[-3000:]
    assert 'budget_rho_shallow' in log and 'loss_level' in log
    assert 'Epoch(val) [1][1/1]' in log and 'acc/top1' in log, log[-3000:]
