"""The public surface: what ``import vlagent`` offers and what it must not drag in."""

from __future__ import annotations

import os
import subprocess
import sys

import vlagent

PINNED = [
    "Action",
    "BaseDriver",
    "Capabilities",
    "Click",
    "Decision",
    "DeviceError",
    "Done",
    "Driver",
    "EndReason",
    "Episode",
    "Frame",
    "HistoryEntry",
    "InvalidModelOutput",
    "Key",
    "LongPress",
    "MemoryConfig",
    "ModelError",
    "Observation",
    "OpenApp",
    "Policy",
    "Recorder",
    "ScriptedPolicy",
    "Scroll",
    "Step",
    "StepRecord",
    "Swipe",
    "TrajectoryMemory",
    "Type",
    "UserError",
    "Verdict",
    "VlagentError",
    "Wait",
    "__version__",
    "available_drivers",
    "available_policies",
    "check_driver",
    "codec_by_name",
    "describe_action",
    "describe_actions",
    "load_trajectory",
    "open_driver",
    "open_policy",
    "parse_step",
    "run_episode",
    "smart_resize",
    "step_schema",
    "visual_tokens",
]


def test_all_is_pinned_and_sorted() -> None:
    assert vlagent.__all__ == sorted(vlagent.__all__)
    assert sorted(vlagent.__all__) == sorted(PINNED)
    for name in vlagent.__all__:
        assert hasattr(vlagent, name), name


HEAVY = ["torch", "transformers", "adbutils", "pyautogui", "mss", "tkinter", "httpx", "qwen_vl_utils"]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return env


def test_import_is_light_and_needs_no_display() -> None:
    code = (
        "import sys, vlagent, vlagent.cli, vlagent.runner, vlagent.recorder\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli_help_works_without_display_or_torch() -> None:
    for args in (["--help"], ["run", "--help"], ["demo", "--help"], ["devices", "--help"], ["show", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "vlagent.cli", *args], env=_clean_env(), capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "vlagent.cli", "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == f"vlagent, version {vlagent.__version__}"


def _public_callables() -> list[tuple[str, object]]:
    import inspect

    from pydantic import BaseModel

    import vlagent.policies
    import vlagent.testing

    found: list[tuple[str, object]] = []
    for module in (vlagent, vlagent.policies, vlagent.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                found.extend(
                    (f"{name}.{attr}", value)
                    for attr, value in vars(obj).items()
                    if callable(value)
                    and (attr == "__init__" or not attr.startswith("_"))
                    and not hasattr(BaseModel, attr)  # pydantic's own API (model_post_init...), not ours
                )
            elif callable(obj):
                found.append((name, obj))
    return found


def test_no_any_in_public_signatures() -> None:
    import inspect

    leaks = []
    for name, func in _public_callables():
        try:
            signature = str(inspect.signature(func))  # type: ignore[arg-type]
        except (TypeError, ValueError):  # builtins and some C types have none
            continue
        if "Any" in signature:
            leaks.append(f"{name}{signature}")
    assert len(_public_callables()) > 50 and not leaks, leaks
