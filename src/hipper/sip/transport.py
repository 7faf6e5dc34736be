"""SIP transports on asyncio: UDP and TCP (RFC 3261 §18; stream framing by Content-Length §18.3;
RFC 5626 §4.4.1 CRLF keepalives on TCP).

Transports only move bytes: they hand every complete message, with the address and connection it came
from, to a receiver (the stack), which parses it. TCP connections are remembered by the peer's address so
that a request to a device behind NAT goes back over the very connection it registered on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from hipper.sip.message import MAX_MESSAGE_SIZE, format_hostport, split_hostport

log = logging.getLogger(__name__)

UDP_BUFFER_BYTES = 4 * 1024 * 1024  # asked for on the SIP UDP socket (see Transports.start)

# Framing needs only the length; the full parse happens once, in the stack.
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*\r?$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to: transport, IP address and port (never a host name)."""

    transport: str  # "udp" | "tcp"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{format_hostport(self.host, self.port)}"

    @classmethod
    def parse(cls, text: str) -> Peer:
        transport, _, hostport = text.partition(":")
        host, port = split_hostport(hostport)
        if transport not in ("udp", "tcp") or port is None:
            raise ValueError(f"not a peer address: {text!r}")
        return cls(transport, host, port)

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


Receiver = Callable[[bytes, Peer], None]


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class TransportError(OSError):
    """A message could not be sent (no route, connection refused or closed)."""


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.transport: asyncio.DatagramTransport | None = None
        self.host = ""
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's UDP transports do not all subclass DatagramTransport; they all quack like it.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.host, self.port = sockname[0], sockname[1]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        # Keepalives (RFC 5626 §4.4.1 / common NAT pings) are bare CRLFs or a few bytes of whitespace.
        if len(data) <= 4 and not data.strip():
            return
        host = str(addr[0])
        port = addr[1]
        assert isinstance(port, int)
        try:
            self.receiver(data, Peer("udp", host, port))
        except Exception:  # the stack guards itself; this only keeps one bad datagram from killing the socket
            log.exception("sip.udp.receive_failed")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a phone that went away: nothing to do, the transaction timers notice.
        log.debug("sip.udp.error", exc_info=exc)

    def send(self, data: bytes, peer: Peer) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError("UDP transport is closed")
        self.transport.sendto(data, (peer.host, peer.port))


class TcpConnection(asyncio.Protocol):
    """One TCP connection; frames the byte stream into messages by Content-Length (§18.3)."""

    def __init__(self, owner: TcpTransport) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.buffer = bytearray()
        self.closed = asyncio.get_running_loop().create_future()
        self.messages = 0
        self.last_activity = asyncio.get_running_loop().time()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.peer = Peer("tcp", peername[0], peername[1])
        if len(self.owner.connections) >= self.owner.max_connections:
            self.transport.abort()  # a connection flood must not exhaust file descriptors
            return
        self.owner.connections[self.peer] = self
        self._idle_timer = asyncio.get_running_loop().call_later(self.owner.first_message_timeout, self._check_idle)

    def _check_idle(self) -> None:
        """Close connections that never sent a whole message (slow or idle scanners) or went silent.

        A registered phone refreshes its registration (and usually pings) well within the idle limit.
        """
        loop = asyncio.get_running_loop()
        limit = self.owner.idle_timeout if self.messages else self.owner.first_message_timeout
        left = self.last_activity + limit - loop.time()
        if left <= 0:
            self.abort("idle")
            return
        self._idle_timer = loop.call_later(left, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self.peer is not None and self.owner.connections.get(self.peer) is self:
            del self.owner.connections[self.peer]
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            # RFC 5626 §4.4.1: a double CRLF is a ping, answered with a single CRLF pong.
            if self.buffer.startswith(b"\r\n\r\n"):
                del self.buffer[:4]
                self.last_activity = asyncio.get_running_loop().time()
                self.write(b"\r\n")
                continue
            if self.buffer[0] in (13, 10):
                if len(self.buffer) < 4 and b"\r\n\r\n".startswith(bytes(self.buffer)):
                    return  # maybe the start of a ping; wait for more
                del self.buffer[:1]
                continue
            end = _HEAD_END.search(self.buffer)
            if end is None:
                if len(self.buffer) > MAX_MESSAGE_SIZE:
                    self.abort("headers too long")
                return
            head = bytes(self.buffer[: end.start()])
            found = {int(value) for value in _CONTENT_LENGTH.findall(head)}
            if len(found) != 1:
                # Without one clear length the stream cannot be re-synchronised: §18.3 makes it mandatory here.
                self.abort("missing or conflicting Content-Length")
                return
            length = found.pop()
            total = end.end() + length
            if total > MAX_MESSAGE_SIZE:
                self.abort("absurd Content-Length")
                return
            if len(self.buffer) < total:
                return
            message = bytes(self.buffer[:total])
            del self.buffer[:total]
            self.messages += 1
            self.last_activity = asyncio.get_running_loop().time()
            assert self.peer is not None
            try:
                self.owner.receiver(message, self.peer)
            except Exception:
                log.exception("sip.tcp.receive_failed")

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError("TCP connection is closed")
        self.transport.write(data)

    def abort(self, why: str) -> None:
        log.info("sip.tcp.abort", extra={"peer": str(self.peer), "why": why})
        self.buffer.clear()
        if self.transport is not None:
            self.transport.abort()


class TcpTransport:
    def __init__(
        self,
        receiver: Receiver,
        connect_timeout: float = 5.0,
        *,
        first_message_timeout: float = 32.0,
        idle_timeout: float = 3900.0,
        max_connections: int = 10_000,
    ) -> None:
        self.receiver = receiver
        self.connect_timeout = connect_timeout
        self.first_message_timeout = first_message_timeout
        # Longer than the longest registration interval (3600 s by default) plus a margin.
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: dict[Peer, TcpConnection] = {}
        self.server: asyncio.Server | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: TcpConnection(self), host, port, reuse_address=True)
        sockname = self.server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]

    async def connect(self, peer: Peer) -> TcpConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(lambda: TcpConnection(self), peer.host, peer.port)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {peer}: {exc}") from exc
        return connection

    async def send(self, data: bytes, peer: Peer) -> None:
        """Send over the existing connection to `peer` (the one a device registered on), else open one."""
        connection = self.connections.get(peer)
        if connection is None:
            connection = await self.connect(peer)
        connection.write(data)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.close()
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()


class Transports:
    """The node's UDP and TCP transports on one address."""

    def __init__(self, receiver: Receiver) -> None:
        self.udp = UdpTransport(receiver)
        self.tcp = TcpTransport(receiver)
        self._udp_transport: asyncio.DatagramTransport | None = None
        self.advertised_host = ""  # what our Via names when the bound address is a wildcard or private

    async def start(self, host: str, port: int, *, tcp: bool = True) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(lambda: self.udp, local_addr=(host, port))
            self._udp_transport = transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Every phone's and trunk's UDP signalling arrives on this one socket: the default buffer (208
                # KiB, a few hundred messages) overflowed during loop stalls of half a second at 100 calls/s,
                # and the dropped INVITEs and BYEs cost retransmission timeouts. The kernel caps the size.
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
            if not tcp:
                return
            try:
                # Port 0 means "any free port": give TCP the port UDP got, so both share one address.
                await self.tcp.start(host, self.udp.port)
                return
            except OSError:
                transport.close()
                if port != 0 or attempt == 19:
                    raise  # a configured port that is taken is the operator's to fix
                # The free UDP port is taken on TCP by someone else: try another one.

    @property
    def host(self) -> str:
        return self.advertised_host or self.udp.host

    @property
    def port(self) -> int:
        return self.udp.port

    def local_port(self, transport: str) -> int:
        return self.tcp.port if transport == "tcp" else self.udp.port

    async def send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            self.udp.send(data, peer)
        elif peer.transport == "tcp":
            await self.tcp.send(data, peer)
        else:
            raise TransportError(f"unsupported transport {peer.transport}")

    def send_nowait(self, data: bytes, peer: Peer) -> asyncio.Task[None] | None:
        """Send without awaiting: UDP and existing TCP connections are synchronous; a new connection is a task."""
        if peer.transport == "udp":
            self.udp.send(data, peer)
            return None
        connection = self.tcp.connections.get(peer)
        if connection is not None:
            connection.write(data)
            return None
        return asyncio.get_running_loop().create_task(self.tcp.send(data, peer))

    async def close(self) -> None:
        if self._udp_transport is not None:
            self._udp_transport.close()
        await self.tcp.close()
