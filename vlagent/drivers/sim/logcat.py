"""The simulated phone's system log: ``log`` writes to it, ``logcat`` reads it (``-d``) or follows it.

Lines print in logcat's formats (``threadtime``, the default; ``time``, ``brief``, ``tag``,
``raw``), filtered by ``-s TAG`` or ``TAG:LEVEL`` specs. A following ``logcat`` (no ``-d``)
keeps its stream open and prints new lines as they come, until the client hangs up. A real
phone's log never stays quiet for long and clients rely on that (adbutils' logcat reader
notices a stop request only at its next line), so while someone follows, the simulated system
writes ``I/vlagent.sim: alive`` once a second, under its own tag so nobody mistakes it for an
Android service. The buffer is a ring, as logd's is: the newest :data:`BUFFER_BYTES` of log
(and at most :data:`BUFFER_LINES` lines) are kept, and one line carries at most
:data:`MAX_PAYLOAD` bytes of tag and message (liblog's ``LOGGER_ENTRY_MAX_PAYLOAD``; the rest
is cut off, as on a phone). This module must not know the adb protocol.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vlagent.drivers.sim.shell import ProgramError, Result

if TYPE_CHECKING:
    from vlagent.drivers.sim.device import SimDevice

__all__ = ["BUFFER_BYTES", "BUFFER_LINES", "LOG_PROGRAMS", "MAX_PAYLOAD", "LogEntry", "SimLog"]

_LEVELS = "VDIWEFS"
_FORMATS = ("threadtime", "time", "brief", "tag", "raw", "long", "process", "thread")
HEARTBEAT_S = 1.0
#: Bytes of log the ring keeps (logd's default buffer size on a phone that is not low on memory).
BUFFER_BYTES = 256 * 1024
#: Lines the ring keeps at most, however short they are.
BUFFER_LINES = 5000
#: Most bytes of one entry's priority, tag and message with their terminators (liblog's limit).
MAX_PAYLOAD = 4068
#: What one entry costs in the ring besides its tag and message (logd's header, about).
_ENTRY_OVERHEAD = 28


@dataclass(frozen=True)
class LogEntry:
    when: float
    pid: int
    level: str
    tag: str
    message: str

    def format(self, style: str) -> str:
        stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(self.when)) + f".{int(self.when * 1000) % 1000:03d}"
        if style == "time":
            return f"{stamp} {self.level}/{self.tag}({self.pid:5d}): {self.message}\n"
        if style == "brief":
            return f"{self.level}/{self.tag}({self.pid:5d}): {self.message}\n"
        if style == "tag":
            return f"{self.level}/{self.tag}: {self.message}\n"
        if style == "raw":
            return f"{self.message}\n"
        return f"{stamp} {self.pid:5d} {self.pid:5d} {self.level} {self.tag:<8}: {self.message}\n"


@dataclass
class SimLog:
    """The log ring buffer (see :data:`BUFFER_BYTES`, :data:`BUFFER_LINES`), safe to write from any thread."""

    entries: deque[tuple[int, LogEntry]] = field(default_factory=deque)
    _seq: int = 0
    _size: int = 0
    """Bytes the entries take in the ring (:func:`_entry_size`)."""
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def write(self, level: str, tag: str, message: str, pid: int = 1000) -> None:
        """Append one line, cut to :data:`MAX_PAYLOAD`; the oldest lines make room."""
        tag, message = _fit(tag, message)
        entry = LogEntry(time.time(), pid, level, tag, message)
        with self._changed:
            self._seq += 1
            self.entries.append((self._seq, entry))
            self._size += _entry_size(entry)
            while len(self.entries) > 1 and (self._size > BUFFER_BYTES or len(self.entries) > BUFFER_LINES):
                _, dropped = self.entries.popleft()
                self._size -= _entry_size(dropped)
            self._changed.notify_all()

    @property
    def size(self) -> int:
        """Bytes the buffered lines take (``logcat -g`` on a phone reports this as "consumed")."""
        with self._changed:
            return self._size

    def clear(self) -> None:
        with self._changed:
            self.entries.clear()
            self._size = 0

    def lines(self, after: int = 0) -> tuple[int, list[LogEntry]]:
        """Entries newer than sequence number ``after``, and the newest sequence number."""
        with self._changed:
            return self._seq, [entry for seq, entry in self.entries if seq > after]

    def follow(self, after: int, show: Callable[[LogEntry], str | None]) -> Iterator[bytes]:
        """New lines as they are written (``b""`` now and then while none come, so the reader can look up)."""
        seen, beat = after, time.monotonic()
        while True:
            with self._changed:
                if self._seq <= seen:
                    self._changed.wait(timeout=0.25)
            seen, new = self.lines(seen)
            yield "".join(text for text in map(show, new) if text is not None).encode("utf-8")
            if time.monotonic() - beat >= HEARTBEAT_S:
                beat = time.monotonic()
                self.write("I", "vlagent.sim", "alive", pid=1)


def _entry_size(entry: LogEntry) -> int:
    return _ENTRY_OVERHEAD + len(entry.tag.encode("utf-8", "replace")) + len(entry.message.encode("utf-8", "replace"))


def _fit(tag: str, message: str) -> tuple[str, str]:
    """``tag`` and ``message`` cut, as liblog cuts them, to :data:`MAX_PAYLOAD` bytes with priority and terminators."""
    room = MAX_PAYLOAD - 3  # the priority byte and two NUL terminators
    tag_bytes = tag.encode("utf-8", "replace")
    message_bytes = message.encode("utf-8", "replace")
    if len(tag_bytes) + len(message_bytes) <= room:
        return tag, message
    tag_bytes = tag_bytes[:room]
    message_bytes = message_bytes[: room - len(tag_bytes)]
    return tag_bytes.decode("utf-8", "ignore"), message_bytes.decode("utf-8", "ignore")


def _log(dev: SimDevice, args: list[str]) -> Result:
    level, tag, i = "I", "log", 0
    while i < len(args) and args[i] in ("-p", "-t") and i + 1 < len(args):
        if args[i] == "-p":
            level = args[i + 1][:1].upper()
            if level not in _LEVELS[:-1]:
                raise ProgramError(f"bad priority '{args[i + 1]}'")
        else:
            tag = args[i + 1]
        i += 2
    if i >= len(args):
        raise ProgramError("usage: log [-p PRIORITY] [-t TAG] MESSAGE")
    dev.logcat.write(level, tag, " ".join(args[i:]), pid=4321)
    return Result()


def _filters(specs: list[str]) -> Callable[[LogEntry], bool]:
    rules: dict[str, str] = {}
    for spec in specs:
        tag, _, level = spec.rpartition(":") if ":" in spec else (spec, "", "V")
        level = level[:1].upper() or "V"
        if level not in _LEVELS:
            raise ProgramError(f"Invalid filter expression '{spec}'")
        rules[tag] = level

    def keep(entry: LogEntry) -> bool:
        level = rules.get(entry.tag, rules.get("*", "V"))
        return level != "S" and _LEVELS.index(entry.level) >= _LEVELS.index(level)

    return keep


def _logcat(dev: SimDevice, args: list[str]) -> Result:
    style, dump, last, specs, grep = "threadtime", False, 0, [], None
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if arg in ("-c", "--clear"):
            dev.logcat.clear()
            return Result()
        if arg == "-d":
            dump = True
        elif arg in ("-v", "-b", "-t", "-T", "-s", "-e") and value is not None:
            if arg == "-v":
                if value not in _FORMATS:
                    raise ProgramError(f'Invalid parameter "{value}" to -v', 255)
                style = value
            elif arg in ("-t", "-T"):
                if not value.isdigit():
                    raise ProgramError("only a line count is simulated for -t/-T", 255)
                last, dump = int(value), dump or arg == "-t"
            elif arg == "-s":
                specs += [f"{value}:V", "*:S"] if ":" not in value else [value, "*:S"]
            elif arg == "-e":
                grep = re.compile(value)
            i += 1  # -b BUFFER: every buffer is the one buffer here
        elif arg.startswith("-"):
            raise ProgramError(f"option '{arg}' is not simulated", 255)
        else:
            specs.append(arg)
        i += 1
    keep = _filters(specs)

    def show(entry: LogEntry) -> str | None:
        if not keep(entry) or (grep is not None and grep.search(entry.message) is None):
            return None
        return entry.format(style)

    newest, entries = dev.logcat.lines()
    shown = [text for text in map(show, entries) if text is not None]
    if last:
        shown = shown[-last:]
    output = "".join(shown).encode("utf-8")
    if dump:
        return Result(stdout=output)
    return Result(stdout=output, follow=dev.logcat.follow(newest, show))


LOG_PROGRAMS: dict[str, Callable[[SimDevice, list[str]], Result]] = {"log": _log, "logcat": _logcat}
