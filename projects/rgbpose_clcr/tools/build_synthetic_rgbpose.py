"""Generate a synthetic RGB + pose task in mmaction2's pose-annotation
format, for PoseC3D's ``RGBPoseConv3D`` (``PoseDataset`` + ``MMDecode``).

Each sample is a COCO-17 stick figure (keypoints) and a matching video.
The label needs both modalities: ``label = 2 * motion + colour``

* motion (pose only): the wrists wave once or twice over the clip;
* colour (RGB only): a warm or a cool patch in the video, which shows no
  person (the figure exists only in the keypoints).

Output layout (what ``PoseDataset(ann_file=..., data_prefix=dict(video=
...))`` reads; ``MMDecode`` opens ``<frame_dir>.mp4``)::

    <out>/
    ├── videos/<name>.mp4
    └── synthetic_rgbpose.pkl   # dict(split=dict(xsub_train=[...],
                                #      xsub_val=[...]), annotations=[...])

Videos already present with the right frame count are kept (resumable);
unwritable ones are listed in ``<out>/bad_files.txt`` instead of stopping.

Usage (repository root)::

    python projects/rgbpose_clcr/tools/build_synthetic_rgbpose.py \
        --out data/synthetic_rgbpose --num-train 400 --num-val 100
"""
import argparse
import os
import os.path as osp
import pickle
from typing import List, Tuple

import cv2
import mmengine
import numpy as np

CLASSES = ('slow-warm', 'slow-cool', 'fast-warm', 'fast-cool')
# COCO-17 keypoints of a standing figure in a unit box (x right, y down)
TEMPLATE = np.array(
    [[.50, .10], [.47, .08], [.53, .08], [.44, .10], [.56, .10],
     [.40, .25], [.60, .25], [.36, .40], [.64, .40], [.34, .55],
     [.66, .55], [.44, .55], [.56, .55], [.44, .75], [.56, .75],
     [.44, .95], [.56, .95]], dtype=np.float32)
WRISTS = (9, 10)
COLOURS = ((40, 60, 220), (220, 120, 40))  # BGR: warm, cool


def make_sample(index: int, seed: int, frames: int,
                size: int) -> Tuple[dict, np.ndarray]:
    """One annotation and its video frames, determined by (seed, index).

    Args:
        index (int): Sample index; its label is ``index % 4``.
        seed (int): Dataset seed.
        frames (int): Frames T.
        size (int): Frame height and width.

    Returns:
        tuple: The annotation dict (``keypoint`` (1, T, 17, 2) in pixels,
        ``keypoint_score`` (1, T, 17), ...) and the frames (T, H, W, 3)
        uint8.
    """
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASSES)
    motion, colour = divmod(label, 2)
    scale = rng.uniform(0.6, 0.8) * size
    origin = rng.uniform(0, size - scale, 2)
    t = np.arange(frames, dtype=np.float32) / frames
    kps = np.repeat(TEMPLATE[None], frames, 0) * scale + origin
    wave = 0.3 * scale * np.sin(2 * np.pi * (motion + 1) * t +
                                rng.uniform(0, 2 * np.pi))
    kps[:, WRISTS, 1] -= wave[:, None]
    kps += rng.normal(0, 0.01 * size, kps.shape)
    video = rng.integers(0, 60, (frames, size, size, 3), dtype=np.uint8)
    side = size // 3
    x, y = rng.integers(0, size - side, 2)
    video[:, y:y + side, x:x + side] = COLOURS[colour]
    anno = dict(
        frame_dir=f'{index:05d}',
        label=label,
        img_shape=(size, size),
        original_shape=(size, size),
        total_frames=frames,
        keypoint=kps[None].astype(np.float32),
        keypoint_score=np.ones((1, frames, len(TEMPLATE)), np.float32))
    return anno, video


def frame_count(path: str) -> int:
    """Frames of an existing video, 0 when it is absent or unreadable."""
    if not osp.isfile(path):
        return 0
    reader = cv2.VideoCapture(path)
    count = int(reader.get(cv2.CAP_PROP_FRAME_COUNT))
    reader.release()
    return count


def write_one(task: Tuple[int, int, int, int, str]) -> Tuple[dict, str]:
    """Write one video unless present; return its annotation and an error
    message ('' on success)."""
    index, seed, frames, size, video_dir = task
    anno, video = make_sample(index, seed, frames, size)
    path = osp.join(video_dir, anno['frame_dir'] + '.mp4')
    if frame_count(path) == frames:
        return anno, ''
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 8,
                             (size, size))
    for frame in video:
        writer.write(frame)
    writer.release()
    if frame_count(path) != frames:
        return anno, f'{path}: written with {frame_count(path)} of ' \
            f'{frames} frames (no mp4v encoder in OpenCV?)'
    return anno, ''


def build(out: str, num_train: int, num_val: int, frames: int = 32,
          size: int = 64, seed: int = 0, workers: int = 1) -> List[str]:
    """Write the videos and the annotation pickle under ``out``.

    Args:
        out (str): Output root.
        num_train (int): Samples of split ``xsub_train``.
        num_val (int): Samples of split ``xsub_val``.
        frames (int): Frames per clip. Defaults to 32 (the config's pose
            clip length).
        size (int): Frame size in pixels. Defaults to 64.
        seed (int): Dataset seed. Defaults to 0.
        workers (int): Parallel writer processes. Defaults to 1.

    Returns:
        list[str]: Problems with single files (also in ``bad_files.txt``);
        those samples are left out of the annotations.
    """
    video_dir = osp.join(out, 'videos')
    os.makedirs(video_dir, exist_ok=True)
    tasks = [(i, seed, frames, size, video_dir)
             for i in range(num_train + num_val)]
    if workers > 1:
        results = mmengine.track_parallel_progress(write_one, tasks, workers)
    else:
        results = mmengine.track_progress(write_one, tasks)
    bad = [error for _, error in results if error]
    annos = [anno for anno, error in results if not error]
    names = [a['frame_dir'] for a in annos]
    split = dict(xsub_train=[n for n in names if int(n) < num_train],
                 xsub_val=[n for n in names if int(n) >= num_train])
    with open(osp.join(out, 'synthetic_rgbpose.pkl'), 'wb') as f:
        pickle.dump(dict(split=split, annotations=annos), f)
    with open(osp.join(out, 'bad_files.txt'), 'w') as f:
        f.writelines(line + '\n' for line in bad)
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/synthetic_rgbpose')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--frames', type=int, default=32)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=1)
    args = parser.parse_args()
    bad = build(args.out, args.num_train, args.num_val, args.frames,
                args.size, args.seed, args.workers)
    if bad:
        print(f'{len(bad)} bad files, see {osp.join(args.out, "bad_files.txt")}')


if __name__ == '__main__':
    main()
