"""The ModelFamily type and the family registry.

A ``ModelFamily`` is the one place that knows a family's conventions: its coordinate grid
(Qwen2-VL relative 0-1000, Qwen2.5-VL absolute pixels of the resized image, Qwen3-VL
relative 0-999), its system prompt, how its raw text becomes a Step (grid coordinates),
how an action is written back in its own format (for the history shown to it), and, for
formats that are not vlagent JSON, the Lark grammar that constrains in-process decoding.

Families are registered by name and detected from a model's ``model_type`` or name. This
module must not import heavy libraries and must not talk to any model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vlagent.actions import Action, Step, describe_action
from vlagent.capabilities import Capabilities
from vlagent.coords import CoordCodec, ImageGrid, Relative, codec_by_name
from vlagent.errors import ConfigError, InvalidModelOutput
from vlagent.parsetail import clipped, oversized
from vlagent.parsing import parse_step

__all__ = [
    "FAMILIES",
    "GrammarFn",
    "GrammarLimits",
    "ImageGrid",
    "InstructionsFn",
    "ModelFamily",
    "ParseFn",
    "RenderFn",
    "detect_family",
    "get_family",
    "register_family",
]

log = logging.getLogger(__name__)

ParseFn = Callable[[str, tuple[int, int], Capabilities | None], Step]
#: (task, capabilities, family, image size, with_thought) -> system prompt text.
InstructionsFn = Callable[[str, Capabilities, "ModelFamily", tuple[int, int], bool], str]
#: An action in grid coordinates -> how the family itself writes it (history lines).
RenderFn = Callable[[Action, tuple[int, int]], str]


@dataclass(frozen=True)
class GrammarLimits:
    """Caps that keep a constrained answer inside ``max_new_tokens``."""

    thought_chars: int = 200
    string_chars: int = 120
    with_thought: bool = True


#: (capabilities, grid, limits) -> a Lark grammar (llguidance dialect) for the whole answer.
GrammarFn = Callable[[Capabilities, tuple[int, int], GrammarLimits], str]
AnswerFn = Callable[[str | None, str], str]
"""(thought, action in the family's syntax) -> the answer the model gave for an earlier step."""
UserTurnFn = Callable[[str, Capabilities, "Sequence[str]", "Sequence[str]"], str]
"""(task, capabilities, earlier actions as ``render`` wrote them, notes such as feedback) ->
the text that opens the user turn, before the screenshot."""


def _parse_json(text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    return parse_step(text, grid=grid, capabilities=capabilities)


def _render_plain(action: Action, grid: tuple[int, int]) -> str:
    return describe_action(action)


_JSON_ASK = "What is the next action? Answer with one JSON object."


@dataclass(frozen=True)
class ModelFamily:
    """The conventions of one family of models."""

    name: str
    coords: str
    """Coordinate codec: ``norm1000``, ``norm999`` or ``abs_resized`` (pixels of the image shown)."""
    model_types: tuple[str, ...] = ()
    """``config.model_type`` values of this family, e.g. ``qwen2_vl``."""
    name_hints: tuple[str, ...] = ()
    """Lower-case substrings of a hub id or path that identify the family (checked in order)."""
    json_actions: bool = True
    """Answers are vlagent JSON steps, so the step schema can constrain decoding."""
    parse: ParseFn = _parse_json
    """Model text -> Step in grid coordinates; raises InvalidModelOutput. Policies call it through
    :meth:`read`, which refuses an oversized answer first, so a plugin's parser never sees one;
    JSON families also refuse an answer cut off inside its object (``parse_step``), and a native
    parser should refuse an answer cut off inside its action the same way rather than repair it."""
    instructions: InstructionsFn | None = None
    """The family's own system prompt (a native action format); None: vlagent's JSON instructions."""
    grammar: GrammarFn | None = None
    """Lark grammar of a native (non-JSON) answer, for constrained decoding in-process."""
    render: RenderFn = _render_plain
    """How an earlier action (grid coordinates) is shown to the model in the history."""
    ask: str = _JSON_ASK
    """The last line of each user turn: what to answer now."""
    user_turn: UserTurnFn | None = None
    """The family's own user turn (task and progress before the screenshot, as its cookbook
    writes it); None: vlagent's layout (labelled screenshots, then history and ``ask``).
    A family with a user turn leaves the task out of its ``instructions``."""
    instructions_in_user: bool = False
    """No system turn of our own: the instructions open the user turn (ShowUI's layout; the chat
    template then supplies its default system turn). Only with ``user_turn``."""
    history_turns: AnswerFn | None = None
    """Earlier steps as a conversation (UI-TARS clients' layout): the instructions as the first
    user turn, then per step its screenshot (while memory still holds it) as a user turn and the
    model's answer, rebuilt by this function, as an assistant turn; the current screen last."""
    models: str = ""
    """Which published models the family covers (documentation)."""

    def read(self, text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
        """``parse``, behind the bound every answer shares (:func:`~vlagent.parsetail.oversized`):
        a runaway answer is fed back at once, whatever the family's parser would do with it."""
        problem = oversized(text)
        if problem is not None:
            raise InvalidModelOutput(problem, clipped(text))
        return self.parse(text, grid, capabilities)

    def codec(self, image_size: tuple[int, int]) -> CoordCodec:
        """The codec for a prompt whose current screenshot has ``image_size`` (width, height)."""
        if self.coords == "abs_resized":
            return ImageGrid(*image_size)
        return codec_by_name(self.coords)

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Largest valid (x, y) the model may answer for that screenshot."""
        return self.codec(image_size).grid_size(*image_size)

    def lark_grammar(self, capabilities: Capabilities, grid: tuple[int, int], limits: GrammarLimits) -> str | None:
        """The Lark grammar constraining a whole answer, or None for JSON families (their schema applies)."""
        return None if self.grammar is None else self.grammar(capabilities, grid, limits)

    def coordinate_rule(self, image_size: tuple[int, int]) -> str:
        """One sentence telling the model what its numbers mean."""
        gx, gy = self.grid(image_size)
        codec = self.codec(image_size)
        if isinstance(codec, Relative):
            return (
                f"Points are relative to the current screenshot: x=0 is its left edge and x={gx} its right edge, "
                f"y=0 its top edge and y={gy} its bottom edge, whatever the screen's real size."
            )
        return (
            f"Points are pixel positions in the current screenshot, which is {gx}x{gy} pixels: "
            "x from the left edge, y from the top edge."
        )


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add (or replace) a family; later registrations take precedence in detection."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``; unknown names list the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family '{name}'. Known families: {', '.join(sorted(FAMILIES))}") from None


def detect_family(model_type: str | None, name: str = "", *, default: str = "qwen2vl") -> ModelFamily:
    """The family of a model from its config's ``model_type``, else from its id or path."""
    newest_first = list(reversed(FAMILIES.values()))
    lowered = name.lower()
    # A name hint wins first, so a fine-tune (UI-TARS on qwen2_vl) beats its base architecture,
    # but only when the architecture agrees (or is unknown).
    for family in newest_first:
        if any(hint in lowered for hint in family.name_hints) and (
            not model_type or not family.model_types or model_type in family.model_types
        ):
            return family
    # Base architectures are matched oldest first: the plain Qwen family registered for a
    # model_type comes before the fine-tunes that share it.
    for family in FAMILIES.values():
        if model_type and model_type in family.model_types:
            return family
    log.warning("unknown model family for model_type=%r name=%r; assuming %s", model_type, name, default)
    return get_family(default)
