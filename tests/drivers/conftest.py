"""Fixtures for driver tests: simulated phones served over the real adb protocol."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.world import SimPhone


@pytest.fixture
def no_real_adb(monkeypatch: pytest.MonkeyPatch) -> None:
    """adbutils starts `adb start-server` when it cannot connect: make that a harmless no-op."""
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
    monkeypatch.delenv("ANDROID_ADB_SERVER_HOST", raising=False)


@pytest.fixture
def adb_sim(no_real_adb: None) -> Iterator[SimAdbServer]:
    """One simulated phone, serial sim-0, on a free loopback port."""
    with serve_sim([SimPhone(serial="sim-0")], port=0) as server:
        yield server


@pytest.fixture
def adb_sims(no_real_adb: None) -> Iterator[SimAdbServer]:
    """Two simulated phones, sim-0 and sim-1, behind one server."""
    with serve_sim([SimPhone(serial="sim-0"), SimPhone(serial="sim-1", seed=3)], port=0) as server:
        yield server
