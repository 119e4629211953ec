"""The simulated phone served over the real adb host protocol.

``serve_sim`` starts a loopback server that answers what an adb server answers (the
``host:*`` services, transports, ``shell:``, ``shell,v2:``, ``exec:``, ``sync:``,
``framebuffer:``, forwards and reverses, ``connect:``/``disconnect:`` of phones on the network),
so adbutils, :class:`vlagent.drivers.android.AdbDriver`
and the ``adb`` command-line client drive :class:`~vlagent.drivers.sim.world.SimPhone`
instances exactly as they drive a phone.

The rooms behind it: :mod:`.shell` reads command lines as ``sh`` does; :mod:`.device` is one
served phone (its command log, settings, options and injected failures); :mod:`.programs`,
:mod:`.programs_state`, :mod:`.programs_files`, :mod:`.content` and :mod:`.logcat` are the
Android programs it answers; :mod:`.files` holds its files and :mod:`.sync` moves them;
:mod:`.forwards` keeps ``adb forward`` and ``adb reverse``; :mod:`.network` attaches
and detaches the phones of ``adb connect`` and ``adb disconnect``.

What this module must not do: run anything on the host, listen beyond loopback, or die
on malformed input: a bad request, or a failure while serving one, closes that connection
only (one warning line in the log; the traceback at debug level), and the other
connections go on being served.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlagent.drivers.android_config import network_serial
from vlagent.drivers.sim.device import ActivityFormat, KeyguardFormat, SimDevice
from vlagent.drivers.sim.forwards import ForwardError, Forwards
from vlagent.drivers.sim.network import NetworkPhones

# _PROGRAMS, _Result and _decode_input_text stay importable here: tests patch the program table
# (a phone without `wm dismiss-keyguard`) and build results through this module.
from vlagent.drivers.sim.programs import PROGRAMS as _PROGRAMS  # noqa: F401
from vlagent.drivers.sim.programs import decode_input_text as _decode_input_text  # noqa: F401
from vlagent.drivers.sim.shell import Result as _Result
from vlagent.drivers.sim.shell import ShellSyntaxError, split_shell
from vlagent.drivers.sim.sync import SyncProtocolError, serve_sync
from vlagent.errors import ConfigError

if TYPE_CHECKING:
    from vlagent.drivers.sim.world import SimPhone

__all__ = [
    "ADB_SERVER_VERSION",
    "DEVICE_FEATURES",
    "ActivityFormat",
    "KeyguardFormat",
    "ServerConfigError",
    "ShellSyntaxError",
    "SimAdbServer",
    "SimDevice",
    "serve_forever",
    "serve_sim",
    "split_shell",
]

log = logging.getLogger(__name__)

#: Protocol version reported by ``host:version`` (41 = adb 1.0.41, what Debian's adb expects).
ADB_SERVER_VERSION = 41
#: Features the simulated devices advertise (``shell_v2`` makes the adb CLI use framed output).
DEVICE_FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,apex,abb,abb_exec"
#: The longest request: adb's 4-hex-digit length header cannot say more.
_MAX_REQUEST = 0xFFFF
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: How long, and how much, a closing connection is drained of what its client still sends.
_DRAIN_S, _DRAIN_BYTES = 1.0, 1 << 20


class ServerConfigError(ConfigError, ValueError):
    """The simulated adb server cannot start as asked (port, serials, phone options).

    A :class:`~vlagent.errors.ConfigError`, which the CLI prints in one line; also a
    ValueError, which :class:`SimAdbServer` raised for such mistakes before.
    """


# --- the adb host protocol ------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


def _block(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return f"{len(data):04x}".encode() + data


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < n:
        chunk = sock.recv(n - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


def _read_request(sock: socket.socket) -> str | None:
    """One 4-hex-length request, or None when the peer closed before sending one."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    if not _HEX.issuperset(head):  # int(..., 16) would also take " +1f" or "0x1f"
        raise _BadRequest(f"bad request length {head!r}")
    size = int(head, 16)
    if not 0 < size <= _MAX_REQUEST:
        raise _BadRequest(f"bad request length {size}")
    payload = _recv_exact(sock, size)
    if payload is None:
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest("request is not UTF-8") from None


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        self.server.owner._track(sock, True)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.server.owner.idle_timeout)
            self._serve(sock)
        except _BadRequest as exc:
            log.info("adb sim: closing connection after a bad request: %s", exc)
            with contextlib.suppress(OSError):
                sock.sendall(b"FAIL" + _block(str(exc)))
        except (OSError, ConnectionError) as exc:
            log.debug("adb sim: connection ended: %s", exc)
        except Exception as exc:  # a failure serving one connection closes it; the server and the others go on
            _log_failure("serving a connection", exc)
        finally:
            self.server.owner._track(sock, False)
            _graceful_close(sock)

    def _serve(self, sock: socket.socket) -> None:
        owner = self.server.owner
        device: SimDevice | None = None
        while True:
            request = _read_request(sock)
            if request is None:
                return
            if device is not None and request.startswith("host:"):
                # The adb CLI picks the phone first (host:tport:any), then asks the server about it.
                reply, _ = owner._transport_host_service(device, request[len("host:") :])
                sock.sendall(reply)
                return
            if device is not None:
                self._device_service(sock, device, request)
                return
            outcome = owner._host_service(request)
            if isinstance(outcome, _Transport):
                sock.sendall(outcome.reply)
                device = outcome.device
                owner._attach(sock, device.serial)  # a disconnect of this phone cuts the connection
                continue
            reply, keep_open = outcome
            sock.sendall(reply)
            if request == "host:kill":
                threading.Thread(target=owner.stop, name="adb-sim-kill", daemon=True).start()
                return
            if not keep_open:
                return

    def _follow(self, sock: socket.socket, result: _Result, *, framed: bool) -> None:
        """Stream output that keeps coming (``logcat``) until the client hangs up or the server stops."""
        if result.follow is None:
            return
        for chunk in result.follow:
            if chunk:
                sock.sendall(_packet(1, chunk) if framed else chunk)
            elif _peer_gone(sock) or self.server.owner._stopped.is_set():
                return

    def _device_service(self, sock: socket.socket, dev: SimDevice, request: str) -> None:
        service, _, command = request.partition(":")
        options = service.split(",")
        handler = _DEVICE_SERVICES.get(options[0])
        if handler is None:
            sock.sendall(b"FAIL" + _block(f"service '{service}' is not simulated"))
            return
        handler(self, sock, dev, _ServiceCall(options[1:], command))

    def _exec(self, sock: socket.socket, dev: SimDevice, call: _ServiceCall) -> None:
        if not call.command:
            sock.sendall(b"FAIL" + _block("exec needs a command"))
            return
        # The stream opens (OKAY) before the command runs, as on a phone: a client's read timeout
        # then covers the command's run time.
        sock.sendall(b"OKAY")
        result = dev.run_line(call.command)
        sock.sendall(result.stdout)
        self._follow(sock, result, framed=False)

    def _shell(self, sock: socket.socket, dev: SimDevice, call: _ServiceCall) -> None:
        if not call.command:
            sock.sendall(b"FAIL" + _block("interactive shells are not simulated; give a command"))
            return
        sock.sendall(b"OKAY")
        result = dev.run_line(call.command)
        if "v2" not in call.options:
            # One stream, in the order things were written: an error printed before a later
            # `echo` must come before it, as through a real terminal.
            sock.sendall(result.combined)
            self._follow(sock, result, framed=False)
            return
        for packet_id, data in ((1, result.stdout), (2, result.stderr)):
            for start in range(0, len(data), 1 << 20):
                sock.sendall(_packet(packet_id, data[start : start + (1 << 20)]))
        self._follow(sock, result, framed=True)
        sock.sendall(struct.pack("<BIB", 3, 1, result.status & 0xFF))

    def _sync(self, sock: socket.socket, dev: SimDevice, call: _ServiceCall) -> None:
        sock.sendall(b"OKAY")
        try:
            serve_sync(sock, dev)
        except SyncProtocolError as exc:
            log.info("adb sim: closing a sync connection: %s", exc)

    def _framebuffer(self, sock: socket.socket, dev: SimDevice, call: _ServiceCall) -> None:
        sock.sendall(b"OKAY" + dev.framebuffer())

    def _reverse(self, sock: socket.socket, dev: SimDevice, call: _ServiceCall) -> None:
        sock.sendall(b"OKAY" + self.server.owner._reverse(dev, call.command))


@dataclass(frozen=True)
class _ServiceCall:
    """A device service request ``NAME[,OPTION...]:COMMAND`` after its name."""

    options: list[str]
    command: str


_DEVICE_SERVICES: dict[str, Callable[[_Handler, socket.socket, SimDevice, _ServiceCall], None]] = {
    "exec": _Handler._exec,
    "shell": _Handler._shell,
    "sync": _Handler._sync,
    "framebuffer": _Handler._framebuffer,
    "reverse": _Handler._reverse,
}
"""Services of a device transport, by name (``shell,v2:CMD`` -> "shell")."""


def _packet(packet_id: int, data: bytes) -> bytes:
    """One shell-v2 packet: id (1 stdout, 2 stderr, 3 exit), little-endian length, data."""
    return struct.pack("<BI", packet_id, len(data)) + data


def _peer_gone(sock: socket.socket) -> bool:
    """True when the client has closed its side (a peek finds end of file)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        # A socket with a timeout would wait in recv even with MSG_DONTWAIT: ask select first.
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _graceful_close(sock: socket.socket) -> None:
    """Half-close, drain what the client still sends, then close: avoids a reset that loses our output.

    The drain stops after :data:`_DRAIN_S` seconds or :data:`_DRAIN_BYTES` bytes: a client that
    never stops sending does not keep the connection's thread.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        deadline, drained = time.monotonic() + _DRAIN_S, 0
        while drained < _DRAIN_BYTES and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    with contextlib.suppress(OSError):
        sock.close()


def _log_failure(what: str, exc: BaseException) -> None:
    """One warning line for an unexpected failure; its traceback only at debug level."""
    text = str(exc)
    text = text if len(text) <= 200 else text[:200] + "..."
    log.warning("adb sim: internal error %s, connection closed: %s: %s", what, type(exc).__name__, text)
    log.debug("adb sim: internal error %s", what, exc_info=exc)


@dataclass(frozen=True)
class _Transport:
    """A host service that switched the connection to ``device`` after sending ``reply``."""

    device: SimDevice
    reply: bytes


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops connections when many clients connect at once
    owner: SimAdbServer

    def handle_error(self, request: object, client_address: object) -> None:
        """A failure outside a handler (starting its thread...): logged in one line, not printed with a traceback."""
        exc = sys.exc_info()[1]
        _log_failure(f"accepting a connection from {client_address}", exc or RuntimeError("unknown"))


class _TCPServer6(_TCPServer):
    address_family = socket.AF_INET6


class SimAdbServer(NetworkPhones):
    """An adb server on loopback serving simulated devices; see :func:`serve_sim`."""

    def __init__(
        self,
        phones: Sequence[SimPhone],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        adbkeyboard: bool = True,
        raw_header: int = 16,
        idle_timeout: float = 60.0,
        reachable: Collection[str] | None = None,
        network_phone: Callable[[str], SimPhone] | None = None,
    ) -> None:
        """``reachable``: the addresses (``HOST:PORT``) where ``adb connect`` finds a phone (None: any
        address, ``()``: none); ``network_phone`` makes the phone answering at an address (default:
        ``SimPhone(serial=address)``)."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ServerConfigError(f"the simulated adb server only listens on loopback, not on {host!r}")
        _check_port(port, lowest=0)
        _check_serials([p.serial for p in phones])
        if not (idle_timeout > 0 and math.isfinite(idle_timeout)):
            raise ServerConfigError(f"idle_timeout must be a number of seconds > 0, got {idle_timeout!r}")
        self.devices: dict[str, SimDevice] = {
            phone.serial: SimDevice(phone, phone.serial, index + 1, adbkeyboard=adbkeyboard, raw_header=raw_header)
            for index, phone in enumerate(phones)
        }
        self.idle_timeout = idle_timeout
        self._adbkeyboard, self._raw_header = adbkeyboard, raw_header
        self._init_network(reachable, network_phone)
        self._server = _listen(host, port)
        self._server.owner = self
        self.host, self.port = self._server.server_address[:2]
        self._live: dict[socket.socket, str | None] = {}  # open connections -> the phone each is switched to
        self._live_lock = threading.Lock()  # (``adb disconnect`` cuts a phone's connections)
        self.forwards = Forwards()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def __getitem__(self, serial: str) -> SimDevice:
        return self.devices[serial]

    def start(self) -> SimAdbServer:
        # A short poll interval makes stop() quick, which tests that unplug a phone rely on.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="adb-sim", daemon=True
        )
        self._thread.start()
        log.info("simulated adb server on %s:%d serving %s", self.host, self.port, ", ".join(self.devices))
        return self

    def wait(self) -> None:
        """Block until the server is stopped (``host:kill`` or :meth:`stop`)."""
        self._stopped.wait()

    def stop(self) -> None:
        """Stop listening and cut every open connection, as when a phone is unplugged."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self.forwards.remove_all()
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._live_lock:
            if alive:
                self._live[sock] = None
            else:
                self._live.pop(sock, None)

    def _attach(self, sock: socket.socket, serial: str) -> None:
        with self._live_lock:
            if sock in self._live:
                self._live[sock] = serial

    def _connect_service(self, request: str) -> tuple[bytes, bool] | None:
        """``host:connect:`` and ``host:disconnect:``; None for any other request."""
        if request.startswith("host:connect:"):
            return _ok(self.connect(request[len("host:connect:") :]))
        if request.startswith("host:disconnect:"):
            done, text = self.disconnect(request[len("host:disconnect:") :])
            return _ok(text) if done else _fail(text)
        return None

    # --- host services -----------------------------------------------------------------------

    def _host_service(self, request: str) -> _Transport | tuple[bytes, bool]:
        exact = self._exact_services().get(request)
        if exact is not None:
            return exact()
        joined = self._connect_service(request)
        if joined is not None:
            return joined
        for prefix in ("host:tport:", "host:transport"):
            if request.startswith(prefix):
                selector = request[len(prefix) :].lstrip(":-")
                device, error = self._select(selector)
                if device is None:
                    return _fail(error)
                # tport replies carry the 8-byte transport id; plain transport replies do not.
                suffix = struct.pack("<Q", device.transport_id) if prefix == "host:tport:" else b""
                return _Transport(device, b"OKAY" + suffix)
        prefixed = self._split_prefixed(request)
        if prefixed is None:
            return _fail(f"unknown host service '{request[:100]}'")
        device, error, command = prefixed
        if command.startswith("wait-for-"):
            return self._wait_for(device, command, any_device=request.startswith(("host:", "host-usb:")))
        if device is None:
            return _fail(error)
        name = command.split(":", 1)[0]
        handler = self._device_host_services().get(name)
        if handler is None:
            return _fail(f"unsupported host service '{command}'")
        return handler(device, command[len(name) + 1 :])

    def _transport_host_service(self, device: SimDevice, command: str) -> tuple[bytes, bool]:
        """A ``host:COMMAND`` sent on a connection already switched to ``device``."""
        name = command.split(":", 1)[0]
        handler = self._device_host_services().get(name)
        if handler is None:
            return _fail(f"unsupported host service '{command}'")
        return handler(device, command[len(name) + 1 :])

    def _exact_services(self) -> dict[str, Callable[[], tuple[bytes, bool]]]:
        """Host services named by the whole request."""
        return {
            "host:version": lambda: _ok(f"{ADB_SERVER_VERSION:04x}"),
            "host:kill": lambda: _ok(),
            "host:devices": lambda: _ok(self._listing(long=False)),
            "host:devices-l": lambda: _ok(self._listing(long=True)),
            "host:track-devices": lambda: (_ok(self._listing(long=False))[0], True),  # stays open, as adb does
            "host:features": lambda: _ok(DEVICE_FEATURES),
            "host:host-features": lambda: _ok(DEVICE_FEATURES),
            "host:list-forward": lambda: _ok(self.forwards.listing()),
            "host:killforward-all": lambda: self._kill_forwards(None),
        }

    def _device_host_services(self) -> dict[str, Callable[[SimDevice, str], tuple[bytes, bool]]]:
        """Host services about one device (``host-serial:S:NAME[:ARGS]``), by NAME."""
        return {
            "features": lambda dev, _: _ok(DEVICE_FEATURES),
            "get-state": lambda dev, _: _ok("device"),
            "get-serialno": lambda dev, _: _ok(dev.serial),
            "get-devpath": lambda dev, _: _ok(f"usb:{dev.serial}"),
            "list-forward": lambda dev, _: _ok(self.forwards.listing(dev.serial)),
            "forward": self._forward,
            "killforward": lambda dev, local: self._kill_forward(local),
            "killforward-all": lambda dev, _: self._kill_forwards(dev),
        }

    def _listing(self, *, long: bool) -> str:
        if long:
            return "".join(
                f"{d.serial:<22} device product:sim model:SimPhone device:sim transport_id:{d.transport_id}\n"
                for d in self.devices.values()
            )
        return "".join(f"{d.serial}\tdevice\n" for d in self.devices.values())

    def _wait_for(self, device: SimDevice | None, command: str, *, any_device: bool) -> tuple[bytes, bool]:
        """``wait-for-TRANSPORT-STATE``: answer when true now, else hold the connection (the client times out)."""
        transport, _, state = command[len("wait-for-") :].partition("-")
        present = device is not None
        if any_device:
            present = bool(self.devices) and transport in ("any", "usb")
        ready = present if state == "device" else (not present) if state == "disconnect" else False
        return (b"OKAYOKAY", False) if ready else (b"", True)

    # --- forwards (host -> phone) and reverses (phone -> host): the table is :mod:`.forwards` ---

    def _forward(self, dev: SimDevice, spec: str) -> tuple[bytes, bool]:
        norebind = spec.startswith("norebind:")
        local, _, remote = spec.removeprefix("norebind:").partition(";")
        try:
            port = self.forwards.add(dev.serial, local, remote, norebind=norebind)
        except ForwardError as exc:
            return _fail(str(exc))
        # Two OKAYs (transport, then the forward), then the port picked for tcp:0, as adb does.
        return (b"OKAYOKAY" + (_block(str(port)) if port is not None else b""), False)

    def _kill_forward(self, local: str) -> tuple[bytes, bool]:
        try:
            self.forwards.remove(local)
        except ForwardError as exc:
            return _fail(str(exc))
        return (b"OKAYOKAY", False)

    def _kill_forwards(self, dev: SimDevice | None) -> tuple[bytes, bool]:
        self.forwards.remove_all(None if dev is None else dev.serial)
        return (b"OKAYOKAY", False)

    def _reverse(self, dev: SimDevice, command: str) -> bytes:
        """The phone's answer to ``reverse:COMMAND``, after the stream's own OKAY."""
        try:
            if command.startswith("forward:"):
                spec = command[len("forward:") :]
                remote, _, local = spec.removeprefix("norebind:").partition(";")
                self.forwards.reverse(dev.serial, remote, local, norebind=spec.startswith("norebind:"))
            elif command.startswith("killforward:"):
                self.forwards.unreverse(dev.serial, command[len("killforward:") :])
            elif command == "killforward-all":
                self.forwards.unreverse(dev.serial, None)
            elif command == "list-forward":
                return _block(self.forwards.reverse_listing(dev.serial, f"host-{dev.transport_id}"))
            else:
                return b"FAIL" + _block(f"unknown reverse command '{command}'")
        except ForwardError as exc:
            return b"FAIL" + _block(str(exc))
        return b"OKAY"

    def _select(self, selector: str) -> tuple[SimDevice | None, str]:
        devices = self.devices  # one look: ``adb connect`` may replace the mapping meanwhile
        if selector in ("any", "usb", "local"):
            if len(devices) == 1:
                return next(iter(devices.values())), ""
            return None, "more than one device/emulator" if devices else "no devices/emulators found"
        if selector.startswith("serial:"):
            selector = selector[len("serial:") :]
        if selector.startswith(("id:", "-id:")):
            wanted = selector.split(":", 1)[1]
            found = next((d for d in devices.values() if str(d.transport_id) == wanted), None)
            return found, "" if found else f"no device with transport id '{wanted}'"
        found = devices.get(selector)
        return found, "" if found else f"device '{selector}' not found"

    def _split_prefixed(self, request: str) -> tuple[SimDevice | None, str, str] | None:
        """(device, error, command) of a device-addressed host request, or None when it is none."""
        for prefix in ("host-serial:", "host-transport-id:", "host-usb:", "host-local:", "host:"):
            if not request.startswith(prefix):
                continue
            rest = request[len(prefix) :]
            if prefix == "host-serial:":
                match = _SERIAL_COMMAND_RE.match(rest)
                if match is None:
                    return None, f"unknown host service '{request[:100]}'", ""
                serial, command = match.group("serial"), match.group("command")
                device = self.devices.get(serial)
                return device, "" if device else f"device '{serial}' not found", command
            if prefix == "host-transport-id:":
                wanted, _, command = rest.partition(":")
                device, error = self._select("id:" + wanted)
                return device, error, command
            if prefix == "host:" and not rest.startswith(_DEVICE_COMMANDS):
                return None
            device, error = self._select("any")
            return device, error, rest
        return None


def _check_port(port: object, *, lowest: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not lowest <= port <= 65535:
        raise ServerConfigError(f"port must be a whole number from {lowest} to 65535, got {port!r}")


def _check_serials(serials: Sequence[object]) -> None:
    """Serials adb can list and address: non-empty text without spaces or control characters, each once."""
    for serial in serials:
        if not isinstance(serial, str) or not serial:
            raise ServerConfigError(f"a phone serial must be non-empty text, got {serial!r}")
        if any(c.isspace() or not c.isprintable() for c in serial):
            raise ServerConfigError(f"a phone serial must not contain spaces or control characters, got {serial!r}")
    duplicates = sorted({s for s in serials if serials.count(s) > 1}, key=str)
    if duplicates:
        raise ServerConfigError(f"phone serials must be unique, got {', '.join(map(str, duplicates))} more than once")


def _listen(host: str, port: int) -> _TCPServer:
    """The listening server, or ServerConfigError naming the port when it cannot listen there."""
    kind = _TCPServer6 if ":" in host else _TCPServer
    try:
        return kind((host, port), _Handler, bind_and_activate=True)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServerConfigError(
                f"port {port} on {host} is already in use (another adb server? stop it with"
                " 'adb kill-server', or choose another port)"
            ) from exc
        if exc.errno == errno.EACCES:
            raise ServerConfigError(f"not allowed to listen on port {port} (ports below 1024 need root)") from exc
        raise ServerConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from exc


def _ok(text: str | None = None) -> tuple[bytes, bool]:
    return (b"OKAY" + (_block(text) if text is not None else b""), False)


def _fail(text: str) -> tuple[bytes, bool]:
    return (b"FAIL" + _block(text), False)


_DEVICE_COMMANDS = ("features", "get-", "wait-for-", "forward:", "killforward:", "list-forward")
_SERIAL_COMMAND_RE = re.compile(
    r"^(?P<serial>.+?):(?P<command>(?:features|get-|wait-for-|forward:|killforward|list-forward).*)$"
)


@contextlib.contextmanager
def serve_sim(
    phones: Sequence[SimPhone] | None = None,
    *,
    port: int = 0,
    adbkeyboard: bool = True,
    raw_header: int = 16,
    reachable: Collection[str] | None = None,
) -> Iterator[SimAdbServer]:
    """Serve ``phones`` (default: one ``SimPhone()``) on 127.0.0.1:``port`` (0: a free port) while in the block.

    ``reachable``: the addresses where ``adb connect`` finds a phone (None: any).

    >>> with serve_sim(port=0) as server:
    ...     driver = open_driver("adb:sim-0", port=server.port)
    """
    if phones is None:
        from vlagent.drivers.sim.world import SimPhone

        phones = [SimPhone()]
    server = SimAdbServer(
        phones, port=port, adbkeyboard=adbkeyboard, raw_header=raw_header, reachable=reachable
    ).start()
    try:
        yield server
    finally:
        server.stop()


def serve_forever(
    port: int,
    serials: list[str],
    seed: int,
    transition_delay: float,
    *,
    drop_typed: int = 0,
    reachable: Collection[str] | None = None,
) -> None:
    """Serve one simulated phone per serial on 127.0.0.1:``port`` until interrupted or ``adb kill-server``.

    ``drop_typed``: each phone loses every Nth typed character (see :attr:`SimPhone.drop_typed`).
    ``reachable``: where ``adb connect`` finds a phone, made with the same settings (None: anywhere).
    Raises :class:`ServerConfigError` (a ConfigError) for a port outside 1..65535 or already in
    use, empty or repeated serials, a negative or not-a-number ``transition_delay`` or a
    negative ``drop_typed``, before anything is served.
    """
    from vlagent.drivers.sim.world import SimPhone

    _check_port(port, lowest=1)
    serials = list(serials) or ["sim-0"]
    _check_serials(serials)
    if isinstance(transition_delay, bool) or not isinstance(transition_delay, (int, float)):
        raise ServerConfigError(f"transition delay must be a number of seconds, got {transition_delay!r}")
    if not (transition_delay >= 0 and math.isfinite(transition_delay)):
        raise ServerConfigError(f"transition delay must be a finite number of seconds >= 0, got {transition_delay!r}")
    if isinstance(drop_typed, bool) or not isinstance(drop_typed, int) or drop_typed < 0:
        raise ServerConfigError(f"drop_typed must be a whole number >= 0, got {drop_typed!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ServerConfigError(f"seed must be a whole number, got {seed!r}")
    try:
        phones = [
            SimPhone(seed=seed, transition_delay=transition_delay, serial=s, drop_typed=drop_typed) for s in serials
        ]
    except ValueError as exc:
        raise ServerConfigError(f"invalid options for the simulated phones: {exc}") from exc
    for address in reachable or ():
        if network_serial(address) is None:
            raise ServerConfigError(f"not a network address (HOST:PORT): {address!r}")

    def network_phone(serial: str) -> SimPhone:
        return SimPhone(seed=seed, transition_delay=transition_delay, serial=serial, drop_typed=drop_typed)

    server = SimAdbServer(phones, port=port, reachable=reachable, network_phone=network_phone).start()
    try:
        server.wait()
    except KeyboardInterrupt:
        log.info("simulated adb server interrupted")
    finally:
        server.stop()
