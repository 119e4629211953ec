"""TFRecord files without TensorFlow: the framing, its CRC32C checksums and GZIP.

A TFRecord file is a sequence of records, each framed as (TensorFlow's
``tensorflow/core/lib/io/record_writer.cc`` layout, restated in the AITW and AndroidControl
READMEs' links)::

    uint64  length            little-endian
    uint32  masked CRC32C of the 8 length bytes
    bytes   data[length]
    uint32  masked CRC32C of data

where ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2**32). Files may be
GZIP-compressed as a whole (both published phone datasets are); a file starting with the
GZIP magic bytes is read through :mod:`gzip`, any other as uncompressed.

Every way a file can be wrong (unreadable, a truncated record, a bad checksum, a length
beyond ``max_record_bytes``, a broken GZIP stream) raises :class:`DatasetError` naming the
file and the record's index (counted from 0), never another exception, and reading never
takes more memory than one record of at most ``max_record_bytes``.

CRC32C is computed by the ``google_crc32c`` or ``crc32c`` package when one is installed
(C code, GB/s), else with numpy over many lanes at once when numpy is there (~100 MB/s),
else in pure Python (~6 MB/s: a 5 MB AndroidControl episode costs ~0.8 s more).
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from vlagent.errors import UserError

__all__ = [
    "MAX_RECORD_BYTES",
    "DatasetError",
    "crc32c",
    "masked_crc32c",
    "read_records",
    "write_records",
]

log = logging.getLogger(__name__)

#: Largest record read by default (an AndroidControl episode with its screenshots is tens of MB).
MAX_RECORD_BYTES = 512 << 20

_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(UserError):
    """A dataset file cannot be read as its format says; the message names the file and the record."""


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def _crc32c_python(data: bytes | memoryview, register: int = 0xFFFFFFFF) -> int:
    """The CRC register after ``data``, from ``register`` (no final inversion)."""
    table = _TABLE
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _crc32c_lanes(data: bytes) -> int:
    """The CRC register after ``data``, computed with numpy on many lanes at once.

    The data is cut into ``lanes`` runs of ``m`` bytes whose registers advance together (one
    vectorised table step per byte position); a CRC is linear, so the runs are then chained:
    feeding ``m`` zero bytes is a fixed GF(2) map, applied through four byte tables.
    """
    import numpy as np

    table = np.array(_TABLE, dtype=np.uint32)
    lanes = min(16384, max(256, 1 << (4 * math.isqrt(len(data))).bit_length() - 1))
    m = len(data) // lanes
    columns = np.frombuffer(data, dtype=np.uint8, count=lanes * m).reshape(lanes, m).T.copy()
    state = np.zeros(lanes, dtype=np.uint32)
    state[0] = 0xFFFFFFFF
    eight, low = np.uint32(8), np.uint32(0xFF)
    for column in columns:
        state = table[(state ^ column) & low] ^ (state >> eight)
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(m):
        basis = table[basis & low] ^ (basis >> eight)
    images = basis.tolist()
    shift = []
    for part in range(4):
        row = [0] * 256
        for value in range(1, 256):
            bit = value & -value
            row[value] = row[value ^ bit] ^ images[8 * part + bit.bit_length() - 1]
        shift.append(row)
    s0, s1, s2, s3 = shift
    register = 0
    for lane in state.tolist():
        register = (
            s0[register & 255] ^ s1[(register >> 8) & 255] ^ s2[(register >> 16) & 255] ^ s3[register >> 24] ^ lane
        )
    return _crc32c_python(memoryview(data)[lanes * m :], register)


def _accelerated() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c

        if getattr(google_crc32c, "implementation", "c") == "c":
            return lambda data: int(google_crc32c.value(data))
    except ImportError:
        pass
    try:
        import crc32c as crc32c_package

        return lambda data: int(crc32c_package.crc32c(data))
    except ImportError:
        return None


@functools.cache
def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


_FAST = _accelerated()
_LANES_FROM = 1 << 14  # below this, the plain loop is as quick
_SLOW_WARNED: list[bool] = []


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if _FAST is not None:
        return _FAST(data)
    if len(data) >= _LANES_FROM and _has_numpy():
        return _crc32c_lanes(data) ^ 0xFFFFFFFF
    return _crc32c_python(data) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """The checksum TFRecord stores: CRC32C rotated right by 15 bits plus 0xa282ead8."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: Path) -> io.BufferedIOBase:
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        return gzip.open(path, "rb") if magic == _GZIP_MAGIC else path.open("rb")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it: {exc.strerror or exc}") from exc


def _read_exactly(handle: io.BufferedIOBase, size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the stream), read in bounded chunks."""
    if size <= 1 << 20:
        return handle.read(size)
    parts: list[bytes] = []
    left = size
    while left:
        part = handle.read(min(left, 1 << 20))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_records(
    path: Path | str, *, max_record_bytes: int = MAX_RECORD_BYTES, verify: bool = True
) -> Iterator[tuple[int, bytes]]:
    """``(index, data)`` of every record of the TFRecord file at ``path`` (GZIP or not), in order.

    With ``verify`` (the default) both checksums of every record are checked. Raises
    :class:`DatasetError` for anything the file does wrong, naming the file and the record.
    """
    path = Path(path)
    if _FAST is None and verify and not _SLOW_WARNED:
        _SLOW_WARNED.append(True)
        speed = "with numpy" if _has_numpy() else "in pure Python"
        log.info("checking TFRecord checksums %s; 'pip install google-crc32c' makes it faster", speed)
    with _open(path) as handle:
        index = 0
        while True:
            where = f"{path}: record {index}"
            try:
                header = handle.read(12)
                if not header:
                    return
                if len(header) < 12:
                    raise DatasetError(f"{where}: the file ends inside the record's header ({len(header)} of 12 bytes)")
                (length,) = _LENGTH.unpack_from(header)
                (length_crc,) = _CRC.unpack_from(header, 8)
                if verify and masked_crc32c(header[:8]) != length_crc:
                    raise DatasetError(f"{where}: the length's checksum is wrong (not a TFRecord file, or corrupt)")
                if length > max_record_bytes:
                    raise DatasetError(
                        f"{where}: claims {length} bytes, more than the limit of {max_record_bytes} "
                        "(not a TFRecord file, or corrupt)"
                    )
                data = _read_exactly(handle, length)
                if len(data) < length:
                    raise DatasetError(f"{where}: the file ends inside the record ({len(data)} of {length} bytes)")
                tail = handle.read(4)
                if len(tail) < 4:
                    raise DatasetError(f"{where}: the file ends before the record's checksum")
                if verify and masked_crc32c(data) != _CRC.unpack(tail)[0]:
                    raise DatasetError(f"{where}: the data's checksum is wrong (the record is corrupt)")
            except DatasetError:
                raise
            except EOFError as exc:
                raise DatasetError(f"{where}: the GZIP stream is cut off ({exc})") from exc
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise DatasetError(f"{where}: the GZIP stream is corrupt ({exc})") from exc
            except OSError as exc:
                raise DatasetError(f"{where}: cannot read it: {exc.strerror or exc}") from exc
            yield index, data
            index += 1


def _framed(data: bytes) -> bytes:
    length = _LENGTH.pack(len(data))
    return length + _CRC.pack(masked_crc32c(length)) + data + _CRC.pack(masked_crc32c(data))


def write_records(path: Path | str, records: Iterable[bytes], *, compress: bool = True) -> int:
    """Write ``records`` as a TFRecord file (GZIP-compressed unless ``compress`` is False); return their count.

    The file appears whole or not at all (written beside it, then renamed).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as raw:
            if compress:
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                    count = _write_all(packed, records)
            else:
                count = _write_all(raw, records)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _write_all(sink: io.BufferedIOBase, records: Iterable[bytes]) -> int:
    count = 0
    for data in records:
        sink.write(_framed(data))
        count += 1
    return count
