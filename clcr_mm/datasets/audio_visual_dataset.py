"""Audio-visual classification dataset from a plain-text annotation list."""
import logging
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

from mmaction.datasets.base import BaseActionDataset
from mmaction.utils import ConfigType
from mmengine.fileio import join_path
from mmengine.logging import print_log

# Importing any clcr_mm module runs clcr_mm/__init__.py first, which patches
# the mmaction2 wheel before the mmaction imports above execute.
from clcr_mm.datasets.annotation_files import parse_label, read_text_lines
from clcr_mm.datasets.transforms.audio import MediaFileError
from clcr_mm.registry import DATASETS

ON_ERROR = ('raise', 'skip')


@DATASETS.register_module()
class AudioVisualDataset(BaseActionDataset):
    """Videos with audio (in the video or in separate files) and a label.

    Each line of ``ann_file`` holds whitespace-separated fields, either::

        video_relpath label
        video_relpath audio_relpath label

    The first form reads the audio from the video's audio track (e.g. the
    synthetic set, Kinetics-Sounds, AVE); the second names a separate audio
    file (e.g. CREMA-D wavs). Paths are relative to ``data_prefix['video']``
    and ``data_prefix['audio']``, which are themselves joined to
    ``data_root``. Lines are validated when the dataset is built: an empty
    or malformed line, bytes that are not UTF-8, or a label outside
    ``[0, num_classes)`` raise ``ValueError`` naming the file and the line
    number. Configs set ``num_classes`` to the head's, so a list or a
    class file made for another head fails here, not in the loss.

    A sample whose media cannot be decoded (the transforms raise
    :class:`~clcr_mm.datasets.transforms.MediaFileError` naming the file)
    follows ``on_error``: ``'raise'`` stops the run; ``'skip'`` logs the
    error with a running count and, as mmengine does for a pipeline that
    returns None, trains on another random sample instead. Testing always
    raises: a final number must cover every listed clip. (To keep a sample
    whose audio is missing with a zero-filled, masked audio, use
    ``LoadAudio(on_missing='zero')``.)

    Each data info holds ``filename`` (video path), ``audio_path`` (audio
    path or None), ``label`` (int) and, from mmengine, ``sample_idx``.

    Args:
        ann_file (str): Annotation list, relative to ``data_root`` unless
            absolute.
        pipeline (list[dict | callable]): Data transforms.
        data_prefix (dict): ``video`` and optional ``audio`` directories.
            ``audio`` defaults to ``video``. Defaults to
            ``dict(video='', audio='')``.
        classes (str | Sequence[str], optional): Class names, or a text file
            with one name per line (relative to ``data_root`` unless
            absolute). Stored as ``metainfo['classes']``; also sets
            ``num_classes`` when that is None.
        num_classes (int, optional): Number of classes (the head's), for
            label validation; must equal the number of ``classes`` if both
            are given. Defaults to the number of ``classes`` if given;
            otherwise only negative labels are rejected.
        on_error (str): ``'raise'`` or ``'skip'``, see above. Defaults to
            ``'raise'``.
        test_mode (bool): Whether the dataset is for val/test. Defaults to
            False.
        **kwargs: Other arguments of :class:`BaseActionDataset`
            (``data_root``, ``metainfo``, ``start_index``, ...).
    """

    def __init__(self,
                 ann_file: str,
                 pipeline: List[Union[ConfigType, Callable]],
                 data_prefix: ConfigType = dict(video='', audio=''),
                 classes: Optional[Union[str, Sequence[str]]] = None,
                 num_classes: Optional[int] = None,
                 on_error: str = 'raise',
                 test_mode: bool = False,
                 **kwargs) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(
                f'on_error must be one of {ON_ERROR}, got {on_error!r}')
        self.on_error = on_error
        self.num_skipped = 0
        data_prefix = dict(data_prefix)
        data_prefix.setdefault('video', '')
        data_prefix.setdefault('audio', data_prefix['video'])
        if classes is not None:
            source = (self._class_file(classes, kwargs.get('data_root'))
                      if isinstance(classes, str) else 'the classes argument')
            classes = self._load_classes(classes, kwargs.get('data_root'))
            metainfo = dict(kwargs.pop('metainfo', None) or {})
            metainfo['classes'] = classes
            kwargs['metainfo'] = metainfo
            if num_classes is None:
                num_classes = len(classes)
            elif num_classes != len(classes):
                raise ValueError(
                    f'{source} lists {len(classes)} classes but the dataset '
                    f'has num_classes={num_classes} (the head\'s): the data '
                    'was prepared for another class set, or the config\'s '
                    'num_classes is wrong')
        super().__init__(
            ann_file,
            pipeline=pipeline,
            data_prefix=data_prefix,
            test_mode=test_mode,
            num_classes=num_classes,
            **kwargs)

    @staticmethod
    def _class_file(classes: str, data_root: Optional[str]) -> str:
        """Path of a classes file, joined to ``data_root`` if relative."""
        if data_root and not osp.isabs(classes):
            return join_path(data_root, classes)
        return classes

    @classmethod
    def _load_classes(cls, classes: Union[str, Sequence[str]],
                      data_root: Optional[str]) -> tuple:
        """Return class names from a list or from a one-per-line file."""
        if not isinstance(classes, str):
            return tuple(classes)
        path = cls._class_file(classes, data_root)
        names = tuple(
            name.strip() for name in read_text_lines(path, 'classes file'))
        if not names or not all(names):
            raise ValueError(
                f"classes file '{path}' has empty lines or no classes")
        return names

    def prepare_data(self, idx: int):
        """Run the pipeline on sample ``idx``, applying ``on_error``.

        Args:
            idx (int): Sample index.

        Returns:
            dict | None: The pipeline's output, or None for a skipped
            sample (mmengine's ``BaseDataset`` then draws another one).
        """
        try:
            return super().prepare_data(idx)
        except MediaFileError as e:
            if self.on_error == 'raise' or self.test_mode:
                raise
            self.num_skipped += 1
            print_log(
                f'{type(self).__name__}: skipped sample {idx} of '
                f'{self.ann_file} ({self.num_skipped} skipped so far in this '
                f'process): {e}',
                logger='current',
                level=logging.WARNING)
            return None

    def load_data_list(self) -> List[dict]:
        """Parse and validate ``ann_file``.

        Returns:
            list[dict]: One dict per line with ``filename``, ``audio_path``
            and ``label``.

        Raises:
            FileNotFoundError: If ``ann_file`` does not exist.
            ValueError: On an empty or malformed line, bytes that are not
                UTF-8, or a label out of range; the message names the file
                and line number.
        """
        lines = read_text_lines(self.ann_file, 'annotation file')
        data_list = []
        for lineno, line in enumerate(lines, start=1):
            where = f"'{self.ann_file}', line {lineno}"
            fields = line.split()
            if not fields:
                raise ValueError(f'{where}: empty line')
            if len(fields) not in (2, 3):
                raise ValueError(
                    f"{where}: expected 'video label' or 'video audio "
                    f"label', got {len(fields)} fields: {line!r}")
            label = parse_label(fields[-1], self.num_classes, where)
            audio_path = None
            if len(fields) == 3:
                audio_path = join_path(self.data_prefix['audio'], fields[1])
            data_list.append(
                dict(
                    filename=join_path(self.data_prefix['video'], fields[0]),
                    audio_path=audio_path,
                    label=label))
        return data_list
