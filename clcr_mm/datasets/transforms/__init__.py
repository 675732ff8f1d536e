"""Transforms of clcr_mm."""
from .sequence import PadSequenceFeatures  # noqa: F401
from .rawframes import FormatRGBFlow, LoadRGBFlowFrames  # noqa: F401
from .audio import (AudioClipSample, CheckVideo, LoadAudio,  # noqa: F401
                    LogMelSpectrogram, MediaFileError)
from .pack_inputs import PackMultiModalInputs  # noqa: F401
from .video import CheckedPyAVDecode, CheckedPyAVInit  # noqa: F401
