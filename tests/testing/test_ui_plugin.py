"""The pytest plugin, run the way a user runs it (pytester): fixtures, options, marker, failure report."""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

THREE_LINES = """
def test_wifi(vl_agent):
    vl_agent.act("Turn on Wi-Fi")
    vl_agent.assert_("Wi-Fi is on")
"""


def _plugin_args() -> list[str]:
    """Load the plugin explicitly unless the installed package already registers it by entry point."""
    registered = any(ep.value == "vlagent.testing.plugin" for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "vlagent.testing.plugin"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider", *args)


def test_three_line_test_passes_on_the_simulated_phone(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(THREE_LINES)
    out = tmp_path / "runs"
    result = run(pytester, "--vl-device", "sim", "--vl-out", str(out))
    result.assert_outcomes(passed=1)
    (test_dir,) = out.iterdir()
    assert sorted(p.name for p in test_dir.iterdir()) == ["01-act-turn-on-wi-fi", "02-assert-wi-fi-is-on"]
    assert (test_dir / "01-act-turn-on-wi-fi" / "frame_0000.png").is_file()


def test_a_failing_assertion_shows_reasoning_frames_and_html(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        """
        def test_bluetooth(vl_agent):
            vl_agent.act("Turn on Wi-Fi")
            vl_agent.assert_("Bluetooth is on")
        """
    )
    result = run(pytester, "--vl-out", str(tmp_path))
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "assert_('Bluetooth is on') failed: the SimOracle judged it false." in output
    assert "reason given: Bluetooth is off" in output
    assert "vlagent" in output and "2. assert 'Bluetooth is on': FAILED" in output
    assert "model: false: Bluetooth is off" in output
    frame = Path(re.search(r"frame: (\S+frame_0000\.png)", output)[1])  # type: ignore[index]
    assert frame.is_file()
    page = re.search(r"HTML report: file://(\S+)", output)[1]  # type: ignore[index]
    text = Path(page).read_text()
    assert 'src="02-assert-bluetooth-is-on/frame_0000.png"' in text and "Bluetooth is off" in text


def test_a_failing_act_names_the_policy_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_coffee(vl_agent):
            vl_agent.act("Brew a coffee", max_steps=3)
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*act('Brew a coffee') did not succeed*", "*cannot do 'Brew a coffee'*"])


def test_vl_real_tests_are_skipped_with_a_reason_unless_enabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vl_real
        def test_real(vl_device):
            assert vl_device.name == "sim"

        def test_sim(vl_device):
            assert vl_device.screen_size() == (1080, 2400)
        """
    )
    result = run(pytester, "-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*vl_real: needs a real device or model weights*--vl-model*"])
    run(pytester, "--vl-real", "--strict-markers").assert_outcomes(passed=2)


def test_cache_reruns_a_passing_test_without_the_model(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        """
        def test_dark(vl_agent):
            vl_agent.act("Turn on Dark mode", max_steps=12)
            assert vl_agent.driver.phone.toggles["dark_mode"]
        """
    )
    cache = tmp_path / "actions.json"
    run(pytester, "--vl-cache", str(cache)).assert_outcomes(passed=1)
    assert list(json.loads(cache.read_text())["instructions"]) == ["Turn on Dark mode"]
    # A policy that does not exist would fail the moment it is loaded: every step must come from the cache.
    run(pytester, "--vl-cache", str(cache), "--vl-policy", "no-such-model").assert_outcomes(passed=1)
    # A changed screen (another layout) needs the model: now the missing policy is an error.
    result = run(pytester, "--vl-cache", str(cache), "--vl-policy", "no-such-model", "--vl-device", "sim:5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown policy 'no-such-model'*"])


def test_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(
        ["*--vl-device=VL_DEVICE*", "*--vl-policy=VL_POLICY*", "*--vl-model=VL_MODEL*", "*--vl-out=VL_OUT*"]
    )
