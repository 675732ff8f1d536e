"""Audio-visual classification dataset from a plain-text annotation list."""
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

from mmaction.datasets.base import BaseActionDataset
from mmaction.utils import ConfigType
from mmengine.fileio import exists, get_text, join_path, list_from_file

# Importing any clcr_mm module runs clcr_mm/__init__.py first, which patches
# the mmaction2 wheel before the mmaction imports above execute.
from clcr_mm.registry import DATASETS


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
    or malformed line, or a label outside ``[0, num_classes)``, raises
    ``ValueError`` naming the file and the line number.

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
        num_classes (int, optional): Number of classes, for label
            validation. Defaults to the number of ``classes`` if given;
            otherwise only negative labels are rejected.
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
                 test_mode: bool = False,
                 **kwargs) -> None:
        data_prefix = dict(data_prefix)
        data_prefix.setdefault('video', '')
        data_prefix.setdefault('audio', data_prefix['video'])
        if classes is not None:
            classes = self._load_classes(classes, kwargs.get('data_root'))
            metainfo = dict(kwargs.pop('metainfo', None) or {})
            metainfo['classes'] = classes
            kwargs['metainfo'] = metainfo
            if num_classes is None:
                num_classes = len(classes)
            elif num_classes != len(classes):
                raise ValueError(
                    f'num_classes={num_classes} but {len(classes)} class '
                    'names were given')
        super().__init__(
            ann_file,
            pipeline=pipeline,
            data_prefix=data_prefix,
            test_mode=test_mode,
            num_classes=num_classes,
            **kwargs)

    @staticmethod
    def _load_classes(classes: Union[str, Sequence[str]],
                      data_root: Optional[str]) -> tuple:
        """Return class names from a list or from a one-per-line file."""
        if not isinstance(classes, str):
            return tuple(classes)
        path = classes
        if data_root and not osp.isabs(path):
            path = join_path(data_root, path)
        if not exists(path):
            raise FileNotFoundError(f"classes file '{path}' does not exist")
        names = tuple(name.strip() for name in list_from_file(path))
        if not names or not all(names):
            raise ValueError(
                f"classes file '{path}' has empty lines or no classes")
        return names

    def load_data_list(self) -> List[dict]:
        """Parse and validate ``ann_file``.

        Returns:
            list[dict]: One dict per line with ``filename``, ``audio_path``
            and ``label``.

        Raises:
            FileNotFoundError: If ``ann_file`` does not exist.
            ValueError: On an empty or malformed line, or a label out of
                range; the message names the file and line number.
        """
        if not exists(self.ann_file):
            raise FileNotFoundError(
                f"annotation file '{self.ann_file}' does not exist")
        # get_text + splitlines: a final newline is not an empty line.
        lines = get_text(self.ann_file).splitlines()
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
            try:
                label = int(fields[-1])
            except ValueError:
                raise ValueError(
                    f'{where}: label {fields[-1]!r} is not an integer'
                ) from None
            upper = self.num_classes
            if label < 0 or (upper is not None and label >= upper):
                raise ValueError(f'{where}: label {label} is outside '
                                 f"[0, {'inf' if upper is None else upper})")
            audio_path = None
            if len(fields) == 3:
                audio_path = join_path(self.data_prefix['audio'], fields[1])
            data_list.append(
                dict(
                    filename=join_path(self.data_prefix['video'], fields[0]),
                    audio_path=audio_path,
                    label=label))
        return data_list
