"""The action cache: a passing act re-runs without the model until the screen changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlagent.actions import Click
from vlagent.drivers.sim import SimDriver
from vlagent.errors import ConfigError
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.testing import ActFailed, ActionCache, Agent, LocateFailed, SimOracle, screen_fingerprint
from vlagent.testing.cache import fingerprint_distance


class CountingPolicy:
    """Wraps a policy and counts how often the model is asked."""

    name = "counting"

    def __init__(self, inner: SimOracle) -> None:
        self.inner = inner
        self.calls = 0

    def decide(self, observation: Observation) -> Decision:
        self.calls += 1
        return self.inner.decide(observation)

    def decide_batch(self, observations):  # type: ignore[no-untyped-def]
        return [self.decide(o) for o in observations]


class NoModel:
    """A policy that must not be consulted."""

    name = "no-model"

    def decide(self, observation: Observation) -> Decision:
        raise AssertionError(f"the model was asked at step {observation.step_index + 1}")

    def decide_batch(self, observations):  # type: ignore[no-untyped-def]
        return [self.decide(o) for o in observations]


def _run(cache_path: Path, policy: object, driver: SimDriver, out: Path) -> Agent:
    agent = Agent(driver, policy, out_dir=out, cache=ActionCache(cache_path), querier=SimOracle(driver))  # type: ignore[arg-type]
    agent.act("Turn on Dark mode", max_steps=12)
    return agent


def test_second_run_uses_no_model(tmp_path: Path) -> None:
    cache = tmp_path / "actions.json"
    first = SimDriver()
    counting = CountingPolicy(SimOracle(first))
    _run(cache, counting, first, tmp_path / "a")
    stored = json.loads(cache.read_text())
    steps = stored["instructions"]["Turn on Dark mode"]
    assert len(steps) == counting.calls >= 3 and steps[-1]["step"]["action"]["action"] == "done"

    second = SimDriver()
    agent = _run(cache, NoModel(), second, tmp_path / "b")
    assert second.phone.toggles["dark_mode"] is True
    assert "(from cache)" in agent.calls[-1].reasoning[0]


def test_a_changed_screen_asks_the_model_from_there(tmp_path: Path) -> None:
    cache = tmp_path / "actions.json"
    first = SimDriver()
    _run(cache, SimOracle(first), first, tmp_path / "a")
    # Same home screen, but NFC already on changes the first Settings screen (not the ones after
    # scrolling): the model is asked exactly where the screen differs.
    partly = SimDriver()
    partly.phone.set_toggle("nfc", True)
    counting = CountingPolicy(SimOracle(partly))
    run = ActionCache(cache)
    Agent(partly, counting, out_dir=tmp_path / "b", cache=run).act("Turn on Dark mode", max_steps=12)
    assert run.stats.hits >= 2 and counting.calls == run.stats.misses >= 1 and partly.phone.toggles["dark_mode"]
    # Another layout: the home screen differs, so the very first step misses.
    moved = SimDriver(seed=5)
    counting = CountingPolicy(SimOracle(moved))
    _run(cache, counting, moved, tmp_path / "c")
    assert counting.calls >= 3 and moved.phone.toggles["dark_mode"]


def test_a_failed_run_that_used_the_cache_drops_the_entries(tmp_path: Path) -> None:
    cache_path = tmp_path / "actions.json"
    first = SimDriver()
    _run(cache_path, SimOracle(first), first, tmp_path / "a")
    partly = SimDriver()
    partly.phone.set_toggle("nfc", True)  # first step hits, the next one needs the "model", which gives up
    with pytest.raises(ActFailed, match="script exhausted"):
        _run(cache_path, ScriptedPolicy([]), partly, tmp_path / "b")
    assert ActionCache(cache_path).instructions() == []


def test_fingerprints_tell_a_flipped_toggle_apart() -> None:
    driver = SimDriver()
    driver.phone.open_app("Settings")
    before = screen_fingerprint(driver.screenshot())
    assert screen_fingerprint(driver.screenshot()) == before
    driver.phone.set_toggle("wifi", True)
    after = screen_fingerprint(driver.screenshot())
    assert after != before and 0 < fingerprint_distance(before, after) < 0.2
    assert fingerprint_distance(before, "garbage") == 1.0


def test_a_broken_cache_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="delete it to start afresh"):
        ActionCache(path)


class CountingQuerier:
    """The state oracle, counting how often it is asked."""

    def __init__(self, driver: SimDriver) -> None:
        self.inner = SimOracle(driver)
        self.asked = 0

    def ask(self, query, schema):  # type: ignore[no-untyped-def]
        self.asked += 1
        return self.inner.ask(query, schema)


def test_locate_is_answered_from_the_cache_on_the_same_screen_only(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    first = SimDriver()
    asked = CountingQuerier(first)
    point = Agent(first, NoModel(), out_dir=tmp_path / "a", cache=ActionCache(path), querier=asked).locate("Settings")
    assert asked.asked == 1 and json.loads(path.read_text())["locations"]["Settings"][0]["x"] == point[0]

    second = SimDriver()
    again = CountingQuerier(second)
    cache = ActionCache(path)
    agent = Agent(second, NoModel(), out_dir=tmp_path / "b", cache=cache, querier=again)
    assert agent.locate("Settings") == point and again.asked == 0 and cache.stats.hits == 1
    assert "(from cache)" in agent.calls[-1].reasoning[0]

    # Another screen: the model is asked, and both screens are remembered.
    second.execute(Click(x=point[0], y=point[1]))
    agent.locate("Wi-Fi")
    assert again.asked == 1 and cache.stats.misses == 1
    assert set(json.loads(path.read_text())["locations"]) == {"Settings", "Wi-Fi"}


def test_a_description_not_found_is_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    driver = SimDriver()
    agent = Agent(driver, NoModel(), out_dir=tmp_path, cache=ActionCache(path), querier=SimOracle(driver))
    with pytest.raises(LocateFailed):
        agent.locate("Teleport button")
    assert not path.exists() or "Teleport button" not in json.loads(path.read_text())["locations"]
