"""How long a constrained answer can get, so that it always fits the model's token limit.

Under a JSON schema or a Lark grammar a weak model may fill every string to its limit; if the
longest answer the constraint allows is longer than the generation limit (``max_tokens``), the
answer is cut off and lost. This module computes that longest answer in characters, from the
schema sent to a server or the family's grammar, and sizes the string caps (thought, typed
text, answers) so that it fits.

Characters stand for tokens: under a byte-level BPE tokenizer (Qwen's) every token covers at
least one character, so ASCII text of N characters is at most N tokens (digits and punctuation
are often one token each, which a model filling a string may write). Two things can exceed
that and are not counted: non-ASCII characters (up to 4 byte tokens each) and ``\\uXXXX``
escapes, both rare in a step; a JSON string of N characters is counted as N + 2 (its quotes)
and a special token of the grammar (``<|box_start|>``) as one. JSON numbers are counted with
their integer digits plus ``NUMBER_DECIMALS`` decimals: a schema cannot bound how many
decimals a model writes. Whitespace is counted as the compact separators ``", "`` and ``": "``.

This module imports nothing heavy and talks to no model.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from vlagent.actions import ACTION_TYPES, KEY_NAMES, MAX_COORD
from vlagent.capabilities import Capabilities
from vlagent.errors import ConfigError
from vlagent.policies.families.base import GrammarLimits, ModelFamily
from vlagent.policies.grammar import cap_strings
from vlagent.schema import step_schema

try:  # the regex parser behind ``re`` gives a pattern's longest match (private, but stable since 3.11)
    from re import _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another Python
    _sre_parser = None

__all__ = [
    "MIN_STRING_CHARS",
    "NUMBER_DECIMALS",
    "Budget",
    "bounded_schema",
    "fit_limits",
    "json_max_chars",
    "lark_max_chars",
]

#: Decimals counted for a JSON number (a schema bounds its value, not its digits).
NUMBER_DECIMALS = 6
#: The smallest string caps :func:`fit_limits` shrinks to before it gives up.
MIN_STRING_CHARS = 16
_INF = math.inf
_MAX_REF_DEPTH = 32


# --- JSON schema ------------------------------------------------------------------------------


def json_max_chars(schema: Mapping[str, Any]) -> float:
    """Characters of the longest JSON document ``schema`` allows (``inf`` when it is unbounded)."""
    return _json(schema, schema, 0)


def _json(node: Any, root: Mapping[str, Any], depth: int) -> float:
    if node is True or node == {}:
        return _INF  # anything at all
    if not isinstance(node, Mapping) or depth > _MAX_REF_DEPTH:
        return _INF
    if "$ref" in node:
        target: Any = root
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        return _json(target, root, depth + 1)
    if "const" in node:
        return len(json.dumps(node["const"], ensure_ascii=False))
    if "enum" in node:
        return max((len(json.dumps(v, ensure_ascii=False)) for v in node["enum"]), default=0)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return max((_json(branch, root, depth + 1) for branch in node[key]), default=0)
    kind = node.get("type")
    if isinstance(kind, list):
        return max((_json({**node, "type": k}, root, depth + 1) for k in kind), default=0)
    if kind == "string":
        limit = node.get("maxLength")
        return _INF if limit is None else int(limit) + 2
    if kind in ("integer", "number"):
        return _number(node, decimals=0 if kind == "integer" else NUMBER_DECIMALS)
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    if kind == "array":
        return _array(node, root, depth)
    if kind == "object" or "properties" in node:
        return _object(node, root, depth)
    return _INF


def _number(node: Mapping[str, Any], decimals: int) -> float:
    low, high = node.get("minimum"), node.get("maximum")
    if low is None or high is None:
        return _INF
    widest = max(len(str(int(abs(low)))) + (low < 0), len(str(int(abs(high)))) + (high < 0))
    return widest + (decimals + 1 if decimals else 0)


def _array(node: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> float:
    prefix = list(node.get("prefixItems") or [])
    items = node.get("items", True)
    most = node.get("maxItems")
    sizes = [_json(p, root, depth + 1) for p in prefix]
    if items is not False:
        if most is None:
            return _INF
        sizes += [_json(items, root, depth + 1)] * max(0, int(most) - len(prefix))
    elif most is not None:
        sizes = sizes[: int(most)]
    return 2 + sum(sizes) + 2 * max(0, len(sizes) - 1)


def _object(node: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> float:
    extra = node.get("additionalProperties")
    if extra is not None and extra is not False:  # extra keys allowed: no bound (absent: none written)
        return _INF
    props = node.get("properties") or {}
    sizes = [len(json.dumps(key, ensure_ascii=False)) + 2 + _json(sub, root, depth + 1) for key, sub in props.items()]
    return 2 + sum(sizes) + 2 * max(0, len(sizes) - 1)


# --- Lark grammars (llguidance's dialect, as the families write them) -------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"i?)
  | (?P<regex>/(?:[^/\\]|\\.)+/[imsux]*)
  | (?P<special><\|[^|>]*\|>|<\[[0-9,\s]*\]>)
  | (?P<json>%json\s*)
  | (?P<name>[?!]?[A-Za-z_][A-Za-z_0-9.]*)
  | (?P<repeat>\{\s*\d+\s*(?:,\s*\d*\s*)?\})
  | (?P<op>[()|?*+~])
    """,
    re.VERBOSE,
)
_RULE = re.compile(r"^([?!]?[A-Za-z_][A-Za-z_0-9.]*)(?:\{[^}]*\})?(?:\.\d+)?\s*:\s*(.*)$")


def lark_max_chars(grammar: str) -> float:
    """Characters of the longest text ``grammar`` (Lark, llguidance's dialect) allows, from ``start``.

    Reads the subset the families use: rules and terminals, ``|``, grouping, ``?``, ``{m,n}``,
    string literals, regular expressions (their longest match), special tokens and ``%json``
    (its schema). Anything it cannot read, and any recursion, counts as unbounded.
    """
    rules = _rules(grammar)
    if "start" not in rules:
        return _INF
    memo: dict[str, float] = {}

    def rule(name: str, active: frozenset[str]) -> float:
        name = name.lstrip("?!")
        if name in memo:
            return memo[name]
        if name in active or name not in rules:
            return _INF
        value = _expansion(rules[name], lambda n: rule(n, active | {name}))
        memo[name] = value
        return value

    return rule("start", frozenset())


def _rules(grammar: str) -> dict[str, str]:
    rules: dict[str, str] = {}
    current: str | None = None
    for line in grammar.splitlines():
        if not line.strip() or line.lstrip().startswith(("//", "#")):
            continue
        if line[0].isspace() and current is not None:  # a continuation: "    | ..."
            rules[current] += " " + line.strip()
            continue
        if line.startswith("%"):  # %llguidance, %ignore, %import: no text of their own
            current = None
            continue
        match = _RULE.match(line)
        if match is None:
            current = None
            continue
        current = match.group(1).lstrip("?!")
        rules[current] = match.group(2)
    return rules


def _expansion(text: str, rule: Any) -> float:
    if "%json" in text:  # "%json {schema}" takes the rest of the rule
        head, _, schema_text = text.partition("%json")
        try:
            schema = json.loads(schema_text)
        except ValueError:
            return _INF
        return _expansion(head, rule) + json_max_chars(schema) if head.strip() else json_max_chars(schema)
    tokens = _tokens(text)
    if tokens is None:
        return _INF
    position = [0]
    value = _alternatives(tokens, position, rule)
    return value if position[0] == len(tokens) else _INF


def _tokens(text: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        match = _TOKEN.match(text, i)
        if match is None:
            return None
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group()))
        i = match.end()
    return out


def _alternatives(tokens: list[tuple[str, str]], position: list[int], rule: Any) -> float:
    best = _sequence(tokens, position, rule)
    while position[0] < len(tokens) and tokens[position[0]] == ("op", "|"):
        position[0] += 1
        best = max(best, _sequence(tokens, position, rule))
    return best


def _sequence(tokens: list[tuple[str, str]], position: list[int], rule: Any) -> float:
    total = 0.0
    while position[0] < len(tokens) and tokens[position[0]] not in (("op", "|"), ("op", ")")):
        kind, text = tokens[position[0]]
        position[0] += 1
        if (kind, text) == ("op", "("):
            value = _alternatives(tokens, position, rule)
            if position[0] >= len(tokens) or tokens[position[0]] != ("op", ")"):
                return _INF
            position[0] += 1
        elif kind == "string":
            value = len(ast.literal_eval(text.removesuffix("i")))
        elif kind == "regex":
            value = _regex_max_chars(text)
        elif kind == "special":
            value = 1
        elif kind == "name":
            value = rule(text)
        else:
            return _INF
        value *= _repetitions(tokens, position)
        total += value
    return total


def _repetitions(tokens: list[tuple[str, str]], position: list[int]) -> float:
    if position[0] >= len(tokens):
        return 1
    kind, text = tokens[position[0]]
    if kind == "op" and text == "?":
        position[0] += 1
        return 1
    if kind == "op" and text in "*+":
        position[0] += 1
        return _INF
    if kind == "repeat":
        position[0] += 1
        bounds = text.strip("{} ").split(",")
        upper = bounds[-1].strip()
        return int(upper) if upper else _INF
    return 1


@cache
def _regex_max_chars(literal: str) -> float:
    pattern = literal[1 : literal.rindex("/")]
    if _sre_parser is None:
        return _INF
    try:
        high = _sre_parser.parse(pattern).getwidth()[1]
    except (re.error, ValueError, OverflowError):
        return _INF
    return _INF if high >= _sre_parser.MAXREPEAT else float(high)


# --- sizing the caps --------------------------------------------------------------------------------

#: Every action, key, button and modifier, phone and desktop: the widest constraint a device can get.
_EVERYTHING = tuple(
    Capabilities(
        actions=frozenset(ACTION_TYPES),
        keys=frozenset(KEY_NAMES),
        buttons=frozenset({"left", "right", "middle"}),
        modifiers=True,
        form_factor=form,
    )
    for form in ("phone", "desktop")
)
_WIDEST_GRID = (MAX_COORD, MAX_COORD)


@dataclass(frozen=True)
class Budget:
    """String caps that keep the longest constrained answer within ``max_tokens``."""

    limits: GrammarLimits
    longest: float
    """Characters of the longest answer the constraint allows with these caps (any device)."""
    max_tokens: int


def bounded_schema(capabilities: Capabilities | None, grid: tuple[int, int], limits: GrammarLimits) -> dict[str, Any]:
    """The step schema with every free string capped: the thought at ``limits.thought_chars``, all
    others (typed text, app names, answers, reasons) at ``limits.string_chars``."""
    schema = step_schema(capabilities, grid=grid, with_thought=limits.with_thought)
    schema = cap_strings(schema, limits.thought_chars, fields=("thought",))
    return cap_strings(schema, limits.string_chars, exclude=("thought",))


def _longest(family: ModelFamily, limits: GrammarLimits) -> float:
    """The longest answer ``family``'s constraint allows under ``limits``, over every device."""
    if family.json_actions:
        return json_max_chars(bounded_schema(None, _WIDEST_GRID, limits))
    lengths = [lark_max_chars(family.lark_grammar(caps, _WIDEST_GRID, limits) or "") for caps in _EVERYTHING]
    return max(lengths)


def fit_limits(
    family: ModelFamily,
    max_tokens: int,
    *,
    thought_chars: int | None,
    string_chars: int | None,
    with_thought: bool,
) -> Budget:
    """String caps for ``family`` whose longest constrained answer fits ``max_tokens``.

    Caps given explicitly are kept, and a ConfigError says when they cannot fit. Caps left to
    vlagent start at :class:`GrammarLimits`' defaults (the in-process policy's) and shrink
    together until the answer fits; a ConfigError says when not even ``MIN_STRING_CHARS``
    fits, naming the token limit needed.
    """
    defaults = GrammarLimits()
    base = GrammarLimits(
        thought_chars if thought_chars is not None else defaults.thought_chars,
        string_chars if string_chars is not None else defaults.string_chars,
        with_thought,
    )
    longest = _longest(family, base)
    if longest <= max_tokens:
        return Budget(base, longest, max_tokens)
    if thought_chars is not None and string_chars is not None:
        raise ConfigError(_too_small(family, max_tokens, longest, "with the string caps given"))
    floor = replace(
        base,
        thought_chars=thought_chars if thought_chars is not None else min(base.thought_chars, MIN_STRING_CHARS),
        string_chars=string_chars if string_chars is not None else min(base.string_chars, MIN_STRING_CHARS),
    )
    smallest = _longest(family, floor)
    if smallest > max_tokens:
        raise ConfigError(_too_small(family, max_tokens, smallest, "even with the shortest strings"))
    low, high = 0.0, 1.0  # the largest fraction of the default caps that fits
    for _ in range(20):
        middle = (low + high) / 2
        if _longest(family, _scaled(base, floor, middle, thought_chars, string_chars)) <= max_tokens:
            low = middle
        else:
            high = middle
    limits = _scaled(base, floor, low, thought_chars, string_chars)
    return Budget(limits, _longest(family, limits), max_tokens)


def _scaled(
    base: GrammarLimits, floor: GrammarLimits, fraction: float, thought: int | None, string: int | None
) -> GrammarLimits:
    def cap(full: int, least: int, given: int | None) -> int:
        return given if given is not None else max(least, int(full * fraction))

    return replace(
        base,
        thought_chars=cap(base.thought_chars, floor.thought_chars, thought),
        string_chars=cap(base.string_chars, floor.string_chars, string),
    )


def _too_small(family: ModelFamily, max_tokens: int, longest: float, how: str) -> str:
    need = "an unbounded number of" if math.isinf(longest) else f"up to {int(longest)}"
    return (
        f"max_output_tokens={max_tokens} cannot hold a constrained {family.name} answer {how}: it may take "
        f"{need} tokens. Raise max_output_tokens, or lower max_thought_chars / max_string_chars"
    )
