"""Published phone datasets read without TensorFlow, for step-level evaluation.

- :mod:`~vlagent.datasets.tfrecord`: the TFRecord framing with its CRC32C checksums, GZIP or not;
- :mod:`~vlagent.datasets.example`: ``tf.train.Example`` decoded and encoded by hand;
- :mod:`~vlagent.datasets.aitw`: Android in the Wild, one record per step, scored by its
  action matching;
- :mod:`~vlagent.datasets.androidcontrol`: AndroidControl, one record per episode, scored by
  OS-Atlas's and Qwen's AndroidControl rules.

:func:`read_dataset` gives either as :class:`DatasetEpisode` s of :class:`DatasetStep` s.
A file that breaks its format raises :class:`DatasetError` (a UserError) naming the file and
the record. This room reads files and compares actions; it must not run policies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from vlagent.datasets.aitw import AITW_CONVENTIONS, AitwStep, aitw_record, read_aitw
from vlagent.datasets.androidcontrol import (
    ANDROIDCONTROL_CONVENTIONS,
    AcAction,
    AcStep,
    androidcontrol_record,
    read_androidcontrol,
)
from vlagent.datasets.base import DatasetEpisode, DatasetStep, read_split
from vlagent.datasets.example import ExampleError, Features, parse_example
from vlagent.datasets.tfrecord import MAX_RECORD_BYTES, DatasetError, crc32c, masked_crc32c, read_records, write_records
from vlagent.scoring import Convention

__all__ = [
    "AITW_CONVENTIONS",
    "ANDROIDCONTROL_CONVENTIONS",
    "DATASETS",
    "MAX_RECORD_BYTES",
    "AcAction",
    "AcStep",
    "AitwStep",
    "DatasetEpisode",
    "DatasetError",
    "DatasetName",
    "DatasetStep",
    "ExampleError",
    "Features",
    "aitw_record",
    "androidcontrol_record",
    "conventions_of",
    "crc32c",
    "masked_crc32c",
    "parse_example",
    "read_aitw",
    "read_androidcontrol",
    "read_dataset",
    "read_records",
    "read_split",
    "write_records",
]

DatasetName = Literal["aitw", "androidcontrol"]
DATASETS: tuple[DatasetName, ...] = ("aitw", "androidcontrol")


def conventions_of(dataset: DatasetName) -> tuple[Convention, ...]:
    """The reference scoring rules a dataset's steps are judged by."""
    return AITW_CONVENTIONS if dataset == "aitw" else ANDROIDCONTROL_CONVENTIONS


def read_dataset(
    dataset: DatasetName, paths: Iterable[Path | str], *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[DatasetEpisode]:
    """The episodes of ``dataset``'s TFRecord files at ``paths``, in file order."""
    if dataset == "aitw":
        return read_aitw(paths, max_record_bytes=max_record_bytes)
    if dataset == "androidcontrol":
        return read_androidcontrol(paths, max_record_bytes=max_record_bytes)
    raise ValueError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
