"""Count, per epoch, the samples whose modalities were missing and
zero-filled, so a tolerant pipeline never hides how much data it patched."""
import itertools
from collections import Counter
from typing import List, Optional, Sequence, Tuple

from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook

from clcr_mm.registry import HOOKS

MODES = ('train', 'val', 'test')
# One record per sample: (missing modalities, modalities zero-filled in
# place), each a tuple of names.
Record = Tuple[Tuple[str, ...], Tuple[str, ...]]
_COMPLETE: Record = ((), ())  # shared by every complete sample (8 bytes)


@HOOKS.register_module()
class ModalityMaskCounterHook(Hook):
    """Log how many samples lacked each modality in every train/val/test
    epoch.

    Transforms configured to tolerate a missing modality
    (``LoadAudio(on_missing='zero')``, ``LoadRGBFlowFrames(on_missing=
    'zero')``) and datasets that know a modality is empty
    (``MMSAFeatureDataset`` for a zero valid length) zero-fill it and set
    ``data_sample.modality_mask[name] = False``. This hook reads those masks
    from every batch. In validation and testing it also counts the
    modalities the model itself removes from every sample,
    ``model.test_cfg.missing_modalities`` (``tools/test.py --missing
    audio``). Training-time ``modality_dropout`` is augmentation and is not
    counted. At the end of each epoch the hook:

    - writes one line to ``runner.logger``, headed as mmengine heads its
      own epoch lines, e.g. ``Epoch(train) [3]: modality missing
      (zero-filled) in 900 samples: rgb=0, audio=2``, ``Epoch(val) [3]:
      ...`` and ``Epoch(test): ...`` (``Iter(...)`` when the log
      processor is iteration-based);
    - updates the message hub scalars ``val/missing_<modality>`` and
      ``val/num_samples`` (``test/...`` likewise), which then appear in the
      epoch's metric line and in ``scalars.json``; for training the keys
      are ``epoch/train_missing_<modality>`` and ``epoch/train_num_samples``
      (a ``train/`` key would be repeated in every later iteration line),
      and the counts are also added to the visualizer (``scalars.json``,
      as ``train_missing_<modality>`` with the ``epoch``).

    A data sample may also carry ``zero_filled`` (dict modality -> bool)
    for values repaired in place while the modality itself is present
    (e.g. NaN/inf replaced by 0); those are counted as
    ``zero_filled_<modality>`` (reported when non-zero).

    Counts are exact in distributed runs too: per-sample records are
    gathered from all ranks in sampler order and cut to the dataset size,
    as mmengine's metrics do, so the samples mmengine's ``DefaultSampler``
    repeats to even out the ranks are not counted twice. (With
    ``IterBasedTrainLoop`` the training counts cover the whole run.)

    Args:
        modalities (Sequence[str], optional): Modalities always reported
            (with 0 when nothing is missing). Defaults to the model's
            ``modalities`` attribute when it has one; names seen in the
            masks are added.
        log_zero (bool): Also log the line when nothing was missing.
            Defaults to True.
    """

    priority = 'NORMAL'  # before LoggerHook, which writes the val line

    def __init__(self,
                 modalities: Optional[Sequence[str]] = None,
                 log_zero: bool = True) -> None:
        self.modalities = tuple(modalities) if modalities else None
        self.log_zero = log_zero
        self._records = {mode: [] for mode in MODES}

    # ------------------------------------------------------------------
    # counting
    def _count(self, runner, mode: str, data_batch) -> None:
        if not isinstance(data_batch, dict):
            return
        removed = () if mode == 'train' else self._removed_by_model(runner)
        for sample in data_batch.get('data_samples') or []:
            mask = sample.get('modality_mask', None) or {}
            repaired = sample.get('zero_filled', None) or {}
            missing = tuple(n for n, ok in mask.items() if not ok)
            missing += tuple(n for n in removed if n not in missing)
            record = (missing,
                      tuple(n for n, flag in repaired.items() if flag))
            self._records[mode].append(
                record if record != _COMPLETE else _COMPLETE)

    @staticmethod
    def _removed_by_model(runner) -> Tuple[str, ...]:
        """Modalities the model drops from every val/test sample."""
        model = getattr(runner.model, 'module', runner.model)
        test_cfg = getattr(model, 'test_cfg', None) or {}
        return tuple(test_cfg.get('missing_modalities', ()))

    @staticmethod
    def _dataset_size(runner, mode: str) -> Optional[int]:
        """Samples in the epoch's dataset, or None where an epoch is not a
        pass over the dataset (iteration-based training)."""
        from mmengine.runner import EpochBasedTrainLoop
        if mode == 'train' and not isinstance(runner.train_loop,
                                              EpochBasedTrainLoop):
            return None
        loader = getattr(runner, f'{mode}_dataloader')
        try:
            return len(loader.dataset)
        except TypeError:  # an IterableDataset
            return None

    def _gather(self, runner, mode: str) -> List[Record]:
        """All ranks' records in sampler order, without sampler padding.

        ``DefaultSampler`` gives rank r the indices r, r + W, r + 2W, ...
        of its (padded) index list, so interleaving the ranks' records
        restores that list, and cutting it to the dataset size drops the
        padding, exactly as ``mmengine.dist.collect_results`` does for
        metrics.
        """
        records = self._records[mode]
        size = self._dataset_size(runner, mode)
        if get_world_size() > 1:
            parts = all_gather_object(records)
            records = [
                r for group in itertools.zip_longest(*parts)
                for r in group if r is not None
            ]
        return records if size is None else records[:size]

    # ------------------------------------------------------------------
    # reporting
    def _names(self, runner) -> tuple:
        if self.modalities is None:
            model = getattr(runner.model, 'module', runner.model)
            self.modalities = tuple(getattr(model, 'modalities', ()) or ())
        return self.modalities

    @staticmethod
    def _heading(runner, mode: str) -> str:
        """The head mmengine's ``LogProcessor`` gives the epoch's lines:
        ``Epoch(train) [3]``, ``Epoch(val) [3]``, ``Epoch(test)``."""
        if not runner.log_processor.by_epoch:
            return f'Iter({mode}) [{runner.iter}]' if mode == 'train' \
                else f'Iter({mode})'
        if mode == 'test':
            return 'Epoch(test)'
        loop = getattr(runner, '_train_loop', None)
        if loop is None or isinstance(loop, dict):
            return f'Epoch({mode}) [0]'  # a stand-alone val run, as mmengine
        # after_train_epoch runs before the loop increments its epoch.
        epoch = runner.epoch + 1 if mode == 'train' else runner.epoch
        return f'Epoch({mode}) [{epoch}]'

    def _report(self, runner, mode: str) -> None:
        records = self._gather(runner, mode)
        self._records[mode] = []
        missing = Counter(n for names, _ in records for n in names)
        repaired = Counter(n for _, names in records for n in names)
        names = self._names(runner)
        names += tuple(sorted((set(missing) | set(repaired)) - set(names)))
        # 'val/...' and 'test/...' keys join the epoch's metric line (the
        # LoggerHook runs after this hook); train keys must not start with
        # 'train' or every later iteration line would repeat them.
        prefix = 'epoch/train_' if mode == 'train' else f'{mode}/'
        scalars = {f'{prefix}missing_{n}': missing[n] for n in names}
        scalars.update({f'{prefix}zero_filled_{n}': repaired[n]
                        for n in names if repaired[n]})
        scalars[f'{prefix}num_samples'] = len(records)
        for key, value in scalars.items():
            runner.message_hub.update_scalar(key, value)
        if mode == 'train':
            # after_train_epoch runs before the loop increments its epoch.
            runner.visualizer.add_scalars(
                {**{k[len('epoch/'):]: v for k, v in scalars.items()},
                 'epoch': runner.epoch + 1},
                step=runner.iter)
        if not (missing or repaired or self.log_zero):
            return
        parts = ', '.join(f'{n}={missing[n]}' for n in names) or 'none'
        line = (f'{self._heading(runner, mode)}: modality missing '
                f'(zero-filled) in {len(records)} samples: {parts}')
        removed = () if mode == 'train' else self._removed_by_model(runner)
        if removed:
            line += (' (test_cfg.missing_modalities removes '
                     f'{", ".join(removed)})')
        if repaired:
            line += '; values zero-filled in place: ' + ', '.join(
                f'{n}={repaired[n]}' for n in names if repaired[n])
        runner.logger.info(line)

    # ------------------------------------------------------------------
    # hook points
    def before_train_epoch(self, runner) -> None:
        self._records['train'] = []

    def before_val_epoch(self, runner) -> None:
        self._records['val'] = []

    def before_test_epoch(self, runner) -> None:
        self._records['test'] = []

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch=None, outputs=None) -> None:
        self._count(runner, 'train', data_batch)

    def after_val_iter(self, runner, batch_idx: int,
                       data_batch=None, outputs=None) -> None:
        self._count(runner, 'val', data_batch)

    def after_test_iter(self, runner, batch_idx: int,
                        data_batch=None, outputs=None) -> None:
        self._count(runner, 'test', data_batch)

    def after_train_epoch(self, runner) -> None:
        self._report(runner, 'train')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'val')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._report(runner, 'test')
