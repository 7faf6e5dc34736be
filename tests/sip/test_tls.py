"""SIP over TLS (RFC 3261 §26): Python's ssl client against the real transport, stack, registrar and database.

Every test runs on asyncio's loop and on uvloop (what `hipper serve` runs): the TLS upgrade after accept
(`loop.start_tls`) is each loop's own code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop
from sqlalchemy import select

from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.server import create_sip_stack, sip_tls_context
from hipper.sip.message import URI, Headers, Request, Response, Via, parse_message
from hipper.sip.transport import Peer
from hipper.store import admin
from hipper.store.db import create_engine, session_factory
from hipper.store.models import Registration
from tests.sip.conftest import PASSWORD, REALM, SipServer, authorization_for, register_text
from tests.support.certs import self_signed

# pytest-asyncio deprecates overriding this fixture; its replacement hook applies to the whole session. The
# fixture below checks that each test really runs on the loop it names, so a removal cannot go unnoticed.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning')


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoopPolicy]:
    yield uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path / "certs")


@pytest.fixture
async def tls_server(tmp_path: Path, sqlite_template: Path, certificate: tuple[Path, Path]) -> AsyncIterator[SipServer]:
    database = tmp_path / "hipper.db"
    shutil.copy(sqlite_template, database)
    cert_file, key_file = certificate
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{database}",
        sip_realm=REALM,
        sip_min_expires=30,
        sip_node="tls-node",
        sip_tls_port=0,
        sip_tls_cert_file=cert_file,
        sip_tls_key_file=key_file,
    )
    engine = create_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    async with sessions() as session:
        user = await admin.create_user(session, Hasher(1, 1024), username="alice", password="correct horse 1")
        await session.commit()
        user_id = user.id
    stack = create_sip_stack(settings, sessions)
    await stack.start("127.0.0.1", 0, tls_port=0, tls_context=sip_tls_context(settings))
    server = SipServer(stack, sessions, stack.port, user_id, 0, settings)
    server.device_id = await server.add_device("alice", PASSWORD)
    try:
        yield server
    finally:
        await stack.close()
        await engine.dispose()


def client_context(cert_file: Path) -> ssl.SSLContext:
    """What a careful phone does: verify the server's certificate (here against the self-signed one)."""
    return ssl.create_default_context(cafile=str(cert_file))


class TlsPhone:
    """A scripted phone on one TLS connection: writes SIP text, reads whole messages framed by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.port = int(writer.get_extra_info("sockname")[1])

    @classmethod
    async def connect(cls, port: int, cert_file: Path) -> TlsPhone:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(cert_file), server_hostname="127.0.0.1"
            )
        return cls(reader, writer)

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def read(self) -> Request | Response:
        async with asyncio.timeout(3):
            head = await self.reader.readuntil(b"\r\n\r\n")
            message = parse_message(head, stream=True)
            message.body = await self.reader.readexactly(message.int_header("Content-Length") or 0)
        return message

    async def register(self, server_port: int) -> Response:
        fields = {
            "port": server_port,
            "client_port": self.port,
            "transport": "TLS",
            "contact": f"<sip:alice@192.0.2.1:{self.port};transport=tls>",
        }
        self.send(register_text(**fields))
        challenge = await self.read()
        assert isinstance(challenge, Response) and challenge.status == 401, challenge
        auth = authorization_for(challenge, uri=f"sip:127.0.0.1:{server_port}")
        self.send(register_text(cseq=2, authorization=auth, **fields))
        answer = await self.read()
        assert isinstance(answer, Response)
        return answer

    def close(self) -> None:
        self.writer.close()


async def registrations(server: SipServer) -> list[Registration]:
    async with server.sessions() as session:
        return list((await session.execute(select(Registration))).scalars())


async def eof(reader: asyncio.StreamReader, limit: float = 3.0) -> bool:
    """True when the server closed the connection (EOF or reset) within `limit` seconds."""
    try:
        async with asyncio.timeout(limit):
            while await reader.read(4096):
                pass
    except (ConnectionError, ssl.SSLError):
        pass
    return True


async def test_register_over_tls_and_reach_the_phone_on_its_connection(
    tls_server: SipServer, certificate: tuple[Path, Path]
) -> None:
    stack = tls_server.stack
    tls_port = stack.transports.tls_port
    assert tls_port is not None and tls_port != stack.port
    phone = await TlsPhone.connect(tls_port, certificate[0])
    try:
        phone.send(b"\r\n\r\n")  # RFC 5626 keepalive: a pong, as over TCP
        async with asyncio.timeout(2):
            assert await phone.reader.readexactly(2) == b"\r\n"
        ok = await phone.register(tls_port)
        assert ok.status == 200, ok
        (row,) = await registrations(tls_server)
        assert row.source == f"tls:127.0.0.1:{phone.port}"  # where requests to the phone go: this connection
        headers = Headers()
        for name, value in (
            ("From", "<sip:h@hipper.test>;tag=1"),
            ("To", "<sip:alice@hipper.test>"),
            ("Call-ID", "tls-opt"),
            ("CSeq", "1 OPTIONS"),
        ):
            headers.add(name, value)
        tx = stack.send_request(Request("OPTIONS", URI.parse(row.contact), headers), Peer.parse(row.source))
        options = await phone.read()
        assert isinstance(options, Request) and options.method == "OPTIONS"
        via = Via.parse(options.headers.get_all("Via")[0])
        assert (via.transport, via.port) == ("TLS", tls_port)  # §18.1.1: our Via names the transport we used
        phone.send(Response.for_request(options, 200, to_tag="dev").serialize())
        async with asyncio.timeout(3):
            assert (await tx.final).status == 200
    finally:
        phone.close()
    # Once the phone's connection is gone, nothing is opened towards it: the request fails at once (no hang).
    async with asyncio.timeout(3):
        while stack.transports.tls is not None and stack.transports.tls.connections:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    headers = Headers()
    for name, value in (("From", "<sip:h@t>;tag=2"), ("To", "<sip:a@t>"), ("Call-ID", "gone"), ("CSeq", "1 OPTIONS")):
        headers.add(name, value)
    tx = stack.send_request(Request("OPTIONS", URI.parse(row.contact), headers), Peer.parse(row.source))
    async with asyncio.timeout(3):
        assert (await tx.final).status == 503  # §8.1.3.1: a transport error is a 503 to the transaction user


async def test_bad_clients_on_the_tls_port_cost_one_connection_each(
    tls_server: SipServer, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tls = tls_server.stack.transports.tls
    assert tls is not None
    tls.handshake_timeout = 0.5
    descriptors = len(os.listdir("/proc/self/fd"))
    caplog.set_level(logging.INFO, logger="hipper.sip.transport")
    # Plain SIP (not TLS) on the TLS port: the handshake fails and that connection is closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", tls.port)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(register_text(port=tls.port, client_port=1).encode())
    assert await eof(reader)
    writer.close()
    # The failure is logged with the peer's address (docs/security.md "TLS": what fail2ban or an operator reads).
    failed = [r for r in caplog.records if r.getMessage() == "sip.tls.handshake_failed"]
    peers = [str(getattr(r, "peer", "")) for r in failed]
    assert f"tls:127.0.0.1:{local_port}" in peers, peers
    # Random bytes that look like nothing.
    reader, writer = await asyncio.open_connection("127.0.0.1", tls.port)
    writer.write(bytes(range(256)) * 8)
    assert await eof(reader)
    writer.close()
    # A client that connects and says nothing (or stops halfway through its hello) is cut at the handshake timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", tls.port)
    writer.write(b"\x16\x03\x01\x02\x00\x01")
    started = asyncio.get_running_loop().time()
    assert await eof(reader)
    assert asyncio.get_running_loop().time() - started < 2.5
    writer.close()
    # A client that does not trust our certificate gives up; the server survives its alert.
    with pytest.raises(ssl.SSLCertVerificationError):
        async with asyncio.timeout(3):
            await asyncio.open_connection("127.0.0.1", tls.port, ssl=ssl.create_default_context())
    # Garbage after a good handshake is SIP framing's problem, as over TCP: that connection only is dropped.
    bad = await TlsPhone.connect(tls.port, certificate[0])
    bad.send(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")
    assert await eof(bad.reader)
    bad.close()
    async with asyncio.timeout(3):
        while tls.open_connections():  # noqa: ASYNC110 - every failed connection is forgotten
            await asyncio.sleep(0.02)
    # Connection limit: handshakes in progress count, so a flood of silent sockets cannot exhaust descriptors.
    tls.max_connections = 2
    tls.handshake_timeout = 10.0
    silent = [await asyncio.open_connection("127.0.0.1", tls.port) for _ in range(2)]
    async with asyncio.timeout(3):
        while tls.open_connections() < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    refused_reader, refused_writer = await asyncio.open_connection("127.0.0.1", tls.port)
    assert await eof(refused_reader, 1.0)
    refused_writer.close()
    for _, writer in silent:
        writer.close()
    async with asyncio.timeout(3):
        while tls.open_connections():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    async with asyncio.timeout(3):
        while len(os.listdir("/proc/self/fd")) > descriptors:  # noqa: ASYNC110 - no socket of theirs leaked
            await asyncio.sleep(0.02)
    # After all that a good phone still registers.
    tls.max_connections = 10
    phone = await TlsPhone.connect(tls.port, certificate[0])
    try:
        assert (await phone.register(tls.port)).status == 200
    finally:
        phone.close()


async def test_tls_connections_that_never_send_a_message_are_closed(
    tls_server: SipServer, certificate: tuple[Path, Path]
) -> None:
    tls = tls_server.stack.transports.tls
    assert tls is not None
    tls.first_message_timeout = 0.5
    phone = await TlsPhone.connect(tls.port, certificate[0])
    phone.send(b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TLS")  # and then nothing more (slowloris)
    try:
        assert await eof(phone.reader)
    finally:
        phone.close()
