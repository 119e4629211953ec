"""The simulated phone's ``/system/bin/sh``: reads a command line as a POSIX shell does and runs it.

:func:`lex` splits a line into words and operators (quotes, escapes, ``$(...)``, backticks,
``$?``, comments); :func:`run_script` runs what it found: ``;`` ``&&`` ``||``, pipelines
``a | b`` (the output of one is the input of the next), redirections ``> FILE``, ``>> FILE``,
``< FILE``, ``2> FILE``, ``2>&1``, ``>&2``, command substitution, and ``exit N`` (a program
whose result ends the script). Programs and files are the host's (:class:`ShellHost`): this
module knows no program by name and never runs anything on the machine it lives on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "MAX_NESTING",
    "NESTING_ERROR",
    "ProgramError",
    "Result",
    "ShellHost",
    "ShellSyntaxError",
    "lex",
    "run_script",
    "split_shell",
]


class ShellSyntaxError(ValueError):
    """The command line is not valid shell (e.g. an unterminated quote): nothing runs."""


class ProgramError(Exception):
    """A simulated program refuses its arguments: ``message`` goes to stderr, ``status`` is its exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Result:
    """What a program or a whole command line printed, and its exit status."""

    stdout: bytes = b""
    stderr: bytes = b""
    status: int = 0
    merged: bytes | None = None
    """stdout and stderr in the order they were written (what a v1 shell's single stream carries)."""
    exits: bool = False
    """True for ``exit``: the script stops after this command."""
    follow: Iterator[bytes] | None = None
    """More output that keeps coming after ``stdout`` (a following ``logcat``): chunks as they are
    written, ``b""`` while nothing comes. Only the last command of a line keeps it."""

    @property
    def combined(self) -> bytes:
        return self.stdout + self.stderr if self.merged is None else self.merged


class ShellHost(Protocol):
    """What the shell needs from the device it runs on."""

    def run_program(self, argv: list[str], stdin: bytes) -> Result:
        """Run one simple command (never raises: failures are a status and stderr)."""
        ...

    def read_file(self, path: str) -> bytes:
        """The file's bytes; ProgramError (``PATH: No such file or directory``) otherwise."""
        ...

    def write_file(self, path: str, data: bytes, append: bool) -> None:
        """Create or replace (or append to) a file; ProgramError when that is not allowed."""
        ...

    def variable(self, name: str) -> str:
        """The value of environment variable ``name`` (empty when unset)."""
        ...


# --- reading a line -----------------------------------------------------------------------------

# A word is a list of (kind, text, quoted) segments: kind "lit", "var" ($NAME) or "cmd" ($(...)).
_Segment = tuple[Literal["lit", "var", "cmd"], str, bool]
_Word = list[_Segment]
_OPERATORS = ("&&", "||", ";;", ">>", ">&2", ";", "&", "|", "(", ")", "<", ">")
#: Redirections of file descriptor 2, recognised only where a word would start (``2>x``, not ``a2>x``).
_FD_OPERATORS = ("2>&1", "2>>", "2>")
_VAR_RE = re.compile(r"[?#$!@*0-9]|[A-Za-z_][A-Za-z0-9_]*")
#: The first characters of :data:`_OPERATORS`.
_OPERATOR_CHARS = frozenset("&|;()<>")
#: A run of characters that mean nothing to the shell outside quotes (``#`` only starts a comment
#: where a word would start, which :func:`lex` checks before reading a run).
_PLAIN_RE = re.compile(r"[^ \t\n\\'\"$`&|;()<>]+")
#: A run of characters that mean nothing inside double quotes.
_PLAIN_DOUBLE_RE = re.compile(r'[^"\\$`]+')


def lex(line: str) -> list[_Word | str]:
    """Split a command line into words and operator strings, as ``sh`` would before expanding."""
    out: list[_Word | str] = []
    word: _Word = []
    started = False
    i, n = 0, len(line)

    def flush() -> None:
        nonlocal word, started
        if started:
            out.append(word)
        word, started = [], False

    def lit(text: str, quoted: bool) -> None:
        nonlocal started
        word.append(("lit", text, quoted))
        started = True

    while i < n:
        c = line[i]
        if c in " \t":
            flush()
            i += 1
        elif c == "\n":
            flush()
            out.append(";")
            i += 1
        elif c == "#" and not started:
            while i < n and line[i] != "\n":
                i += 1
        elif c == "\\":
            if i + 1 < n and line[i + 1] != "\n":
                lit(line[i + 1], True)
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            lit(line[i + 1 : end], True)
            i = end + 1
        elif c == '"':
            i = _lex_double(line, i + 1, word)
            started = True
        elif c in "$`":
            i = _lex_dollar(line, i, word, quoted=False)
            started = True
        elif not started and c == "2" and any(line.startswith(op, i) for op in _FD_OPERATORS):
            op = next(op for op in _FD_OPERATORS if line.startswith(op, i))
            out.append(op)
            i += len(op)
        elif c in _OPERATOR_CHARS:
            flush()
            op = next(op for op in _OPERATORS if line.startswith(op, i))
            out.append(op)
            i += len(op)
        else:  # a run of ordinary characters at once: a long argument costs one match, not one step a character
            match = _PLAIN_RE.match(line, i)
            assert match is not None  # line[i] is ordinary, so the run has at least one character
            lit(match.group(0), False)
            i = match.end()
    flush()
    return out


def _lex_double(line: str, i: int, word: _Word) -> int:
    n = len(line)
    while i < n:
        c = line[i]
        if c == '"':
            word.append(("lit", "", True))  # keeps "" an (empty) word
            return i + 1
        if c == "\\" and i + 1 < n and line[i + 1] in '$`"\\\n':
            if line[i + 1] != "\n":
                word.append(("lit", line[i + 1], True))
            i += 2
        elif c in "$`":
            i = _lex_dollar(line, i, word, quoted=True)
        else:
            match = _PLAIN_DOUBLE_RE.match(line, i)
            end = match.end() if match is not None else i + 1  # a lone backslash is itself
            word.append(("lit", line[i:end], True))
            i = end
    raise ShellSyntaxError("unterminated double-quoted string")


def _lex_dollar(line: str, i: int, word: _Word, *, quoted: bool) -> int:
    """Read ``$(...)``, backticks, ``${NAME}``, ``$NAME`` or ``$?`` starting at ``line[i]``."""
    n = len(line)
    if line[i] == "`":
        end = i + 1
        while end < n and line[end] != "`":
            end += 2 if line[end] == "\\" else 1
        if end >= n:
            raise ShellSyntaxError("unterminated backquote")
        word.append(("cmd", line[i + 1 : end], quoted))
        return end + 1
    if line.startswith("$(", i):
        depth, j, in_quote = 1, i + 2, ""
        while j < n and depth:
            ch = line[j]
            if in_quote:
                if ch == in_quote:
                    in_quote = ""
            elif ch in "'\"":
                in_quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            j += 1
        if depth:
            raise ShellSyntaxError("unterminated $(")
        word.append(("cmd", line[i + 2 : j - 1], quoted))
        return j
    if line.startswith("${", i):
        end = line.find("}", i)
        if end < 0:
            raise ShellSyntaxError("bad substitution")
        word.append(("var", line[i + 2 : end], quoted))
        return end + 1
    match = _VAR_RE.match(line, i + 1)
    if match is None:
        word.append(("lit", "$", quoted))
        return i + 1
    word.append(("var", match.group(0), quoted))
    return match.end()


def split_shell(line: str) -> list[list[str]]:
    """The simple commands in ``line`` with quotes removed and no expansion (for inspection)."""
    commands: list[list[str]] = [[]]
    for item in lex(line):
        if isinstance(item, str):
            commands.append([])
        else:
            commands[-1].append("".join(text if kind == "lit" else f"${kind}" for kind, text, _ in item))
    return [c for c in commands if c]


# --- the shape of a script ------------------------------------------------------------------------

_REDIRECTS = frozenset({"<", ">", ">>", "2>", "2>>", "2>&1", ">&2"})
_TARGETED = frozenset({"<", ">", ">>", "2>", "2>>"})


@dataclass
class _Command:
    words: list[_Word] = field(default_factory=list)
    redirects: list[tuple[str, _Word | None]] = field(default_factory=list)


@dataclass
class _Pipeline:
    commands: list[_Command]
    then: str = ";"
    """What joins it to the next pipeline: ``;`` (also ``&``, newline), ``&&`` or ``||``."""


def _parse(items: list[_Word | str]) -> list[_Pipeline]:
    pipelines: list[_Pipeline] = []
    current: list[_Command] = [_Command()]
    pending: str | None = None  # a redirection waiting for its file name
    for item in items:
        if not isinstance(item, str):
            if pending is not None:
                current[-1].redirects.append((pending, item))
                pending = None
            else:
                current[-1].words.append(item)
            continue
        if pending is not None:
            raise ShellSyntaxError(f"unexpected '{item}'")
        if item in _TARGETED:
            pending = item
        elif item in _REDIRECTS:
            current[-1].redirects.append((item, None))
        elif item == "|":
            current.append(_Command())
        elif item in ("(", ")"):
            continue  # subshells run in the same shell here: nothing they could change leaks out
        else:
            pipelines.append(_Pipeline(current, "&&" if item == "&&" else "||" if item == "||" else ";"))
            current = [_Command()]
    if pending is not None:
        raise ShellSyntaxError("missing file name after a redirection")
    pipelines.append(_Pipeline(current))
    return [p for p in pipelines if any(c.words or c.redirects for c in p.commands)]


# --- running -------------------------------------------------------------------------------------


def run_script(host: ShellHost, line: str) -> Result:
    """Run ``line``; a syntax error runs nothing (status 2), as with ``sh -c``.

    Command substitutions nested deeper than :data:`MAX_NESTING` stop the line where it got to:
    what ran before stays printed, then ``nesting too deep`` on stderr, status 2.
    """
    try:
        pipelines = _parse(lex(line))
    except ShellSyntaxError as exc:
        return Result(stderr=f"/system/bin/sh: syntax error: {exc}\n".encode(), status=2)
    runner = _Runner(host)
    try:
        return runner.run(pipelines)
    except _TooDeep:
        runner.emit(stderr=NESTING_ERROR)
        runner.out.status, runner.out.follow = 2, None
        return runner.out


#: How deep command substitutions may nest (``$($($(...)))``); real lines use two or three levels.
MAX_NESTING = 64
#: What the shell prints when a line nests deeper than that.
NESTING_ERROR = b"/system/bin/sh: nesting too deep\n"


class _TooDeep(Exception):
    """Command substitutions nest deeper than :data:`MAX_NESTING`: the line stops."""


class _Runner:
    def __init__(self, host: ShellHost, depth: int = 0) -> None:
        if depth > MAX_NESTING:
            raise _TooDeep
        self.host = host
        self.depth = depth
        self.out = Result(merged=b"")

    def emit(self, stdout: bytes = b"", stderr: bytes = b"", merged: bytes | None = None) -> None:
        self.out.stdout += stdout
        self.out.stderr += stderr
        self.out.merged = (self.out.merged or b"") + (stdout + stderr if merged is None else merged)

    def run(self, pipelines: list[_Pipeline]) -> Result:
        status, run_next = 0, True
        for pipeline in pipelines:
            if run_next:
                status, exits = self.pipeline(pipeline, status)
                if exits:
                    break
            run_next = {"&&": status == 0, "||": status != 0}.get(pipeline.then, True)
        self.out.status = status
        return self.out

    def pipeline(self, pipeline: _Pipeline, status: int) -> tuple[int, bool]:
        stdin = b""
        last = len(pipeline.commands) - 1
        exits = False
        for position, command in enumerate(pipeline.commands):
            argv = self.expand(command.words, status)
            try:
                stdin, status, exits = self.command(argv, command.redirects, stdin, status, position == last)
            except _RedirectFailed as exc:
                self.emit(stderr=f"/system/bin/sh: {exc}\n".encode())
                stdin, status = b"", 1
        return status, exits

    def command(
        self, argv: list[str], redirects: list[tuple[str, _Word | None]], stdin: bytes, status: int, last: bool
    ) -> tuple[bytes, int, bool]:
        """Run one command; returns what it passes down the pipe, its status, and whether it was ``exit``."""
        targets: list[tuple[str, str]] = []
        for op, word in redirects:
            target = " ".join(self.expand([word], status)) if word is not None else ""
            if op == "<":
                try:
                    stdin = self.host.read_file(target)
                except ProgramError as exc:
                    raise _RedirectFailed(str(exc)) from None
            else:
                targets.append((op, target))
        result = self.host.run_program(argv, stdin) if argv else Result()
        # File descriptors 1 and 2 as sh sets them up, left to right: ``> f 2>&1`` sends both to f.
        out: _Dest = ("std", "out")
        err: _Dest = ("std", "err")
        opened: dict[str, bool] = {}  # file -> append; the first opening decides truncation
        for op, target in targets:
            if op in (">", ">>", "2>", "2>>"):
                opened.setdefault(target, op.endswith(">>"))
                if op.startswith("2"):
                    err = ("file", target)
                else:
                    out = ("file", target)
            elif op == "2>&1":
                err = out
            else:  # >&2
                out = err
        chunks: dict[_Dest, bytes] = {}
        if out == err:
            chunks[out] = result.combined
        else:
            chunks[out] = result.stdout
            chunks[err] = result.stderr
        for path, append in opened.items():
            self.write(path, chunks.get(("file", path), b""), append)
        stdout, stderr = chunks.get(("std", "out"), b""), chunks.get(("std", "err"), b"")
        if last:
            plain = out == ("std", "out") and err == ("std", "err")
            self.emit(stdout, stderr, result.combined if plain else None)
            self.out.follow = result.follow if out == ("std", "out") else None
            return b"", result.status, result.exits
        self.emit(stderr=stderr)
        return stdout, result.status, result.exits

    def write(self, target: str, data: bytes, append: bool) -> None:
        if target in ("/dev/null", "/dev/zero"):
            return
        if target in ("/dev/tty", "/dev/stdout"):
            self.emit(data)
            return
        if target == "/dev/stderr":
            self.emit(stderr=data)
            return
        try:
            self.host.write_file(target, data, append)
        except ProgramError as exc:
            raise _RedirectFailed(str(exc)) from None

    def expand(self, words: list[_Word], status: int) -> list[str]:
        argv: list[str] = []
        for word in words:
            fields: list[str] = [""]
            keep = False
            for kind, text, quoted in word:
                if kind == "lit":
                    fields[-1] += text
                    keep = keep or quoted or bool(text)
                    continue
                if kind == "var":
                    value = str(status) if text == "?" else self.host.variable(text)
                else:  # command substitution: the inner line really runs (and is logged)
                    try:
                        inner = _Runner(self.host, self.depth + 1).run(_parse(lex(text)))
                    except ShellSyntaxError as exc:
                        inner = Result(stderr=f"/system/bin/sh: syntax error: {exc}\n".encode(), status=2)
                    self.emit(stderr=inner.stderr)
                    value = inner.stdout.decode("utf-8", "replace").rstrip("\n")
                if quoted:
                    fields[-1] += value
                    keep = True
                else:
                    parts = value.split()
                    if parts:
                        fields[-1] += parts[0]
                        fields.extend(parts[1:])
                        keep = True
            if keep:
                argv.extend(fields)
        return argv


class _RedirectFailed(Exception):
    pass


_Dest = tuple[Literal["std", "file"], str]
