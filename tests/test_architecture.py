"""The rooms of the package import only from rooms below them (docs/architecture.md lists the order).

Imports under ``if TYPE_CHECKING:`` do not count (they never run); every other import does,
wherever it stands: a function-local import of a higher room is a hidden circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vlagent"

#: Room -> level, lowest first; a room may import from its own level and below. Keep in step
#: with the table in docs/architecture.md.
LEVELS: dict[str, int] = {
    "errors": 0,
    "plugins": 0,
    "outcome": 0,
    "frames": 0,
    "actions": 1,
    "apps": 1,
    "coords": 2,
    "capabilities": 2,
    "secrets": 1,
    "confirm": 5,
    "repeats": 7,
    "pinned": 8,
    "tasks": 3,
    "trajectory": 3,
    "parsetail": 3,
    "schema": 3,
    "parsing": 3,
    "drivers": 4,
    "memory": 4,
    "policies": 5,
    "agent": 6,
    "effects": 7,
    "watchers": 7,
    "recorder": 7,
    "scenario": 7,
    "pool": 7,
    "scoring": 7,
    "datasets": 7,
    "report": 7,
    "replay": 8,
    "runner": 8,
    "evaluate": 9,
    "stepeval": 9,
    "testing": 10,
    "distributed": 10,
    "cli": 13,
    "cli_runs": 13,
    "__init__": 12,
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    module = _module_of(path)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this package
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            targets = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
            found.extend((node.lineno, t) for t in targets if t.startswith("vlagent"))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("vlagent"))
    return found


def test_every_room_has_a_level() -> None:
    rooms = {_room(_module_of(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms <= set(LEVELS), f"rooms without a level: {sorted(rooms - set(LEVELS))}"


def test_no_room_imports_from_a_room_above_it() -> None:
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        level = LEVELS[_room(module)]
        for line, target in _imports(path):
            if target == "vlagent" or target.startswith("vlagent.__"):
                target_level = LEVELS["__init__"]
            else:
                target_level = LEVELS[_room(target)]
            if target_level > level:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {module} -> {target}")
    assert not upward, "imports from a higher room:\n" + "\n".join(upward)


def test_no_file_is_over_800_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > 800}
