"""How long every answer parser takes on hostile answers, from 1 KB to 1 MB.

Runs :func:`vlagent.parsing.parse_step` and the parser of every registered model family
(``vlagent.policies.families``) on answers built to hurt a parser: runs of open brackets of
each kind, deep nesting, megabytes of digits, quotes, backslashes and whitespace, thousands
of actions in one answer, strings cut off by the token limit, enormous keys and numbers.
Each parse must end in a Step or ``InvalidModelOutput``; anything else is listed as a crash
(and the exit status is 1). Prints one row per input and size, the time in milliseconds of
each parser (the least of ``--repeat`` runs), then the longest parse overall and on a 1 MB
answer.

Answers longer than ``vlagent.parsetail.MAX_ANSWER_CHARS`` are refused before any repair, so
the slowest inputs are the longest ones still read: the ``cap`` size is one character under
that bound.

Usage: ``python tools/bench_parse_hostile.py [--repeat 3] [--sizes 1k,cap,64k,1m] [--kinds braces,digits]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from vlagent.errors import InvalidModelOutput
from vlagent.parsetail import MAX_ANSWER_CHARS
from vlagent.parsing import parse_step
from vlagent.policies.prompt import FAMILIES

GRID = (1000, 1000)
SIZES = {"1k": 1024, "cap": MAX_ANSWER_CHARS - 1, "64k": 64 * 1024, "1m": 1024 * 1024}


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _fill(head: str, unit: str, tail: str, size: int) -> str:
    return head + _repeat(unit, max(0, size - len(head) - len(tail))) + tail


#: name -> a function of the size in characters that builds the answer.
KINDS: dict[str, Callable[[int], str]] = {
    "braces": lambda n: _repeat("{", n),
    "brackets": lambda n: _repeat("[", n),
    "parens": lambda n: _repeat("(", n),
    "nested": lambda n: "[" * (n // 2) + "]" * (n // 2),
    "nested_objects": lambda n: _repeat('{"a": ', n // 2) + "}" * (n // 12),
    "digits": lambda n: _repeat("1", n),
    "json_digits": lambda n: _fill('{"action": "click", "x": 1', "9", ', "y": 5}', n),
    "tars_digits": lambda n: _fill("Action: click(start_box='(1", "9", ",5)')", n),
    "tool_digits": lambda n: _fill('<tool_call>{"name": "mobile_use", "arguments": {"coordinate": [1', "9", "]}}", n),
    "showui_digits": lambda n: _fill("{'action': 'TAP', 'value': None, 'position': [0.", "9", "]}", n),
    "exponent": lambda n: _fill('{"action": "click", "x": 1e', "9", ', "y": 5}', n),
    "quotes": lambda n: _repeat('"', n),
    "single_quotes": lambda n: _repeat("'", n),
    "backslashes": lambda n: _repeat("\\", n),
    "newlines": lambda n: _repeat("\n", n),
    "space_lines": lambda n: _fill("Thought:", "\n ", "", n),
    "tool_whitespace": lambda n: _fill("<tool_call>", " ", "x", n),
    "fence_whitespace": lambda n: _fill("```json", " ", "", n),
    "json_actions": lambda n: _repeat('{"action": "click", "x": 1, "y": 1}\n', n),
    "tars_actions": lambda n: _repeat("Action: click(start_box='(1,1)')\n", n),
    "tool_calls": lambda n: _repeat(
        '<tool_call>{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [1, 1]}}</tool_call>', n
    ),
    "tars_arguments": lambda n: _fill("Action: click(", ", a=", "", n),
    "tars_bare_commas": lambda n: _fill("Action: click(start_box=", "1,", "", n),
    "cut_off_json": lambda n: _fill('{"action": "type", "text": "', "a", "", n),
    "cut_off_tars": lambda n: _fill("Thought: typing\nAction: type(content='", "a", "", n),
    "long_key": lambda n: _fill('{"', "k", '": 1}', n),
    "many_keys": lambda n: "{" + _repeat('"k": 1, ', n - 2) + "}",
    "prose_braces": lambda n: _repeat('I see { and " here. ', n),
    "calls_prose": lambda n: _repeat("click( type( scroll( ", n),
}


def parsers() -> dict[str, Callable[[str], object]]:
    """parse_step and every registered family's parser, on a 0-1000 grid with no capabilities."""
    found: dict[str, Callable[[str], object]] = {"parse_step": lambda text: parse_step(text, grid=GRID)}
    for name, family in FAMILIES.items():
        found[name] = lambda text, family=family: family.parse(text, GRID, None)  # type: ignore[misc]
    return found


def time_parse(parse: Callable[[str], object], text: str, repeat: int) -> tuple[float, str | None]:
    """(least seconds of ``repeat`` parses, a crash's description or None)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            parse(text)
        except InvalidModelOutput:
            pass
        except Exception as exc:  # what the benchmark looks for: reported, not raised
            return time.perf_counter() - start, f"{type(exc).__name__}: {str(exc)[:80]}"
        best = min(best, time.perf_counter() - start)
    return best, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="parses per cell; the least time is shown")
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated input kinds (default: all)")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [s for s in sizes if s not in SIZES] + [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown sizes or kinds: {', '.join(unknown)}")
    table = parsers()
    names = list(table)
    print(f"{'input':<18} {'size':>8}  " + " ".join(f"{n:>10}" for n in names) + "   (ms, least of runs)")
    longest = (0.0, "", "", "")
    longest_1m = (0.0, "", "", "")
    crashes: list[str] = []
    for kind in kinds:
        for size_name in sizes:
            text = KINDS[kind](SIZES[size_name])
            cells = []
            for name in names:
                seconds, crash = time_parse(table[name], text, args.repeat)
                if crash is not None:
                    crashes.append(f"{kind} {size_name} {name}: {crash}")
                cells.append(f"{seconds * 1000:>10.2f}" if crash is None else f"{'CRASH':>10}")
                entry = (seconds, kind, size_name, name)
                longest = max(longest, entry)
                if size_name == "1m":
                    longest_1m = max(longest_1m, entry)
            print(f"{kind:<18} {len(text):>8}  " + " ".join(cells))
    print(f"\nlongest parse: {longest[0] * 1000:.2f} ms ({longest[3]} on {longest[1]}, {longest[2]})")
    if longest_1m[1]:
        print(f"longest parse of a 1 MB answer: {longest_1m[0] * 1000:.2f} ms ({longest_1m[3]} on {longest_1m[1]})")
    for crash in crashes:
        print(f"CRASH {crash}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
