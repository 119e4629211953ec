"""Evaluation end to end: shipped scenarios with their gold scripts, shifted layouts, junit for CI."""

from __future__ import annotations

import gc
import json
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from vlagent.actions import Action, Click, Done
from vlagent.evaluate import EvalConfig, evaluate
from vlagent.memory import MemoryConfig
from vlagent.policies.base import Decision, Observation, Policy
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.replay import ReplayPolicy
from vlagent.scenario import Scenario, ScenarioDevice, load_scenarios

if TYPE_CHECKING:
    from tests.conftest import SampleApp  # noqa: F401

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def sim_scenarios() -> list:  # type: ignore[type-arg]
    return [s for s in load_scenarios([SCENARIOS]) if s.device.kind == "sim"]


def junit(path: Path) -> tuple[ET.Element, list[ET.Element]]:
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    return suite, suite.findall("testcase")


def test_every_sim_scenario_passes_with_its_gold_script(tmp_path: Path) -> None:
    scenarios = sim_scenarios()
    result = evaluate(scenarios, EvalConfig(out=tmp_path, jobs=2))
    assert result.passed == len(scenarios) >= 12, [(r.name, r.checks) for r in result.results if not r.success]
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["summary"]["success_rate"] == 1.0
    for convention in ("aitw", "androidcontrol", "qwen"):
        assert data["summary"]["scores"][convention]["step_success_rate"] == 1.0
    first = data["scenarios"][0]
    assert {"success", "end_reason", "steps", "timings", "tokens", "scores", "checks"} <= set(first)
    assert first["end_reason"] == "done_success" and first["replay"]["status"] == "exact"
    suite, cases = junit(tmp_path / "junit.xml")
    assert suite.get("tests") == str(len(scenarios)) and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert sorted(c.get("name") for c in cases) == sorted(s.name for s in scenarios)
    index = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"{len(scenarios)}/{len(scenarios)} scenarios passed" in index
    assert (tmp_path / "sim-wifi-on" / "report.html").exists()


def test_aitw_judges_a_tap_by_every_annotation_of_the_screen(tmp_path: Path) -> None:
    """AITW's rule: a tap matches when it and the gold share ANY annotation box (enlarged 2.4x),
    or lie within 0.14 of the screen. (700, 840) is 0.52 of the width from the gold Settings
    tap (135, 840) and outside Settings' enlarged box (x 0-435), but inside the enlarged box of
    the next icon (280-530 -> 55-755), which holds the gold too: a match by the reference,
    which only the screen's annotations (not the gold's box alone) can find."""
    (scenario,) = [s for s in sim_scenarios() if s.name == "sim-wifi-on"]
    assert scenario.gold[0].annotations and [280, 700, 530, 980] in [list(b) for b in scenario.gold[0].annotations]
    boxed = scenario.model_copy(
        update={"name": "gold-box-only", "gold": [g.model_copy(update={"annotations": None}) for g in scenario.gold]}
    )
    config = EvalConfig(out=tmp_path, policy_factory=lambda run: ScriptedPolicy([Click(x=700, y=840), Done()]))
    result = evaluate([scenario, boxed], config)
    matched = {r.name: r.scores["aitw"]["matched_steps"] for r in result.results}
    assert matched == {"sim-wifi-on": 1, "gold-box-only": 0}
    assert all(r.scores["androidcontrol"]["matched_steps"] == 0 for r in result.results)  # distance rules only


def _without_nodes(scenario: Scenario) -> Scenario:
    gold = [g.model_copy(update={"node": None}) for g in scenario.gold]
    return scenario.model_copy(update={"gold": gold})


def test_shifted_layout_without_healing_stops_with_divergence_reports(tmp_path: Path) -> None:
    wanted = ("sim-wifi-on", "sim-open-camera", "sim-note-greek")
    scenarios = [_without_nodes(s) for s in sim_scenarios() if s.name in wanted]  # nothing to heal by
    result = evaluate(scenarios, EvalConfig(out=tmp_path, layout_seed=3))
    by_name = {r.name: r for r in result.results}
    assert by_name["sim-note-greek"].success  # opens Notes by name: nothing moved for it
    diverged = by_name["sim-open-camera"]
    assert not diverged.success and diverged.replay is not None and diverged.replay["status"] == "diverged"
    report = tmp_path / diverged.replay["divergence_report"]
    page = report.read_text(encoding="utf-8")
    assert "Replay diverged at step 1" in page and "Camera" in page
    assert (report.parent / "actual_000.jpg").stat().st_size > 1000
    suite, cases = junit(tmp_path / "junit.xml")
    assert suite.get("failures") == "2" and suite.get("errors") == "0"
    failed = {c.get("name"): c.find("failure") for c in cases}
    assert failed["sim-note-greek"] is None
    camera = failed["sim-open-camera"]
    assert camera is not None and "app Camera is in front" in (camera.get("message") or "")


def label_locator(device: ScenarioDevice) -> Policy:
    """A heal policy for any phone with a view hierarchy: taps the element the instruction names."""

    def locate(obs: Observation) -> Action:
        match = re.fullmatch(r'Tap "(.+)"\.', obs.task)
        state = device.state()
        nodes = state.ui_tree().value.find(match.group(1)) if match and state else []
        return Click(x=nodes[0].center[0], y=nodes[0].center[1]) if nodes else Done(status="failure")

    return ScriptedPolicy([locate] * 20)


def test_shifted_layout_self_heals_with_a_locator_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wanted = ("sim-wifi-on", "sim-dark-mode", "sim-add-contact")
    scenarios = [_without_nodes(s) for s in sim_scenarios() if s.name in wanted]  # the model's turn to heal
    result = evaluate(scenarios, EvalConfig(out=tmp_path, layout_seed=5, heal=label_locator))
    assert result.passed == 3, [(r.name, r.detail) for r in result.results]
    assert all(r.replay and r.replay["status"] == "healed" and r.replay["healed"] >= 1 for r in result.results)
    assert "self-healed" in caplog.text


def test_desktop_scenarios_pass_on_the_sample_app(xvfb_display: str, tmp_path: Path) -> None:
    scenarios = [s for s in load_scenarios([SCENARIOS]) if s.device.kind == "sample_desktop"]
    result = evaluate(scenarios, EvalConfig(out=tmp_path, jobs=2))
    assert result.passed == len(scenarios) >= 3, [(r.name, r.checks, r.error) for r in result.results]


def test_desktop_repeats_replay_exactly_whatever_the_pointer_was_left_over(xvfb_display: str, tmp_path: Path) -> None:
    """Repeat 0 clicks Dark mode and leaves the pointer over it; without parking the pointer
    off the app, repeats 1 and 2 start with that row hover-highlighted, their first screen no
    longer matches the recorded fingerprint, and replay stops as diverged."""
    (scenario,) = [s for s in load_scenarios([SCENARIOS]) if s.name == "desktop-dark-mode"]
    result = evaluate([scenario], EvalConfig(out=tmp_path, repeats=3))
    assert [(r.success, r.replay and r.replay["status"]) for r in result.results] == [(True, "exact")] * 3


def test_a_scenario_that_cannot_run_is_a_junit_error(tmp_path: Path) -> None:
    bad = sim_scenarios()[0].model_copy(update={"name": "bad-device"})
    bad = bad.model_copy(update={"device": bad.device.model_copy(update={"options": {"width": 10}})})
    result = evaluate([bad], EvalConfig(out=tmp_path))
    assert not result.results[0].success and result.results[0].error
    suite, cases = junit(tmp_path / "junit.xml")
    assert suite.get("errors") == "1" and cases[0].find("error") is not None


def test_eval_device_runs_phone_scenarios_on_a_phone_over_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlagent.drivers.sim.adb_server import serve_sim
    from vlagent.drivers.sim.world import SimPhone

    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")  # never start a real adb server
    scenarios = [s for s in sim_scenarios() if s.name in ("sim-delete-note", "sim-bluetooth-off", "sim-add-contact")]
    phone = SimPhone(serial="sim-0")
    with serve_sim([phone], port=0) as server:
        spec = f"adb:sim-0?port={server.port}"
        result = evaluate(scenarios, EvalConfig(out=tmp_path, jobs=3, device=spec))
    assert result.passed == 3, [(r.name, r.checks, r.error) for r in result.results]
    assert {r.device for r in result.results} == {spec}
    sources = {c["source"] for r in result.results for c in r.checks}
    assert sources == {"settings", "content provider"}


def test_shifted_layout_heals_by_the_recorded_ui_node_without_a_model(tmp_path: Path) -> None:
    scenarios = [s for s in sim_scenarios() if s.name in ("sim-wifi-on", "sim-open-camera", "sim-dark-mode")]
    assert all(any(g.node for g in s.gold) for s in scenarios)
    result = evaluate(scenarios, EvalConfig(out=tmp_path, layout_seed=3))
    assert result.passed == 3, [(r.name, r.replay) for r in result.results]
    camera = next(r for r in result.results if r.name == "sim-open-camera")
    assert camera.replay is not None and camera.replay["status"] == "healed" and camera.replay["healed"] >= 1


class ScreenCounting(ReplayPolicy):
    """The scripted replay, counting at each step the screen-sized images alive in the process."""

    def __init__(self, scenario: Scenario, counts: list[int]) -> None:
        super().__init__(scenario.gold)
        self.counts = counts

    def decide(self, observation: Observation) -> Decision:
        size = observation.frame.image.size
        # views of one screen share its pixels: count the pixel stores, not the Image objects
        with warnings.catch_warnings():  # isinstance on every live object touches deprecated module attributes
            warnings.simplefilter("ignore")
            stores = {id(o.im) for o in gc.get_objects() if isinstance(o, Image.Image) and o.size == size}
        self.counts.append(len(stores))
        return super().decide(observation)


def test_an_evaluated_episode_holds_one_screen_however_long_it_runs(tmp_path: Path) -> None:
    # Eight episodes each holding every screen it saw (~10 MB each) made -j 8 memory grow with the
    # length of the scenarios. Recorded steps keep a thumbnail; a replay's memory keeps no screens.
    scenario = next(s for s in sim_scenarios() if s.name == "sim-add-contact")
    counts: list[int] = []
    result = evaluate([scenario], EvalConfig(out=tmp_path, policy_factory=lambda s: ScreenCounting(s, counts)))
    assert result.passed == 1 and result.results[0].steps == len(counts) == 7
    assert max(counts) - counts[0] <= 1, counts  # was one more screen per step
    frames = sorted(Path(result.results[0].run_dir).glob("frame_*.jpg"))
    assert [Image.open(f).size for f in frames] == [(1080, 2400)] * 7  # what lands on disk is whole


def test_no_history_reuse_gives_each_episode_the_former_memory_schedule(tmp_path: Path) -> None:
    from vlagent.evaluate import _Runner

    memory = _Runner(EvalConfig(out=tmp_path, policy_options={"no_history_reuse": True}))._memory()
    assert memory is not None and memory.config.sizes == "shrink"
    default = _Runner(EvalConfig(out=tmp_path / "default"))._memory()
    assert default is not None and default.config == MemoryConfig()  # stable sizes
    # The memory flags of `vlagent eval` reach each episode's memory (they once stopped at the policy).
    options = {"max_images": 2, "max_tokens": 1800, "max_pixels": 512 * 784, "history": "video"}
    sized = _Runner(EvalConfig(out=tmp_path / "sized", policy_options=options))._memory()
    assert sized is not None
    assert (sized.config.max_images, sized.config.max_tokens, sized.config.max_pixels) == (2, 1800, 512 * 784)
    assert sized.config.history == "video"
