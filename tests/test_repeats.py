"""Repeats: intervals and pass@k/pass^k against hand computation and brute force; eval --repeats and
--config-from on the simulated phone."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlagent.actions import Done
from vlagent.evaluate import EvalConfig, evaluate
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.repeats import pass_at_k, pass_hat_k, pooled, repeat_stats, wilson_interval
from vlagent.replay import ReplayPolicy
from vlagent.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.mark.parametrize(
    ("c", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),  # the "rule of three"-like upper bound of a clean run
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (1, 3, 0.06149, 0.79235),
    ],
)
def test_wilson_interval_matches_hand_computation(c: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(c, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_pass_at_k_and_pass_hat_k_equal_brute_force_over_subsets(n: int) -> None:
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            assert pass_at_k(c, n, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
            assert pass_hat_k(c, n, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        wilson_interval(4, 3)
    with pytest.raises(ValueError):
        pass_at_k(1, 3, 4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_pooled_statistics_average_per_scenario() -> None:
    stats = pooled([[True, True, False], [False, False, False]])
    assert (stats.runs, stats.passed) == (6, 2)
    assert stats.pass_at[3] == pytest.approx((1.0 + 0.0) / 2)
    assert stats.pass_hat[1] == pytest.approx((2 / 3 + 0) / 2)
    assert "2/6 passed" in stats.describe() and "pass^3 0.00" in stats.describe()
    assert repeat_stats([True]).describe().startswith("1/1 passed (1.00, 95% CI 0.21-1.00)")


def test_eval_repeats_report_rates_with_intervals(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "sim-wifi-on.yaml")

    def factory(run: Scenario) -> ScriptedPolicy | ReplayPolicy:
        if run.name.endswith(".r0"):  # the recorded layout (seed 0): the gold steps replay exactly
            return ReplayPolicy(run.gold)
        return ScriptedPolicy([Done(status="failure")])  # the other repeats give up at once

    result = evaluate([scenario], EvalConfig(out=tmp_path, repeats=3, policy_factory=factory))
    assert [(r.name, r.repeat, r.seed, r.success) for r in result.results] == [
        ("sim-wifi-on.r0", 0, 0, True),
        ("sim-wifi-on.r1", 1, 1, False),
        ("sim-wifi-on.r2", 2, 2, False),
    ]
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    per = data["summary"]["repeats"]["per_scenario"]["sim-wifi-on"]
    assert per["passed"] == 1 and per["pass_at_k"]["3"] == 1.0 and per["pass_hat_k"]["3"] == 0.0
    assert per["pass_at_k"]["2"] == pytest.approx(2 / 3) and per["pass_hat_k"]["1"] == pytest.approx(1 / 3)
    assert per["interval_95"] == pytest.approx([0.06149, 0.79235], abs=5e-5)
    assert data["summary"]["interval_95"] == per["interval_95"]
    assert math.isclose(data["summary"]["success_rate"], 1 / 3)
    assert data["config"]["repeats"] == 3 and data["config"]["policy"] == "custom"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [f"sim-wifi-on.r{i}" for i in range(3)]


def test_each_repeat_samples_on_its_own_seed(tmp_path: Path) -> None:
    """Every observation of repeat r carries the sampling seed base + r (a sampling model draws from it)."""
    scenario = load_scenario(SCENARIOS / "sim-wifi-on.yaml")
    seen: dict[str, list[int | None]] = {}

    class Recording(ScriptedPolicy):
        def __init__(self, name: str) -> None:
            super().__init__([Done(status="failure")])
            self.run = name

        def decide(self, observation: Observation) -> Decision:
            seen.setdefault(self.run, []).append(observation.seed)
            return super().decide(observation)

    config = EvalConfig(out=tmp_path, repeats=3, sampling_seed=100, policy_factory=lambda run: Recording(run.name))
    result = evaluate([scenario], config)
    assert seen == {"sim-wifi-on.r0": [100], "sim-wifi-on.r1": [101], "sim-wifi-on.r2": [102]}
    assert [r.sampling_seed for r in result.results] == [100, 101, 102]


def _eval(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "eval", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
    )


def test_config_from_reruns_the_pinned_configuration(tmp_path: Path) -> None:
    scenario = str(SCENARIOS / "sim-dark-mode.yaml")
    first = _eval(tmp_path, scenario, "--repeats", "2", "--layout-seed", "5", "--seed", "40", "--out", "a")
    assert first.returncode == 0, first.stderr
    assert "sim-dark-mode: 2/2 passed" in first.stdout and "pass^2 1.00" in first.stdout
    again = _eval(tmp_path, scenario, "--config-from", "a/results.json", "--out", "b")
    assert again.returncode == 0, again.stderr
    a = json.loads((tmp_path / "a" / "results.json").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "b" / "results.json").read_text(encoding="utf-8"))
    assert a["config"] == b["config"]
    assert [r["seed"] for r in b["scenarios"]] == [5, 6]
    assert [r["sampling_seed"] for r in b["scenarios"]] == [40, 41] and b["config"]["sampling_seed"] == 40
    bad = _eval(tmp_path, scenario, "--config-from", scenario, "--out", "c")
    assert bad.returncode == 2 and "--config-from" in bad.stderr and "Traceback" not in bad.stderr


def test_the_report_shows_intervals_and_refuses_foreign_results(tmp_path: Path) -> None:
    from vlagent.errors import UserError
    from vlagent.report import write_eval_report

    scenario = load_scenario(SCENARIOS / "sim-wifi-on.yaml")
    evaluate([scenario], EvalConfig(out=tmp_path / "ev", repeats=2, policy_factory=lambda run: ReplayPolicy(run.gold)))
    page = (tmp_path / "ev" / "report.html").read_text(encoding="utf-8")
    assert "95% CI" in page and "pass^k" in page
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text('{"x": 1}', encoding="utf-8")
    with pytest.raises(UserError, match="not an evaluation's results"):
        write_eval_report(tmp_path / "other")
