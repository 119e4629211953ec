"""The shipped example UI suite runs in CI through the plugin: on two phone layouts, and on the sample desktop app."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from vlagent.drivers.xvfb import xvfb_available

pytest_plugins = ("pytester",)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ui_tests"


def _plugin() -> list[str]:
    registered = any(ep.value == "vlagent.testing.plugin" for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "vlagent.testing.plugin"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*_plugin(), "-p", "no:cacheprovider", *args)


@pytest.mark.parametrize("device", ["sim", "sim:3"])
def test_example_suite_passes_on_the_simulated_phone(pytester: pytest.Pytester, device: str) -> None:
    result = run(pytester, str(EXAMPLES), "--vl-device", device, "-rs")
    result.assert_outcomes(passed=4, skipped=6)
    result.stdout.fnmatch_lines(
        [
            "*vl_real: needs a real device or model weights*",
            "*test_sample_app.py: vl_device_kind: written for --vl-device sample_desktop; this run uses*",
        ],
        consecutive=False,
    )


@pytest.mark.xvfb
@pytest.mark.skipif(not xvfb_available(), reason="Xvfb is not installed (apt-get install xvfb)")
def test_example_suite_passes_on_the_sample_desktop_app(pytester: pytest.Pytester) -> None:
    # A subprocess: the plugin starts its own X screen, and pyautogui binds to DISPLAY at import.
    result = pytester.runpytest_subprocess(
        *_plugin(), "-p", "no:cacheprovider", str(EXAMPLES), "--vl-device", "sample_desktop", "-rs", timeout=240
    )
    result.assert_outcomes(passed=5, skipped=5)
    result.stdout.fnmatch_lines(["*test_phone.py*vl_device_kind: written for --vl-device sim; this run uses*"])
