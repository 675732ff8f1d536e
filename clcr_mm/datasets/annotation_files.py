"""Reading annotation text files with errors that name the file and line.

Shared by the datasets (at build time) and the preparation tools under
``tools/data/``: a list or index file with a byte that is not UTF-8 (a name
typed on another system, a file saved in Latin-1) must be reported with its
file, line and column, not as a bare ``UnicodeDecodeError``.
"""
import os
from typing import List, Optional

from mmengine.fileio import exists, get


class AnnotationError(ValueError):
    """A problem in an annotation file, located by file and line.

    Args:
        path (str): The annotation file.
        problem (str): What is wrong.
        lineno (int, optional): 1-based line number.
        line (str, optional): The offending line, quoted in the message.
    """

    def __init__(self,
                 path: str,
                 problem: str,
                 lineno: Optional[int] = None,
                 line: Optional[str] = None) -> None:
        where = path if lineno is None else f'{path}:{lineno}'
        msg = f'{where}: {problem}'
        if line is not None:
            msg += f' (line: {line!r})'
        super().__init__(msg)
        self.path = path
        self.lineno = lineno


def display_path(path: str) -> str:
    """A path that can be printed and written to UTF-8 text.

    File names are bytes on POSIX; Python keeps bytes that are not UTF-8 as
    lone surrogates (``surrogateescape``), which UTF-8 streams refuse. They
    are shown as ``\\xNN`` escapes of the original bytes.

    Args:
        path (str): A path from ``os.listdir``, a list file, etc.

    Returns:
        str: The path, with undecodable bytes escaped.
    """
    return os.fsencode(path).decode('utf-8', 'backslashreplace')


def read_text_lines(path: str,
                    what: str = 'annotation file',
                    backend_args: Optional[dict] = None) -> List[str]:
    """All lines of a UTF-8 text file, line ends removed.

    Each line is decoded on its own so that a byte that is not UTF-8 is
    reported with its line and column. A byte-order mark (files saved on
    Windows) is dropped.

    Args:
        path (str): The file (any mmengine file backend).
        what (str): What the file is, for the error messages.
        backend_args (dict, optional): mmengine file backend arguments.

    Returns:
        list[str]: Line ``i`` (1-based) of the file is element ``i - 1``.

    Raises:
        FileNotFoundError: The file does not exist (message names it).
        AnnotationError: A line is not valid UTF-8.
    """
    if not exists(path, backend_args=backend_args):
        raise FileNotFoundError(f'{what} not found: {display_path(path)}')
    data = get(path, backend_args=backend_args)
    if data.startswith(b'\xef\xbb\xbf'):
        data = data[3:]
    lines = []
    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            lines.append(raw.decode('utf-8'))
        except UnicodeDecodeError as e:
            raise AnnotationError(
                display_path(path),
                f'byte 0x{raw[e.start]:02x} at column {e.start + 1} is not '
                f'valid UTF-8 (save the {what} as UTF-8)', lineno,
                raw.decode('utf-8', 'backslashreplace')) from None
    return lines


def parse_label(field: str, num_classes: Optional[int], where: str) -> int:
    """Parse a class label of a list line and check it against the head.

    Args:
        field (str): The label field.
        num_classes (int, optional): Classes of the head; None checks only
            that the label is not negative.
        where (str): The file and line, for the message.

    Returns:
        int: The label.

    Raises:
        ValueError: The label is not an integer or is outside
            ``[0, num_classes)``.
    """
    try:
        label = int(field)
    except ValueError:
        raise ValueError(
            f'{where}: label {field!r} is not an integer') from None
    if label < 0 or (num_classes is not None and label >= num_classes):
        upper = 'inf' if num_classes is None else num_classes
        raise ValueError(
            f'{where}: label {label} is outside [0, {upper}) (num_classes '
            'of the dataset, which configs set to the head\'s)')
    return label
