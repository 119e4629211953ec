"""ActionOutcome: what a driver learned while performing an action, returned by ``Driver.execute``.

Today it says whether typed text arrived. Phone keyboards drop characters and ``input text``
cannot type everything, and nothing else in the loop notices: a driver that can read the
focused field back does so, retries by another input path when the field differs, and hands
the result back in ``execute``'s return value. The loop stores it on the step record and the
recorder writes it to ``trajectory.jsonl``. Drivers that learn nothing return None.

This module is a leaf: it must not import drivers, the loop or policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ActionOutcome", "TypingStatus"]

TypingStatus = Literal["verified", "retried", "failed", "unverifiable"]
"""``verified``: the field holds the text after the first try; ``retried``: it does after another
input path; ``failed``: it still differs after every path; ``unverifiable``: the field could not be
read back (a password field showing dots, no focused field, the screen could not be dumped...)."""


@dataclass(frozen=True)
class ActionOutcome:
    """How a typed text fared, as far as the device could tell."""

    typing: TypingStatus
    detail: str = ""
    """Why, in words (what the field showed, why it could not be read)."""
    methods: tuple[str, ...] = ()
    """Input paths used, in order ("input text", "ADBKeyboard", "clipboard"...)."""
    seen: str | None = None
    """What the focused field held after the last try, when it was read."""

    @property
    def problem(self) -> str | None:
        """A line for the model when the text did not arrive; None otherwise."""
        if self.typing != "failed":
            return None
        shown = f"the field shows {self.seen!r}" if self.seen is not None else self.detail
        return f"the typed text did not arrive as meant: {shown}"
