"""CLCRRecognizer end to end: modes, losses, missing modalities, ablations,
baselines and clear errors for mismatched configs."""
from copy import deepcopy

import pytest
import torch
from conftest import tiny_inputs, tiny_model_cfg, tiny_samples

from clcr_mm.registry import MODELS


def test_loss_mode_reports_every_term_and_budget():
    model = MODELS.build(tiny_model_cfg())
    losses = model(tiny_inputs(), tiny_samples(), mode='loss')
    for key in ('loss_cls', 'loss_sep', 'loss_cross', 'loss_budget',
                'loss_align', 'budget_k_shallow_a', 'budget_rho_deep'):
        assert key in losses, key
        assert torch.isfinite(losses[key])
    assert losses['budget_k_shallow_a'] == 4  # ceil(0.5 * 8 tokens)
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    # With both modalities present and every regulariser on, every
    # parameter is on a path to the loss: the scorer and ratio through the
    # training-time soft gates, the null key through the softmax, private
    # projections through the gates and L_sep. A parameter left out of the
    # graph is a bug, so the set without gradient must be empty.
    no_grad = [name for name, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert no_grad == []



def test_leakage_adversary_is_built_with_the_model_shape_and_trains():
    """``loss_adv`` gets the model's modalities and width; its adversary
    and the model both receive gradients in one backward pass."""
    model = MODELS.build(
        tiny_model_cfg(loss_adv=dict(type='PrivateLeakageAdversaryLoss')))
    assert model.loss_adv.hidden.shape[:2] == (3, 2)
    assert model.loss_adv.readout.shape[-1] == 2 * 32
    losses = model(tiny_inputs(), tiny_samples(), mode='loss')
    assert torch.isfinite(losses['loss_adv'])
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert model.loss_adv.readout.grad.abs().sum() > 0
    assert model.intra_ced['deep'].shared_proj['a'][0].weight.grad is not None

def test_predict_averages_views_and_scores_are_probabilities():
    model = MODELS.build(tiny_model_cfg()).eval()
    samples = model(tiny_inputs(views=3), tiny_samples(), mode='predict')
    assert len(samples) == 4
    for s in samples:
        assert s.pred_score.shape == (4, )
        assert torch.isclose(s.pred_score.sum(), torch.tensor(1.0))
        assert s.pred_label.item() == s.pred_score.argmax().item()


def test_tensor_mode_returns_scores():
    model = MODELS.build(tiny_model_cfg()).eval()
    scores = model(tiny_inputs(batch=2), mode='tensor')
    assert scores.shape == (2, 4)


def test_missing_modality_is_masked_and_reported():
    model = MODELS.build(
        tiny_model_cfg(test_cfg=dict(return_analysis=True))).eval()
    inputs = tiny_inputs()
    masks = [dict(b=False), None, dict(b=False), None]
    out = model(inputs, tiny_samples(masks=masks), mode='predict')
    assert out[0].modality_present.tolist() == [1.0, 0.0]
    assert out[1].modality_present.tolist() == [1.0, 1.0]
    assert torch.all(out[0].private_gates[1] == 0)
    assert out[0].level_weights.shape == (3, )
    # The masked samples ignore whatever b holds.
    noisy = dict(inputs, b=torch.randn_like(inputs['b']) * 10)
    out2 = model(noisy, tiny_samples(masks=masks), mode='predict')
    for i in (0, 2):
        assert torch.allclose(out[i].pred_score, out2[i].pred_score,
                              atol=1e-5)
    assert not torch.allclose(out[1].pred_score, out2[1].pred_score)


def test_test_time_missing_equals_zero_filled_and_masked_input():
    model = MODELS.build(
        tiny_model_cfg(test_cfg=dict(missing_modalities=('b', )))).eval()
    inputs = tiny_inputs()
    via_cfg = model(inputs, tiny_samples(), mode='predict')
    model.test_cfg['missing_modalities'] = ()
    zero_filled = dict(inputs, b=torch.zeros_like(inputs['b']))
    via_pipeline = model(zero_filled, tiny_samples(masks=[dict(b=False)] * 4),
                         mode='predict')
    for x, y in zip(via_cfg, via_pipeline):
        assert torch.allclose(x.pred_score, y.pred_score, atol=1e-6)


def test_modality_dropout_never_drops_every_modality():
    model = MODELS.build(
        tiny_model_cfg(train_cfg=dict(modality_dropout=1.0))).train()
    mask = model._modality_mask(tiny_samples(batch=64), 64, 1,
                                torch.device('cpu'))
    assert mask.any(dim=1).all()
    assert (~mask).any()  # something was dropped


def test_three_modalities_with_one_missing():
    mods = ('text', 'audio', 'vision')
    model = MODELS.build(tiny_model_cfg(mods))
    masks = [dict(audio=False), dict(vision=False, text=False), None, None]
    losses = model(tiny_inputs(modalities=mods), tiny_samples(masks=masks),
                   mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize('overrides', [
    dict(intra_ced=dict(type='IntraCED', num_heads=2, exchange=False)),
    dict(intra_ced=dict(type='IntraCED', num_heads=2, token_budget=None)),
    dict(inter_cad=dict(type='InterCAD', out_channels=32, synchronise=False,
                        selective=False, gate_private=False)),
    dict(loss_sep=None, loss_cross=None, loss_budget=None, loss_align=None),
    dict(intra_ced=None, loss_sep=None, loss_align=None, loss_budget=None),
])
def test_ablations_build_and_train(overrides):
    model = MODELS.build(tiny_model_cfg(**overrides))
    losses = model(tiny_inputs(), tiny_samples(), mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert torch.isfinite(losses['loss_cls'])
    for key, value in overrides.items():
        if key.startswith('loss') and value is None:
            assert key not in losses


@pytest.mark.parametrize('fusion,head', [
    (dict(type='ConcatFusion', out_channels=32),
     dict(type='CLCRHead', num_classes=4, in_channels=32)),
    (dict(type='LateFusion'),
     dict(type='LateFusionHead', num_modalities=2, num_classes=4,
          in_channels=32)),
])
def test_baselines_share_the_encoder(fusion, head):
    cfg = tiny_model_cfg(
        intra_ced=None, inter_cad=None, fusion=fusion, cls_head=head,
        loss_sep=None, loss_cross=None, loss_budget=None, loss_align=None)
    model = MODELS.build(cfg)
    losses = model(tiny_inputs(), tiny_samples(), mode='loss')
    assert set(k for k in losses if k.startswith('loss')) == {'loss_cls'}
    model.eval()
    out = model(tiny_inputs(), tiny_samples(masks=[dict(b=False)] * 4),
                mode='predict')
    assert out[0].pred_score.shape == (4, )


def test_late_fusion_ignores_absent_modality_logits():
    cfg = tiny_model_cfg(
        intra_ced=None, inter_cad=None, fusion=dict(type='LateFusion'),
        cls_head=dict(type='LateFusionHead', num_modalities=2, num_classes=4,
                      in_channels=32),
        loss_sep=None, loss_cross=None, loss_budget=None, loss_align=None)
    model = MODELS.build(cfg).eval()
    feats = torch.randn(2, 2, 32)
    present = torch.tensor([[True, False], [True, True]])
    logits = model.cls_head(dict(modality_feats=feats, present=present))
    only_a = model.cls_head.fc[0](feats[0, 0])
    assert torch.allclose(logits[0], only_a, atol=1e-6)


def test_regression_head_uses_l1_and_predicts_a_value():
    from mmaction.structures import ActionDataSample
    cfg = tiny_model_cfg(
        cls_head=dict(type='CLCRHead', num_classes=1, in_channels=32,
                      task='regression'))
    model = MODELS.build(cfg)
    samples = [ActionDataSample().set_gt_label(torch.tensor([0.5 * i]))
               for i in range(4)]
    losses = model(tiny_inputs(), samples, mode='loss')
    assert 'loss_cls' in losses and losses['loss_cls'] > 0
    model.eval()
    out = model(tiny_inputs(views=2), samples, mode='predict')
    assert out[0].pred_score.shape == (1, )


def test_config_errors_name_the_problem():
    cfg = tiny_model_cfg()
    cfg['backbone']['modalities']['a']['tap_channels'] = (16, 99, 16)
    model = MODELS.build(cfg)
    with pytest.raises(ValueError, match=r"modality 'a'.*layers.1.*99"):
        model(tiny_inputs(), tiny_samples(), mode='loss')

    model = MODELS.build(tiny_model_cfg())
    with pytest.raises(KeyError, match=r"no \['b'\]"):
        model(dict(a=tiny_inputs()['a']), tiny_samples(), mode='loss')

    cfg = tiny_model_cfg()
    cfg['backbone']['modalities']['a']['taps'] = ('layers.0', 'nope', 'x')
    with pytest.raises(KeyError, match='not submodules'):
        MODELS.build(cfg)

    with pytest.raises(ValueError, match='exactly one'):
        MODELS.build(tiny_model_cfg(fusion=dict(type='ConcatFusion')))

    with pytest.raises(ValueError, match='missing_modalities'):
        MODELS.build(tiny_model_cfg(test_cfg=dict(missing_modalities=('z',))))


def test_mmaction_backbones_as_video_and_image_encoders():
    """mmaction2's ResNet tapped at three stages: frames folded into the
    batch (video) and a 1-channel spectrogram (image)."""
    from clcr_mm.registry import MODELS as REG
    res18 = dict(type='mmaction.ResNet', depth=18, pretrained=None,
                 out_indices=(3, ))
    encoder = REG.build(dict(
        type='CLCRHierarchyEncoder', embed_dims=32, modalities=dict(
            rgb=dict(backbone=res18, taps=('layer2', 'layer3', 'layer4'),
                     tap_channels=(128, 256, 512), layout='video',
                     fold_frames=True,
                     grids=((2, 4, 4), (2, 2, 2), (1, 1, 1))),
            audio=dict(backbone=dict(res18, in_channels=1),
                       taps=('layer2', 'layer3', 'layer4'),
                       tap_channels=(128, 256, 512), layout='image',
                       grids=((1, 4, 4), (1, 2, 2), (1, 1, 1))))))
    levels = encoder(dict(rgb=torch.randn(2, 3, 2, 32, 32),
                          audio=torch.randn(2, 1, 32, 32)))
    assert levels['shallow']['rgb'].shape == (2, 32, 32)
    assert levels['mid']['audio'].shape == (2, 4, 32)
    assert levels['deep']['rgb'].shape == (2, 1, 32)
    with pytest.raises(ValueError, match='expects a 5-D input'):
        encoder(dict(rgb=torch.randn(2, 3, 32, 32),
                     audio=torch.randn(2, 1, 32, 32)))


def test_one_tap_may_serve_several_levels():
    """The "w/o hierarchy" ablation taps the deepest stage three times."""
    cfg = tiny_model_cfg()
    for spec in cfg['backbone']['modalities'].values():
        spec['taps'] = ('layers.2', 'layers.2', 'layers.2')
    model = MODELS.build(cfg)
    levels = model.backbone(
        {m: x.flatten(0, 1) for m, x in tiny_inputs().items()})
    # same tap, different grids per level
    assert levels['shallow']['a'].shape[1] == 8
    assert levels['deep']['a'].shape[1] == 2
    losses = model(tiny_inputs(), tiny_samples(), mode='loss')
    assert torch.isfinite(losses['loss_cls'])


@pytest.mark.parametrize('training', [True, False])
def test_fusion_has_no_graph_breaks(training):
    """IntraCED, InterCAD, the head and every regulariser trace to one
    graph each (no host syncs, no data-dependent shapes), with and without
    modality masks."""
    import torch._dynamo as dynamo
    model = MODELS.build(tiny_model_cfg(
        loss_level=dict(type='LevelWeightEntropyLoss'),
        loss_adv=dict(type='PrivateLeakageAdversaryLoss'))).train(training)
    inputs, samples = tiny_inputs(), tiny_samples()
    with torch.no_grad():
        for masks in (None, [dict(b=False), None, None, None]):
            samples = tiny_samples(masks=masks)
            feats = model.extract_feat(inputs, samples)
            levels, mask = feats['levels'], feats['mask']
            for level, intra in model.intra_ced.items():
                explained = dynamo.explain(intra)(levels[level], mask)
                assert explained.graph_break_count == 0, level
            # the three levels batched (as on accelerators) and one by
            # one (as on the CPU)
            for batch_levels in (True, False):
                model.intra_ced.batch_levels = batch_levels
                explained = dynamo.explain(model.intra_ced)(levels, mask)
                assert explained.graph_break_count == 0, batch_levels
            shared = {l: feats['intra'][l]['shared'] for l in levels}
            private = {l: feats['intra'][l]['private'] for l in levels}
            explained = dynamo.explain(model.inter_cad)(shared, private,
                                                        mask)
            assert explained.graph_break_count == 0
            explained = dynamo.explain(model.cls_head)(feats['fused'])
            assert explained.graph_break_count == 0
            explained = dynamo.explain(model.regularisers)(feats)
            assert explained.graph_break_count == 0
            dynamo.reset()


def test_compiled_fusion_trains_and_matches_eager():
    """``compile_fusion`` compiles everything after the backbones as one
    graph with fullgraph=True (which raises on any graph break); same losses
    as eager, same state dict keys; a deep copy (an EMA model) runs its own
    parameters, not the original's."""
    torch.manual_seed(0)
    adv = dict(type='PrivateLeakageAdversaryLoss')
    eager = MODELS.build(tiny_model_cfg(loss_adv=adv))
    compiled = MODELS.build(
        tiny_model_cfg(loss_adv=adv, compile_fusion=dict(backend='eager')))
    compiled.load_state_dict(eager.state_dict())
    assert set(compiled.state_dict()) == set(eager.state_dict())
    inputs, samples = tiny_inputs(), tiny_samples()
    eager.eval(), compiled.eval()
    with torch.no_grad():
        expected = eager(inputs, samples, mode='loss')
        got = compiled(inputs, samples, mode='loss')
    for key, value in expected.items():
        assert torch.allclose(got[key], value, atol=1e-5), key
    compiled.train()
    losses = compiled(inputs, samples, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert compiled.inter_cad.anchors.grad.abs().sum() > 0
    assert compiled.loss_adv.readout.grad.abs().sum() > 0
    copy = deepcopy(compiled).eval()
    with torch.no_grad():
        copy.cls_head.fc.bias.add_(1.0)
        shifted = copy(inputs, samples, mode='tensor')
        original = compiled.eval()(inputs, samples, mode='tensor')
    assert torch.allclose(shifted, original + 1.0, atol=1e-5)


def test_compiled_fusion_aligns_sequences_with_valid_lengths():
    """The level aligners are in the compiled graph: sequences with valid
    lengths (token masks from the aligners) give eager's losses; a
    batch-normalised sequence tap, whose statistics gather the valid steps
    (a length-dependent shape), is refused at build time."""
    torch.manual_seed(0)
    eager = MODELS.build(tiny_model_cfg())
    compiled = MODELS.build(
        tiny_model_cfg(compile_fusion=dict(backend='eager')))
    compiled.load_state_dict(eager.state_dict())
    samples = tiny_samples()
    for i, sample in enumerate(samples):
        sample.set_metainfo(dict(valid_lengths=dict(a=12 - i, b=12 - 3 * i)))
    inputs = tiny_inputs()
    for model in (eager, compiled):
        model.eval()
    with torch.no_grad():
        expected = eager(inputs, samples, mode='loss')
        got = compiled(inputs, samples, mode='loss')
    for key, value in expected.items():
        assert torch.allclose(got[key], value, atol=1e-5), key
    cfg = tiny_model_cfg(compile_fusion=dict(backend='eager'))
    cfg['backbone']['tap_norm_cfg'] = dict(type='BN3d')
    with pytest.raises(ValueError, match='tap_norm_cfg=None'):
        MODELS.build(cfg)
    # without compile_fusion the same model builds and trains
    cfg.pop('compile_fusion')
    losses = MODELS.build(cfg)(inputs, samples, mode='loss')
    assert torch.isfinite(losses['loss_cls'])


@pytest.mark.parametrize('masks', [None, [dict(b=False), None, None, None]])
def test_batched_levels_train_as_level_by_level(masks):
    """``batch_levels``: the levels' IntraCEDs batched (the accelerator
    default) or run one by one (the CPU default) give the same losses and
    the same gradient for every parameter."""
    torch.manual_seed(0)
    cfg = tiny_model_cfg()
    cfg['intra_ced'] = dict(cfg['intra_ced'], dropout=0.0)
    cfg['inter_cad'] = dict(cfg['inter_cad'], dropout=0.0)
    inputs, samples = tiny_inputs(), tiny_samples(masks=masks)
    results = []
    for batch_levels in (True, False):
        model = MODELS.build(dict(cfg, batch_levels=batch_levels))
        if results:
            model.load_state_dict(results[0][0])
        torch.manual_seed(1)  # the encoders' dropout
        losses = model(inputs, samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters()
                 if p.grad is not None}
        results.append((model.state_dict(), losses, grads))
    (_, losses_a, grads_a), (_, losses_b, grads_b) = results
    assert losses_a.keys() == losses_b.keys()
    assert 'loss_sep' in losses_a and 'budget_k_deep_a' in losses_a
    for key in losses_a:
        torch.testing.assert_close(losses_a[key], losses_b[key])
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('schedule', ['adamw_short', 'adam_mmsa', 'sgd_100e'])
def test_budget_ratios_get_no_weight_decay(schedule):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(f'configs/_base_/schedules/{schedule}.py')
    cfg.optim_wrapper.optimizer.pop('fused')
    model = MODELS.build(tiny_model_cfg())
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    logits = [p for n, p in model.named_parameters() if n.endswith('.logit')]
    assert len(logits) == 6  # three levels x two modalities
    assert all(decay[id(p)] == 0 for p in logits)
    scorer = model.intra_ced['deep'].budgets['a'].scorer.weight
    assert decay[id(scorer)] == cfg.optim_wrapper.optimizer.weight_decay > 0


def test_ema_copy_of_the_model_runs_its_own_encoder():
    """mmengine's EMAHook averages a deep copy of the model: the copy's
    encoder taps must fill the copy, not the original (they did not while
    the tap hooks were closures over the original)."""
    from mmengine.model import ExponentialMovingAverage
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg()).eval()
    ema = ExponentialMovingAverage(model, momentum=0.5)
    inputs, samples = tiny_inputs(), tiny_samples()
    with torch.no_grad():
        expected = model(inputs, samples, mode='tensor')
        assert torch.allclose(
            ema.module(inputs, samples, mode='tensor'), expected)
        ema.update_parameters(model)  # the first update copies
        for param in model.parameters():
            param.mul_(0.5)
        ema.update_parameters(model)  # then averages
        assert not torch.allclose(
            ema.module(inputs, samples, mode='tensor'),
            model(inputs, samples, mode='tensor'))


def test_compiled_fusion_trains_under_ddp_defaults(tmp_path):
    """``compile_fusion`` inside mmengine's DDP wrapper with DDP's defaults
    (find_unused_parameters=False): two steps, every trainable parameter
    gets its gradient through the compiled graph's backward, and the
    losses are the eager model's."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import OptimWrapper
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        cfg = tiny_model_cfg()
        cfg['intra_ced'] = dict(cfg['intra_ced'], dropout=0.0)
        cfg['inter_cad'] = dict(cfg['inter_cad'], dropout=0.0)
        inputs, samples = tiny_inputs(), tiny_samples()
        losses = []
        for compile_fusion in (False, dict(backend='eager')):
            torch.manual_seed(0)
            model = MODELS.build(dict(cfg, compile_fusion=compile_fusion))
            ddp = MMDistributedDataParallel(
                module=model, find_unused_parameters=False)
            optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
            run = []
            for _ in range(2):
                torch.manual_seed(1)  # the encoders' dropout
                loss, _ = model.parse_losses(
                    ddp(inputs, samples, mode='loss'))
                optim.backward(loss)
                missing = [n for n, p in model.named_parameters()
                           if p.requires_grad and p.grad is None]
                assert not missing, missing
                optim.step()
                optim.zero_grad()
                run.append(float(loss))
            losses.append(run)
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    finally:
        dist.destroy_process_group()
