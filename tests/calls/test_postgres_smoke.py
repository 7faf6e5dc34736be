"""One real call with media on PostgreSQL: the call path (registrar, routing state, call logs) against the
production database, where the other call tests use SQLite for speed (see tests/calls/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.calls.conftest import Exchange, phone, place_call, running_exchange, scenario
from tests.support import postgres

pytestmark = [pytest.mark.sip, pytest.mark.postgres]


@pytest.fixture
async def pg_exchange(tmp_path: Path, postgres_server: postgres.PostgresServer) -> AsyncIterator[Exchange]:
    """The harness's exchange (tests/calls/conftest.py) on a fresh copy of the migrated PostgreSQL template."""
    url = await postgres_server.template_copy()
    async with running_exchange(tmp_path, url, {"sip_node": "calls-test-pg"}) as exchange:
        yield exchange


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
