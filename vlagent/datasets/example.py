"""``tf.train.Example`` without TensorFlow or protobuf: a bounded decoder and an encoder.

The messages, from TensorFlow's ``tensorflow/core/example/example.proto`` and
``feature.proto``::

    message Example   { Features features = 1; }
    message Features  { map<string, Feature> feature = 1; }    // entries: key = 1, value = 2
    message Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                     Int64List int64_list = 3; } }
    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }

The decoder follows protobuf's wire format: packed and unpacked repeated numbers are both
read, unknown fields are skipped, a repeated message field is merged, a later map entry
with the same key wins. Every length is checked against what is left of its message, so
a hostile record gives :class:`ExampleError` (a ``ValueError`` with a short reason), never
another exception, an allocation beyond the record's size, or a hang.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

__all__ = ["ExampleError", "Features", "parse_example"]

FeatureKind = Literal["bytes_list", "float_list", "int64_list"]

_T = TypeVar("_T")

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_U64 = 1 << 64


class ExampleError(ValueError):
    """The bytes are not a ``tf.train.Example`` as the schema says; the message says why."""


class _Cursor:
    """Reads wire-format fields from ``data[start:end]``."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: memoryview, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end

    def varint(self) -> int:
        data, pos, end = self.data, self.pos, self.end
        value = shift = 0
        for _ in range(10):
            if pos >= end:
                raise ExampleError("a number runs past the end of its message")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                self.pos = pos
                return value & (_U64 - 1)
            shift += 7
        raise ExampleError("a number is longer than 10 bytes")

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field number, wire type) of each field, leaving ``pos`` at its payload."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ExampleError("a field has number 0")
            yield number, wire

    def span(self) -> tuple[int, int]:
        """A length-delimited payload: its (start, end), moving past it."""
        length = self.varint()
        start = self.pos
        if length > self.end - start:
            raise ExampleError(f"a field claims {length} bytes but its message has {self.end - start} left")
        self.pos = start + length
        return start, self.pos

    def skip(self, wire: int) -> None:
        if wire == _VARINT:
            self.varint()
        elif wire == _LEN:
            self.span()
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if self.end - self.pos < size:
                raise ExampleError("a fixed-size number runs past the end of its message")
            self.pos += size
        else:
            raise ExampleError(f"wire type {wire} is not allowed here (groups are not part of an Example)")

    def sub(self) -> _Cursor:
        start, end = self.span()
        return _Cursor(self.data, start, end)


def _floats(raw: memoryview) -> list[float]:
    if len(raw) % 4:
        raise ExampleError(f"a packed float list of {len(raw)} bytes is not a whole number of floats")
    values = array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def _signed(value: int) -> int:
    return value - _U64 if value >= 1 << 63 else value


@dataclass
class _Feature:
    kind: FeatureKind | None = None
    byte_values: list[bytes] = field(default_factory=list)
    float_values: list[float] = field(default_factory=list)
    int_values: list[int] = field(default_factory=list)


def _list(cursor: _Cursor, kind: FeatureKind, into: _Feature) -> None:
    for number, wire in cursor.fields():
        if number != 1:
            cursor.skip(wire)
        elif kind == "bytes_list":
            if wire != _LEN:
                raise ExampleError(f"a bytes_list value has wire type {wire}")
            start, end = cursor.span()
            into.byte_values.append(bytes(cursor.data[start:end]))
        elif kind == "float_list":
            if wire == _LEN:
                start, end = cursor.span()
                into.float_values.extend(_floats(cursor.data[start:end]))
            elif wire == _I32:
                if cursor.end - cursor.pos < 4:
                    raise ExampleError("a float runs past the end of its message")
                into.float_values.extend(_floats(cursor.data[cursor.pos : cursor.pos + 4]))
                cursor.pos += 4
            else:
                raise ExampleError(f"a float_list value has wire type {wire}")
        elif wire == _LEN:
            packed = cursor.sub()
            while packed.pos < packed.end:
                into.int_values.append(_signed(packed.varint()))
        elif wire == _VARINT:
            into.int_values.append(_signed(cursor.varint()))
        else:
            raise ExampleError(f"an int64_list value has wire type {wire}")


_KINDS: dict[int, FeatureKind] = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


def _feature(cursor: _Cursor, into: _Feature) -> None:
    for number, wire in cursor.fields():
        kind = _KINDS.get(number)
        if kind is None:
            cursor.skip(wire)
            continue
        if wire != _LEN:
            raise ExampleError(f"a Feature's {kind} has wire type {wire}")
        if into.kind != kind:  # a oneof: setting another member clears the one before
            into.kind, into.byte_values, into.float_values, into.int_values = kind, [], [], []
        _list(cursor.sub(), kind, into)


def _entry(cursor: _Cursor) -> tuple[str, _Feature]:
    key, value = b"", _Feature()
    for number, wire in cursor.fields():
        if number == 1 and wire == _LEN:
            start, end = cursor.span()
            key = bytes(cursor.data[start:end])
        elif number == 2 and wire == _LEN:
            _feature(cursor.sub(), value)  # a repeated message field merges, as protobuf does
        else:
            cursor.skip(wire)
    try:
        return key.decode("utf-8"), value
    except UnicodeDecodeError as exc:
        raise ExampleError(f"a feature name is not UTF-8 ({exc.reason})") from None


@dataclass(frozen=True)
class Features:
    """The features of one Example, by kind: name -> values.

    ``parse_example`` gives one; ``encode`` writes it back as an Example (packed numbers,
    names sorted), so a test or a user can build dataset files. A name belongs to one kind.
    """

    bytes_lists: Mapping[str, Sequence[bytes]] = field(default_factory=dict)
    float_lists: Mapping[str, Sequence[float]] = field(default_factory=dict)
    int64_lists: Mapping[str, Sequence[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [*self.bytes_lists, *self.float_lists, *self.int64_lists]
        if len(names) != len(set(names)):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"feature(s) {', '.join(twice)} given as more than one kind")

    def names(self) -> list[str]:
        return sorted([*self.bytes_lists, *self.float_lists, *self.int64_lists])

    def kind(self, name: str) -> FeatureKind | None:
        if name in self.bytes_lists:
            return "bytes_list"
        if name in self.float_lists:
            return "float_list"
        if name in self.int64_lists:
            return "int64_list"
        return None

    def _check(self, name: str, kind: FeatureKind) -> None:
        found = self.kind(name)
        if found is None:
            raise ExampleError(f"feature {name!r} is missing")
        if found != kind:
            raise ExampleError(f"feature {name!r} is a {found}, expected a {kind}")

    def bytes_list(self, name: str) -> list[bytes]:
        self._check(name, "bytes_list")
        return list(self.bytes_lists[name])

    def floats(self, name: str) -> list[float]:
        self._check(name, "float_list")
        return list(self.float_lists[name])

    def ints(self, name: str) -> list[int]:
        self._check(name, "int64_list")
        return list(self.int64_lists[name])

    def texts(self, name: str) -> list[str]:
        """A bytes_list as UTF-8 strings (undecodable bytes become U+FFFD)."""
        return [value.decode("utf-8", errors="replace") for value in self.bytes_list(name)]

    def text(self, name: str) -> str:
        """The single string of a bytes_list feature."""
        return self._one(name, self.texts(name))

    def int(self, name: str) -> int:
        """The single number of an int64_list feature."""
        return self._one(name, self.ints(name))

    @staticmethod
    def _one(name: str, values: list[_T]) -> _T:
        if len(values) != 1:
            raise ExampleError(f"feature {name!r} holds {len(values)} values, expected 1")
        return values[0]

    def encode(self) -> bytes:
        """This as a serialized ``tf.train.Example``."""
        entries: list[bytes] = []
        for name in self.names():
            kind = self.kind(name)
            if kind == "bytes_list":
                body = b"".join(_field(1, _LEN, bytes(v)) for v in self.bytes_lists[name])
                number = 1
            elif kind == "float_list":
                floats = self.float_lists[name]
                body = _field(1, _LEN, struct.pack(f"<{len(floats)}f", *floats)) if floats else b""
                number = 2
            else:
                ints = self.int64_lists[name]
                body = _field(1, _LEN, b"".join(_varint(v % _U64) for v in ints)) if ints else b""
                number = 3
            feature = _field(number, _LEN, body)
            entries.append(_field(1, _LEN, _field(1, _LEN, name.encode("utf-8")) + _field(2, _LEN, feature)))
        return _field(1, _LEN, b"".join(entries))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + _varint(len(payload)) + payload


def parse_example(data: bytes) -> Features:
    """Decode a serialized ``tf.train.Example``; raises :class:`ExampleError` when it is not one."""
    view = memoryview(data)
    top = _Cursor(view, 0, len(view))
    found: dict[str, _Feature] = {}
    for number, wire in top.fields():
        if number != 1:
            top.skip(wire)
            continue
        if wire != _LEN:
            raise ExampleError(f"the Example's features field has wire type {wire}")
        features = top.sub()
        for inner, inner_wire in features.fields():
            if inner != 1:
                features.skip(inner_wire)
                continue
            if inner_wire != _LEN:
                raise ExampleError(f"a feature map entry has wire type {inner_wire}")
            name, value = _entry(features.sub())
            found[name] = value
    bytes_lists: dict[str, list[bytes]] = {}
    float_lists: dict[str, list[float]] = {}
    int64_lists: dict[str, list[int]] = {}
    for name, value in found.items():
        if value.kind == "bytes_list":
            bytes_lists[name] = value.byte_values
        elif value.kind == "float_list":
            float_lists[name] = value.float_values
        elif value.kind == "int64_list":
            int64_lists[name] = value.int_values
        # a Feature with no kind set is an empty feature: treated as absent
    return Features(bytes_lists, float_lists, int64_lists)
