"""What CLCR's representations hold: linear probes of shared vs private
features, shared/private similarity, token budgets, level weights and
private gates.

    python tools/analysis/representation.py CONFIG CHECKPOINT \\
        [--out-dir work_dirs/representation] [--factors data/.../factors.json]

Features come from ``model.extract_feat`` (the recognizer's own forward) on
the samples of two splits run through the *test* pipeline (mmengine's
``Runner.build_dataloader``): probes are fitted on ``--fit-split`` (default
``train``) and scored on ``--eval-split`` (default ``test``). Per sample and
for every level l and modality m it keeps the token-mean of the exchanged
shared tokens Ŝ_m^l and of the private tokens P_m^l, InterCAD's level
weights α and private gates γ, and h.

Outputs in ``--out-dir``:

- ``probes``: a linear probe on standardised features, in torch (no
  scikit-learn needed): a closed-form ridge classifier, or with
  ``--probe logistic`` an L2-regularised logistic regression (L-BFGS),
  predicts each
  target from each feature set (``<m>.shared.<level>``, ``<m>.private.<level>``,
  ``<m>.shared.all``, ``<m>.private.all`` = the three levels concatenated,
  ``h``). Targets: the class label and, where the dataset ships a
  ``factors.json`` (the synthetic benchmark), every factor, matched to the
  samples by file name (``<id>.mp4``). On the synthetic set rhythm is
  shared, colour (and shape) visual-only, chirp (and pitch, timbre)
  audio-only; on the cross-level set ``sync`` is a relation of the two
  streams (in neither alone), ``direction`` is in both, colour, shape and
  the visual tempo are visual-only, timbre, pitch and the audio tempo
  audio-only.
- ``leakage``: per factor, where it is planted, its chance level (majority
  class of the evaluation split) and the probe accuracy from each
  modality's pooled shared and private features (all levels) and from the
  fused h, checked against the targets: a factor planted only in modality
  m is decodable from another modality's shared features at no more than
  chance + 10 points; a relation between the modalities is decodable from
  h at >= 90 %.
- ``similarity``: per level and modality the mean |cos| between each
  shared token and the private token at the same position (what L_sep
  pushes to 0), and across modalities the cosine of the pooled shared
  features (Ŝ_rgb vs Ŝ_audio) and of the pooled private features.
- ``budgets``: tokens per level and modality, the realised k and ρ.
- ``per_class``: mean α (per level) and γ (per modality-level) per class.

Files: ``representation.json``, ``representation.md``,
``representation_probes.png``, ``representation_gates.png``,
``representation_similarity.png``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import analysis_utils as au  # noqa: E402
from results_tables import leakage_table, relation_table  # noqa: E402

from clcr_mm.models.utils import LEVELS  # noqa: E402

DEFAULT_DECAY = dict(ridge=10.0, logistic=1e-2)
# factors.json modality names -> model modalities, for benchmarks whose
# meta has no ``visible`` table (the synthetic AV set).
STREAMS = dict(visual=('rgb', ), audio=('audio', ), shared=('rgb', 'audio'))
LEAK_MARGIN = 0.10  # private factor in another modality's shared space
RELATION_TARGET = 0.90  # cross-modal relation from the fused h


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Probe and summarise CLCR shared / private features')
    parser.add_argument('config')
    parser.add_argument(
        'checkpoint', help="checkpoint, or 'none' for the untrained "
        "model (a random-feature control)")
    parser.add_argument('--out-dir', default='work_dirs/representation')
    parser.add_argument('--factors', default=None,
                        help='factors.json (default: <data_root>/'
                        'factors.json if it exists)')
    parser.add_argument('--fit-split', default='train',
                        help='split whose samples fit the probes')
    parser.add_argument('--eval-split', default='test',
                        help='split on which probes are scored and the '
                        'statistics computed')
    parser.add_argument(
        '--relation', nargs='+', default=[], metavar='NAME=A==B',
        help='a relation factor NAME that equals [A == B] for factors A and '
        'B (e.g. sync=visual_tempo==audio_tempo): also score the '
        'two-stage probe that decodes A and B linearly from the features '
        'of the modalities that carry them and compares the two')
    parser.add_argument('--max-samples', type=int, default=None,
                        help='at most this many samples per split')
    parser.add_argument('--probe', choices=['ridge', 'logistic'],
                        default='ridge',
                        help='closed-form ridge classifier (default) or '
                        'L-BFGS logistic regression')
    parser.add_argument('--weight-decay', type=float, default=None,
                        help='L2 penalty of the probes on standardised '
                        'features (default: 10 for ridge, 0.01 for '
                        'logistic)')
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--batch-size', type=int, default=None)
    parser.add_argument('--num-workers', type=int, default=None)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy format')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------
# data
# ----------------------------------------------------------------------
def split_loader_cfg(cfg, split: str):
    """The test dataloader (test pipeline, no shuffling, no train-time
    augmentation) over ``split``'s dataset (its annotation file, split name,
    data root, ...)."""
    loader = copy.deepcopy(cfg.test_dataloader)
    if split != 'test':
        source = cfg.get(f'{split}_dataloader')
        if source is None:
            raise ValueError(f'the config has no {split}_dataloader')
        dataset = copy.deepcopy(source.dataset)
        dataset.pipeline = copy.deepcopy(loader.dataset.pipeline)
        for key in ('indices', ):  # subsets are a training choice
            dataset.pop(key, None)
        loader.dataset = dataset
    loader.dataset.test_mode = True
    loader.sampler = dict(type='DefaultSampler', shuffle=False)
    return loader


def load_factors(path: Optional[str], data_root: str) -> Optional[dict]:
    """id -> {factor: value} from a synthetic-benchmark factors.json."""
    if path is None:
        candidate = osp.join(data_root, 'factors.json')
        if not osp.exists(candidate):
            return None
        path = candidate
    with open(path) as f:
        data = json.load(f)
    names = list(data.get('meta', {}).get('factors', {}))
    table = {}
    for record in data['samples']:
        table[record['id']] = {n: int(record[n]) for n in names
                               if n in record}
    return dict(names=names, meta=data.get('meta', {}), table=table)


def sample_id(sample) -> str:
    filename = sample.metainfo.get('filename', None)
    if filename is None:
        return str(sample.metainfo.get('sample_idx'))
    return osp.splitext(osp.basename(str(filename)))[0]


def per_sample(x: torch.Tensor, views: int) -> torch.Tensor:
    """(B*V, ...) -> (B, ...) averaged over views."""
    return x.view(-1, views, *x.shape[1:]).float().mean(1)


@torch.no_grad()
def collect(model, loader, max_samples: Optional[int]) -> dict:
    """Per-sample features of one split."""
    feats: Dict[str, List[torch.Tensor]] = defaultdict(list)
    ids, labels = [], []
    budgets: Dict[str, dict] = {}
    modalities = model.modalities
    seen = 0
    for data_batch in loader:
        data = model.data_preprocessor(data_batch, False)
        inputs, samples = data['inputs'], data['data_samples']
        out = model.extract_feat(inputs, samples)
        views = out['num_views']
        intra, fused = out['intra'], out['fused']
        for level in LEVELS:
            if intra is not None:
                shared = intra[level]['shared']
                private = intra[level]['private']
            else:  # no factorisation: the aligned tokens are both
                shared = private = out['levels'][level]
            for m in modalities:
                s, p = shared[m], private[m]
                feats[f'{m}.shared.{level}'].append(
                    per_sample(s.mean(1), views))
                feats[f'{m}.private.{level}'].append(
                    per_sample(p.mean(1), views))
                cos = F.cosine_similarity(s, p, dim=-1).abs().mean(1)
                feats[f'cos_sp.{m}.{level}'].append(per_sample(cos, views))
                if intra is not None:
                    key = f'{level}.{m}'
                    budgets[key] = dict(
                        level=level,
                        modality=m,
                        tokens=int(s.shape[1]),
                        k=float(intra[level]['num_selected'][m].float().mean()),
                        rho=(float(intra[level]['budget_ratio'][m])
                             if m in intra[level]['budget_ratio'] else 1.0))
        if 'feat' in fused:
            feats['h'].append(per_sample(fused['feat'], views))
        for key in ('level_weights', 'private_gates'):
            if key in fused:
                feats[key].append(per_sample(fused[key], views))
        for sample in samples:
            ids.append(sample_id(sample))
            labels.append(int(sample.gt_label.view(-1)[0]))
        seen += len(samples)
        if max_samples is not None and seen >= max_samples:
            break
    result = {k: torch.cat(v)[:max_samples] for k, v in feats.items()}
    return dict(feats=result, ids=ids[:max_samples],
                labels=torch.tensor(labels[:max_samples]), budgets=budgets)


# ----------------------------------------------------------------------
# probes
# ----------------------------------------------------------------------
def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int,
              weight_decay: Optional[float] = None, kind: str = 'ridge',
              steps: int = 100) -> tuple:
    """A linear probe on standardised features.

    ``ridge``: closed-form ridge regression on ±1 one-hot targets (a ridge
    classifier), ``(ZᵀZ + λI)⁻¹ Zᵀ Y`` with ``λ = weight_decay``.
    ``logistic``: multinomial logistic regression with an L2 penalty
    ``weight_decay / 2 · ‖W‖²``, full-batch L-BFGS (slower).
    ``weight_decay`` defaults to 10 (ridge) or 0.01 (logistic).

    Returns:
        tuple: (mean, std, weight, bias) to apply with :func:`predict`.
    """
    if weight_decay is None:
        weight_decay = DEFAULT_DECAY[kind]
    x = x.double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    if kind == 'ridge':
        targets_ = -torch.ones(len(y), num_classes, dtype=torch.float64)
        targets_[torch.arange(len(y)), y] = 1.0
        bias = targets_.mean(0)
        eye = torch.eye(z.shape[1], dtype=torch.float64)
        weight = torch.linalg.solve(z.T @ z + weight_decay * eye,
                                    z.T @ (targets_ - bias))
        return mean, std, weight, bias
    if kind != 'logistic':  # pragma: no cover  (argparse checks)
        raise ValueError(f'unknown probe {kind!r}: ridge or logistic')
    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64,
                         requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=steps,
                            line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + \
            weight_decay * weight.pow(2).sum() / 2
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean, std, weight.detach(), bias.detach()


def predict(probe: tuple, x: torch.Tensor) -> torch.Tensor:
    mean, std, weight, bias = probe
    return (((x.double() - mean) / std) @ weight + bias).argmax(1)


def feature_sets(feats: Dict[str, torch.Tensor],
                 modalities: Sequence[str]) -> Dict[str, torch.Tensor]:
    sets = {}
    for m in modalities:
        for kind in ('shared', 'private'):
            for level in LEVELS:
                sets[f'{m}.{kind}.{level}'] = feats[f'{m}.{kind}.{level}']
            sets[f'{m}.{kind}.all'] = torch.cat(
                [feats[f'{m}.{kind}.{level}'] for level in LEVELS], 1)
    if 'h' in feats:
        sets['h'] = feats['h']
    return sets


def targets(data: dict, factors: Optional[dict]) -> Dict[str, torch.Tensor]:
    out = {'label': data['labels']}
    if factors is not None:
        missing = [i for i in data['ids'] if i not in factors['table']]
        if missing:
            raise KeyError(f'{len(missing)} samples (e.g. {missing[0]!r}) '
                           'are not in factors.json; pass --factors')
        for name in factors['names']:
            out[name] = torch.tensor(
                [factors['table'][i][name] for i in data['ids']])
    return out


def run_probes(fit: dict, ev: dict, modalities: Sequence[str],
               factors: Optional[dict], weight_decay: Optional[float],
               kind: str = 'ridge') -> dict:
    fit_sets = feature_sets(fit['feats'], modalities)
    ev_sets = feature_sets(ev['feats'], modalities)
    fit_t, ev_t = targets(fit, factors), targets(ev, factors)
    results: Dict[str, Dict[str, float]] = {}
    for fname, x in fit_sets.items():
        results[fname] = {}
        for tname, y in fit_t.items():
            num_classes = int(max(y.max(), ev_t[tname].max())) + 1
            probe = fit_probe(x, y, num_classes, weight_decay, kind)
            pred = predict(probe, ev_sets[fname])
            results[fname][tname] = float(
                (pred == ev_t[tname]).double().mean())
    chance = {
        t: float(torch.bincount(y).max()) / len(y)
        for t, y in ev_t.items()
    }
    if weight_decay is None:
        weight_decay = DEFAULT_DECAY[kind]
    return dict(kind=kind, weight_decay=weight_decay, accuracy=results,
                majority_baseline=chance, targets=list(fit_t),
                feature_sets=list(fit_sets))


def fit_mlp_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                  hidden: int = 64, steps: int = 2000,
                  weight_decay: float = 1e-3) -> nn.Module:
    """A one-hidden-layer MLP probe on standardised features.

    A linear probe cannot read a relation such as ``a == b`` (an XOR of
    two bits) even from features that hold both bits; this probe can, so it
    tells "the features do not hold the relation's ingredients in a usable
    form" apart from "the model did not combine them". Adam, batch 32,
    seeded, so the same features give the same probe.

    Returns:
        nn.Module: Standardisation and the MLP, mapping (N, C) features
        to (N, num_classes) logits.
    """
    generator = torch.Generator().manual_seed(0)
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    with torch.random.fork_rng():  # seeded init, global RNG untouched
        torch.manual_seed(0)
        mlp = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(),
                            nn.Linear(hidden, num_classes))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3,
                           weight_decay=weight_decay)
    z = (x - mean) / std
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, len(z), (32, ), generator=generator)
            loss = F.cross_entropy(mlp(z[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return nn.Sequential(Standardise(mean, std), mlp.eval())


class Standardise(nn.Module):
    """``(x - mean) / std`` with fixed statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer('mean', mean)
        self.register_buffer('std', std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def relation_probes(fit: dict, ev: dict, modalities: Sequence[str],
                    factors: Optional[dict]) -> dict:
    """MLP probes of every cross-modal relation (a factor no single
    modality carries) from all modalities' pooled features together.

    Returns:
        dict: relation -> feature set -> accuracy on the evaluation split;
        the sets are every modality's ``private.all`` together,
        ``shared.all`` together, both, and ``h``. Empty without relations.
    """
    if factors is None:
        return {}
    relations = [name for name, streams in planted_in(
        factors, modalities).items() if not streams]
    fit_sets = feature_sets(fit['feats'], modalities)
    ev_sets = feature_sets(ev['feats'], modalities)
    joint = {f'all.{kind}': [f'{m}.{kind}.all' for m in modalities]
             for kind in ('private', 'shared')}
    joint['all.shared+private'] = joint['all.shared'] + joint['all.private']
    if 'h' in fit_sets:
        joint['h'] = ['h']
    fit_t, ev_t = targets(fit, factors), targets(ev, factors)
    out: Dict[str, Dict[str, float]] = {}
    for name in relations:
        out[name] = {}
        num_classes = int(max(fit_t[name].max(), ev_t[name].max())) + 1
        for jname, sets in joint.items():
            probe = fit_mlp_probe(torch.cat([fit_sets[s] for s in sets], 1),
                                  fit_t[name], num_classes)
            with torch.no_grad():
                pred = probe(torch.cat([ev_sets[s] for s in sets],
                                       1)).argmax(1)
            out[name][jname] = float((pred == ev_t[name]).float().mean())
    return out


def parse_relation(text: str) -> Tuple[str, str, str]:
    """``'sync=a==b'`` -> ``('sync', 'a', 'b')``."""
    name, _, rule = text.partition('=')
    first, sep, second = rule.partition('==')
    if not (name and first and second and sep):
        raise ValueError(f'--relation {text!r}: expected NAME=A==B')
    return name, first, second


def two_stage_probes(fit: dict, ev: dict, modalities: Sequence[str],
                     factors: Optional[dict], relations: Sequence[str],
                     weight_decay: Optional[float] = None,
                     kind: str = 'ridge') -> dict:
    """Score each relation ``NAME = [A == B]`` by decoding A and B with
    linear probes on the pooled private and shared features of the
    modalities that carry them, then comparing the two predictions.

    It is what a fusion that first read each ingredient and then compared
    them would reach with these features: an upper bound on what the
    features make available, beside the MLP probe, which has to find the
    comparison from the relation's labels alone.

    Returns:
        dict: NAME -> ``accuracy``, ``inputs`` (A and B, each with the
        feature set used and its own accuracy).
    """
    if factors is None or not relations:
        return {}
    fit_sets = feature_sets(fit['feats'], modalities)
    ev_sets = feature_sets(ev['feats'], modalities)
    fit_t, ev_t = targets(fit, factors), targets(ev, factors)
    carriers = planted_in(factors, modalities)
    out = {}
    for text in relations:
        name, *inputs = parse_relation(text)
        unknown = [f for f in (name, *inputs) if f not in fit_t]
        if unknown:
            raise KeyError(f'--relation {text!r}: no factor {unknown[0]!r} '
                           f'in factors.json ({sorted(fit_t)})')
        decoded, info = [], {}
        for factor in inputs:
            sets = [f'{m}.{kind}.all' for m in carriers[factor]
                    for kind in ('private', 'shared')]
            if not sets:
                raise ValueError(f'--relation {text!r}: {factor!r} is not '
                                 'planted in any single modality')
            x_fit = torch.cat([fit_sets[f] for f in sets], 1)
            y = fit_t[factor]
            probe = fit_probe(x_fit, y, int(y.max()) + 1, weight_decay, kind)
            pred = predict(probe, torch.cat([ev_sets[f] for f in sets], 1))
            decoded.append(pred)
            info[factor] = dict(features=' + '.join(sets), accuracy=float(
                (pred == ev_t[factor]).double().mean()))
        same = (decoded[0] == decoded[1]).long()
        out[name] = dict(accuracy=float((same == ev_t[name]).double().mean()),
                         inputs=info)
    return out


def planted_in(factors: dict, modalities: Sequence[str]) -> Dict[str,
                                                                  list]:
    """The model modalities that carry each factor.

    Uses the generator's ``meta['visible']`` (modality -> factors it
    renders) when present, else the factor's ``modality`` field through
    ``STREAMS``. A factor no modality carries on its own (``relation``)
    gets an empty list.

    Args:
        factors (dict): From :func:`load_factors`.
        modalities (Sequence[str]): The model's modalities.

    Returns:
        dict: factor name -> list of modalities.
    """
    visible = factors['meta'].get('visible')
    info = factors['meta'].get('factors', {})
    out = {}
    for name in factors['names']:
        if visible is not None:
            out[name] = [m for m in modalities if name in visible.get(m, ())]
        else:
            kind = info.get(name, {}).get('modality')
            out[name] = [m for m in STREAMS.get(kind, ()) if m in modalities]
    return out


def leakage(probes: dict, factors: Optional[dict],
            modalities: Sequence[str]) -> List[dict]:
    """Check the planted factors against the leakage targets.

    Args:
        probes (dict): From :func:`run_probes`.
        factors (dict, optional): From :func:`load_factors`; None gives [].
        modalities (Sequence[str]): The model's modalities.

    Returns:
        list[dict]: One row per factor: ``factor``, ``planted`` (text),
        ``chance``, ``accuracy`` (feature set -> accuracy for each
        modality's ``shared.all`` and ``private.all`` and ``h``), ``check``
        (the target, text), ``measured`` (the accuracy the target was
        checked on: the highest of the other modalities' shared features,
        or h's; None when no target applies) and ``ok`` (bool, None when no
        target applies).
    """
    if factors is None:
        return []
    acc = probes['accuracy']
    fsets = [f'{m}.{kind}.all' for m in modalities
             for kind in ('shared', 'private')] + (['h'] if 'h' in acc else
                                                   [])
    rows = []
    for name, streams in planted_in(factors, modalities).items():
        chance = probes['majority_baseline'][name]
        row = dict(factor=name, chance=chance,
                   accuracy={f: acc[f][name] for f in fsets},
                   planted=' + '.join(streams) or 'relation', check='',
                   measured=None, ok=None)
        if len(streams) == 1 and len(modalities) > 1:
            others = [m for m in modalities if m != streams[0]]
            row['measured'] = max(acc[f'{m}.shared.all'][name]
                                  for m in others)
            row['check'] = (f"{'/'.join(others)}.shared <= chance + "
                            f'{100 * LEAK_MARGIN:.0f}')
            row['ok'] = row['measured'] <= chance + LEAK_MARGIN
        elif not streams and 'h' in acc:
            row['measured'] = acc['h'][name]
            row['check'] = f'h >= {100 * RELATION_TARGET:.0f}'
            row['ok'] = row['measured'] >= RELATION_TARGET
        rows.append(row)
    return rows


# ----------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------
def similarity(feats: Dict[str, torch.Tensor],
               modalities: Sequence[str]) -> dict:
    out = dict(shared_private_abs_cos={}, cross_modal_shared_cos={},
               cross_modal_private_cos={})
    for level in LEVELS:
        out['shared_private_abs_cos'][level] = {
            m: float(feats[f'cos_sp.{m}.{level}'].mean())
            for m in modalities
        }
        pairs = [(a, b) for i, a in enumerate(modalities)
                 for b in modalities[i + 1:]]
        for kind, key in (('shared', 'cross_modal_shared_cos'),
                          ('private', 'cross_modal_private_cos')):
            out[key][level] = {
                f'{a}-{b}': float(
                    F.cosine_similarity(feats[f'{a}.{kind}.{level}'],
                                        feats[f'{b}.{kind}.{level}'],
                                        dim=-1).mean())
                for a, b in pairs
            }
    return out


def per_class(data: dict, modalities: Sequence[str],
              classes: Optional[Sequence[str]]) -> dict:
    labels = data['labels']
    out = {}
    for c in sorted(set(labels.tolist())):
        sel = labels == c
        name = classes[c] if classes and c < len(classes) else str(c)
        entry = dict(count=int(sel.sum()))
        if 'level_weights' in data['feats']:
            entry['level_weights'] = dict(
                zip(LEVELS, data['feats']['level_weights'][sel].mean(
                    0).tolist()))
        if 'private_gates' in data['feats']:
            gates = data['feats']['private_gates'][sel].mean(0)
            entry['private_gates'] = {
                m: dict(zip(LEVELS, gates[i].tolist()))
                for i, m in enumerate(modalities)
            }
        out[name] = entry
    return out


# ----------------------------------------------------------------------
# report
# ----------------------------------------------------------------------
def report(summary: dict) -> str:
    probes = summary['probes']
    targets_ = probes['targets']
    rows = []
    for fname in probes['feature_sets']:
        rows.append([fname] + [
            f"{100 * probes['accuracy'][fname][t]:.1f}" for t in targets_
        ])
    rows.append(['(majority class)'] + [
        f"{100 * probes['majority_baseline'][t]:.1f}" for t in targets_
    ])
    leak_parts = []
    if summary.get('leakage'):
        leak_parts = [
            'Leakage: each planted factor from pooled shared / private / '
            'fused features (%), against chance\n',
            leakage_table(summary['leakage']), '']
    if summary.get('relation_probes'):
        leak_parts += [
            'Cross-modal relations from all modalities\' pooled features '
            'together, MLP probes (%; one hidden layer of 64)\n',
            relation_table(summary['relation_probes'],
                           probes['majority_baseline'],
                           summary.get('two_stage_probes')), '']
    parts = leak_parts + [
        f"Linear-probe accuracy (%) on the {summary['eval_split']} split "
        f"({summary['num_eval']} samples; {probes['kind']} probes, "
        f"λ={probes['weight_decay']:g}, fitted on "
        f"{summary['num_fit']} {summary['fit_split']} samples)\n",
        au.markdown_table(['features'] + targets_, rows), ''
    ]
    sim = summary['similarity']
    mods = summary['modalities']
    rows = []
    for level in LEVELS:
        row = [level]
        row += [f"{sim['shared_private_abs_cos'][level][m]:.3f}" for m in mods]
        row += [f'{v:.3f}' for v in sim['cross_modal_shared_cos'][level]
                .values()]
        row += [f'{v:.3f}' for v in sim['cross_modal_private_cos'][level]
                .values()]
        rows.append(row)
    pairs = list(sim['cross_modal_shared_cos'][LEVELS[0]])
    header = (['level'] + [f'mean abs cos(Ŝ_{m}, P_{m}) per token'
                           for m in mods] +
              [f'cos(pool Ŝ) {p}' for p in pairs] +
              [f'cos(pool P) {p}' for p in pairs])
    parts += ['Shared / private similarity\n', au.markdown_table(header, rows),
              '']
    if summary['budgets']:
        rows = [[b['level'], b['modality'], b['tokens'], b['k'],
                 f"{b['rho']:.3f}", f"{b['k'] / b['tokens']:.2f}"]
                for b in summary['budgets'].values()]
        parts += ['Token budgets (evaluation, hard top-k)\n',
                  au.markdown_table(['level', 'modality', 'tokens N', 'k',
                                     'ρ', 'k/N'], rows), '']
    pc = summary['per_class']
    if pc and 'level_weights' in next(iter(pc.values())):
        rows = []
        for name, e in pc.items():
            row = [name, e['count']]
            row += [f"{e['level_weights'][l]:.3f}" for l in LEVELS]
            if 'private_gates' in e:
                row += [f"{e['private_gates'][m][l]:.3f}" for m in mods
                        for l in LEVELS]
            rows.append(row)
        header = ['class', 'n'] + [f'α {l}' for l in LEVELS]
        if 'private_gates' in next(iter(pc.values())):
            header += [f'γ {m}.{l}' for m in mods for l in LEVELS]
        parts += ['InterCAD level weights α and private gates γ per class '
                  '(mean)\n', au.markdown_table(header, rows), '']
    return '\n'.join(parts)


def plots(summary: dict, out_dir: str) -> None:
    plt = au.use_agg()
    probes = summary['probes']
    names, targets_ = probes['feature_sets'], probes['targets']
    grid = [[probes['accuracy'][f][t] * 100 for t in targets_] for f in names]
    fig, ax = plt.subplots(
        figsize=(1.1 * len(targets_) + 3, 0.32 * len(names) + 1.5))
    im = ax.imshow(grid, cmap='viridis', vmin=0, vmax=100, aspect='auto')
    ax.set_xticks(range(len(targets_)))
    ax.set_xticklabels(targets_, rotation=30, ha='right')
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, f'{v:.0f}', ha='center', va='center', fontsize=6,
                    color='w' if v < 60 else 'k')
    ax.set_title('linear-probe accuracy (%)')
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, 'representation_probes.png'), dpi=120)
    plt.close(fig)

    pc = summary['per_class']
    mods = summary['modalities']
    if pc and 'level_weights' in next(iter(pc.values())):
        classes = list(pc)
        alpha = [[pc[c]['level_weights'][l] for l in LEVELS] for c in classes]
        has_gates = 'private_gates' in pc[classes[0]]
        fig, axes = plt.subplots(1, 2 if has_gates else 1,
                                 figsize=(10, 0.35 * len(classes) + 2),
                                 squeeze=False)
        ax = axes[0][0]
        im = ax.imshow(alpha, cmap='magma', vmin=0, vmax=1, aspect='auto')
        ax.set_xticks(range(len(LEVELS)))
        ax.set_xticklabels(LEVELS)
        ax.set_yticks(range(len(classes)))
        ax.set_yticklabels(classes, fontsize=7)
        ax.set_title('level weights α per class')
        fig.colorbar(im, ax=ax)
        if has_gates:
            cols = [f'{m}.{l}' for m in mods for l in LEVELS]
            gam = [[pc[c]['private_gates'][m][l] for m in mods
                    for l in LEVELS] for c in classes]
            ax = axes[0][1]
            im = ax.imshow(gam, cmap='magma', vmin=0, vmax=1, aspect='auto')
            ax.set_xticks(range(len(cols)))
            ax.set_xticklabels(cols, rotation=35, ha='right', fontsize=7)
            ax.set_yticks(range(len(classes)))
            ax.set_yticklabels(classes, fontsize=7)
            ax.set_title('private gates γ per class')
            fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(osp.join(out_dir, 'representation_gates.png'), dpi=120)
        plt.close(fig)

    sim = summary['similarity']
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    width = 0.8 / (len(mods) + 2)
    xs = range(len(LEVELS))
    series = [(f'|cos(Ŝ,P)| {m}',
               [sim['shared_private_abs_cos'][l][m] for l in LEVELS])
              for m in mods]
    for pair in sim['cross_modal_shared_cos'][LEVELS[0]]:
        series.append((f'cos pool Ŝ {pair}',
                       [sim['cross_modal_shared_cos'][l][pair]
                        for l in LEVELS]))
        series.append((f'cos pool P {pair}',
                       [sim['cross_modal_private_cos'][l][pair]
                        for l in LEVELS]))
    width = 0.8 / len(series)
    for i, (label, ys) in enumerate(series):
        ax.bar([x + i * width for x in xs], ys, width, label=label)
    ax.set_xticks([x + 0.4 - width / 2 for x in xs])
    ax.set_xticklabels(LEVELS)
    ax.set_title('shared / private similarity')
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, axis='y')
    ax = axes[1]
    budgets = list(summary['budgets'].values())
    if budgets:
        labels = [f"{b['level']}\n{b['modality']}" for b in budgets]
        ax.bar(range(len(budgets)), [b['tokens'] for b in budgets],
               color='lightgray', label='tokens N')
        ax.bar(range(len(budgets)), [b['k'] for b in budgets],
               color='tab:blue', label='keys offered k')
        ax.set_xticks(range(len(budgets)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.legend(fontsize=7)
        ax.set_title('token budget per level (evaluation)')
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, 'representation_similarity.png'), dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = au.load_config(args.config, args.cfg_options, args.data_root,
                         args.batch_size, args.num_workers)
    model = au.build_model(cfg, args.checkpoint)
    model.test_cfg['missing_modalities'] = ()
    modalities = tuple(model.modalities)
    data = {}
    for split in dict.fromkeys([args.fit_split, args.eval_split]):
        loader = au.Runner.build_dataloader(
            split_loader_cfg(cfg, split), seed=0)
        print(f'[representation] features of the {split} split '
              f'({len(loader.dataset)} samples)', flush=True)
        data[split] = collect(model, loader, args.max_samples)
        classes = loader.dataset.metainfo.get('classes', None)
    fit, ev = data[args.fit_split], data[args.eval_split]
    factors = load_factors(args.factors, cfg.test_dataloader.dataset.get(
        'data_root', ''))
    probes = run_probes(fit, ev, modalities, factors, args.weight_decay,
                        args.probe)
    summary = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        modalities=list(modalities),
        fit_split=args.fit_split,
        eval_split=args.eval_split,
        num_fit=len(fit['ids']),
        num_eval=len(ev['ids']),
        factors=(None if factors is None else dict(
            names=factors['names'],
            info=factors['meta'].get('factors', {}))),
        probes=probes,
        leakage=leakage(probes, factors, modalities),
        relation_probes=relation_probes(fit, ev, modalities, factors),
        two_stage_probes=two_stage_probes(fit, ev, modalities, factors,
                                          args.relation, args.weight_decay,
                                          args.probe),
        similarity=similarity(ev['feats'], modalities),
        budgets=ev['budgets'],
        per_class=per_class(ev, modalities,
                            list(classes) if classes else None))
    os.makedirs(args.out_dir, exist_ok=True)
    au.write_json(osp.join(args.out_dir, 'representation.json'), summary)
    text = report(summary)
    with open(osp.join(args.out_dir, 'representation.md'), 'w') as f:
        f.write(text + '\n')
    plots(summary, args.out_dir)
    print(text)
    return summary


if __name__ == '__main__':
    main()
