"""What reading a phone's state costs: over adb (AdbState) against the in-process simulated phone (SimState).

Serves one SimPhone over the real adb protocol on loopback, in this process (as the tests
do), and measures in one run:
- one look at the screen: ``uiautomator dump`` + parse through AdbState, against SimState
  building the same view hierarchy from the phone's objects;
- judging a scenario's checks (``scenarios/sim-delete-note.yaml`` by default) on a fresh look;
- parsing a ``--nodes``-node dump (10,000 by default: a long Settings list, and a worst case
  where every text, id and bounds differ) with ``parse_hierarchy``, against ElementTree's bare
  C parse of the same XML (no nodes built). Parse times are the least CPU time of the repeats.
Prints medians, and ratios against the in-process baseline measured in the same run.
Usage: ``python tools/bench_state.py [--repeat 20] [--nodes 10000] [--scenario PATH]``.

Loopback numbers are vlagent's own cost plus the simulated server's (it shares this
process); on a real phone add the device's time (``uiautomator dump`` ~1-2 s, more on an
animating screen; ``content query`` and ``settings get`` ~0.1-0.3 s each).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import fromstring

import yaml
from bench_adb import median_ms  # tools/ is on sys.path when a tool runs

from vlagent.drivers.android import AdbConfig, AdbDriver
from vlagent.drivers.sim.adb_server import serve_sim
from vlagent.drivers.sim.state import SimState
from vlagent.drivers.sim.world import SimPhone
from vlagent.tasks import StartState, UiNode, judge, parse_check, parse_hierarchy, to_hierarchy_xml

ROOT = Path(__file__).resolve().parents[1]


def _best_cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    """Least CPU time of ``repeat`` runs: the parse's own cost, least disturbed by other processes."""
    best, kept = float("inf"), []
    for _ in range(repeat):
        start = time.process_time()
        kept.append(fn())  # kept alive: freeing the result is not parsing
        best = min(best, time.process_time() - start)
    return best * 1000


def settings_list(count: int) -> list[UiNode]:
    """``count`` nodes shaped like a long Settings list: rows holding a title, a summary and a switch."""
    widget, package = "android.widget.", "com.android.settings"
    nodes = [
        UiNode(class_name=widget + "FrameLayout", package=package, bounds=(0, 0, 1080, 2400)),
        UiNode(class_name="androidx.recyclerview.widget.RecyclerView", resource_id=f"{package}:id/list",
               package=package, bounds=(0, 220, 1080, 2274), scrollable=True, depth=1, parent=0),
    ]  # fmt: skip
    number = 0
    while len(nodes) < count:
        y = 220 + (number % 12) * 171
        row = len(nodes)
        nodes.append(UiNode(class_name=widget + "LinearLayout", package=package, bounds=(0, y, 1080, y + 171),
                            clickable=True, focusable=True, index=number, depth=2, parent=1))  # fmt: skip
        children = [
            UiNode(class_name=widget + "TextView", resource_id="android:id/title", text=f"Setting {number}",
                   bounds=(189, y + 40, 880, y + 97)),
            UiNode(class_name=widget + "TextView", resource_id="android:id/summary", text="On" if number % 2 else "Off",
                   bounds=(189, y + 97, 880, y + 137)),
            UiNode(class_name=widget + "Switch", resource_id="android:id/switch_widget", checkable=True,
                   checked=bool(number % 2), focusable=True, bounds=(911, y + 52, 1038, y + 119)),
        ]  # fmt: skip
        for index, child in enumerate(children[: count - len(nodes)]):
            nodes.append(dataclasses.replace(child, package=package, index=index, depth=3, parent=row))
        number += 1
    return nodes


def distinct_list(count: int) -> list[UiNode]:
    """``count`` nodes whose text, resource-id and bounds all differ: the worst case for the parser's caches."""
    nodes = [UiNode(class_name="android.widget.FrameLayout", package="com.example", bounds=(0, 0, 1080, 2400))]
    for i in range(1, count):
        parent = (i - 1) // 4
        node = UiNode(text=f"Item {i} é", resource_id=f"com.example:id/item_{i}", class_name="android.widget.TextView",
                      package="com.example", bounds=(0, i, 1080, i + 100), clickable=i % 3 == 0, index=i % 4,
                      depth=nodes[parent].depth + 1, parent=parent)  # fmt: skip
        nodes.append(node)
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "sim-delete-note.yaml")
    args = parser.parse_args()
    # Never let adbutils start a real adb server while benchmarking the simulated one.
    os.environ.setdefault("ADBUTILS_ADB_PATH", shutil.which("false") or "false")

    data = yaml.safe_load(args.scenario.read_text(encoding="utf-8"))
    checks = [parse_check(check) for check in data["success"]]
    start = StartState.model_validate(data.get("device", {}).get("state", {}))
    repeat = max(1, args.repeat)

    phone = SimPhone(serial="sim-0")
    with serve_sim([phone], port=0) as server:
        driver = AdbDriver("sim-0", AdbConfig(port=server.port, wake=False))
        driver.prepare(start)
        phone.open_app("Notes")  # a screen with content for the dumps
        dump = median_ms(lambda: driver.state().ui_tree(), repeat)
        sim_tree = median_ms(lambda: SimState(phone).ui_tree(), repeat)
        xml = to_hierarchy_xml(SimState(phone).ui_tree().value.nodes)
        parse_screen = median_ms(lambda: parse_hierarchy(xml), repeat)
        adb_judge = median_ms(lambda: judge(checks, driver.state()), repeat)
        sim_judge = median_ms(lambda: judge(checks, SimState(phone)), repeat)
        verdicts = [r.status for r in judge(checks, driver.state())]
        agree = verdicts == [r.status for r in judge(checks, SimState(phone))]

    big = to_hierarchy_xml(settings_list(args.nodes)) + "UI hierchary dumped to: /dev/tty"
    bare_xml = big[: big.rindex("</hierarchy>") + len("</hierarchy>")]
    parse_big = _best_cpu_ms(lambda: parse_hierarchy(big), repeat)
    bare_big = _best_cpu_ms(lambda: fromstring(bare_xml), repeat)
    distinct = to_hierarchy_xml(distinct_list(args.nodes))
    parse_distinct = _best_cpu_ms(lambda: parse_hierarchy(distinct), repeat)
    bare_distinct = _best_cpu_ms(lambda: fromstring(distinct), repeat)

    print(f"scenario: {args.scenario.name} ({len(checks)} checks), {repeat} repeats, python {sys.version.split()[0]}")
    print(f"{'':<34}{'in-process ms':>15}{'over adb ms':>13}{'ratio':>8}")
    print(f"{'one look at the screen':<34}{sim_tree:>15.2f}{dump:>13.2f}{dump / sim_tree:>7.1f}x")
    print(f"{'  of which parsing the dump':<34}{'':>15}{parse_screen:>13.2f}")
    print(f"{'judging the checks':<34}{sim_judge:>15.2f}{adb_judge:>13.2f}{adb_judge / sim_judge:>7.1f}x")
    print(f"verdicts over adb agree with the in-process state: {'yes' if agree else 'NO'} ({', '.join(verdicts)})")
    print(f"dump + parse / in-process look: {dump / sim_tree:.1f}x")
    print(f"judge over adb / in-process judge: {adb_judge / sim_judge:.1f}x")
    print(f"parse_hierarchy of {args.nodes} nodes ({len(big) / 1e6:.1f} MB): {parse_big:.1f} ms (target < 100 ms)")
    print(f"ElementTree bare parse of the same XML: {bare_big:.1f} ms")
    print(f"parse_hierarchy / bare ElementTree: {parse_big / bare_big:.2f}x")
    print(
        f"every text, id and bounds distinct ({len(distinct) / 1e6:.1f} MB): parse_hierarchy {parse_distinct:.1f} ms, "
        f"bare ElementTree {bare_distinct:.1f} ms ({parse_distinct / bare_distinct:.2f}x)"
    )
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
