"""SIP transports on asyncio: UDP, TCP and TLS (RFC 3261 §18 and §26; stream framing by Content-Length
§18.3; RFC 5626 §4.4.1 CRLF keepalives on TCP and TLS).

Transports only move bytes: they hand every complete message, with the address and connection it came
from, to a receiver (the stack), which parses it. TCP and TLS connections are remembered by the peer's
address so that a request to a device behind NAT goes back over the very connection it registered on
(RFC 5626 flows: a phone behind NAT cannot take a new connection from us anyway).

TLS is the TCP transport with a handshake in front: its accept loop counts a socket against the connection
limit from the moment it is accepted, then gives it a bounded time to finish the TLS handshake. Hipper opens
no outgoing TLS connections: requests reach TLS peers only over a connection they opened (their
registration's), which is how phones use SIP over TLS.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from hipper import metrics
from hipper.sip.message import MAX_MESSAGE_SIZE, format_hostport, split_hostport
from hipper.socket_buffers import size_buffers

log = logging.getLogger(__name__)

UDP_BUFFER_BYTES = 4 * 1024 * 1024  # asked for on the SIP UDP socket (see Transports.start)

# Framing needs only the length; the full parse happens once, in the stack.
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,10})[ \t]*\r?$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


TRANSPORTS = ("udp", "tcp", "tls")
_MAX_PEERS = 4096


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to: transport, IP address and port (never a host name)."""

    transport: str  # "udp" | "tcp" | "tls"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{format_hostport(self.host, self.port)}"

    @classmethod
    def parse(cls, text: str) -> Peer:
        transport, _, hostport = text.partition(":")
        host, port = split_hostport(hostport)
        if transport not in TRANSPORTS or port is None:
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
        # The Peer of each source address met (a frozen dataclass costs ≈ 0.45 µs to make; a call brings ≈ 10
        # datagrams from two or three addresses). Bounded: sources that change all the time (a spoofed flood)
        # only empty it now and then.
        self._peers: dict[tuple[str | object, ...], Peer] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's UDP transports do not all subclass DatagramTransport; they all quack like it.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.host, self.port = sockname[0], sockname[1]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        # Keepalives (RFC 5626 §4.4.1 / common NAT pings) are bare CRLFs or a few bytes of whitespace.
        if len(data) <= 4 and not data.strip():
            return
        peer = self._peers.get(addr)
        if peer is None:
            port = addr[1]
            assert isinstance(port, int)
            peer = Peer("udp", str(addr[0]), port)
            if len(self._peers) >= _MAX_PEERS:
                self._peers.clear()
            self._peers[addr] = peer
        try:
            self.receiver(data, peer)
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
    """One TCP or TLS connection; frames the byte stream into messages by Content-Length (§18.3).

    A TLS connection is made only once its handshake is done (the transport's accept loop counts it before),
    so everything here sees decrypted bytes and nothing is ever written in the clear.
    """

    def __init__(self, owner: TcpTransport, *, admitted: bool = False) -> None:
        self.owner = owner
        self.admitted = admitted  # counted against the connection limit already (TLS: at accept)
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
        self.peer = Peer(self.owner.name, peername[0], peername[1])
        if not self.admitted:
            refused = self.owner.admit(self.peer.host)
            if refused is not None:
                self.transport.abort()  # a connection flood must not exhaust file descriptors
                return
            self.admitted = True
        self.owner.connections[self.peer] = self
        self._idle_timer = asyncio.get_running_loop().call_later(self.owner.first_message_timeout, self._check_idle)

    def _check_idle(self) -> None:
        """Close connections that never sent a whole message (slow or idle scanners) or went silent.

        Only whole messages count: CRLF keepalives (RFC 5626 §4.4.1) are answered but keep nothing open, or a
        client sending nothing else would hold its descriptor forever (issue 11: 1,100 such connections took
        the node down at a 1024 limit). A registered phone refreshes its registration within the idle limit.
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
        if self.admitted and self.peer is not None:
            self.owner.release(self.peer.host)
            self.admitted = False
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
                self.write(b"\r\n")  # answered, but not activity: see _check_idle
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
                log.exception("sip.stream.receive_failed")

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError(f"{self.owner.name.upper()} connection is closed")
        self.transport.write(data)

    def abort(self, why: str) -> None:
        log.info("sip.stream.abort", extra={"peer": str(self.peer), "why": why})
        metrics.STREAM_CONNECTIONS_CLOSED.labels(self.owner.name, why).inc()
        self.buffer.clear()
        if self.transport is not None:
            self.transport.abort()


class TcpTransport:
    """SIP over TCP, or over TLS when given a server context (then named "tls").

    TLS runs its own accept loop instead of `create_server(ssl=...)`: there a connection is seen only after its
    handshake, so a flood of sockets that never finish one could not be limited. Here every accepted socket
    counts at once, is refused over the limit, and gets `handshake_timeout` seconds to become a TLS connection.
    """

    def __init__(
        self,
        receiver: Receiver,
        connect_timeout: float = 5.0,
        *,
        first_message_timeout: float = 32.0,
        idle_timeout: float = 3900.0,
        max_connections: int = 10_000,
        max_per_source: int = 100,
        server_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.receiver = receiver
        self.name = "tcp" if server_context is None else "tls"
        self.server_context = server_context
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.first_message_timeout = first_message_timeout
        # Longer than the longest registration interval (3600 s by default) plus a margin.
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        # Connections (and TLS handshakes) from one IP address at a time; 0: no limit. An office NAT puts all its
        # phones behind one address: the limit is per address, not per phone (docs/security.md "Resources").
        self.max_per_source = max_per_source
        self.per_source: collections.Counter[str] = collections.Counter()
        self.connections: dict[Peer, TcpConnection] = {}
        self.handshakes: set[asyncio.Task[None]] = set()  # accepted TLS sockets not yet secured
        self.server: asyncio.Server | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    def open_connections(self) -> int:
        return len(self.connections) + len(self.handshakes)

    def admit(self, host: str) -> str | None:
        """Count a new connection from `host`; the reason when it is over a limit (then nothing is counted)."""
        if self.open_connections() >= self.max_connections:
            why = "connection limit"
        elif self.max_per_source and self.per_source[host] >= self.max_per_source:
            why = "per-source limit"
        else:
            self.per_source[host] += 1
            return None
        log.warning("sip.stream.refused", extra={"peer": f"{self.name}:{host}", "why": why})
        metrics.STREAM_CONNECTIONS_CLOSED.labels(self.name, why).inc()
        return why

    def release(self, host: str) -> None:
        self.per_source[host] -= 1
        if self.per_source[host] <= 0:
            del self.per_source[host]

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        if self.server_context is None:
            self.server = await loop.create_server(lambda: TcpConnection(self), host, port, reuse_address=True)
            sockname = self.server.sockets[0].getsockname()
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._listener = socket.create_server((host, port), family=family, backlog=128)
            self._listener.setblocking(False)
            sockname = self._listener.getsockname()
            self._accepting = loop.create_task(self._accept(self._listener, self.server_context))
        self.host, self.port = sockname[0], sockname[1]

    async def _accept(self, listener: socket.socket, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, or the peer gave up meanwhile: keep serving
                log.warning("sip.tls.accept_failed", extra={"error": str(exc)})
                await asyncio.sleep(0.1)
                continue
            host = str(address[0])
            if self.admit(host) is not None:
                sock.close()  # a connection flood must not exhaust file descriptors
                continue
            task = loop.create_task(self._secure(sock, context, host))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _secure(self, sock: socket.socket, context: ssl.SSLContext, host: str) -> None:
        """The TLS handshake of one accepted socket, bounded; a failure costs that connection only.

        The socket was counted against the limits at accept (`admit`); its connection releases that count when it
        ends, or this does when no connection came of it."""
        loop = asyncio.get_running_loop()
        try:
            address = sock.getpeername()
        except OSError:
            sock.close()
            self.release(host)
            return
        peer = Peer("tls", str(address[0]), int(address[1]))  # logged as tls:host:port, like every peer
        try:
            async with asyncio.timeout(self.handshake_timeout + 1):  # the loop's own timeout should come first
                await loop.connect_accepted_socket(
                    lambda: TcpConnection(self, admitted=True),
                    sock,
                    ssl=context,
                    ssl_handshake_timeout=self.handshake_timeout,
                )
        except Exception as exc:  # not TLS, a bad or slow handshake: that connection only
            # The loop owns the socket now and has closed it (both asyncio and uvloop do on any failure,
            # cancellation included); closing it here too could close a descriptor number already reused.
            log.info("sip.tls.handshake_failed", extra={"peer": str(peer), "error": str(exc) or repr(exc)})
            self.release(host)

    async def connect(self, peer: Peer) -> TcpConnection:
        if self.server_context is not None:
            # Outgoing TLS would need a host name to verify the peer's certificate against, and our peers are
            # addresses; TLS phones are reached over the connection they registered on.
            raise TransportError(f"no TLS connection from {peer}; Hipper opens no outgoing TLS connections")
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
        if self._accepting is not None:
            self._accepting.cancel()
        if self._listener is not None:
            self._listener.close()
        for task in list(self.handshakes):
            task.cancel()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.close()
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The TLS server context for SIP: TLS 1.2 or newer, with the ssl module's default ciphers.

    Raises `TlsSetupError` naming the setting and the file when a file is missing, unreadable or not PEM.
    Phones are not asked for client certificates: they authenticate with digest, as over UDP and TCP.
    """
    for setting, path in (("sip_tls_cert_file", cert_file), ("sip_tls_key_file", key_file)):
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise TlsSetupError(f"{setting} {path}: {exc.strerror or exc}") from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise TlsSetupError(
            f"sip_tls_cert_file {cert_file} / sip_tls_key_file {key_file}: not a PEM certificate and its key ({exc})"
        ) from exc
    return context


class TlsSetupError(ValueError):
    """The TLS certificate or key cannot be used; the exchange must not start half configured."""


class Transports:
    """The node's UDP and TCP transports on one address, and TLS on its own port when configured."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.udp = UdpTransport(receiver)
        self.tcp = TcpTransport(receiver)
        self.tls: TcpTransport | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self.advertised_host = ""  # what our Via names when the bound address is a wildcard or private
        self._limits: dict[str, float] = {}

    def set_limits(
        self, *, first_message_timeout: float, idle_timeout: float, max_connections: int, max_per_source: int
    ) -> None:
        """The TCP and TLS connection limits (docs/security.md "Resources"); call before `start`."""
        self._limits = {
            "first_message_timeout": first_message_timeout,
            "idle_timeout": idle_timeout,
            "max_connections": max_connections,
            "max_per_source": max_per_source,
        }
        self._apply_limits(self.tcp)

    def _apply_limits(self, stream: TcpTransport) -> None:
        for name, value in self._limits.items():
            setattr(stream, name, value)

    async def start(
        self,
        host: str,
        port: int,
        *,
        tcp: bool = True,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if tls_port is not None and tls_context is None:
            raise TlsSetupError("a TLS port needs a certificate and key (sip_tls_cert_file, sip_tls_key_file)")
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(lambda: self.udp, local_addr=(host, port))
            self._udp_transport = transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Every phone's and trunk's UDP signalling arrives on this one socket: the default buffer (208
                # KiB, a few hundred messages) overflowed during loop stalls of half a second at 100 calls/s,
                # and the dropped INVITEs and BYEs cost retransmission timeouts. The kernel caps the size.
                got = size_buffers(sock, UDP_BUFFER_BYTES)
                if got < UDP_BUFFER_BYTES:
                    log.warning(
                        "sip.socket_buffer_capped",
                        extra={"wanted": UDP_BUFFER_BYTES, "got": got, "hint": "raise net.core.rmem_max"},
                    )
            if not tcp:
                break
            try:
                # Port 0 means "any free port": give TCP the port UDP got, so both share one address.
                await self.tcp.start(host, self.udp.port)
                break
            except OSError:
                transport.close()
                if port != 0 or attempt == 19:
                    raise  # a configured port that is taken is the operator's to fix
                # The free UDP port is taken on TCP by someone else: try another one.
        if tls_port is not None and tls_context is not None:
            try:
                await self.start_tls(host, tls_port, tls_context)
            except OSError:
                await self.close()
                raise

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        """Listen for SIP over TLS on `port` (0: any free port) with this server context."""
        if self.tls is not None:
            raise RuntimeError("SIP over TLS is already listening")
        tls = TcpTransport(self.receiver, server_context=context)
        self._apply_limits(tls)
        await tls.start(host, port)
        self.tls = tls

    @property
    def host(self) -> str:
        return self.advertised_host or self.udp.host

    @property
    def port(self) -> int:
        return self.udp.port

    @property
    def tls_port(self) -> int | None:
        return self.tls.port if self.tls is not None else None

    def local_port(self, transport: str) -> int:
        if transport == "tls" and self.tls is not None:
            return self.tls.port
        return self.tcp.port if transport == "tcp" else self.udp.port

    def _stream(self, peer: Peer) -> TcpTransport:
        if peer.transport == "tcp":
            return self.tcp
        if peer.transport == "tls" and self.tls is not None:
            return self.tls
        raise TransportError(f"unsupported transport {peer.transport}")

    async def send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            self.udp.send(data, peer)
        else:
            await self._stream(peer).send(data, peer)

    def send_nowait(self, data: bytes, peer: Peer) -> asyncio.Task[None] | None:
        """Send without awaiting: UDP and existing connections are synchronous; a new connection is a task."""
        if peer.transport == "udp":
            self.udp.send(data, peer)
            return None
        stream = self._stream(peer)
        connection = stream.connections.get(peer)
        if connection is not None:
            connection.write(data)
            return None
        if stream.server_context is not None:
            raise TransportError(f"no TLS connection from {peer}")  # none will be opened (TcpTransport.connect)
        return asyncio.get_running_loop().create_task(stream.send(data, peer))

    async def close(self) -> None:
        if self._udp_transport is not None:
            self._udp_transport.close()
        await self.tcp.close()
        if self.tls is not None:
            await self.tls.close()
