"""HTTP connection limits in front of uvicorn: an idle deadline and a per-source cap (docs/security.md "Resources").

uvicorn closes a connection only `timeout_keep_alive` after a *response*: one that never completes a request —
opened and left silent, or fed a CRLF now and then, or a request head dribbled a byte at a time — is never
closed (its data cancels the keep-alive timer without arming another). 1,100 such connections took the API down
at a 1024 descriptor limit. `guarded_protocol` wraps uvicorn's HTTP protocol class so that

- a connection with no request in progress is closed after `idle_seconds` in which no request started or ended
  (long requests, such as the live-event streams and uploads, are in progress and stay);
- one IP address holds at most `max_per_source` connections at a time (0: no limit; behind a reverse proxy every
  connection comes from the proxy, so set 0 there and let the proxy limit);
- a connection closed while the client is still sending its request body (a 413 with `Connection: close`) is
  closed lingering (RFC 9112 §9.6): FIN after the response, what the client still sends is dropped for at most
  `LINGER_SECONDS`, then the socket is closed. Closing it at once with unread input makes the kernel answer
  RST, which can destroy the 413 in the client's receive buffer before the client reads it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from hipper import metrics

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0


class LingeringTransport:
    """uvicorn's transport, whose `close()` lingers when `still_receiving()` says the request is not all in."""

    def __init__(self, transport: asyncio.Transport, still_receiving: Any) -> None:
        self._transport = transport
        self._still_receiving = still_receiving
        self.lingering = False

    def close(self) -> None:
        transport = self._transport
        if self.lingering or transport.is_closing():
            return
        if not self._still_receiving() or not transport.can_write_eof():
            transport.close()
            return
        self.lingering = True
        transport.write_eof()  # FIN once the response is written
        transport.resume_reading()  # uvicorn may have paused it (flow control): drain what is in flight
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ConnectionGuard:
    def __init__(self, idle_seconds: float, max_per_source: int) -> None:
        self.idle_seconds = idle_seconds
        self.max_per_source = max_per_source
        self.per_source: collections.Counter[str] = collections.Counter()

    def admit(self, host: str) -> bool:
        if self.max_per_source and self.per_source[host] >= self.max_per_source:
            log.warning("http.connection_refused", extra={"peer": host, "why": "per-source limit"})
            metrics.STREAM_CONNECTIONS_CLOSED.labels("http", "per-source limit").inc()
            return False
        self.per_source[host] += 1
        return True

    def release(self, host: str) -> None:
        self.per_source[host] -= 1
        if self.per_source[host] <= 0:
            del self.per_source[host]


def _peer_host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11, as uvicorn chooses) under `guard`'s limits; for `http=`."""
    base: Any = AutoHTTPProtocol

    class GuardedHttpProtocol(base):  # type: ignore[misc]
        _host: str | None = None
        _lingering: LingeringTransport | None = None
        _idle_timer: asyncio.TimerHandle | None = None
        _seen: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            host = _peer_host(transport)
            if not guard.admit(host):
                transport.abort()
                return
            self._host = host
            self._lingering = LingeringTransport(transport, self._receiving_body)
            super().connection_made(self._lingering)
            self._arm()

        def _receiving_body(self) -> bool:
            cycle = self.cycle
            return cycle is not None and bool(getattr(cycle, "more_body", False))

        def data_received(self, data: bytes) -> None:
            if self._lingering is not None and self._lingering.lingering:
                return  # the answer is out: the rest of the refused body is dropped unread
            super().data_received(data)

        def eof_received(self) -> bool | None:
            if self._lingering is not None and self._lingering.lingering:
                self._lingering._transport.close()  # the client stopped sending: nothing left to drain
                return None
            result: bool | None = super().eof_received()
            return result

        def _arm(self) -> None:
            self._seen = self.cycle
            self._idle_timer = asyncio.get_running_loop().call_later(guard.idle_seconds, self._check_idle)

        def _check_idle(self) -> None:
            cycle = self.cycle
            busy = cycle is not None and not cycle.response_complete
            if not busy and cycle is self._seen and not self.transport.is_closing():
                # No request started (a new cycle) or ran for a whole interval: idle, however much CRLF it sent.
                log.info("http.connection_idle", extra={"peer": self._host})
                metrics.STREAM_CONNECTIONS_CLOSED.labels("http", "idle").inc()
                self.transport.abort()
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._host is None:
                return  # refused in connection_made: uvicorn never knew it
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            guard.release(self._host)
            self._host = None
            super().connection_lost(exc)

    return GuardedHttpProtocol
