"""The shipped example UI suite runs in CI, on two phone layouts, through the plugin."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ui_tests"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    registered = any(ep.value == "vlagent.testing.plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if registered else ["-p", "vlagent.testing.plugin"]
    return pytester.runpytest(*plugin, "-p", "no:cacheprovider", *args)


@pytest.mark.parametrize("device", ["sim", "sim:3"])
def test_example_suite_passes_on_the_simulated_phone(pytester: pytest.Pytester, device: str) -> None:
    result = run(pytester, str(EXAMPLES), "--vl-device", device, "-rs")
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*vl_real: needs a real device or model weights*"])
