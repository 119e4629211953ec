"""Evaluation throughput: threads against Ray workers; and peak memory over 13 vs 1,000 scenarios.

Runs the simulated-phone scenarios (``scenarios/sim-*.yaml``, ``--repeats`` copies of each) through
``vlagent.evaluate`` in this process with

  -j 1, -j 4                         threads of this process (the default executor)
  --ray local, 1 and 2 workers       a Ray cluster started for the run ("cold": its start counted,
                                     as ``vlagent eval --ray local`` pays it) and a second run on
                                     it ("warm": workers already up, the cost per episode)

for two policies: ``scripted`` (each scenario's gold steps replayed, no model time) and
``sleep300`` (the same gold steps, each after a fixed 300 ms, a model's latency). Prints
scenarios per second and the ratio to ``-j 1`` of the same policy in the same run.

Then peak RSS of ``vlagent eval`` (a subprocess: scripted, ``-j 8``) over 13 scenarios and
over 1,000 (the 13 repeated 77 times); ``--skip-1000`` leaves the long run out.

    python tools/bench_eval.py [--repeats 2] [--latency 0.3] [--skip-1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from vlagent.errors import ModelError
from vlagent.evaluate import EvalConfig, Executor, evaluate
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.scenario import Scenario, load_scenarios

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class SleepingGold:
    """A scenario's gold steps, each answered after ``latency`` seconds: a model that takes that long."""

    name = "sleeping-gold"

    def __init__(self, scenario: Scenario, latency: float) -> None:
        self.inner = ScriptedPolicy([g.action for g in scenario.gold])
        self.latency = latency

    def decide(self, observation: Observation) -> Decision:
        time.sleep(self.latency)
        return self.inner.decide(observation)

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return [self.decide(o) for o in observations]


class Sleeping:
    """Policy factory of :class:`SleepingGold` (pickled by value to Ray workers: this file is ``__main__``)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def __call__(self, scenario: Scenario) -> SleepingGold:
        return SleepingGold(scenario, self.latency)


def _ray_up(workers: int, temp: Path) -> None:
    import ray

    from vlagent.distributed.ray_executor import _LOCAL_OBJECT_STORE

    temp.mkdir(parents=True, exist_ok=True)
    ray.init(
        address="local",
        num_cpus=workers,
        object_store_memory=_LOCAL_OBJECT_STORE,
        include_dashboard=False,
        _temp_dir=str(temp),
        log_to_driver=False,
        configure_logging=False,
    )


def _row(
    scenarios: list[Scenario],
    repeats: int,
    policy: str,
    label: str,
    jobs: int,
    executor: Executor | None,
    work: Path,
    base: float | None,
    extra: float,
) -> float:
    """Run one configuration, print its row, answer its scenarios per second."""
    runs = len(scenarios) * repeats
    out = work / f"{policy}-{time.monotonic_ns()}"
    latency = int(policy.removeprefix("sleep")) / 1000 if policy.startswith("sleep") else 0.0
    factory = Sleeping(latency) if latency else None
    # copies under new names, not --repeats: the same layout each time, so the gold steps play unchanged
    copies = [s.model_copy(update={"name": f"{s.name}.c{i}"}) for i in range(repeats) for s in scenarios]
    config = EvalConfig(out=out, jobs=jobs, policy_factory=factory)
    started = time.perf_counter()
    result = evaluate(copies, config, executor=executor)
    seconds = time.perf_counter() - started + extra
    rate = runs / seconds
    print(
        f"{policy:<10} {label:<32} {seconds:>8.1f} {rate:>7.2f} {rate / (base or rate):>7.2f}x "
        f"{result.passed:>3}/{len(result.results)}",
        flush=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return rate


def throughput(scenarios: list[Scenario], repeats: int, latency: float, work: Path) -> None:
    """Rows per policy: threads; Ray cold (the cluster started by the run, as ``--ray local`` does) and
    warm (a second run on the same cluster, its workers already up)."""
    import ray

    from vlagent.distributed import RayExecutor

    runs = len(scenarios) * repeats
    print(f"throughput: {len(scenarios)} sim scenarios x {repeats} repeats = {runs} episodes per row", flush=True)
    print(f"{'policy':<10} {'how':<32} {'seconds':>8} {'scen/s':>7} {'vs -j 1':>8} {'passed':>7}")
    for policy in ("scripted", f"sleep{int(latency * 1000)}"):
        base: float | None = None

        def row(label: str, jobs: int, executor: Executor | None, extra: float = 0.0, *, policy: str = policy) -> None:
            nonlocal base
            rate = _row(scenarios, repeats, policy, label, jobs, executor, work, base, extra)
            base = base or rate

        row("-j 1", 1, None)
        row("-j 4", 4, None)
        for workers in (1, 2):
            started = time.perf_counter()
            _ray_up(workers, work / f"ray-{policy}-{workers}")
            try:
                up = time.perf_counter() - started
                row(f"--ray local, {workers} worker(s), cold", workers, RayExecutor("local"), extra=up)
                row(f"--ray local, {workers} worker(s), warm", workers, RayExecutor("local"))
            finally:
                ray.shutdown()


def peak_rss_gb(files: list[Path], repeats: int, out: Path) -> tuple[float, float, int]:
    """Peak RSS (GB) of ``vlagent eval`` over ``files`` x ``repeats`` (scripted, -j 8), seconds, runs passed."""
    argv = [sys.executable, "-m", "vlagent.cli", "eval", *map(str, files), "--policy", "scripted", "-j", "8"]
    argv += ["--repeats", str(repeats), "--out", str(out)]
    wrapper = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    _code, kib = done.stdout.split()
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))["summary"]
    shutil.rmtree(out, ignore_errors=True)
    return int(kib) / (1024 * 1024), seconds, int(summary["passed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each sim scenario per row (default 2)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the sleeping policy takes per step")
    parser.add_argument("--skip-1000", action="store_true", help="measure peak RSS over 13 scenarios only")
    parser.add_argument("--skip-throughput", action="store_true", help="only the peak RSS part")
    args = parser.parse_args()
    files = sorted(SCENARIOS.glob("sim-*.yaml"))
    scenarios = load_scenarios(files)
    print(f"bench_eval on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            throughput(scenarios, args.repeats, args.latency, work)
        print("peak RSS of `vlagent eval --policy scripted -j 8` (a subprocess):", flush=True)
        sizes = [1] if args.skip_1000 else [1, 77]
        peaks = []
        for repeats in sizes:
            gb, seconds, passed = peak_rss_gb(files, repeats, work / f"rss-{repeats}")
            peaks.append(gb)
            runs = len(files) * repeats
            print(f"  {runs:>5} scenarios: peak RSS {gb:.2f} GB ({seconds:.0f} s, {passed}/{runs} passed)", flush=True)
        if len(peaks) == 2:
            print(f"  ratio 1,000 / 13: {peaks[1] / peaks[0]:.2f}x (issue 18 asks for at most 1.5x)")


if __name__ == "__main__":
    main()
