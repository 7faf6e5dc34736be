"""SIP fixtures: a real stack on a free loopback port with a real database, and a raw SIP client."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.server import create_sip_stack
from hipper.sip.digest import parse_credentials, response
from hipper.sip.message import Response, parse_message
from hipper.sip.stack import SipStack
from hipper.store import admin
from hipper.store.db import create_engine, session_factory
from hipper.store.models import SipDevice

REALM = "hipper.test"
PASSWORD = "s3cret-pass"


@dataclass
class SipServer:
    stack: SipStack
    sessions: async_sessionmaker[AsyncSession]
    port: int
    user_id: int
    device_id: int
    settings: Settings

    async def add_device(self, auth_username: str, password: str, user_id: int | None = None) -> int:
        async with self.sessions() as session:
            device = SipDevice(
                user_id=user_id or self.user_id,
                auth_username=auth_username,
                realm=REALM,
                ha1_md5=hashlib.md5(f"{auth_username}:{REALM}:{password}".encode()).hexdigest(),
                ha1_sha256=hashlib.sha256(f"{auth_username}:{REALM}:{password}".encode()).hexdigest(),
                kind="desk",
                name=auth_username,
                created_at=datetime.now(UTC),
            )
            session.add(device)
            await session.commit()
            return device.id


@pytest.fixture
async def sip_server(settings: Settings) -> AsyncIterator[SipServer]:
    settings = settings.model_copy(update={"sip_realm": REALM, "sip_min_expires": 30, "sip_node": "test-node"})
    engine = create_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    async with sessions() as session:
        user = await admin.create_user(
            session, Hasher(1, 1024), username="alice", password="correct horse 1", extension="201"
        )
        await session.commit()
        user_id = user.id
    stack = create_sip_stack(settings, sessions)
    await stack.start("127.0.0.1", 0)
    server = SipServer(stack, sessions, stack.port, user_id, 0, settings)
    server.device_id = await server.add_device("alice", PASSWORD)
    try:
        yield server
    finally:
        await stack.close()
        await engine.dispose()


class RawClient(asyncio.DatagramProtocol):
    """A scripted UDP user agent: sends text, receives parsed responses. For the cases real peers can't make."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's UDP transports do not all subclass DatagramTransport; they all quack like it.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.queue.put_nowait(data)

    def send(self, data: bytes | str, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data.encode() if isinstance(data, str) else data, ("127.0.0.1", port))

    async def receive(self, wait: float = 2.0) -> Response:
        async with asyncio.timeout(wait):
            message = parse_message(await self.queue.get())
        assert isinstance(message, Response)
        return message

    async def nothing(self, wait: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(wait):
                await self.queue.get()


@pytest.fixture
async def udp_client() -> AsyncIterator[RawClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(RawClient, local_addr=("127.0.0.1", 0))
    yield client
    transport.close()


def register_text(
    *,
    port: int,
    client_port: int,
    user: str = "alice",
    contact: str | None = None,
    expires: int | None = 120,
    call_id: str = "reg-1",
    cseq: int = 1,
    authorization: str | None = None,
    transport: str = "UDP",
    extra: str = "",
) -> str:
    contact = contact if contact is not None else f"<sip:{user}@127.0.0.1:{client_port}>"
    lines = [
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{client_port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag=abc{cseq}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: raw-test",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    if extra:
        lines.append(extra)
    return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"


def authorization_for(
    challenge: Response,
    *,
    user: str = "alice",
    password: str = PASSWORD,
    algorithm: str = "MD5",
    uri: str,
    method: str = "REGISTER",
) -> str:
    """Answer the challenge for `algorithm` the way a phone does (RFC 7616 §3.4); `uri` is the Request-URI."""
    offers = [parse_credentials(value) for value in challenge.headers.get_all("WWW-Authenticate")]
    offers += [parse_credentials(value) for value in challenge.headers.get_all("Proxy-Authenticate")]
    offer = next(o for o in offers if o["algorithm"] == algorithm)
    digest = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    ha1 = digest(f"{user}:{offer['realm']}:{password}".encode()).hexdigest()
    cnonce = secrets.token_hex(8)
    value = response(
        algorithm=algorithm,
        ha1_hex=ha1,
        method=method,
        uri=uri,
        nonce=offer["nonce"],
        qop="auth",
        nc="00000001",
        cnonce=cnonce,
    )
    return (
        f'Digest username="{user}", realm="{offer["realm"]}", nonce="{offer["nonce"]}", uri="{uri}", '
        f'response="{value}", algorithm={algorithm}, qop=auth, nc=00000001, cnonce="{cnonce}"'
    )
