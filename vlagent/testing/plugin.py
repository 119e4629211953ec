"""pytest plugin: ``vl_agent`` / ``vl_device`` fixtures, ``--vl-*`` options, the ``vl_real`` marker.

Registered through the ``pytest11`` entry point, so installing vlagent is enough::

    def test_wifi(vl_agent):
        vl_agent.act("Turn on Wi-Fi")
        vl_agent.assert_("Wi-Fi is on")

    $ pytest --vl-device sim

Each test gets a fresh device (``--vl-device``, default the simulated phone) and an Agent
whose calls are recorded under ``--vl-out`` (default: pytest's temporary directory), one
directory per test. The policy is chosen by ``--vl-policy``: ``auto`` uses the model given
by ``--vl-model`` / ``--vl-base-url`` and otherwise, on the simulated phone, the state
oracle (so the suite means something in CI without weights). ``--vl-device sample_desktop``
is the sample Tk app (``vlagent.apps.sample_desktop``), started afresh for every test on a
private Xvfb screen that the session starts once; its oracle is SampleAppOracle, which
reads the app's state file. The screen is always private, even when ``DISPLAY`` is set:
the tests must not take over the pointer and keyboard of the person running them, a
window manager must not move or cover the window the oracle clicks by its reported
rectangles, and identical screens everywhere let ``--vl-cache`` replay. A test marked
``vl_device_kind("sim")`` (or any kinds) runs only on those devices and is skipped, naming
both, on others; a suite can so hold tests for several devices. Model policies are loaded
once per session, and only when a test first needs them; with ``--vl-cache FILE`` a
passing test re-runs from cached actions without loading the model at all.

When a test fails, its report gets a "vlagent" section: every call with its outcome, the
model's reasoning, the last frames, and the path of a small HTML page with the frames.

This module must not be imported by ``import vlagent`` (it imports pytest).
"""

from __future__ import annotations

import html
import logging
import re
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vlagent.apps.launcher import SAMPLE_DESKTOP
from vlagent.drivers.base import Driver
from vlagent.drivers.registry import open_driver
from vlagent.errors import ConfigError, ModelError
from vlagent.policies.base import Decision, Observation, Policy
from vlagent.testing.agent import Agent, CallRecord
from vlagent.testing.cache import ActionCache

if TYPE_CHECKING:
    from vlagent.apps.launcher import SampleAppProcess

__all__ = ["LazyPolicy", "VlOptions", "vl_agent", "vl_device", "vl_options", "vl_policy", "vl_sample_app"]

log = logging.getLogger(__name__)

REAL_MARKER = "vl_real"
DEVICE_MARKER = "vl_device_kind"
_SCREEN = (1280, 800)
_APP_KEY = pytest.StashKey["SampleAppProcess"]()
_REPORT_FILE = "report.html"
_FRAMES_IN_REPORT = 3


@dataclass(frozen=True)
class VlOptions:
    """The ``--vl-*`` command line options of one pytest session."""

    device: str
    policy: str
    model: str | None
    base_url: str | None
    out: Path
    cache: Path | None
    real: bool

    @property
    def device_kind(self) -> str:
        """The device's name without its argument: ``sim`` for ``sim:3``, ``adb`` for ``adb:SERIAL``."""
        return self.device.partition(":")[0].strip()

    @property
    def simulated(self) -> bool:
        """A device whose state an oracle reads: the simulated phone or the sample desktop app."""
        return self.device.startswith("sim") or self.device_kind == SAMPLE_DESKTOP

    @property
    def real_enabled(self) -> bool:
        """Tests marked vl_real run with --vl-real, a non-simulated device, or a model."""
        return self.real or not self.simulated or bool(self.model or self.base_url)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vlagent", "UI tests driven by a vision-language model (vlagent)")
    group.addoption(
        "--vl-device",
        default="sim",
        help=f"device for vl_device/vl_agent: sim, sim:SEED, {SAMPLE_DESKTOP} (the sample Tk app on a private "
        "Xvfb), desktop, adb:SERIAL",
    )
    group.addoption(
        "--vl-policy",
        default="auto",
        help="auto (the model if --vl-model/--vl-base-url, else the device's state oracle), oracle, qwen2vl, "
        "openai, tiny, ...",
    )
    group.addoption("--vl-model", default=None, help="model weights (hub id or directory), or the served model name")
    group.addoption("--vl-base-url", default=None, help="OpenAI-compatible server URL for --vl-policy openai")
    group.addoption("--vl-out", default=None, help="directory for the recorded runs (default: pytest's temp dir)")
    group.addoption(
        "--vl-cache",
        default=None,
        help="JSON file of cached actions and locations: passing tests re-run without the model",
    )
    group.addoption("--vl-real", action="store_true", default=False, help=f"run tests marked {REAL_MARKER}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{REAL_MARKER}: needs a real device or model weights; skipped unless --vl-real, a non-sim --vl-device "
        "or --vl-model is given",
    )
    config.addinivalue_line(
        "markers",
        f"{DEVICE_MARKER}(*kinds): run only when --vl-device is one of these kinds (sim, {SAMPLE_DESKTOP}, desktop, "
        "adb; the part before ':'); skipped on other devices",
    )


def _options(config: pytest.Config, basetemp: Path) -> VlOptions:
    out = config.getoption("vl_out")
    out_dir = Path(out) if out else basetemp / "vl-runs"
    cache = config.getoption("vl_cache")
    return VlOptions(
        device=config.getoption("vl_device"),
        policy=config.getoption("vl_policy"),
        model=config.getoption("vl_model"),
        base_url=config.getoption("vl_base_url"),
        out=out_dir.resolve(),
        cache=Path(cache).resolve() if cache else None,
        real=config.getoption("vl_real"),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    options = _options(config, Path())
    for item in items:
        kinds = [str(kind) for mark in item.iter_markers(DEVICE_MARKER) for kind in mark.args]
        if kinds and options.device_kind not in kinds:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"{DEVICE_MARKER}: written for --vl-device {' or '.join(kinds)}; this run uses "
                    f"--vl-device {options.device}"
                )
            )
    if options.real_enabled:
        return
    skip = pytest.mark.skip(
        reason=f"{REAL_MARKER}: needs a real device or model weights; run with --vl-device desktop|adb:SERIAL, "
        "--vl-model PATH or --vl-real"
    )
    for item in items:
        if REAL_MARKER in item.keywords:
            item.add_marker(skip)


# --- policies --------------------------------------------------------------------------


class LazyPolicy:
    """A policy created on first use, so that a fully cached session never loads a model."""

    def __init__(self, name: str, factory: Callable[[], Policy]) -> None:
        self.name = name
        self._factory = factory
        self._policy: Policy | None = None

    @property
    def loaded(self) -> bool:
        return self._policy is not None

    @property
    def inner(self) -> Policy:
        if self._policy is None:
            log.info("loading policy %s", self.name)
            self._policy = self._factory()
        return self._policy

    def decide(self, observation: Observation) -> Decision:
        return self.inner.decide(observation)

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return self.inner.decide_batch(observations)

    def close(self) -> None:
        close = getattr(self._policy, "close", None)
        if close is not None:
            close()


def _policy_name(options: VlOptions) -> str:
    if options.policy != "auto":
        return options.policy
    if options.base_url:
        return "openai"
    if options.model:
        return "qwen2vl"
    if options.simulated:
        return "oracle"
    raise ConfigError(
        f"no policy for --vl-device {options.device}: pass --vl-model (Qwen2-VL weights), --vl-base-url with "
        "--vl-model (a served model), or --vl-policy NAME"
    )


def _open_model_policy(name: str, options: VlOptions) -> Policy:
    from vlagent.policies.registry import open_policy

    kwargs: dict[str, object] = {}
    if options.model:
        kwargs["model"] = options.model
    if options.base_url:
        kwargs["base_url"] = options.base_url
    return open_policy(name, **kwargs)


@pytest.fixture(scope="session")
def vl_options(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VlOptions:
    """The session's ``--vl-*`` options."""
    return _options(request.config, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def _vl_model_policy(vl_options: VlOptions) -> Iterator[LazyPolicy | None]:
    name = _policy_name(vl_options)
    if name == "oracle":
        yield None
        return
    lazy = LazyPolicy(name, lambda: _open_model_policy(name, vl_options))
    yield lazy
    lazy.close()


@pytest.fixture(scope="session")
def _vl_cache(vl_options: VlOptions) -> ActionCache | None:
    return ActionCache(vl_options.cache) if vl_options.cache else None


@pytest.fixture(scope="session")
def _vl_display() -> Iterator[str]:
    """A private Xvfb screen for the session, set as DISPLAY while it runs (see the module docstring)."""
    from vlagent.drivers.xvfb import VirtualDisplay, applied_env, xvfb_available

    if not xvfb_available():
        raise ConfigError(f"--vl-device {SAMPLE_DESKTOP} runs the app on a private Xvfb screen: install xvfb")
    if "pyautogui" in sys.modules:  # it connects to $DISPLAY once, at import, and would click elsewhere
        raise ConfigError(
            f"--vl-device {SAMPLE_DESKTOP}: pyautogui was imported before the private X screen started, so it "
            "is bound to another display; do not import pyautogui at module level in conftest or test files"
        )
    with VirtualDisplay(*_SCREEN, 24) as display, applied_env(display.env):
        assert display.display is not None
        yield display.display


def _open_sample_desktop(request: pytest.FixtureRequest, options: VlOptions) -> Driver:
    """Start the sample app for this test and a desktop driver on its window; the app goes in the stash."""
    from vlagent.apps.launcher import SampleAppProcess

    request.getfixturevalue("_vl_display")
    state_path = _test_dir(options.out, request.node.nodeid) / "app_state.json"
    app = SampleAppProcess.start(state_path)
    request.node.stash[_APP_KEY] = app
    try:
        return open_driver("desktop", region=tuple(app.state()["window"]))
    except BaseException:
        app.close()
        raise


@pytest.fixture
def vl_device(request: pytest.FixtureRequest, vl_options: VlOptions) -> Iterator[Driver]:
    """A fresh device per test, from ``--vl-device`` (default: a new simulated phone; with
    ``sample_desktop``, a new sample app and a desktop driver on its window)."""
    if vl_options.device_kind == SAMPLE_DESKTOP:
        driver = _open_sample_desktop(request, vl_options)
    else:
        driver = open_driver(vl_options.device)
    try:
        yield driver
    finally:
        driver.close()
        app = request.node.stash.get(_APP_KEY, None)
        if app is not None:
            app.close()


@pytest.fixture
def vl_sample_app(request: pytest.FixtureRequest, vl_device: Driver) -> SampleAppProcess:
    """The sample app of this test (``--vl-device sample_desktop``): ``state()`` reads its state file."""
    app = request.node.stash.get(_APP_KEY, None)
    if app is None:
        raise ConfigError(f"vl_sample_app needs --vl-device {SAMPLE_DESKTOP}")
    return app


@pytest.fixture
def vl_policy(request: pytest.FixtureRequest, vl_device: Driver, _vl_model_policy: LazyPolicy | None) -> Policy:
    """The policy from ``--vl-policy``: the session's model, or the state oracle bound to this test's device."""
    if _vl_model_policy is not None:
        return _vl_model_policy
    app = request.node.stash.get(_APP_KEY, None)
    if app is not None:
        from vlagent.testing.desktop_oracle import SampleAppOracle

        return SampleAppOracle(vl_device, app.state_path)
    from vlagent.drivers.sim import SimDriver
    from vlagent.testing.oracle import SimOracle

    if not isinstance(vl_device, SimDriver):
        raise ConfigError(
            f"--vl-policy oracle answers from a simulated device's state: use --vl-device sim or {SAMPLE_DESKTOP}"
        )
    return SimOracle(vl_device)


def _test_dir(out: Path, nodeid: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid.replace("::", "--")).strip("-")
    return out / slug[-120:]


@pytest.fixture
def vl_agent(
    request: pytest.FixtureRequest,
    vl_device: Driver,
    vl_policy: Policy,
    vl_options: VlOptions,
    _vl_cache: ActionCache | None,
) -> Agent:
    """An Agent on this test's device and the session's policy, recording into this test's directory."""
    return Agent(vl_device, vl_policy, out_dir=_test_dir(vl_options.out, request.node.nodeid), cache=_vl_cache)


# --- failure report --------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    agent = getattr(item, "funcargs", {}).get("vl_agent")
    if not isinstance(agent, Agent) or not agent.calls:
        return
    try:
        page = write_html_report(agent.out_dir, agent.calls, title=item.nodeid)
    except OSError as exc:  # the report must never hide the test's own failure
        log.warning("could not write the HTML report: %s", exc)
        page = None
    report.sections.append(("vlagent", failure_section(agent.calls, agent.out_dir, page)))


def failure_section(calls: Sequence[CallRecord], out_dir: Path, page: Path | None) -> str:
    """The text shown under a failed test: each call, the model's reasoning, the last frames."""
    lines = [f"{len(calls)} call(s), recorded in {out_dir}"]
    for number, call in enumerate(calls, start=1):
        state = {True: "ok", False: "FAILED", None: "unfinished"}[call.passed]
        lines.append(f"{number:2d}. {call.kind} {call.text!r}: {state} ({call.outcome or 'no outcome'})")
        if call.passed is not True:
            lines.extend(f"      model: {line}" for line in call.reasoning[-5:])
            lines.extend(f"      frame: {frame}" for frame in call.frames[-_FRAMES_IN_REPORT:])
    if page is not None:
        lines.append(f"HTML report: {page.as_uri()}")
    return "\n".join(lines)


def write_html_report(out_dir: Path, calls: Sequence[CallRecord], *, title: str) -> Path:
    """A small page listing the calls with links to their frames (files, not inline images)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, call in enumerate(calls, start=1):
        state = {True: "ok", False: "failed", None: "unfinished"}[call.passed]
        images = "".join(
            f'<a href="{html.escape(_relative(frame, out_dir))}"><img src="{html.escape(_relative(frame, out_dir))}" '
            f'loading="lazy" height="240" alt="{html.escape(frame.name)}"></a>'
            for frame in call.frames[-_FRAMES_IN_REPORT:]
        )
        reasoning = "<br>".join(html.escape(line) for line in call.reasoning[-8:])
        rows.append(
            f'<tr class="{state}"><td>{number}</td><td>{html.escape(call.kind)}</td><td>{html.escape(call.text)}</td>'
            f"<td>{state}<br><small>{html.escape(call.outcome)}</small></td><td><small>{reasoning}</small></td>"
            f"<td>{images}</td></tr>"
        )
    page = out_dir / _REPORT_FILE
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>vlagent: "
        + html.escape(title)
        + "</title><style>body{font-family:sans-serif}td{vertical-align:top;padding:4px;border-top:1px solid #ccc}"
        ".failed{background:#fee}</style><h1>"
        + html.escape(title)
        + "</h1><table><tr><th>#</th><th>call</th><th>text</th><th>outcome</th><th>model</th><th>frames</th></tr>"
        + "".join(rows)
        + "</table>\n",
        encoding="utf-8",
    )
    return page


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_uri()
