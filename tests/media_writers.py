"""Real, decodable media files for the data tests, written with PyAV and
soundfile: the codecs and containers of the benchmarks' downloads."""
import os
import os.path as osp
from pathlib import Path

import av
import numpy as np
import soundfile


def write_mp4(path,
              audio: bool = True,
              frames: int = 8,
              seed: int = 0,
              faststart: bool = False):
    """An 8 fps, 64x48 mpeg4 clip of ``frames / 8`` s, with as long a
    16 kHz AAC track. ``faststart`` puts the index first, as YouTube
    downloads have it: a truncated copy then still opens."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    options = dict(movflags='faststart') if faststart else {}
    with av.open(str(path), 'w', options=options) as container:
        stream = container.add_stream('mpeg4', rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, 'yuv420p'
        if audio:
            astream = container.add_stream('aac', rate=16000)
            astream.layout = 'mono'
        for i in range(frames):
            img = np.full((48, 64, 3), (20 * i) % 256, np.uint8)
            img[:8] = rng.integers(0, 255, (8, 64, 3), dtype=np.uint8)
            for packet in stream.encode(
                    av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio:
            t = np.arange(2000 * frames) / 16000
            wave = 0.5 * np.sin(2 * np.pi * (300 + 50 * seed) * t)
            frame = av.AudioFrame.from_ndarray(
                wave[None].astype(np.float32), format='fltp', layout='mono')
            frame.sample_rate = 16000
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)


def write_flv(path, frames: int = 12):
    """A CREMA-D-like flv: flv container, flv1 (Sorenson) video, 30 fps."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with av.open(str(path), 'w', format='flv') as container:
        stream = container.add_stream('flv', rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, 'yuv420p'
        for i in range(frames):
            img = np.full((48, 64, 3), (15 * i) % 256, np.uint8)
            for packet in stream.encode(
                    av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_wav(path, seconds: float = 1.0, seed: int = 0):
    """16 kHz mono 16-bit speech-like noise, as CREMA-D's AudioWAV."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    wave = 0.3 * rng.standard_normal(int(16000 * seconds))
    soundfile.write(str(path), wave, 16000, subtype='PCM_16')


def write_garbage(path):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Path(path).write_bytes(np.random.default_rng(1).bytes(3000))


def truncate(path, keep: float) -> None:
    """Cut a file to its first ``keep`` share of bytes, as an interrupted
    download leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep)])
