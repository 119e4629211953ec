"""What the UI-testing Agent asks of a model, and the Querier protocol that answers it.

A :class:`Query` is one question about one screen (a yes/no statement, a question filled
into a schema, or where an element is); a :class:`Querier` answers it with a pydantic object
(:class:`Judgement`, :class:`Location` or the test's own schema). The Agent, the model
queriers and the state oracles all speak these types; this module holds them so that none
of those imports another to borrow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from vlagent.frames import Frame

__all__ = ["LOCATE_GRID", "REASON_CHARS", "Judgement", "Location", "Querier", "Query", "QueryKind"]

M = TypeVar("M", bound=BaseModel)
QueryKind = Literal["assert", "query", "locate"]
#: Grid of ``locate`` answers: relative 0-1000 on both axes, whatever the model family.
LOCATE_GRID = 1000
REASON_CHARS = 300


class Judgement(BaseModel):
    """The answer to a yes/no statement about the screen."""

    model_config = ConfigDict(extra="forbid")

    verdict: bool
    reason: str = Field(max_length=REASON_CHARS)


class Location(BaseModel):
    """Where an element is, on a 0-1000 grid (x from the left edge, y from the top)."""

    model_config = ConfigDict(extra="forbid")

    found: bool
    x: int = Field(ge=0, le=LOCATE_GRID)
    y: int = Field(ge=0, le=LOCATE_GRID)
    reason: str = Field(max_length=REASON_CHARS)


@dataclass(frozen=True)
class Query:
    """A question about one screen, for a Querier."""

    kind: QueryKind
    text: str
    """What the test wrote: a statement, a question or a description."""
    prompt: str
    """The full request for a model (states what the answer means)."""
    frame: Frame
    feedback: str | None = None
    """Why the previous answer was rejected; show it to the model."""


@runtime_checkable
class Querier(Protocol):
    """Answers a question about a screen with an instance of ``schema``.

    Raise InvalidModelOutput (with feedback for the model) when the answer does not fit
    the schema; the Agent asks again with the feedback.
    """

    def ask(self, query: Query, schema: type[M]) -> M: ...
