"""Sensitive actions: a person confirms them first, and may be handed control.

:class:`SensitiveRules` says which actions need a person's yes: typing a secret (``{{NAME}}``),
tapping a control whose label matches pay/buy/delete/send... (read from the device's view
hierarchy where the device can give it), or any action while a listed app is in front.
:class:`Confirm` asks a :class:`Person` before such an action runs; the loop feeds a refusal back
to the model as it does any invalid answer, so the model can choose another way. Without a
person at hand every such action is refused, and the ``call_user`` action is not offered.

:class:`TerminalPerson` is the person at the terminal the command runs in (``/dev/tty``),
asked ``[y/N]`` and, on ``call_user``, told why and waited for until Enter is pressed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from vlagent.actions import Action, Type, describe_action, tap_point
from vlagent.drivers.base import Driver
from vlagent.errors import DeviceError
from vlagent.secrets import PLACEHOLDER
from vlagent.tasks.state import StateReader, StateUnavailable

__all__ = ["DEFAULT_WORDS", "Confirm", "Person", "SensitiveRules", "TerminalPerson"]

log = logging.getLogger(__name__)

DEFAULT_WORDS: tuple[str, ...] = (
    "pay",
    "buy",
    "purchase",
    "order",
    "checkout",
    "delete",
    "remove",
    "erase",
    "send",
    "transfer",
    "subscribe",
    "uninstall",
    "factory reset",
)
"""Control labels that make a tap sensitive (matched as whole words, any case)."""


@dataclass(frozen=True)
class SensitiveRules:
    """Which actions need a person's confirmation."""

    words: tuple[str, ...] = DEFAULT_WORDS
    """A tap on a control whose text, description or id holds one of these words."""
    apps: tuple[str, ...] = ()
    """Any action while one of these apps (package or label) is in front."""
    secrets: bool = True
    """Typing a secret (``{{NAME}}``)."""

    def reason(self, action: Action, driver: Driver) -> str | None:
        """Why ``action`` needs a person's yes, in words; None when it does not."""
        if self.secrets and isinstance(action, Type):
            names = sorted({m.group(1) for m in PLACEHOLDER.finditer(action.text)})
            if names:
                return f"it types the secret {', '.join(names)}"
        if not isinstance(driver, StateReader) or (not self.apps and not self.words):
            return None
        try:
            state = driver.state()
            if self.apps:
                front = state.foreground().value
                wanted = {a.casefold() for a in self.apps}
                if front.package.casefold() in wanted or (front.label and front.label.casefold() in wanted):
                    return f"{front.label or front.package} is in front"
            point = tap_point(action)
            if point is not None and self.words:
                node = state.ui_tree().value.node_at(*point)
                if node is not None:
                    label = " ".join(t for t in (node.text, node.content_desc, _id_words(node.resource_id)) if t)
                    word = _matching_word(label, self.words)
                    if word is not None:
                        return f"it taps '{node.text or node.content_desc or node.resource_id}' ({word})"
        except (StateUnavailable, DeviceError) as exc:
            log.info("cannot tell whether %s is sensitive: %s", describe_action(action), exc)
        return None


def _id_words(resource_id: str) -> str:
    return resource_id.rsplit("/", 1)[-1].replace("_", " ") if resource_id else ""


def _matching_word(label: str, words: Sequence[str]) -> str | None:
    for word in words:
        if re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", label, flags=re.IGNORECASE):
            return word
    return None


class Person(Protocol):
    """Someone who can say yes or no, and take over the device for a while."""

    @property
    def present(self) -> bool:
        """Whether anyone can answer now."""
        ...

    def confirm(self, question: str) -> bool:
        """Ask ``question``; True only for an explicit yes."""
        ...

    def hand_over(self, reason: str) -> None:
        """Tell the person why they are needed; return when they are done."""
        ...


class TerminalPerson:
    """The person at the terminal: questions and answers on ``/dev/tty`` (or the given streams)."""

    def __init__(self, reader: IO[str] | None = None, writer: IO[str] | None = None) -> None:
        self._reader, self._writer = reader, writer
        if reader is None and writer is None and sys.stdin.isatty():
            try:  # the terminal itself, even when stdout is piped; held for the person's lifetime
                self._reader = open(os.ctermid(), encoding="utf-8")  # noqa: SIM115
                self._writer = open(os.ctermid(), "w", encoding="utf-8")  # noqa: SIM115
            except OSError:
                self._reader = self._writer = None

    @property
    def present(self) -> bool:
        return self._reader is not None and self._writer is not None

    def _ask(self, text: str) -> str:
        if self._reader is None or self._writer is None:
            return ""
        self._writer.write(text)
        self._writer.flush()
        return self._reader.readline().strip()

    def confirm(self, question: str) -> bool:
        return self._ask(f"{question} [y/N] ").casefold() in ("y", "yes")

    def hand_over(self, reason: str) -> None:
        self._ask(f"The agent hands over the device: {reason or 'it needs a person'}.\nPress Enter when done. ")


class Confirm:
    """Asks a person before each sensitive action; refusals go back to the model."""

    def __init__(self, rules: SensitiveRules | None = None, person: Person | None = None) -> None:
        self.rules = rules if rules is not None else SensitiveRules()
        self.person: Person = person if person is not None else TerminalPerson()

    def review(self, action: Action, driver: Driver) -> str | None:
        """None when ``action`` may run; else the refusal, worded for the model."""
        why = self.rules.reason(action, driver)
        if why is None:
            return None
        if not self.person.present:
            log.warning("refused %s: %s, and nobody is at hand to confirm", describe_action(action), why)
            return (
                f"this action needs a person's confirmation ({why}) and nobody is at hand to give it; "
                "find another way, or finish with done(failure) and say why"
            )
        if self.person.confirm(f"The agent wants to {describe_action(action)}: {why}. Allow?"):
            log.info("a person allowed %s", describe_action(action))
            return None
        log.info("a person declined %s", describe_action(action))
        return f"the person declined this action ({why}); do not try it again; find another way or finish"
