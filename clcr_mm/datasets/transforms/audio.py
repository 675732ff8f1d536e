"""Audio(-visual) loading transforms of clcr_mm.

Audio is decoded from a video's audio track (PyAV) or from a separate audio
file (soundfile), mixed to mono and resampled with torchaudio, cut into
fixed-length windows and turned into log-mel spectrograms shaped like
mmaction's ``FormatAudioShape('NCTF')`` output, i.e. (V, 1, T, F).

Video itself stays on mmaction2's transforms (``PyAVInit``/``DecordInit``,
``SampleFrames``, ...); :class:`CheckVideo` only puts a clear, file-naming
error in front of them, because their own errors on a bad file do not say
which file failed.

Keys written by this module:

* ``results['audio_wave']``: float32 waveform, (N,) after :class:`LoadAudio`
  and (V, N) after :class:`AudioClipSample`;
* ``results['audio_sample_rate']``: its sample rate in Hz;
* ``results['audio']`` (configurable): float32 log-mel, (V, 1, T, F);
* ``results['modality_mask'][name]``: True, or False where a missing audio
  was replaced by zeros (``on_missing='zero'``).
"""
import logging
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from clcr_mm.datasets.annotation_files import display_path
from clcr_mm.registry import TRANSFORMS

# Extensions decoded with soundfile (libsndfile); anything else goes to PyAV.
SOUNDFILE_EXTENSIONS = ('.wav', '.flac', '.ogg', '.aiff', '.aif', '.au')


class MediaFileError(RuntimeError):
    """A media file is missing, unreadable, or lacks what a transform needs.

    The message always names the file and the problem.
    """


def _int_to_float(samples: np.ndarray) -> np.ndarray:
    """Scale integer PCM samples to float32 in [-1, 1)."""
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(
            -np.iinfo(samples.dtype).min)
    return samples.astype(np.float32)


def decode_audio_pyav(path: str) -> Tuple[np.ndarray, int]:
    """Decode the first audio stream of a media file with PyAV.

    Args:
        path (str): Local path of a video or audio container.

    Returns:
        tuple[np.ndarray, int]: Float32 waveform of shape (C, N) and its
        sample rate.

    Raises:
        MediaFileError: If the file cannot be opened or decoded, or has no
            audio stream.
    """
    import av
    name = display_path(path)
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise MediaFileError(
            f"cannot open '{name}': corrupt or not a media file ({e})") from e
    with container:
        if not container.streams.audio:
            raise MediaFileError(f"'{name}' has no audio track")
        stream = container.streams.audio[0]
        chunks, sample_rate = [], stream.rate
        try:
            for frame in container.decode(stream):
                samples = frame.to_ndarray()
                channels = len(frame.layout.channels)
                if not frame.format.is_planar:
                    # Packed formats interleave channels: (1, N * C).
                    samples = samples.reshape(-1, channels).T
                chunks.append(_int_to_float(samples))
                sample_rate = frame.sample_rate
        except (av.FFmpegError, ValueError) as e:
            raise MediaFileError(
                f"cannot decode the audio track of '{name}': corrupt "
                f'({e})') from e
    if not chunks:
        return np.zeros((1, 0), np.float32), int(sample_rate or 0)
    return np.concatenate(chunks, axis=1), int(sample_rate)


def decode_audio_soundfile(path: str) -> Tuple[np.ndarray, int]:
    """Decode an audio file (wav, flac, ...) with soundfile.

    Args:
        path (str): Local path of the audio file.

    Returns:
        tuple[np.ndarray, int]: Float32 waveform of shape (C, N) and its
        sample rate.

    Raises:
        MediaFileError: If the file cannot be read.
    """
    import soundfile
    name = display_path(path)
    try:
        # A file object, not the name: soundfile cannot encode a name
        # whose bytes are not UTF-8.
        with open(path, 'rb') as f:
            samples, sample_rate = soundfile.read(
                f, dtype='float32', always_2d=True)
    except (OSError, RuntimeError, TypeError, ValueError) as e:
        # soundfile.LibsndfileError derives from RuntimeError.
        raise MediaFileError(
            f"cannot read audio file '{name}': corrupt or unsupported "
            f'({e})') from e
    return np.ascontiguousarray(samples.T), int(sample_rate)


@TRANSFORMS.register_module()
class LoadAudio(BaseTransform):
    """Decode a mono waveform at a fixed sample rate.

    Reads ``results['audio_path']`` when it is set (separate audio files,
    e.g. CREMA-D wavs) and otherwise the audio track of
    ``results['filename']`` (a video). Wav-like files are decoded with
    soundfile, containers with PyAV; channels are averaged to mono and the
    waveform is resampled with :func:`torchaudio.functional.resample`.

    Required keys: ``filename`` and/or ``audio_path``.
    Added keys: ``audio_wave`` (``out_key``; float32, (N,)),
    ``audio_sample_rate``, ``modality_mask`` (dict; ``name`` set).

    Args:
        sample_rate (int): Output sample rate in Hz. Defaults to 16000.
        name (str): Modality name used in ``results['modality_mask']``.
            Defaults to ``'audio'``.
        out_key (str): Key of the output waveform. Defaults to
            ``'audio_wave'``.
        min_duration (float): Shortest accepted audio in seconds; shorter
            audio counts as missing. Defaults to 0.1.
        on_missing (str): ``'raise'`` to raise :class:`MediaFileError` when
            the file is missing, unreadable, has no audio track or too short
            audio; ``'zero'`` to output zeros (``min_duration`` long, later
            transforms pad them) and set
            ``results['modality_mask'][name] = False``. Defaults to
            ``'raise'``.
    """

    def __init__(self,
                 sample_rate: int = 16000,
                 name: str = 'audio',
                 out_key: str = 'audio_wave',
                 min_duration: float = 0.1,
                 on_missing: str = 'raise') -> None:
        if on_missing not in ('raise', 'zero'):
            raise ValueError(
                f"on_missing must be 'raise' or 'zero', got {on_missing!r}")
        self.sample_rate = sample_rate
        self.name = name
        self.out_key = out_key
        self.min_duration = min_duration
        self.on_missing = on_missing
        self._num_zero_filled = 0

    def _load(self, path: str) -> np.ndarray:
        """Decode, mix to mono, resample and validate one file.

        Args:
            path (str): File to read.

        Returns:
            np.ndarray: float32 waveform, (N,), at ``self.sample_rate``.
        """
        name = display_path(path)
        if not osp.isfile(path):
            raise MediaFileError(f"audio source '{name}' does not exist")
        if osp.splitext(path)[1].lower() in SOUNDFILE_EXTENSIONS:
            samples, sample_rate = decode_audio_soundfile(path)
        else:
            samples, sample_rate = decode_audio_pyav(path)
        wave = samples.mean(axis=0)
        if wave.size == 0:
            raise MediaFileError(f"the audio of '{name}' is empty")
        if not np.isfinite(wave).all():
            raise MediaFileError(f"the audio of '{name}' contains NaN/Inf")
        if sample_rate != self.sample_rate:
            import torchaudio.functional as F
            wave = F.resample(
                torch.from_numpy(np.ascontiguousarray(wave)), sample_rate,
                self.sample_rate).numpy()
        duration = wave.size / self.sample_rate
        if duration < self.min_duration:
            raise MediaFileError(
                f"the audio of '{name}' is too short: {duration:.3f} s < "
                f'min_duration={self.min_duration} s')
        return wave.astype(np.float32, copy=False)

    def transform(self, results: Dict) -> Dict:
        """Load the waveform.

        Args:
            results (dict): Result dict with ``audio_path`` or
                ``filename``.

        Returns:
            dict: ``results`` with the waveform, its rate and the mask.
        """
        path = results.get('audio_path') or results.get('filename')
        if path is None:
            raise KeyError(
                "LoadAudio needs results['audio_path'] or "
                "results['filename']")
        present = True
        name = display_path(path)
        try:
            wave = self._load(path)
        except MediaFileError:
            if self.on_missing == 'raise':
                raise
            if self._num_zero_filled == 0:
                # Warn once per worker: datasets such as Kinetics have many
                # silent videos and a line per sample would flood the log.
                print_log(
                    f'LoadAudio: no usable audio in {name!r}; using zeros '
                    f"and modality_mask['{self.name}']=False (further cases "
                    'are not reported)',
                    logger='current',
                    level=logging.WARNING)
            self._num_zero_filled += 1
            present = False
            wave = np.zeros(
                max(1, int(round(self.min_duration * self.sample_rate))),
                np.float32)
        results[self.out_key] = wave
        results['audio_sample_rate'] = self.sample_rate
        results.setdefault('modality_mask', {})[self.name] = present
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sample_rate={self.sample_rate}, '
                f'name={self.name!r}, out_key={self.out_key!r}, '
                f'min_duration={self.min_duration}, '
                f'on_missing={self.on_missing!r})')


@TRANSFORMS.register_module()
class AudioClipSample(BaseTransform):
    """Cut fixed-length windows out of a waveform.

    In training each window starts at a random position; in testing the
    windows are spread evenly (one window: the centre). Audio shorter than a
    window is zero-padded at the end.

    Required keys: ``audio_wave`` (``key``; (N,)), ``audio_sample_rate``.
    Modified keys: ``audio_wave`` -> (num_clips, clip_duration * rate).
    Added keys: ``audio_clip_starts`` (seconds, (num_clips,)).

    Args:
        clip_duration (float): Window length in seconds.
        num_clips (int): Number of windows (the view dim V). Defaults to 1.
        test_mode (bool): Deterministic evenly spread windows instead of
            random ones. Defaults to False.
        key (str): Waveform key. Defaults to ``'audio_wave'``.
    """

    def __init__(self,
                 clip_duration: float,
                 num_clips: int = 1,
                 test_mode: bool = False,
                 key: str = 'audio_wave') -> None:
        if clip_duration <= 0 or num_clips < 1:
            raise ValueError('clip_duration must be > 0 and num_clips >= 1')
        self.clip_duration = clip_duration
        self.num_clips = num_clips
        self.test_mode = test_mode
        self.key = key

    def transform(self, results: Dict) -> Dict:
        """Sample the windows.

        Args:
            results (dict): Result dict with a (N,) waveform.

        Returns:
            dict: ``results`` with a (num_clips, L) float32 waveform.
        """
        wave = results[self.key]
        sample_rate = results['audio_sample_rate']
        length = int(round(self.clip_duration * sample_rate))
        if wave.shape[0] < length:
            wave = np.pad(wave, (0, length - wave.shape[0]))
        room = wave.shape[0] - length
        if self.test_mode:
            if self.num_clips == 1:
                starts = np.array([room // 2])
            else:
                starts = np.linspace(0, room, self.num_clips).round()
        else:
            # np.random (not a private Generator) so that mmengine's
            # per-worker seeding makes training runs reproducible.
            starts = np.random.randint(0, room + 1, self.num_clips)
        starts = starts.astype(np.int64)
        results[self.key] = np.stack(
            [wave[s:s + length] for s in starts]).astype(np.float32)
        results['audio_clip_starts'] = starts / sample_rate
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'clip_duration={self.clip_duration}, '
                f'num_clips={self.num_clips}, test_mode={self.test_mode})')


@TRANSFORMS.register_module()
class LogMelSpectrogram(BaseTransform):
    """Turn waveform windows into log-mel spectrograms, (V, 1, T, F).

    Uses :class:`torchaudio.transforms.MelSpectrogram` (power spectrogram,
    centred frames, so ``T = 1 + L // hop_length``) followed by
    ``log(mel + eps)``. The layout matches mmaction's
    ``FormatAudioShape('NCTF')``: time along H, mel bins along W.

    Required keys: ``audio_wave`` (``in_key``; (V, L)), ``audio_sample_rate``.
    Added keys: ``audio`` (``out_key``; float32 (V, 1, T, n_mels)).
    Removed keys: ``in_key`` unless ``keep_wave``.

    Args:
        sample_rate (int): Expected sample rate in Hz. Defaults to 16000.
        n_fft (int): FFT size. Defaults to 512.
        hop_length (int): Hop between frames in samples. Defaults to 256.
        win_length (int, optional): Window length; ``n_fft`` if None.
        n_mels (int): Number of mel bins F. Defaults to 64.
        f_min (float): Lowest frequency in Hz. Defaults to 0.
        f_max (float, optional): Highest frequency in Hz; Nyquist if None.
        eps (float): Floor added before the log. Defaults to 1e-6.
        in_key (str): Waveform key. Defaults to ``'audio_wave'``.
        out_key (str): Output key, the modality name. Defaults to
            ``'audio'``.
        keep_wave (bool): Keep the waveform in ``results``. Defaults to
            False (it is not needed after this and costs memory).
    """

    def __init__(self,
                 sample_rate: int = 16000,
                 n_fft: int = 512,
                 hop_length: int = 256,
                 win_length: Optional[int] = None,
                 n_mels: int = 64,
                 f_min: float = 0.0,
                 f_max: Optional[float] = None,
                 eps: float = 1e-6,
                 in_key: str = 'audio_wave',
                 out_key: str = 'audio',
                 keep_wave: bool = False) -> None:
        import torchaudio
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.eps = eps
        self.in_key = in_key
        self.out_key = out_key
        self.keep_wave = keep_wave
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels)

    def transform(self, results: Dict) -> Dict:
        """Compute the log-mel spectrograms.

        Args:
            results (dict): Result dict with a (V, L) waveform.

        Returns:
            dict: ``results`` with ``out_key`` of shape (V, 1, T, n_mels).
        """
        if results['audio_sample_rate'] != self.sample_rate:
            raise ValueError(
                f"LogMelSpectrogram expects {self.sample_rate} Hz audio but "
                f"got {results['audio_sample_rate']} Hz for "
                f"{results.get('audio_path') or results.get('filename')!r}; "
                'set the same sample_rate in LoadAudio')
        wave = results[self.in_key]
        if wave.ndim == 1:
            wave = wave[None]
        with torch.no_grad():
            mel = self.mel(torch.from_numpy(np.ascontiguousarray(wave)))
        # (V, F, T) -> (V, 1, T, F)
        log_mel = torch.log(mel + self.eps).transpose(1, 2).unsqueeze(1)
        results[self.out_key] = log_mel.numpy().astype(np.float32)
        if not self.keep_wave and self.in_key != self.out_key:
            results.pop(self.in_key)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sample_rate={self.sample_rate}, '
                f'n_fft={self.n_fft}, hop_length={self.hop_length}, '
                f'n_mels={self.n_mels}, out_key={self.out_key!r})')


@TRANSFORMS.register_module()
class CheckVideo(BaseTransform):
    """Fail early, naming the file, when a video cannot be decoded.

    mmaction's ``PyAVInit``/``DecordInit`` read the file into memory first,
    so their errors on a missing or corrupt file do not name it. Put this
    transform in front of them: it opens ``results['filename']`` with PyAV
    and decodes the first video frame (cheap: container headers and one
    frame).

    Required keys: ``filename``. Nothing is modified.

    Args:
        key (str): Key of the video path. Defaults to ``'filename'``.
    """

    def __init__(self, key: str = 'filename') -> None:
        self.key = key

    def transform(self, results: Dict) -> Dict:
        """Check the video file.

        Args:
            results (dict): Result dict with the video path.

        Returns:
            dict: ``results``, unchanged.

        Raises:
            MediaFileError: If the file is missing, cannot be opened, has
                no video stream or no decodable frame.
        """
        import av
        path = results[self.key]
        name = display_path(path)
        if not osp.isfile(path):
            raise MediaFileError(f"video file '{name}' does not exist")
        try:
            with av.open(path) as container:
                if not container.streams.video:
                    raise MediaFileError(f"'{name}' has no video stream")
                frame = next(container.decode(video=0), None)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise MediaFileError(
                f"cannot decode video '{name}': corrupt or not a video "
                f'({e})') from e
        if frame is None:
            raise MediaFileError(f"video '{name}' has no decodable frame")
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(key={self.key!r})'
