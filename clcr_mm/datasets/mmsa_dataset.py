"""CMU-MOSI / CMU-MOSEI from the MMSA feature pickles.

The MMSA toolkit (github.com/thuiar/MMSA) publishes the de-facto standard
feature files ``aligned_50.pkl`` and ``unaligned_50.pkl``. Each is a pickled
dict ``{'train': split, 'valid': split, 'test': split}`` where a split maps

- ``text``: (N, 50, 768) BERT features;
- ``text_bert``: (N, 3, 50) token ids / attention mask / segment ids;
- ``audio``: (N, La, 5) COVAREP (MOSI) or (N, La, 74) (MOSEI);
- ``vision``: (N, Lv, 20) Facet (MOSI) or (N, Lv, 35) (MOSEI);
- ``audio_lengths`` / ``vision_lengths``: (N,) valid steps (valid steps
  first, zero padding after them);
- ``regression_labels``: (N,) sentiment in [-3, 3];
- ``classification_labels``, ``annotations``, ``id``
  (``'video$_$clip'``), ``raw_text``.

``La = Lv = 50`` in the aligned files; the unaligned ones are longer (MOSI
audio 375 / vision 500, MOSEI 500 / 500).
"""
import io
import logging
import os
import os.path as osp
import pickle
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from clcr_mm.registry import DATASETS

SPLITS = ('train', 'valid', 'test')
NONFINITE_MODES = ('error', 'zero')
DEFAULT_MODALITIES = dict(text='text', audio='audio', vision='vision')
# Keys stored as (N, C, L) instead of (N, L, D): MMSA's ``text_bert`` stacks
# token ids, mask and segment ids along axis 1. We swap the last two axes so
# that every modality is time-major, like the feature keys.
CHANNEL_FIRST_KEYS = ('text_bert', )

# realpath -> ((mtime_ns, size), loaded dict). The MOSEI pickles hold several
# GB, and train/val/test datasets all read the same file, so each process
# loads a file once. Workers forked after the datasets are built share the
# arrays copy-on-write: they are a few large numpy buffers, not millions of
# Python objects whose refcounts would dirty every page.
_PICKLE_CACHE: Dict[str, Tuple[Tuple[int, int], dict]] = {}

# The only globals an MMSA pickle needs: numpy's array / scalar
# reconstruction (numpy 1 and 2 module paths), and ``_codecs.encode``, with
# which protocol-2 pickles rebuild the bytes of array buffers. Everything
# else (dicts, lists, str, numbers) is built by pickle opcodes without
# calling anything, so an allow-list of callables suffices.
_MMSA_PICKLE_GLOBALS = frozenset(
    [(f'numpy.{core}.multiarray', name)
     for core in ('core', '_core') for name in ('_reconstruct', 'scalar')] +
    [(f'numpy.{core}.numeric', '_frombuffer') for core in ('core', '_core')] +
    [('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')])


class _MMSAUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside ``_MMSA_PICKLE_GLOBALS``.

    A pickle is a program: ``pickle.load`` on a downloaded file would run
    whatever callable it names (``os.system``, ``builtins.eval``...). The
    MMSA format needs only numpy arrays (numeric, str or object dtype, whose
    items are unpickled by this same class) inside dicts and lists.
    """

    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _MMSA_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f'{self.path}: refusing to load {module}.{name}; an MMSA '
                'feature pickle holds only dicts, lists, strings, numbers '
                'and numpy arrays, so this file is not one (or was crafted '
                'to run code).')
        return super().find_class(module, name)


def restricted_pickle_load(path: str) -> Any:
    """Unpickle ``path`` admitting only the MMSA format's building blocks.

    Args:
        path (str): Pickle file.

    Returns:
        Any: The unpickled object.

    Raises:
        pickle.UnpicklingError: The file names a callable outside numpy's
            array reconstruction (the message names the file and the
            callable), or is not a valid pickle.
    """
    with open(path, 'rb') as f:
        # one read, then parse from memory: faster than many small reads
        return _MMSAUnpickler(io.BytesIO(f.read()), path).load()


def load_mmsa_pickle(path: str) -> dict:
    """Load an MMSA feature pickle, once per process.

    Args:
        path (str): Path to ``aligned_50.pkl`` / ``unaligned_50.pkl``.

    The file is read with a restricted unpickler (see
    :func:`restricted_pickle_load`), so a crafted pickle cannot run code.

    Returns:
        dict: The unpickled ``{split: {key: value}}`` dict. It is shared
        between callers, so treat it as read-only (the dataset only replaces
        feature arrays by their float32 version, which every reader wants).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file cannot be unpickled, names a forbidden
            callable, or is not a dict.
    """
    real = osp.realpath(path)
    if not osp.isfile(real):
        raise FileNotFoundError(f'MMSA feature pickle not found: {path}')
    stat = os.stat(real)
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _PICKLE_CACHE.get(real)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = restricted_pickle_load(real)
    except Exception as e:  # corrupt, truncated or not a pickle at all
        raise ValueError(
            f'Cannot unpickle MMSA feature file {path}: '
            f'{type(e).__name__}: {e}') from e
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a dict with keys {SPLITS}, got '
                         f'{type(data).__name__}.')
    _PICKLE_CACHE[real] = (stamp, data)
    return data


def clear_mmsa_cache() -> None:
    """Drop every cached pickle (frees memory once datasets are gone)."""
    _PICKLE_CACHE.clear()


def count_nonfinite(array: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Count NaN / +-inf values per sample, without a full-size temporary.

    Args:
        array (np.ndarray): Features of shape (N, ...).
        chunk (int): Samples per block; bounds the boolean temporary to
            ``chunk`` samples instead of the whole (possibly GB-sized) array.

    Returns:
        np.ndarray: int64 array of shape (N,) with the count per sample.
    """
    counts = np.zeros(len(array), dtype=np.int64)
    for start in range(0, len(array), chunk):
        block = array[start:start + chunk]
        bad = ~np.isfinite(block)
        counts[start:start + chunk] = bad.reshape(len(block), -1).sum(1)
    return counts


class _SharedArrays:
    """Holder of per-modality feature arrays that is never deep-copied.

    ``BaseDataset.get_subset`` deep-copies every attribute; the features are
    read-only and shared, so copies reuse the same buffers.
    """

    def __init__(self, features: Dict[str, np.ndarray],
                 bad_rows: Dict[str, frozenset]) -> None:
        self.features = features
        self.bad_rows = bad_rows

    def __deepcopy__(self, memo: dict) -> '_SharedArrays':
        return self


@DATASETS.register_module()
class MMSAFeatureDataset(BaseDataset):
    """CMU-MOSI / CMU-MOSEI sentiment regression on MMSA feature pickles.

    Features stay in the per-process pickle cache as float32 numpy arrays;
    ``data_list`` only holds small per-sample records (row, id, label,
    lengths), so serialisation and worker start-up stay cheap.

    Each sample handed to the pipeline holds:

    - ``results[name]``: float32 array (L_raw, D) for every modality
      ``name`` (use :class:`PadSequenceFeatures` to get the contract's
      fixed ``(1, L, D)``);
    - ``label``: float32 tensor of shape (1,). A tensor rather than a numpy
      array because mmaction's ``format_label`` casts numpy labels to
      ``long``, which would truncate sentiment scores;
    - ``modality_mask``: dict name -> bool, False when the sample's valid
      length for that modality is 0;
    - ``valid_lengths``: dict name -> int, valid (unpadded) steps, which
      the model turns into token masks (pack it with ``PackActionInputs(
      meta_keys=(..., 'valid_lengths'))``);
    - ``sample_id`` (the MMSA ``id``), ``raw_text``, ``split``,
      ``filename`` (the pickle path, for error messages).

    Args:
        ann_file (str): Pickle path, joined to ``data_root`` when relative,
            e.g. ``'aligned_50.pkl'``.
        split (str): ``'train'``, ``'valid'`` or ``'test'``.
            Defaults to ``'train'``.
        modalities (dict[str, str], optional): Modality name -> pickle key,
            e.g. ``dict(text='text', audio='audio', vision='vision')``
            (the default). ``'text_bert'`` (N, 3, L) is served as (L, 3).
        length_keys (dict[str, str | None], optional): Modality name ->
            pickle key of its (N,) valid lengths, or None for "all steps
            valid". Names left out are resolved automatically:
            ``'<key>_lengths'`` if present (``audio_lengths``,
            ``vision_lengths``); for ``text`` / ``text_bert`` the sum of the
            ``text_bert`` attention mask if present; otherwise all steps.
        label_key (str): Pickle key of the labels.
            Defaults to ``'regression_labels'``.
        feat_dims (dict[str, int], optional): Expected feature width D per
            modality; a mismatch (e.g. a MOSEI pickle in a MOSI config)
            raises a ValueError at build time. Defaults to None (no check).
        nonfinite (str | dict[str, str]): What to do with NaN / inf in
            features, for all modalities or per modality: ``'error'`` raises
            a ValueError naming the pickle, split, sample id and key;
            ``'zero'`` replaces them with 0 at load time and logs the count.
            Defaults to ``'error'``.
        **kwargs: Passed to :class:`mmengine.dataset.BaseDataset`
            (``data_root``, ``pipeline``, ``test_mode``, ``indices``...).
    """

    METAINFO = dict(task='regression', label_range=(-3., 3.))

    def __init__(self,
                 ann_file: str,
                 split: str = 'train',
                 modalities: Optional[Mapping[str, str]] = None,
                 length_keys: Optional[Mapping[str, Optional[str]]] = None,
                 label_key: str = 'regression_labels',
                 feat_dims: Optional[Mapping[str, int]] = None,
                 nonfinite: Union[str, Mapping[str, str]] = 'error',
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(
                f'split must be one of {SPLITS}, got {split!r}.')
        self.split = split
        self.modalities = dict(
            DEFAULT_MODALITIES if modalities is None else modalities)
        if not self.modalities:
            raise ValueError('modalities must name at least one modality.')
        self.length_keys = dict(length_keys or {})
        self.label_key = label_key
        self.feat_dims = dict(feat_dims or {})
        for table, what in ((self.length_keys, 'length_keys'),
                            (self.feat_dims, 'feat_dims')):
            unknown = set(table) - set(self.modalities)
            if unknown:
                raise ValueError(f'{what} names {sorted(unknown)}, which are '
                                 f'not in modalities {self.modalities}.')
        if isinstance(nonfinite, str):
            nonfinite = {name: nonfinite for name in self.modalities}
        self.nonfinite = {
            name: nonfinite.get(name, 'error')
            for name in self.modalities
        }
        for name, mode in self.nonfinite.items():
            if mode not in NONFINITE_MODES:
                raise ValueError(f'nonfinite for {name!r} must be one of '
                                 f'{NONFINITE_MODES}, got {mode!r}.')
        self._store = _SharedArrays({}, {})
        super().__init__(ann_file=ann_file, **kwargs)

    # ------------------------------------------------------------------
    # loading
    def _key(self, split_dict: dict, key: str) -> Any:
        """Fetch ``split_dict[key]`` or raise a KeyError naming file/key."""
        if key not in split_dict:
            raise KeyError(
                f"{self.ann_file}: split '{self.split}' has no key {key!r}; "
                f'available keys: {sorted(split_dict)}.')
        return split_dict[key]

    def _features(self, split_dict: dict, name: str, key: str,
                  num: int) -> np.ndarray:
        """Return the (N, L, D) float32 array of one modality.

        Args:
            split_dict (dict): One split of the cached pickle.
            name (str): Modality name (for messages and ``feat_dims``).
            key (str): Pickle key.
            num (int): Number of samples N (from the labels).

        Returns:
            np.ndarray: float32 array (N, L, D); a view of the cached data.
        """
        arr = self._key(split_dict, key)
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.float32):
            # Convert once and write back into the cached dict, so the other
            # splits' datasets reuse it and the float64 original is freed.
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            split_dict[key] = arr
        if arr.ndim != 3:
            raise ValueError(
                f"{self.ann_file}: split '{self.split}', key {key!r} must be "
                f'(N, L, D), got shape {arr.shape}.')
        if key in CHANNEL_FIRST_KEYS:
            arr = arr.transpose(0, 2, 1)
        if arr.shape[0] != num:
            raise ValueError(
                f"{self.ann_file}: split '{self.split}', key {key!r} has "
                f'{arr.shape[0]} samples but {self.label_key!r} has {num}.')
        want = self.feat_dims.get(name)
        if want is not None and arr.shape[2] != want:
            raise ValueError(
                f"{self.ann_file}: split '{self.split}', key {key!r} "
                f'(modality {name!r}) has feature dim {arr.shape[2]}, '
                f'expected {want}; is this the right pickle for the config?')
        return arr

    def _lengths(self, split_dict: dict, name: str, key: str, num: int,
                 max_len: int) -> np.ndarray:
        """Valid length per sample for one modality, clipped to ``max_len``.

        Returns:
            np.ndarray: int64 array of shape (N,).
        """
        if name in self.length_keys:
            length_key = self.length_keys[name]
        elif f'{key}_lengths' in split_dict:
            length_key = f'{key}_lengths'
        elif key in ('text', 'text_bert') and 'text_bert' in split_dict:
            length_key = 'text_bert'
        else:
            length_key = None
        if length_key is None:
            return np.full(num, max_len, dtype=np.int64)
        raw = self._key(split_dict, length_key)
        if length_key == 'text_bert':
            # Row 1 of MMSA's text_bert is the BERT attention mask.
            lengths = np.asarray(raw)[:, 1].sum(-1)
        else:
            lengths = np.asarray(raw).reshape(-1)
        if lengths.shape[0] != num:
            raise ValueError(
                f"{self.ann_file}: split '{self.split}', key "
                f'{length_key!r} has {lengths.shape[0]} entries, expected '
                f'{num}.')
        # Some pickles count steps before truncation to L; clip so the
        # lengths always index into the stored array.
        return np.clip(lengths.astype(np.int64), 0, max_len)

    def _check_nonfinite(self, name: str, key: str, arr: np.ndarray,
                         ids: List[str]) -> frozenset:
        """Apply the ``nonfinite`` policy to one modality.

        Returns:
            frozenset: Rows whose non-finite values must be zeroed when the
            sample is read (empty for ``'error'``, which raises instead).
        """
        counts = count_nonfinite(arr)
        bad = np.flatnonzero(counts)
        if bad.size == 0:
            return frozenset()
        if self.nonfinite[name] == 'error':
            first = int(bad[0])
            raise ValueError(
                f"{self.ann_file}: split '{self.split}', sample "
                f'{ids[first]!r} (row {first}), key {key!r} (modality '
                f'{name!r}) has {int(counts[first])} non-finite values '
                f'(NaN/inf); {bad.size} sample(s) affected in total. Set '
                f"nonfinite='zero' (or nonfinite=dict({name}='zero')) to "
                f'replace them with 0.')
        print_log(
            f"MMSAFeatureDataset: {self.ann_file} split '{self.split}': "
            f'replacing {int(counts.sum())} non-finite values in {bad.size} '
            f'of {len(arr)} samples of key {key!r} (modality {name!r}) by 0.',
            logger='current')
        # Zeroed per sample on read: an in-place fix would modify the cache
        # shared with datasets that use nonfinite='error', and a fixed copy
        # of MOSEI audio would cost GBs.
        return frozenset(int(i) for i in bad)

    def load_data_list(self) -> List[dict]:
        """Read the split from the (cached) pickle.

        Returns:
            list[dict]: One record per sample with ``row``, ``sample_id``,
            ``label`` (float), ``valid_lengths``, ``modality_mask``,
            ``raw_text``.
        """
        data = load_mmsa_pickle(self.ann_file)
        if self.split not in data:
            raise KeyError(f'{self.ann_file}: no split {self.split!r}; '
                           f'available splits: {sorted(data)}.')
        split_dict = data[self.split]
        labels = np.asarray(
            self._key(split_dict, self.label_key),
            dtype=np.float32).reshape(-1)
        num = labels.shape[0]
        ids = ([str(i) for i in split_dict['id']] if 'id' in split_dict else
               [f'{self.split}_{i}' for i in range(num)])
        if len(ids) != num:
            raise ValueError(f"{self.ann_file}: split '{self.split}' has "
                             f'{len(ids)} ids but {num} labels.')
        if not np.isfinite(labels).all():
            row = int(np.flatnonzero(~np.isfinite(labels))[0])
            raise ValueError(
                f"{self.ann_file}: split '{self.split}', sample {ids[row]!r} "
                f'(row {row}) has a non-finite label in {self.label_key!r}.')
        raw_text = split_dict.get('raw_text')

        features, bad_rows, lengths = {}, {}, {}
        for name, key in self.modalities.items():
            arr = self._features(split_dict, name, key, num)
            features[name] = arr
            bad_rows[name] = self._check_nonfinite(name, key, arr, ids)
            lengths[name] = self._lengths(split_dict, name, key, num,
                                          arr.shape[1])
        self._store = _SharedArrays(features, bad_rows)

        self._log_truncation(lengths)

        data_list = []
        for row in range(num):
            valid_lengths = {name: int(lengths[name][row])
                             for name in self.modalities}
            data_list.append(
                dict(
                    row=row,
                    sample_id=ids[row],
                    label=float(labels[row]),
                    valid_lengths=valid_lengths,
                    modality_mask={n: l > 0
                                   for n, l in valid_lengths.items()},
                    raw_text=(str(raw_text[row])
                              if raw_text is not None else '')))
        return data_list

    def _log_truncation(self, lengths: Dict[str, np.ndarray]) -> None:
        """Warn how many samples the pipeline's fixed ``seq_len`` cuts.

        Truncation is deterministic, so this count is the same in every
        epoch; :class:`PadSequenceFeatures` also warns when it first cuts.

        Args:
            lengths (dict[str, np.ndarray]): (N,) valid steps per modality.
        """
        transforms = getattr(self.pipeline, 'transforms', [])
        for transform in transforms:
            cut = getattr(transform, 'count_truncated', None)
            if cut is None:
                continue
            for name, (count, target) in cut(lengths).items():
                print_log(
                    f"MMSAFeatureDataset: {self.ann_file} split "
                    f"'{self.split}': {transform.__class__.__name__}("
                    f'seq_len={target}) cuts modality {name!r} in {count} '
                    f'of {len(lengths[name])} samples (valid lengths up to '
                    f'{int(lengths[name].max())} steps); set its seq_len '
                    'to None to keep every step.',
                    logger='current',
                    level=logging.WARNING)

    # ------------------------------------------------------------------
    # access
    def get_data_info(self, idx: int) -> dict:
        """Return the record of sample ``idx`` with its features attached.

        Args:
            idx (int): Index into the (possibly sub-set) dataset.

        Returns:
            dict: See the class docstring; features are fresh float32
            copies of shape (L_raw, D), so transforms may edit them.
        """
        info = super().get_data_info(idx)
        row = info['row']
        # ModalityMaskCounterHook counts these repairs per epoch.
        info['zero_filled'] = {}
        for name in self.modalities:
            feat = np.array(self._store.features[name][row], dtype=np.float32)
            repaired = row in self._store.bad_rows[name]
            if repaired:
                feat[~np.isfinite(feat)] = 0.
            info[name] = feat
            info['zero_filled'][name] = repaired
        info['label'] = torch.tensor([info['label']], dtype=torch.float32)
        info['split'] = self.split
        info['filename'] = self.ann_file
        return info

    def get_feature_dims(self) -> Dict[str, int]:
        """Feature width D per modality (handy for model configs).

        Returns:
            dict[str, int]: Modality name -> D.
        """
        self.full_init()
        return {n: int(a.shape[2]) for n, a in self._store.features.items()}
