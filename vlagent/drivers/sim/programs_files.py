"""Simulated toybox utilities: files (``cat``, ``ls``, ``rm``, ``mkdir``, ``touch``), text filters
(``grep``, ``wc``) and shell plumbing (``echo``, ``true``, ``false``, ``exit``, ``sleep``, ``pwd``).

They act on the device's :class:`~vlagent.drivers.sim.files.SimFiles` and print what toybox
prints, error texts included (``cat: /x: No such file or directory``, exit status 1). Only the
options clients use are known; any other option fails visibly. This module must not touch the
host's files or sleep longer than :data:`MAX_SLEEP`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vlagent.drivers.sim.files import FsError
from vlagent.drivers.sim.shell import ProgramError, Result

if TYPE_CHECKING:
    from vlagent.drivers.sim.device import SimDevice

__all__ = ["FILE_PROGRAMS", "MAX_SLEEP", "STDIN_PROGRAMS"]

#: Longest ``sleep`` the simulated shell honours, in seconds (a client's timeout test needs a real wait).
MAX_SLEEP = 10.0


def _ok(text: str = "") -> Result:
    return Result(stdout=text.encode("utf-8"))


def _split_flags(args: list[str], known: str) -> tuple[set[str], list[str]]:
    """Short options (``-rf`` = r, f) and operands; an option outside ``known`` is an error, as in toybox."""
    flags: set[str] = set()
    operands: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            operands += args[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1 and not operands:
            for letter in arg[1:]:
                if letter not in known:
                    raise ProgramError(f"Unknown option '{letter}'")
                flags.add(letter)
        else:
            operands.append(arg)
    return flags, operands


def _echo(dev: SimDevice, args: list[str]) -> Result:
    newline = "\n"
    if args[:1] == ["-n"]:
        args, newline = args[1:], ""
    return _ok(" ".join(args) + newline)


def _exit(dev: SimDevice, args: list[str]) -> Result:
    if not args:
        return Result(exits=True)
    try:
        return Result(status=int(args[0]) & 0xFF, exits=True)
    except ValueError:
        return Result(stderr=f"/system/bin/sh: exit: {args[0]}: bad number\n".encode(), status=2, exits=True)


def _sleep(dev: SimDevice, args: list[str]) -> Result:
    if len(args) != 1:
        raise ProgramError("usage: sleep SECONDS")
    try:
        seconds = float(args[0].rstrip("s"))
    except ValueError:
        raise ProgramError(f"invalid number '{args[0]}'") from None
    time.sleep(min(max(seconds, 0.0), MAX_SLEEP))
    return Result()


def _cat(dev: SimDevice, args: list[str], stdin: bytes) -> Result:
    _, paths = _split_flags(args, "uv")
    if not paths:
        return Result(stdout=stdin)
    out, err = b"", b""
    for path in paths:
        if path == "-":
            out += stdin
            continue
        try:
            out += dev.files.read(path)
        except FsError as exc:
            err += f"cat: {exc}\n".encode()
    return Result(stdout=out, stderr=err, status=1 if err else 0, merged=out + err if not err else None)


def _grep(dev: SimDevice, args: list[str], stdin: bytes) -> Result:
    flags, operands = _split_flags(args, "iEvcqnFwe")
    if not operands:
        raise ProgramError("usage: grep [-icvqnEFw] PATTERN [FILE...]", 2)
    pattern, files = operands[0], operands[1:]
    text = stdin if not files else b"".join(dev.files.read(f) for f in files)
    regex = re.escape(pattern) if "F" in flags else _posix_to_python(pattern, extended="E" in flags)
    if "w" in flags:
        regex = rf"\b(?:{regex})\b"
    try:
        compiled = re.compile(regex, re.IGNORECASE if "i" in flags else 0)
    except re.error as exc:
        raise ProgramError(f"bad regex '{pattern}': {exc}", 2) from None
    lines = text.decode("utf-8", "replace").splitlines()
    hits = [(n, line) for n, line in enumerate(lines, 1) if (compiled.search(line) is not None) != ("v" in flags)]
    status = 0 if hits else 1
    if "q" in flags:
        return Result(status=status)
    if "c" in flags:
        return Result(stdout=f"{len(hits)}\n".encode(), status=status)
    shown = (f"{n}:{line}" if "n" in flags else line for n, line in hits)
    return Result(stdout="".join(f"{line}\n" for line in shown).encode(), status=status)


def _posix_to_python(pattern: str, *, extended: bool) -> str:
    """A POSIX basic/extended regular expression as Python's ``re`` reads it (the common subset)."""
    if extended:
        return pattern
    # In a basic RE, \| \( \) \{ \} \+ \? are the operators and the bare characters are literal.
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "|(){}+?":
            out.append(pattern[i + 1])
            i += 2
            continue
        out.append("\\" + c if c in "|(){}+?" else c)
        i += 1
    return "".join(out)


def _wc(dev: SimDevice, args: list[str], stdin: bytes) -> Result:
    flags, files = _split_flags(args, "lwc")
    text = stdin if not files else b"".join(dev.files.read(f) for f in files)
    counts = {"l": text.count(b"\n"), "w": len(text.split()), "c": len(text)}
    chosen = [counts[f] for f in "lwc" if f in flags] or [counts["l"], counts["w"], counts["c"]]
    if len(chosen) == 1:
        return _ok(f"{chosen[0]}\n")
    return _ok(" ".join(f"{c:>7}" for c in chosen) + "\n")


def _ls(dev: SimDevice, args: list[str]) -> Result:
    flags, paths = _split_flags(args, "la1dAR")
    out, err = [], []
    for path in paths or ["."]:
        try:
            entry = dev.files.stat(path)
            entries = [entry] if not entry.is_dir or "d" in flags else dev.files.list(path)
        except FsError as exc:
            err.append(f"ls: {exc}\n")
            continue
        if len(paths) > 1 and entry.is_dir and "d" not in flags:
            out.append(f"{path}:\n")
        for e in entries:
            name = path if e is entry and (not e.is_dir or "d" in flags) else e.name
            if "l" in flags:
                kind = "d" if e.is_dir else "-"
                stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.mtime))
                out.append(f"{kind}rwxrwx--x 1 shell shell {e.size:>8} {stamp} {name}\n")
            else:
                out.append(f"{name}\n")
    stdout, stderr = "".join(out).encode(), "".join(err).encode()
    return Result(stdout=stdout, stderr=stderr, status=1 if err else 0)


def _rm(dev: SimDevice, args: list[str]) -> Result:
    flags, paths = _split_flags(args, "rRfvi")
    if not paths and "f" not in flags:
        raise ProgramError("Needs 1 argument")
    errors = []
    for path in paths:
        try:
            dev.files.remove(path, recursive=bool(flags & {"r", "R"}))
        except FsError as exc:
            if not ("f" in flags and exc.errno == 2):  # -f: a missing file is not an error
                errors.append(f"rm: {exc}\n")
    return Result(stderr="".join(errors).encode(), status=1 if errors else 0)


def _mkdir(dev: SimDevice, args: list[str]) -> Result:
    flags, paths = _split_flags(args, "pv")
    if not paths:
        raise ProgramError("Needs 1 argument")
    errors = []
    for path in paths:
        try:
            dev.files.mkdir(path, parents="p" in flags)
        except FsError as exc:
            errors.append(f"mkdir: {exc}\n")
    return Result(stderr="".join(errors).encode(), status=1 if errors else 0)


def _touch(dev: SimDevice, args: list[str]) -> Result:
    _, paths = _split_flags(args, "acm")
    if not paths:
        raise ProgramError("Needs 1 argument")
    errors = []
    for path in paths:
        try:
            dev.files.touch(path)
        except FsError as exc:
            errors.append(f"touch: {exc}\n")
    return Result(stderr="".join(errors).encode(), status=1 if errors else 0)


FILE_PROGRAMS: dict[str, Callable[[SimDevice, list[str]], Result]] = {
    "echo": _echo,
    "exit": _exit,
    "false": lambda dev, args: Result(status=1),
    "ls": _ls,
    "mkdir": _mkdir,
    "pwd": lambda dev, args: _ok("/\n"),
    "rm": _rm,
    "sleep": _sleep,
    "touch": _touch,
    "true": lambda dev, args: Result(),
}
#: Programs that read standard input (the previous command of a pipeline, or ``< FILE``).
STDIN_PROGRAMS: dict[str, Callable[[SimDevice, list[str], bytes], Result]] = {
    "cat": _cat,
    "grep": _grep,
    "wc": _wc,
}
