"""pytest plugin for ``tools/adbutils_e2e.py``: adbutils' e2etests against the simulated phone.

It does two things and nothing else. Tests named in the known-failures file (path in
``ADBUTILS_E2E_KNOWN``; lines ``TEST_ID: reason``) get ``xfail(strict=True, reason=...)``, and a
name that matches no collected test is an error, so the list cannot go stale. Module-level
clients built for the default port (``adbutils.AdbClient("127.0.0.1", 5037)`` in
``test_adb.py``) are pointed at ``ANDROID_ADB_SERVER_PORT``, where the simulated server listens.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _known_failures() -> dict[str, str]:
    path = os.environ.get("ADBUTILS_E2E_KNOWN")
    if not path:
        return {}
    known: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test_id, _, reason = line.partition(": ")
        known[test_id.strip()] = reason.strip() or "known failure"
    return known


def _repoint_clients(items: list[pytest.Item]) -> None:
    import adbutils

    port = int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))
    for module in {item.module for item in items if isinstance(item, pytest.Function) and item.module is not None}:
        for name, value in list(vars(module).items()):
            if isinstance(value, adbutils.AdbClient) and value.port != port:
                setattr(module, name, adbutils.AdbClient(host="127.0.0.1", port=port))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _repoint_clients(items)
    known = _known_failures()
    seen = set()
    for item in items:
        reason = known.get(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
            seen.add(item.nodeid)
    stale = sorted(set(known) - seen)
    if stale and not config.getoption("keyword") and not config.getoption("markexpr"):
        raise pytest.UsageError(f"known failures that name no collected test (update the list): {stale}")
