"""mmaction2's ``PackActionInputs`` for several modalities, with a clear
error for a modality the pipeline did not produce."""
from typing import Dict

import numpy as np
import torch
from mmaction.datasets.transforms import PackActionInputs

from clcr_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackMultiModalInputs(PackActionInputs):
    """mmaction2's :class:`~mmaction.datasets.transforms.PackActionInputs`
    that checks ``collect_keys`` first.

    Identical output. When a key of ``collect_keys`` is missing from the
    results (a modality named in the config but produced by no transform),
    mmaction2 raises a bare ``KeyError: 'vision'`` from inside the
    dataloader; this one raises a ``KeyError`` that names the modality,
    ``collect_keys``, the sample and the array keys the pipeline did
    produce.

    Registered under its own name, so ``type='PackActionInputs'`` builds
    mmaction2's class in every scope.
    """

    def transform(self, results: Dict) -> Dict:
        """Check ``collect_keys``, then pack as mmaction2 does.

        Args:
            results (dict): The result dict of the pipeline.

        Returns:
            dict: ``inputs`` and ``data_samples``.
        """
        if self.collect_keys is not None:
            missing = [k for k in self.collect_keys if k not in results]
            if missing:
                where = [str(results[k]) for k in ('sample_id', 'filename',
                                                    'frame_dir')
                         if results.get(k) is not None]
                if not where and 'sample_idx' in results:
                    where = [f"sample_idx {results['sample_idx']}"]
                where = ' of '.join(where) or 'unknown'

                produced = sorted(
                    k for k, v in results.items()
                    if isinstance(v, (np.ndarray, torch.Tensor)))
                raise KeyError(
                    f'{type(self).__name__}(collect_keys='
                    f'{tuple(self.collect_keys)}'
                    f'): the pipeline produced no {missing} for sample '
                    f'{where} (its array keys: {produced}). Add a '
                    f'transform that writes {missing[0]!r}, or remove it '
                    'from collect_keys and from the model\'s modalities.')
        return super().transform(results)
