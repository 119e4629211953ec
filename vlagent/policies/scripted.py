"""ScriptedPolicy: plays a fixed list of steps (tests, demos, replays).

Each item is an Action, a Step, or a callable that computes the action from the
observation (e.g. to click wherever a label is on a simulated screen); a callable that
returns None is skipped (e.g. "scroll unless the row is already visible"). When the
script runs out it answers ``done(failure)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from vlagent.actions import Action, Done, Step
from vlagent.errors import ConfigError, ModelError
from vlagent.policies.base import Decision, Observation, decide_each

__all__ = ["ScriptItem", "ScriptedPolicy", "create_policy", "load_script"]

ScriptItem = Action | Step | Callable[[Observation], Action | Step | None]


class ScriptedPolicy:
    """Plays ``script`` in order, one item per call to ``decide``."""

    name = "scripted"

    def __init__(self, script: Iterable[ScriptItem]) -> None:
        self._script = list(script)
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._script) - self._next

    def decide(self, observation: Observation) -> Decision:
        produced: Action | Step | None = None
        while produced is None and self._next < len(self._script):
            item = self._script[self._next]
            self._next += 1
            produced = item(observation) if callable(item) else item
        if produced is None:
            produced = Done(status="failure", answer="script exhausted")
        step = produced if isinstance(produced, Step) else Step(action=produced)
        return Decision(step=step, raw=step.model_dump_json(exclude_none=True))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)


_STEPS: TypeAdapter[list[Step]] = TypeAdapter(list[Step])


def load_script(path: Path | str) -> list[Step]:
    """Read steps from YAML, JSON or JSON Lines: each item is ``{thought?, action: {...}}``
    or a bare action ``{action: click, x: ..., y: ...}`` (device pixels)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read script {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read script {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x})") from None
    try:
        if path.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path}: not valid {'JSON Lines' if path.suffix == '.jsonl' else 'YAML/JSON'}: {exc}"
        ) from exc
    if not isinstance(items, list):
        raise ConfigError(f"{path}: a script is a list of steps")
    wrapped = [
        item if isinstance(item, dict) and isinstance(item.get("action"), dict) else {"action": item} for item in items
    ]
    try:
        return _STEPS.validate_python(wrapped)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid step: {exc}") from exc


def create_policy(script: str | Path | None = None, **_: object) -> ScriptedPolicy:
    """Factory for ``open_policy("scripted", script=PATH)``."""
    if script is None:
        raise ConfigError("the scripted policy needs --script FILE (YAML/JSON list of actions)")
    return ScriptedPolicy(load_script(script))
