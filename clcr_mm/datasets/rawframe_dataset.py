"""mmaction2's rawframe dataset with its list checked when it is built."""
from typing import List

from mmaction.datasets import RawframeDataset

from clcr_mm.datasets.annotation_files import parse_label, read_text_lines
from clcr_mm.registry import DATASETS


@DATASETS.register_module()
class CheckedRawframeDataset(RawframeDataset):
    """``RawframeDataset`` that validates every list line first.

    mmaction2's ``RawframeDataset`` reads ``<frame_dir> <total_frames>
    <label>`` lines without checks: a label beyond the head ends training
    with a bare ``IndexError: Target 101 is out of bounds`` from the loss,
    a non-UTF-8 byte with a bare ``UnicodeDecodeError``, a short line with
    an ``IndexError``. Here each of them raises ``ValueError`` naming the
    file and the line when the dataset is built. Configs set ``num_classes``
    to the head's. Arguments are those of ``RawframeDataset``; multi-label
    lists (``multi_class=True``) have every label checked.
    """

    def load_data_list(self) -> List[dict]:
        """Validate ``ann_file``, then parse it as ``RawframeDataset`` does.

        Returns:
            list[dict]: ``RawframeDataset``'s data infos.

        Raises:
            FileNotFoundError: ``ann_file`` does not exist.
            ValueError: A line is empty, not UTF-8, too short, has a frame
                count that is not a positive integer, or a label out of
                range; the message names the file and the line.
        """
        lines = read_text_lines(self.ann_file, 'rawframe list')
        num_counts = 2 if self.with_offset else 1
        for lineno, line in enumerate(lines, 1):
            where = f"'{self.ann_file}', line {lineno}"
            fields = line.split()
            if len(fields) < 1 + num_counts:
                raise ValueError(
                    f'{where}: expected "<frame_dir> '
                    f'{"<offset> " if self.with_offset else ""}'
                    f'<total_frames> [label ...]", got {line!r}')
            counts = fields[1:1 + num_counts]
            if not all(c.isdigit() for c in counts) or int(counts[-1]) < 1:
                raise ValueError(f'{where}: frame count(s) {counts} are not '
                                 f'positive integers: {line!r}')
            labels = fields[1 + num_counts:]
            if not self.multi_class and len(labels) > 1:
                raise ValueError(f'{where}: {len(labels)} labels on a '
                                 f'single-label list: {line!r}')
            for field in labels:
                parse_label(field, self.num_classes, where)
        return super().load_data_list()
