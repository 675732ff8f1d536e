"""Datasets and transforms of clcr_mm."""
from . import transforms  # noqa: F401
from .mmsa_dataset import MMSAFeatureDataset  # noqa: F401
from .audio_visual_dataset import AudioVisualDataset  # noqa: F401
from .rawframe_dataset import CheckedRawframeDataset  # noqa: F401
