"""Tiny replicas of the MMSA feature pickles (CMU-MOSI / MOSEI): the
published keys, feature dims, dtypes and zero padding, a few samples per
split."""
import pickle
from pathlib import Path

import numpy as np

DIMS = dict(mosi=dict(text=768, audio=5, vision=20),
            mosei=dict(text=768, audio=74, vision=35))
# (audio, vision) lengths of the published pickles.
UNALIGNED_LEN = dict(mosi=(375, 500), mosei=(500, 500))
SIZES = dict(train=4, valid=2, test=3)


def make_split(dataset: str, split: str, aligned: bool,
               rng: np.random.Generator) -> dict:
    """One split with the real MMSA keys, dims, dtypes and zero padding."""
    n = SIZES[split]
    len_a, len_v = (50, 50) if aligned else UNALIGNED_LEN[dataset]
    dims = DIMS[dataset]
    audio_lengths = np.array([len_a, 7, 30, 1][:n])
    vision_lengths = np.array([3, len_v, 12, 40][:n])

    def padded(length: int, dim: int, valid: np.ndarray) -> np.ndarray:
        arr = rng.standard_normal((n, length, dim)).astype(np.float32)
        for i, v in enumerate(valid):
            arr[i, v:] = 0  # MMSA pads with zeros after the valid steps
        return arr

    text_lengths = np.array([10, 50, 20, 5][:n])
    text_bert = np.zeros((n, 3, 50), dtype=np.float64)
    for i, v in enumerate(text_lengths):
        text_bert[i, 0, :v] = rng.integers(100, 3000, v)
        text_bert[i, 1, :v] = 1
    labels = np.array([1.4, -0.6, 0., 2.8][:n], dtype=np.float32)
    return {
        'raw_text': [f'{split} sentence {i}' for i in range(n)],
        'audio': padded(len_a, dims['audio'], audio_lengths),
        'vision': padded(len_v, dims['vision'], vision_lengths),
        'id': [f'vid{split}{i}$_${i + 1}' for i in range(n)],
        # float64 like some published arrays: the dataset converts once.
        'text': padded(50, dims['text'], text_lengths).astype(np.float64),
        'text_bert': text_bert,
        'audio_lengths': list(audio_lengths),
        'vision_lengths': list(vision_lengths),
        'annotations': ['Positive'] * n,
        'classification_labels': np.sign(labels) + 1,
        'regression_labels': labels,
    }


def write_pickle(root: Path, dataset: str = 'mosi', aligned: bool = True,
                 edit=None) -> Path:
    """Write ``<root>/{aligned,unaligned}_50.pkl``; ``edit(data)`` may
    corrupt it first."""
    rng = np.random.default_rng(0)
    data = {s: make_split(dataset, s, aligned, rng) for s in SIZES}
    if edit is not None:
        edit(data)
    root.mkdir(parents=True, exist_ok=True)
    path = root / ('aligned_50.pkl' if aligned else 'unaligned_50.pkl')
    with open(path, 'wb') as f:
        pickle.dump(data, f)
    return path
