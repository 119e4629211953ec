"""Several servers of one model (vLLM replicas) behind one policy: each request goes to the least busy.

:class:`ServerSet` keeps, per server, the requests in flight and until when the server is skipped.
:meth:`ServerSet.acquire` picks, among the servers not skipped, one with the fewest requests in
flight (ties in turn, round-robin); :meth:`ServerSet.release` gives it back, and a server that could
not be reached (connection refused, connect timeout) is skipped for ``pause_s`` seconds, so the
retry goes to another. When every server is skipped, the one whose pause ends first is tried
anyway: a request is never refused without being sent.

This module must not do HTTP or know what is asked: the policy sends, and says how it went.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vlagent.errors import ConfigError
from vlagent.secrets import scrub_url

__all__ = ["Server", "ServerSet"]

log = logging.getLogger(__name__)


@dataclass
class Server:
    """One server and its load."""

    url: str
    in_flight: int = 0
    sent: int = 0
    unreachable: int = 0
    skipped_until: float = 0.0


class ServerSet:
    """Servers handed out least busy first. Thread-safe."""

    def __init__(
        self, urls: Sequence[str], *, pause_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not urls:
            raise ConfigError("at least one model server URL is needed")
        if not pause_s >= 0:
            raise ConfigError(f"the pause after an unreachable server must be >= 0 seconds, got {pause_s!r}")
        self.servers = [Server(url) for url in dict.fromkeys(urls)]
        self.pause_s = pause_s
        self._clock = clock
        self._turn = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.servers)

    def acquire(self) -> Server:
        """The server for the next request (counted in flight until :meth:`release`)."""
        with self._lock:
            server = self._pick()
            server.in_flight += 1
            server.sent += 1
            return server

    def release(self, server: Server, *, unreachable: bool = False) -> None:
        """The request to ``server`` ended; ``unreachable``: it could not connect, skip it for a while."""
        with self._lock:
            server.in_flight -= 1
            if unreachable:
                server.unreachable += 1
                server.skipped_until = self._clock() + self.pause_s
        if unreachable and len(self.servers) > 1:
            log.warning(
                "model server %s cannot be reached; its requests go to the others for %g s",
                scrub_url(server.url),
                self.pause_s,
            )

    def any_up(self) -> bool:
        """True when some server is not being skipped now."""
        now = self._clock()
        with self._lock:
            return any(s.skipped_until <= now for s in self.servers)

    def preferred(self) -> Server:
        """The server a request would go to now, without sending one (for questions like ``/models``)."""
        with self._lock:
            return self._pick(advance=False)

    def report(self) -> list[dict[str, object]]:
        """Per server (credentials blanked): requests sent, unreachable answers, in flight now."""
        with self._lock:
            return [
                {"url": scrub_url(s.url), "sent": s.sent, "unreachable": s.unreachable, "in_flight": s.in_flight}
                for s in self.servers
            ]

    def _pick(self, *, advance: bool = True) -> Server:
        now = self._clock()
        up = [i for i, s in enumerate(self.servers) if s.skipped_until <= now]
        if not up:  # every server is paused: try the one that comes back first
            return min(self.servers, key=lambda s: s.skipped_until)
        fewest = min(self.servers[i].in_flight for i in up)
        count = len(self.servers)
        tied = [i for i in up if self.servers[i].in_flight == fewest]
        chosen = min(tied, key=lambda i: (i - self._turn) % count)
        if advance:
            self._turn = (chosen + 1) % count
        return self.servers[chosen]
