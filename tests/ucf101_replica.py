"""A tiny replica of the official UCF101 download: real MJPG .avi files
of a square moving right, CRLF split files, a corrupt unlisted video and
the HandstandPushups/HandStandPushups case quirk."""
import os
import os.path as osp

import cv2
import numpy as np

NUM_FRAMES = 10
SPEED = 3  # px / frame, to the right
W, H = 64, 48
# (class folder, file-name class, groups); HandstandPushups reproduces the
# official folder/file-name case mismatch.
CLASSES = [('Biking', 'Biking', (1, 2, 3)),
           ('HandstandPushups', 'HandStandPushups', (1, 2, 3))]


def write_video(path: str, n: int = NUM_FRAMES) -> None:
    """An MJPG .avi of ``n`` frames (H x W): a square moving right by
    ``SPEED`` px per frame on a grey background."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 25,
                             (W, H))
    assert writer.isOpened()
    for t in range(n):
        frame = np.full((H, W, 3), 40, np.uint8)
        x = 8 + SPEED * t
        frame[16:32, x:x + 14] = (30, 200, 230)
        writer.write(frame)
    writer.release()


def write_crlf(path: str, lines) -> None:
    # The official split files use CRLF line ends.
    with open(path, 'w', newline='') as f:
        f.write(''.join(line + '\r\n' for line in lines))


def make_download(root: str) -> None:
    """Write ``<root>/UCF-101/<class>/*.avi`` and ``<root>/ucfTrainTestlist``
    as the official archives unpack (splits 1-3 hold out group k)."""
    for folder, fname_cls, groups in CLASSES:
        os.makedirs(osp.join(root, 'UCF-101', folder))
        for g in groups:
            write_video(
                osp.join(root, 'UCF-101', folder,
                         f'v_{fname_cls}_g{g:02d}_c01.avi'))
    # Corrupt video, present on disk but not listed in any split.
    with open(osp.join(root, 'UCF-101', 'Biking', 'v_Biking_g09_c01.avi'),
              'wb') as f:
        f.write(b'RIFF' + os.urandom(2000))
    ann = osp.join(root, 'ucfTrainTestlist')
    os.makedirs(ann)
    write_crlf(osp.join(ann, 'classInd.txt'),
               [f'{i + 1} {c[0]}' for i, c in enumerate(CLASSES)])
    for k in (1, 2, 3):
        train, test = [], []
        for i, (folder, fname_cls, groups) in enumerate(CLASSES):
            for g in groups:
                video = f'{folder}/v_{fname_cls}_g{g:02d}_c01.avi'
                if g == k:
                    test.append(video)
                else:
                    train.append(f'{video} {i + 1}')
        write_crlf(osp.join(ann, f'trainlist{k:02d}.txt'), train)
        write_crlf(osp.join(ann, f'testlist{k:02d}.txt'), test)
