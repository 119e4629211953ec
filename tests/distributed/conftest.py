"""A Ray cluster of two nodes on this machine, started as users start one (``ray start``), and a
simulated phone on a private adb port that only the second node can reach.

Each node is a ``ray start --block`` in its own session with its own free ports and a private
temporary directory; teardown ends exactly those process groups (never ``ray stop``, which
would end every Ray process of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sim_serve import free_port, sim_serve

ray = pytest.importorskip("ray", reason="the Ray tests need vlagent[ray]")

SERIAL = "emulator-5554"
PHONE = f"adb:{SERIAL}"


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    """The environment that joins the cluster (vlagent eval --ray ADDRESS in a subprocess)."""
    nodes: list[subprocess.Popen[bytes]]
    temp: Path

    def node_ids(self) -> dict[str, str]:
        """Node id -> the custom resource that names it (``head`` or the phone's)."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, log_to_driver=False); "
            f"print(json.dumps({{n['NodeID']: sorted(k for k in n['Resources'] if k in ('head', {PHONE!r}))[0] "
            "for n in ray.nodes() if n['Alive']}))"
        )
        done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def pgids(self) -> set[int]:
        return {node.pid for node in self.nodes}

    def end_node(self, index: int) -> None:
        """End one node as a machine dies: its raylet and workers go at once."""
        _end(self.nodes[index], first=signal.SIGKILL)


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    ports = [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    argv = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats", *ports, *args]
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _end(node: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM) -> None:
    """End one node: its ``ray start`` and every process of its group (raylet, workers)."""
    for sig, wait in ((first, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            break
        try:
            node.wait(timeout=wait)
            time.sleep(0.5)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # what is left of the group goes too
        os.killpg(node.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def phone_port() -> Iterator[int]:
    """A simulated phone served by the CLI on a private adb port."""
    with sim_serve("--serial", SERIAL) as port:
        yield port


@pytest.fixture(scope="module")
def cluster(phone_port: int) -> Iterator[Cluster]:
    """A head node (resource ``head``) and a second node that has the phone (resource ``adb:SERIAL``)."""
    temp = Path(tempfile.mkdtemp(prefix="vlr-", dir="/tmp"))  # Ray's socket paths must stay short
    # Ray 2.60 turns on token authentication for clusters started with `ray start`; this
    # cluster lives on loopback for one test module.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        common = ["--num-cpus=1", "--object-store-memory=80000000"]
        head = ["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
        nodes.append(_ray_start([*head, *common, f"--temp-dir={temp}", '--resources={"head": 1}'], env, temp / "h.log"))
        phone_env = {**env, "ANDROID_ADB_SERVER_PORT": str(phone_port), "ADBUTILS_ADB_PATH": "/bin/false"}
        second = [f"--address=127.0.0.1:{port}", *common, f'--resources={{"{PHONE}": 1}}']
        nodes.append(_ray_start(second, phone_env, temp / "w.log"))
        up = Cluster(f"127.0.0.1:{port}", env, nodes, temp)
        deadline = time.monotonic() + 90
        while len(up.node_ids()) < 2:
            if time.monotonic() > deadline or any(n.poll() is not None for n in nodes):
                logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in temp.glob("*.log"))
                pytest.fail(f"the two-node Ray cluster did not come up:\n{logs}")
            time.sleep(1)
        yield up
    finally:
        for node in reversed(nodes):
            _end(node)
        subprocess.run(["rm", "-rf", str(temp)], check=False)
