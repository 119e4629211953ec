"""Secrets: values the model types without ever seeing them, and that no written file holds.

A secret is declared by name (``--secret PASSWORD`` reads the environment variable
``PASSWORD``; ``secrets: [PASSWORD]`` in a scenario; ``run_episode(..., secrets={...})``).
The task and the model's typed text refer to it as ``{{PASSWORD}}``; :meth:`Secrets.reveal_action`
swaps the value in at the last moment, on the action handed to the driver, so the model's
prompt, the trajectory, reports and logs only ever hold the placeholder.

Everything that leaves the process as text goes through :func:`scrub`: it puts the
placeholder back wherever a live secret's value appears (the model may copy it off the
screen, a driver may echo it in an error) and blanks credentials inside URLs
(``http://user:KEY@host`` -> ``http://***@host``). :class:`ScrubFilter` does the same for
log records. This module is a leaf above the actions: it decides nothing about the episode.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping

from vlagent.actions import Action, Type
from vlagent.errors import ConfigError
from vlagent.outcome import ActionOutcome

__all__ = ["PLACEHOLDER", "ScrubFilter", "Secrets", "UnknownSecret", "install_log_scrubbing", "scrub", "scrub_url"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
"""``{{NAME}}``: where a secret's value goes."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://)[^\s/@'\"<>]+@")
_URL_QUERY_KEY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access[_-]?token|password|secret)=)[^&#\s'\"<>]+")
_MAX_VALUE = 4096

_live: list[Secrets] = []
_live_lock = threading.Lock()


class UnknownSecret(ValueError):
    """The text names a secret that was not declared."""


class Secrets:
    """Named secret values; empty when none were declared."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        values = dict(values or {})
        for name, value in values.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(f"secret name {name!r}: use letters, digits and '_' (e.g. PASSWORD)")
            if not isinstance(value, str) or not value:
                raise ConfigError(f"secret {name}: the value is empty")
            if len(value) > _MAX_VALUE:
                raise ConfigError(f"secret {name}: the value is longer than {_MAX_VALUE} characters")
        self._values = values
        # Longest first, so a value that contains another is replaced whole.
        self._by_length = sorted(values.items(), key=lambda kv: len(kv[1]), reverse=True)

    @classmethod
    def of(cls, secrets: Secrets | Mapping[str, str] | None) -> Secrets:
        return secrets if isinstance(secrets, Secrets) else cls(secrets)

    @classmethod
    def from_env(cls, names: Iterable[str], environ: Mapping[str, str] | None = None) -> Secrets:
        """Read each named secret from the environment variable of that name."""
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name in names:
            if not _NAME.fullmatch(name):
                raise ConfigError(f"secret name {name!r}: use letters, digits and '_' (e.g. PASSWORD)")
            value = environ.get(name)
            if not value:
                raise ConfigError(f"secret {name}: set the environment variable {name} to its value")
            values[name] = value
        return cls(values)

    def merged(self, other: Secrets) -> Secrets:
        """These secrets and ``other``'s (``other`` wins a name both declare)."""
        return Secrets({**self._values, **other._values})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._values))

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:  # never the values
        return f"Secrets({', '.join(self.names)})"

    # -- into the device ----------------------------------------------------------
    def problem(self, action: Action) -> str | None:
        """A line for the model when a typed text names a secret that does not exist; else None."""
        if not isinstance(action, Type):
            return None
        unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(action.text)} - set(self._values))
        if not unknown:
            return None
        known = ", ".join("{{" + n + "}}" for n in self.names) or "none"
        return f"no secret named {', '.join(unknown)}; the secrets you can type are: {known}"

    def reveal(self, text: str) -> str:
        """``text`` with each ``{{NAME}}`` of a declared secret replaced by its value."""
        if not self._values:
            return text

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._values:
                raise UnknownSecret(f"no secret named {name}")
            return self._values[name]

        return PLACEHOLDER.sub(value, text)

    def reveal_action(self, action: Action) -> Action:
        """The action as the driver must perform it: typed text with its secrets' values."""
        if not self._values or not isinstance(action, Type):
            return action
        text = self.reveal(action.text)
        return action if text == action.text else action.model_copy(update={"text": text})

    # -- out of the process --------------------------------------------------------
    def redact(self, text: str) -> str:
        """``text`` with every value (also as JSON or Python would escape it) replaced by its placeholder."""
        for name, value in self._by_length:
            placeholder = "{{" + name + "}}"
            for form in _escaped_forms(value):
                if form in text:
                    text = text.replace(form, placeholder)
        return text

    def redact_outcome(self, outcome: ActionOutcome | None) -> ActionOutcome | None:
        if outcome is None or not self._values:
            return outcome
        seen = self.redact(outcome.seen) if outcome.seen is not None else None
        return ActionOutcome(outcome.typing, self.redact(outcome.detail), outcome.methods, seen)

    @contextlib.contextmanager
    def active(self) -> Iterator[Secrets]:
        """While inside, :func:`scrub` (and so every log handler scrubbing) redacts these values."""
        if not self._values:
            yield self
            return
        install_log_scrubbing()
        with _live_lock:
            _live.append(self)
        try:
            yield self
        finally:
            with _live_lock:
                _live.remove(self)


def _escaped_forms(value: str) -> list[str]:
    """The value as written, and as ``json.dumps``, ``repr`` and ``ascii`` spell it inside quotes."""
    forms = [value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1], repr(value)[1:-1]]
    forms.append(ascii(value)[1:-1])
    return list(dict.fromkeys(forms))


def scrub_url(text: str) -> str:
    """Credentials inside URLs blanked: ``http://user:KEY@host`` -> ``http://***@host``, ``?api_key=***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _URL_QUERY_KEY.sub(r"\1***", text)


def scrub(text: str) -> str:
    """``text`` fit to be written or shown: live secrets' values and URL credentials removed."""
    with _live_lock:
        live = list(_live)
    for secrets in live:
        text = secrets.redact(text)
    return scrub_url(text)


class ScrubFilter(logging.Filter):
    """A handler filter that scrubs each record's message and traceback text before it is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to the handler's own error path
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install_log_scrubbing(logger: logging.Logger | None = None) -> None:
    """Put a :class:`ScrubFilter` on every handler of ``logger`` (default: the root logger)."""
    target = logger if logger is not None else logging.getLogger()
    handlers = list(target.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
