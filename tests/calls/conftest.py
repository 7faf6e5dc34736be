"""A real exchange for call tests: SIP stack + registrar + B2BUA + media engine + database, on free ports.

SQLite only (a fresh copy of the migrated template per test): the call path's queries are the store's, which
the store tests run on PostgreSQL too; running every SIPp call twice would double the slowest tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import secrets
import shutil
import socket
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.apps.click_to_dial import Callback
from hipper.apps.node import Applications, start_call_processing
from hipper.config import Settings
from hipper.domain.services import ServiceSettings
from hipper.engine.b2bua import B2bua
from hipper.engine.call import Call, CallSummary
from hipper.media.engine import MediaEngine
from hipper.passwords import Hasher
from hipper.server import create_sip_stack
from hipper.sip.stack import SipStack
from hipper.store import admin, devices, service_settings
from hipper.store.db import create_engine, session_factory
from hipper.store.models import CallLog, Company, Registration, User
from tests.media_apps.exchange_process import Elsewhere, exchange_process
from tests.sip.peers import free_udp_port, require, stop
from tests.support.ports import engine_range, peer_media_port, udp_listening

REALM = "hipper.test"
PASSWORD = "phone-secret-1"
SCENARIOS = Path(__file__).parent / "scenarios"
# The Alert-Info a desk phone receives for a ring splash (Settings.ring_splash_alert_info), as a regular expression.
RING_SPLASH_ALERT_INFO = (
    r"^ *<http://127\.0\.0\.1/Bellcore-dr5>, *<urn:alert:service:forward>, *<urn:alert:duration:short> *$"
)


@dataclass
class Exchange:
    settings: Settings
    stack: SipStack
    sessions: async_sessionmaker[AsyncSession]
    media: MediaEngine
    b2bua: B2bua
    trunk_port: int
    workdir: Path
    mobile_port: int
    company_id: int = 0
    users: dict[str, int] = field(default_factory=dict)
    calls_ended: asyncio.Queue[CallSummary] = field(init=False)
    callbacks_ended: asyncio.Queue[Callback] = field(init=False)

    def __post_init__(self) -> None:
        # Watched from the start: the exchange keeps nothing that nobody watches.
        self.calls_ended = self.b2bua.ended.watch()
        self.callbacks_ended = self.applications.app_calls.ended.watch()

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def applications(self) -> Applications:
        """The features plugged into this exchange's call engine (apps/node.py)."""
        assert isinstance(self.b2bua.applications, Applications)
        return self.b2bua.applications

    async def add_user(self, name: str, extension: str, *, direct: str | None = None, mobile: str | None = None,
                       licences: tuple[str, ...] = ("full",)) -> int:  # fmt: skip
        async with self.sessions() as session:
            company = await session.get(Company, self.company_id)
            user = await admin.create_user(
                session, Hasher(1, 1024), username=name, password="correct horse 1", company=company,
                first_name=name.capitalize(), extension=extension, direct_number=direct, mobile_number=mobile,
                licences=list(licences),
            )  # fmt: skip
            await devices.create_device(session, user, auth_username=name, password=PASSWORD, realm=REALM)
            await session.commit()
            self.users[name] = user.id
            return user.id

    async def add_device(self, name: str, auth_username: str) -> None:
        """Another registered phone of the same user (forking goes to every contact)."""
        async with self.sessions() as session:
            user = await session.get(User, self.users[name])
            assert user is not None
            await devices.create_device(session, user, auth_username=auth_username, password=PASSWORD, realm=REALM)
            await session.commit()

    async def set_service(self, name: str, settings: ServiceSettings) -> None:
        async with self.sessions() as session:
            await service_settings.save(session, self.users[name], settings)
            await session.commit()

    async def call_logs(self, name: str) -> list[CallLog]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(CallLog).where(CallLog.user_id == self.users[name]).order_by(CallLog.id)
            )
            return list(rows.scalars())

    async def registrations(self, name: str) -> list[Registration]:
        async with self.sessions() as session:
            rows = await session.execute(select(Registration).where(Registration.user_id == self.users[name]))
            return list(rows.scalars())

    async def next_call(self, limit: float = 20.0) -> CallSummary:
        async with asyncio.timeout(limit):
            return await self.calls_ended.get()


@pytest.fixture
async def exchange(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Exchange]:
    """Settings overrides come from indirect parametrisation: `parametrize("exchange", [{...}], indirect=True)`."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    database = tmp_path / "hipper.db"
    shutil.copy(sqlite_template, database)
    async with running_exchange(tmp_path, f"sqlite+aiosqlite:///{database}", overrides) as exchange:
        yield exchange


@contextlib.asynccontextmanager
async def running_exchange(
    workdir: Path, database_url: str, overrides: dict[str, Any], company_id: int | None = None
) -> AsyncIterator[Exchange]:
    """An exchange on `database_url` (migrated) with its own SIP port, media engine and peers' ports; it makes
    the company "Acme" unless given the id of one (a second node on the same database)."""
    trunk_port = free_udp_port()
    mobile_port = free_udp_port()
    base = engine_range()
    settings = Settings(
        data_dir=workdir / "data",
        database_url=database_url,
        sip_realm=REALM,
        sip_min_expires=30,
        sip_node="calls-test",
        seconds_per_ring=1,
        branch_provisional_seconds=8.0,  # generous: the machine is shared and SIPp may start slowly
        trunk_address=f"udp:127.0.0.1:{trunk_port}",
        mobile_network_address=f"udp:127.0.0.1:{mobile_port}",
        mobile_routing_prefix="9",
        prompt_language="en",
        rtp_port_min=base,
        rtp_port_max=base + 200,
        rtp_timeout_seconds=30.0,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
    ).model_copy(update=overrides)
    engine = create_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    if company_id is None:
        async with sessions() as session:
            company = await admin.create_company(session, "Acme", "+31201234000")
            await session.commit()
            company_id = company.id
    stack = create_sip_stack(settings, sessions)
    await stack.start("127.0.0.1", 0, tcp=False)
    b2bua = await start_call_processing(settings, stack, sessions)
    try:
        exchange = Exchange(settings, stack, sessions, b2bua.media, b2bua, trunk_port, workdir, mobile_port, company_id)
        yield exchange
    finally:
        await b2bua.close()
        await stack.close()
        await engine.dispose()
    # Whatever the test did, an exchange that stopped leaves none of its calls in memory (a registry holding a
    # call, a task that was never ended): at 40 calls/s a leak is a node that runs out of memory. What the test
    # itself watched and did not read (finished callbacks hold their calls) is not the exchange's.
    for watched in (exchange.calls_ended, exchange.callbacks_ended):
        while not watched.empty():
            watched.get_nowait()
    gc.collect()
    left = [o for o in gc.get_objects() if isinstance(o, Call) and o.b2bua is b2bua]
    assert not left, f"calls still in memory after the exchange stopped: {left}"


# -- SIPp -----------------------------------------------------------------------------------------------------


def scenario(name: str, **values: Any) -> str:
    """A scenario from tests/calls/scenarios with its $placeholders filled (fragments named by `final`)."""
    text = (SCENARIOS / name).read_text()
    values.setdefault("bye_status", "200")  # final_talks.xml: the answer to the caller's BYE
    final = values.pop("final", None)
    if final is not None:
        values["final"] = string.Template((SCENARIOS / final).read_text()).safe_substitute(values)
    values.setdefault("check", "")
    values.setdefault("after_ack", "")
    values.setdefault("keys", "")
    values.setdefault("refs", "")
    values.setdefault("contact_host", "[local_ip]")
    values.setdefault("media_host", "[media_ip]")
    values.setdefault("media_port", "[media_port]")  # caller.xml: where the caller takes its RTP
    values.setdefault("bye_wait", "")  # callee.xml: e.g. 'timeout="5000" ' — the BYE must come within that
    values.setdefault(
        "provisional",
        '<recv response="100" optional="true" />\n  <recv response="180" optional="true" />\n'
        '  <recv response="183" optional="true" />',
    )
    return string.Template(text).safe_substitute({k: str(v) for k, v in values.items()})


def expect_headers(*checks: tuple[str, str]) -> dict[str, str]:
    """Scenario values making SIPp fail unless the INVITE's `header` matches each regular expression."""
    actions = "".join(
        f'<ereg regexp="{escape(regexp)}" search_in="hdr" header="{header}:" check_it="true" assign_to="seen{index}" />'
        for index, (header, regexp) in enumerate(checks)
    )
    names = ",".join(f"seen{index}" for index in range(len(checks)))
    return {"check": f"<action>{actions}</action>", "refs": f'<Reference variables="{names}" />'}


def with_request_uri(checks: dict[str, str], regexp: str) -> dict[str, str]:
    """`expect_headers` values that also check the INVITE's request line."""
    checks = dict(checks)
    checks["check"] = checks["check"].replace(
        "</action>", f'<ereg regexp="{regexp}" search_in="msg" check_it="true" assign_to="uri" /></action>'
    )
    checks["refs"] = checks["refs"].replace('" />', ',uri" />')
    return checks


@dataclass
class Sipp:
    process: asyncio.subprocess.Process
    workdir: Path
    name: str

    async def result(self, limit: float = 30.0) -> tuple[int, str]:
        stderr = b""
        try:
            async with asyncio.timeout(limit):
                _, stderr = await self.process.communicate()  # reads stderr meanwhile: a full pipe cannot stall it
        finally:
            await stop(self.process)
        errors = ""
        for log in self.workdir.glob(f"{self.name}*_errors.log"):
            errors += log.read_text(errors="replace")  # SIPp quotes stray binary (RTCP) it discards
        return self.process.returncode or 0, errors + (stderr or b"").decode(errors="replace")

    async def succeeded(self, limit: float = 30.0) -> None:
        code, errors = await self.result(limit)
        assert code == 0, f"SIPp {self.name} failed ({code}): {errors[-3000:]}"

    async def listening(self, port: int, limit: float = 15.0) -> Sipp:
        """Until SIPp has bound its SIP port: a request sent before would be lost, and its retransmission comes
        after timers that ring for a second or two may have run out."""
        async with asyncio.timeout(limit):
            while not udp_listening(port, self.process.pid):  # another process's socket: no event to wait on
                if self.process.returncode is not None:
                    await self.succeeded()
                    raise AssertionError(f"SIPp {self.name} ended before it listened")
                await asyncio.sleep(0.01)
        return self


async def poke(port: int, call_id: str, *headers: str) -> None:
    """An OPTIONS into a SIPp phone's dialog (SIPp matches it by its Call-ID): the phone's scenario takes its next
    step. Sent once and not answered (SIPp would send its answer to the exchange, not here): loopback UDP."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        token = secrets.token_hex(6)
        lines = [
            f"OPTIONS sip:phone@127.0.0.1:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch=z9hG4bK{token}",
            f"From: <sip:test@127.0.0.1>;tag={token}",
            "To: <sip:phone@127.0.0.1>",
            f"Call-ID: {call_id}",
            "CSeq: 1 OPTIONS",
            "Max-Forwards: 70",
            *headers,
            "Content-Length: 0",
        ]
        await loop.sock_sendto(sock, ("\r\n".join(lines) + "\r\n\r\n").encode(), ("127.0.0.1", port))


@dataclass
class Caller(Sipp):
    """A calling SIPp phone on a known port and Call-ID (`calling`). With a scenario that ends in a wait for the
    test's poke (final_hangs_up_when_told.xml here, end_hang_up_when_told.xml in tests/media_apps) it talks until
    the test tells it to hang up: no fixed talk time for the test to wait out once its checks are done."""

    port: int = 0
    call_id: str = ""

    async def hang_up(self, limit: float = 30.0) -> None:
        await poke(self.port, self.call_id)
        await self.succeeded(limit)


async def calling(
    exchange: Exchange, name: str, text: str, *args: str, port: int | None = None, limit: int = 25
) -> Caller:
    """`start_sipp` for a calling phone, on a port and with a Call-ID of our choosing (so it can be told to hang up)."""
    port = port or free_udp_port()
    call_id = f"{name}-{secrets.token_hex(6)}@127.0.0.1"
    sipp = await start_sipp(exchange, name, text, *args, "-cid_str", call_id, port=port, limit=limit)
    return Caller(sipp.process, sipp.workdir, sipp.name, port, call_id)


def free_media_port() -> int:
    """An even port with the next three free: SIPp binds RTP/RTCP (and video) there at start."""
    return peer_media_port()


# A scenario whose first step is to receive (a UAS: a phone that answers, the trunk, the mobile network).
ANSWERS_FIRST = re.compile(r"<scenario[^>]*>\s*(?:<!--.*?-->\s*)*<recv\b", re.DOTALL)


async def start_sipp(
    exchange: Exchange, name: str, text: str, *args: str, port: int | None = None, limit: int = 25
) -> Sipp:
    """SIPp in the foreground under `timeout`, talking to the exchange; stopped by its own pid."""
    sipp = require("sipp")
    path = exchange.workdir / f"{name}.xml"
    path.write_text(text)
    media_port = free_media_port()
    if "-au" in args and "-auth_uri" not in args:
        # The digest uri must be the Request-URI (RFC 7616 §3.4.6); SIPp's own default is remote_ip:remote_port,
        # so a request to [service]@ (an INVITE; a SUBSCRIBE to its own user) names it here. REGISTER scenarios
        # (Request-URI without a user) pass their own.
        user = args[args.index("-s") + 1] if "-s" in args else args[args.index("-au") + 1]
        args = (*args, "-auth_uri", f"{user}@127.0.0.1:{exchange.port}")
    process = await asyncio.create_subprocess_exec(
        "timeout", str(limit + 5), sipp, f"127.0.0.1:{exchange.port}", "-sf", str(path),
        "-i", "127.0.0.1", "-p", str(port or free_udp_port()), "-mi", "127.0.0.1", "-mp", str(media_port),
        "-m", "1", "-l", "1", "-nostdin", "-trace_err", "-timeout", f"{limit}s", "-timeout_error",
        "-default_behaviors", "all,-bye", "-trace_msg", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=exchange.workdir,
    )  # fmt: skip
    sipp = Sipp(process, exchange.workdir, name)
    if port is not None and ANSWERS_FIRST.search(text):
        await sipp.listening(port)  # a phone or network that waits for a request: it must be there when it comes
    return sipp


@dataclass
class Nodes:
    """Two exchange nodes in this process on one database (docs/scale-out.md): the users are node A's."""

    a: Exchange
    b: Exchange

    async def add_user(self, name: str, extension: str) -> None:
        await self.a.add_user(name, extension)
        self.b.users[name] = self.a.users[name]

    def third_node(
        self, workdir: Path, node_id: str, lease: float
    ) -> contextlib.AbstractAsyncContextManager[tuple[asyncio.subprocess.Process, Elsewhere]]:
        """A third node as a process of its own (tests/media_apps/exchange_process.py: it can be killed with
        SIGKILL), on node A's configuration with `lease`, once it takes calls."""
        config = self.a.settings.model_dump(mode="json")
        top = self.b.settings.rtp_port_max
        config.update(node_id=node_id, node_lease_seconds=lease, rtp_port_min=top + 2, rtp_port_max=top + 200,
                      data_dir=str(workdir / node_id))  # fmt: skip
        path = workdir / f"{node_id}.json"
        path.write_text(json.dumps(config))
        return exchange_process(path, workdir)


@contextlib.asynccontextmanager
async def two_nodes(
    workdir: Path, database_url: str, settings: dict[str, Any]
) -> AsyncIterator[tuple[Exchange, Exchange]]:
    """Nodes "node-a" and "node-b" with `settings` on one database (node B joins node A's company)."""
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            running_exchange(workdir / "a", database_url, {**settings, "node_id": "node-a"})
        )
        b = await stack.enter_async_context(
            running_exchange(workdir / "b", database_url, {**settings, "node_id": "node-b"}, a.company_id)
        )
        yield a, b


async def until_on_a_call(exchange: Exchange, name: str, *peers: Sipp, limit: float = 10.0) -> None:
    """Until the B2BUA has the user on an answered call. A peer of that call that exits first failed it: its own
    error is the test's failure (not a timeout ten seconds later that says nothing)."""
    user_id = exchange.users[name]
    async with asyncio.timeout(limit):
        while not exchange.b2bua.on_call(user_id):
            for peer in peers:
                if peer.process.returncode is not None:
                    await peer.succeeded()
                    raise AssertionError(f"SIPp {peer.name} ended before {name} was on a call")
            await asyncio.sleep(0.05)


async def register(exchange: Exchange, user: str, port: int, contact_host: str = "[local_ip]") -> None:
    """A real digest REGISTER from `port` (where a SIPp UAS will then answer calls for `user`)."""
    text = scenario("register.xml", contact_host=contact_host)
    sipp = await start_sipp(
        exchange, f"register-{user}", text, "-s", user, "-au", user, "-ap", PASSWORD,
        "-auth_uri", f"127.0.0.1:{exchange.port}", port=port,
    )  # fmt: skip
    await sipp.succeeded(15)


async def phone(exchange: Exchange, user: str, name: str, text: str, *args: str, limit: int = 25,
                contact_host: str = "[local_ip]") -> Sipp:  # fmt: skip
    """Register `user` from a fresh port, then run a SIPp UAS scenario on that same port."""
    port = free_udp_port()
    await register(exchange, user, port, contact_host)
    return await start_sipp(exchange, name, text, *args, port=port, limit=limit)


async def trunk(exchange: Exchange, name: str, text: str, *args: str, limit: int = 25) -> Sipp:
    """SIPp playing the public network trunk on the exchange's configured trunk address."""
    return await start_sipp(exchange, name, text, *args, port=exchange.trunk_port, limit=limit)


async def place_call(exchange: Exchange, user: str, dialled: str, final: str, *args: str, limit: int = 25,
                     **values: Any) -> Sipp:  # fmt: skip
    text = scenario("caller.xml", final=final, user=user, **values)
    return await start_sipp(
        exchange, f"caller-{user}", text, "-s", dialled, "-au", user, "-ap", PASSWORD, *args, limit=limit
    )


async def call_until_told(exchange: Exchange, user: str, dialled: str, *args: str, limit: int = 25, **values: Any
                          ) -> Caller:  # fmt: skip
    """`place_call` whose phone talks until the test tells it to hang up (`Caller.hang_up`)."""
    text = scenario("caller.xml", final="final_hangs_up_when_told.xml", user=user, **values)
    return await calling(
        exchange, f"caller-{user}", text, "-s", dialled, "-au", user, "-ap", PASSWORD, *args, limit=limit
    )


async def rows_of(sessions: async_sessionmaker[AsyncSession], user_id: int) -> list[CallLog]:
    async with sessions() as session:
        return list((await session.execute(select(CallLog).where(CallLog.user_id == user_id))).scalars())


__all__ = ["User"]
