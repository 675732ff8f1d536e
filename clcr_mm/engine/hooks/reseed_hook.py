"""Reseed every RNG from (seed, epoch, iteration) so that a resumed run
repeats the uninterrupted one bit for bit."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from clcr_mm.registry import HOOKS


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed drawn from ``seed`` and ``keys`` (numpy SeedSequence,
    so nearby keys give unrelated streams)."""
    entropy = [int(seed) % (2**63), *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@HOOKS.register_module()
class ReseedHook(Hook):
    """Make training randomness a function of (seed, epoch, iteration).

    mmengine's checkpoints restore weights, optimizer, schedulers and the
    message hub, but not the state of the random number generators, and
    ``EpochBasedTrainLoop`` resumes at the start of the checkpoint's epoch.
    After ``--resume`` the RNGs therefore continue from a fresh seed, and
    dropout, modality dropout and random augmentation in the main process
    draw different numbers than the uninterrupted run would have.

    This hook seeds Python's ``random``, numpy's global RNG and torch (all
    devices) from ``(runner.seed, epoch)`` before every training epoch and
    from ``(runner.seed, epoch, iter)`` before every training iteration. A
    run resumed from an epoch checkpoint then draws exactly the same
    numbers as the run that was never interrupted. ``runner.seed`` already
    includes the rank offset when ``randomness.diff_rank_seed`` is set.

    Exact for ``EpochBasedTrainLoop`` resumed from an epoch checkpoint (the
    CheckpointHook default). With ``IterBasedTrainLoop``, resumed from an
    iteration checkpoint, the model's own randomness (dropout, modality
    dropout) is reproduced, but random transforms run in the main process
    (``num_workers=0``) while mmengine skips the consumed batches see
    different numbers.

    Not covered: the RNGs of *persistent* dataloader workers (their state
    runs on across epochs and restarts on resume); use
    ``persistent_workers=False`` or augmentation-free pipelines when exact
    resumption matters. Non-persistent workers are reseeded by mmengine's
    ``worker_init_fn`` at every epoch.

    Args:
        per_iter (bool): Also reseed before every iteration. Defaults to
            True (costs microseconds).
    """

    priority = 'VERY_HIGH'

    def __init__(self, per_iter: bool = True) -> None:
        self.per_iter = per_iter

    @staticmethod
    def _seed_all(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # every device, CUDA included

    def before_train_epoch(self, runner) -> None:
        """Reseed from (seed, epoch)."""
        self._seed_all(derived_seed(runner.seed, runner.epoch))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Reseed from (seed, epoch, iter)."""
        if self.per_iter:
            self._seed_all(
                derived_seed(runner.seed, runner.epoch, runner.iter))
