"""One real call with media on PostgreSQL: the call path (registrar, routing state, call logs) against the
production database, where the other call tests use SQLite for speed (see tests/calls/conftest.py)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hipper.apps.node import start_call_processing
from hipper.config import Settings
from hipper.server import create_sip_stack
from hipper.store import admin
from hipper.store.db import create_engine, session_factory
from tests.calls.conftest import REALM, Exchange, phone, place_call, scenario
from tests.sip.peers import free_udp_port
from tests.support import postgres

pytestmark = [pytest.mark.sip, pytest.mark.postgres]


@pytest.fixture
async def pg_exchange(tmp_path: Path, postgres_server: postgres.PostgresServer) -> AsyncIterator[Exchange]:
    """The harness's exchange (tests/calls/conftest.py) on a fresh copy of the migrated PostgreSQL template,
    made the way tests/conftest.py's `database_url` fixture makes one."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin_engine = create_async_engine(postgres_server.url(), isolation_level="AUTOCOMMIT")
    async with admin_engine.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name} TEMPLATE hipper_template"))
    await admin_engine.dispose()
    trunk_port = free_udp_port()
    mobile_port = free_udp_port()
    base = random.randrange(30000, 39000, 2)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_server.url(name),
        sip_realm=REALM,
        sip_min_expires=30,
        sip_node="calls-test-pg",
        seconds_per_ring=1,
        branch_provisional_seconds=8.0,
        trunk_address=f"udp:127.0.0.1:{trunk_port}",
        mobile_network_address=f"udp:127.0.0.1:{mobile_port}",
        mobile_routing_prefix="9",
        prompt_language="en",
        rtp_port_min=base,
        rtp_port_max=base + 200,
        rtp_timeout_seconds=30.0,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
    )
    engine = create_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    async with sessions() as session:
        company = await admin.create_company(session, "Acme", "+31201234000")
        await session.commit()
        company_id = company.id
    stack = create_sip_stack(settings, sessions)
    await stack.start("127.0.0.1", 0, tcp=False)
    b2bua = await start_call_processing(settings, stack, sessions)
    try:
        yield Exchange(settings, stack, sessions, b2bua.media, b2bua, trunk_port, tmp_path, mobile_port, company_id)
    finally:
        await b2bua.close()
        await stack.close()
        await engine.dispose()


async def test_an_internal_call_with_media_on_postgresql(pg_exchange: Exchange) -> None:
    exchange = pg_exchange
    assert exchange.settings.resolved_database_url().startswith("postgresql")
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=300), "-rtp_echo")
    assert len(await exchange.registrations("bob")) == 1
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2000)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    # Alice's audio reached Bob through the engine and Bob's echo came back to Alice.
    assert call.media["caller_packets_received"] > 30 and call.media["callee_packets_sent"] > 30
    assert call.media["callee_packets_received"] > 30 and call.media["caller_packets_sent"] > 30
    placed = await exchange.call_logs("alice")
    received = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome, r.remote_number) for r in placed] == [("placed", "answered", "202")]
    assert [(r.direction, r.outcome, r.remote_number) for r in received] == [("received", "answered", "201")]
    assert received[0].plan is not None and received[0].answered_at is not None
