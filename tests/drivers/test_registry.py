"""The driver registry: names, entry points of third-party packages, missing extras, conformance."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from vlagent.actions import Action
from vlagent.drivers import BaseDriver, available_drivers, check_driver, open_driver
from vlagent.drivers.base import PHONE_CAPABILITIES
from vlagent.errors import DriverConformanceError, UnknownDriverError
from vlagent.frames import Frame


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownDriverError) as info:
        open_driver("toaster:1")
    assert "sim" in str(info.value) and "adb" in str(info.value) and "desktop" in str(info.value)


def test_sim_spec_with_seed() -> None:
    with open_driver("sim:7") as driver:
        assert driver.name == "sim" and driver.screen_size() == (1080, 2400)


def test_third_party_driver_registered_by_entry_point(tmp_path: Path) -> None:
    """A package that declares ``vlagent.drivers`` in its metadata is found without code changes here."""
    (tmp_path / "acme_screen.py").write_text(
        textwrap.dedent(
            """
            from vlagent.drivers.sim import SimDriver

            def create_driver(arg, **options):
                driver = SimDriver(seed=int(arg or 0))
                driver.name = "acme"
                return driver
            """
        )
    )
    dist = tmp_path / "acme_screen-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-screen\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vlagent.drivers]\nacme = acme_screen:create_driver\n")
    code = (
        "from vlagent.drivers import open_driver, check_driver, available_drivers\n"
        "assert 'acme' in available_drivers()\n"
        "d = open_driver('acme:3'); check_driver(d); print(d.name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "acme"
    assert "acme" not in available_drivers()  # nothing leaked into this process


def test_missing_extra_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules['adbutils'] = None\n"
        "from vlagent.drivers import open_driver\n"
        "from vlagent.errors import MissingExtraError\n"
        "try:\n    open_driver('adb')\nexcept MissingExtraError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'vlagent[android]'" in result.stdout, result.stdout + result.stderr


class _Sloppy(BaseDriver):
    """A deliberately broken driver: wrong frame size, executes what it cannot do."""

    name = "sloppy"
    _capabilities = PHONE_CAPABILITIES

    def screen_size(self) -> tuple[int, int]:
        return (100, 200)

    def screenshot(self) -> Frame:
        return Frame(Image.new("RGB", (50, 50)), 50, 50)

    def execute(self, action: Action) -> None:
        return None


def test_check_driver_lists_every_problem() -> None:
    with pytest.raises(DriverConformanceError) as info:
        check_driver(_Sloppy())
    problems = info.value.problems
    assert any("differs from screen_size" in p for p in problems)
    assert any("ActionNotSupportedError" in p for p in problems)


def test_check_driver_closes_twice_when_asked() -> None:
    from vlagent.drivers.sim import SimDriver

    check_driver(SimDriver(), close=True)

    class Fragile(SimDriver):
        closed = False

        def close(self) -> None:
            if self.closed:
                raise RuntimeError("already closed")
            self.closed = True

    with pytest.raises(DriverConformanceError, match="second close"):
        check_driver(Fragile(), close=True)
