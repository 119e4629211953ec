"""StateOracle: what every state-reading stand-in for a model shares (SimOracle, SampleAppOracle).

An oracle reads a device's or application's state (never the pixels) and answers the way
a perfect model would, for a known set of sentences, so that UI tests mean something in
CI without model weights. This base class holds the part that does not depend on the
device: the Policy side (one action per observation from ``next_action``), the Querier
side (``assert`` judged by a list of statement rules, ``query`` filled from a dict of
facts by field name, ``locate`` by label with common suffixes such as "button" dropped),
and the wording of the errors a test author sees.

A subclass says what it knows: ``next_action``, ``rules``, ``facts``, ``find`` and
``frame_size``. This module must not know any device, and an oracle must never guess: a
sentence or schema it does not know is an error for the test author (OracleCannotAnswer).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vlagent.actions import Action, Step
from vlagent.coords import Relative
from vlagent.errors import ConfigError, ModelError
from vlagent.policies.base import Decision, Observation, decide_each
from vlagent.testing.query import LOCATE_GRID, Query

__all__ = ["QUOTE", "OracleCannotAnswer", "Rule", "StateOracle", "norm"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

#: A statement rule: (normalised statement, statement as written) -> (verdict, reason), or None when not its form.
Rule = Callable[[str, str], tuple[bool, str] | None]
#: Any quote a test author may put around a literal text in a statement.
QUOTE = "[\"'“”‘’]"


class OracleCannotAnswer(ConfigError):
    """An oracle was given a sentence or schema it does not know (fix the test, or use a model)."""


def norm(text: str) -> str:
    """Casefolded, single-spaced, without a final full stop: the form rules match against."""
    return " ".join(text.strip().rstrip(".!").split()).casefold()


class StateOracle(ABC):
    """Policy and Querier answering from state; subclasses supply the device-specific knowledge."""

    name = "state-oracle"
    #: The statement forms it knows, for the error message of an unknown statement.
    statement_forms: tuple[str, ...] = ()
    #: Words a ``locate`` description may end with that are not part of the label ("the Log in button").
    locate_suffixes: tuple[str, ...] = ("button", "icon", "row", "toggle", "field", "app")

    # ------------------------------------------------------------------ Policy

    def decide(self, observation: Observation) -> Decision:
        action = self.next_action(observation)
        step = Step(thought=f"oracle: {observation.task}", action=action)
        return Decision(step=step, raw=step.model_dump_json(exclude_none=True))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)

    @abstractmethod
    def next_action(self, observation: Observation) -> Action:
        """The next action for the observation's task, from the current state; done(failure) when unknown."""

    # ------------------------------------------------------------------ Querier

    def ask(self, query: Query, schema: type[M]) -> M:
        kind, text = query.kind, query.text
        if kind == "assert":
            verdict, reason = self.judge(text)
            return schema.model_validate({"verdict": verdict, "reason": reason})
        if kind == "locate":
            return schema.model_validate(self.locate(text))
        return self.fill(text, schema)

    def judge(self, statement: str) -> tuple[bool, str]:
        """(verdict, reason) for a known statement; OracleCannotAnswer otherwise."""
        for rule in self.rules():
            result = rule(norm(statement), statement)
            if result is not None:
                return result
        raise OracleCannotAnswer(
            f"{type(self).__name__} does not understand the statement {statement!r}; it knows: "
            f"{'; '.join(self.statement_forms)}"
        )

    @abstractmethod
    def rules(self) -> list[Rule]:
        """The statement rules, tried in order; the first that recognises a statement judges it."""

    @abstractmethod
    def facts(self) -> dict[str, object]:
        """What ``query`` schemas can ask for, by field name."""

    @abstractmethod
    def find(self, label: str) -> tuple[int, int] | None:
        """Frame-pixel centre of the visible element called ``label``, or None."""

    @abstractmethod
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames the test's driver captures, in pixels."""

    def adapt(self, key: str, value: object, annotation: object) -> object:
        """A fact's value as the schema's field wants it (hook: e.g. names for a list of strings)."""
        return value

    def locate(self, description: str) -> dict[str, Any]:
        """A Location's fields for the element ``description`` names, on the Agent's 0-1000 grid."""
        label = description.strip().strip("\"'“”")
        for prefix in ("the ", "a "):
            label = label.removeprefix(prefix)
        candidates = [label] + [
            label.rsplit(" ", 1)[0] for w in self.locate_suffixes if label.lower().endswith(" " + w)
        ]
        width, height = self.frame_size()
        for candidate in candidates:
            point = self.find(candidate)
            if point is not None:
                gx, gy = Relative(LOCATE_GRID).to_grid(point[0], point[1], width, height)
                return {"found": True, "x": round(gx), "y": round(gy), "reason": f"'{candidate}' is at {point}"}
        return {"found": False, "x": 0, "y": 0, "reason": f"no visible element called '{label}'"}

    def fill(self, question: str, schema: type[M]) -> M:
        """``schema`` with each field taken from the fact of the same name (``is_`` and ``_on`` dropped)."""
        facts = self.facts()
        values: dict[str, Any] = {}
        unknown: list[str] = []
        for name, info in schema.model_fields.items():
            key = name.casefold().removeprefix("is_")
            for suffix in ("_on", "_enabled", "_state"):
                key = key.removesuffix(suffix)
            if key in facts:
                values[name] = self.adapt(key, facts[key], info.annotation)
            elif info.is_required():
                unknown.append(name)
        oracle = type(self).__name__
        if unknown:
            raise OracleCannotAnswer(
                f"{oracle} cannot answer {question!r}: it fills fields by name and does not know "
                f"{', '.join(unknown)}; known fields: {', '.join(sorted(facts))}"
            )
        try:
            return schema.model_validate(values)
        except ValidationError as exc:
            raise OracleCannotAnswer(f"{oracle}'s facts do not fit the schema {schema.__name__}: {exc}") from exc
