"""Precedence line 6: a user already on a call is busy when call waiting is off; with it on, a second call rings."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hipper.domain.services import CallWaiting
from hipper.store.models import ActiveCall
from tests.calls.conftest import Exchange, phone, place_call, scenario, until_on_a_call

pytestmark = pytest.mark.sip


async def test_a_second_call_finds_the_user_busy_when_call_waiting_is_off(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await exchange.set_service("bob", CallWaiting(active=False))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2500)
    await until_on_a_call(exchange, "bob", bob, alice)
    carol = await place_call(exchange, "carol", "202", "final_rejected.xml", status=486)
    await carol.succeeded()
    await alice.succeeded()
    await bob.succeeded()
    first = await exchange.next_call()
    second = await exchange.next_call()
    outcomes = sorted([first.outcome, second.outcome])
    assert outcomes == ["answered", "busy"]
    rows = await exchange.call_logs("bob")
    busy = [r for r in rows if r.outcome == "busy"]
    assert busy and busy[0].plan is not None and busy[0].plan["steps"][0]["line"] == 7
    assert not exchange.b2bua.on_call(exchange.users["bob"])  # the finished call freed Bob


async def test_with_call_waiting_on_the_second_call_alerts_as_a_waiting_call(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await exchange.add_device("bob", "bob-second")
    # Bob answers Alice's call on one phone; Carol's call then still rings the other, as a waiting call.
    first = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=4000)
    await until_on_a_call(exchange, "bob", first, alice)
    bob2 = await phone(exchange, "bob-second", "bob-second", scenario("callee.xml", ring_ms=100))
    carol = await place_call(exchange, "carol", "202", "final_talks.xml", talk_ms=500)
    await carol.succeeded()
    await alice.succeeded()
    await first.succeeded()
    await bob2.succeeded()
    calls = [await exchange.next_call(), await exchange.next_call()]
    assert all(call.answered for call in calls)
    rows = await exchange.call_logs("bob")
    assert any(r.plan is not None and "waiting call" in r.plan["steps"][0]["reason"] for r in rows)


async def test_who_is_on_a_call_is_shared_without_a_transaction_of_its_own(exchange: Exchange) -> None:
    # The answered call's `active_calls` rows (store/presence.py: what other nodes read) ride in the transaction
    # of its call.started event, their deletion in that of its call-log rows: still two per call.
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1500)
    await until_on_a_call(exchange, "bob", bob, alice)
    await exchange.b2bua.presence.written()
    assert await on_call_rows(exchange) == sorted([exchange.users["alice"], exchange.users["bob"]])
    await alice.succeeded()
    await bob.succeeded()
    await exchange.next_call()
    await exchange.b2bua.presence.written()
    assert await on_call_rows(exchange) == []
    assert exchange.b2bua.writer.transactions == 2


async def on_call_rows(exchange: Exchange) -> list[int]:
    async with exchange.sessions() as session:
        return sorted((await session.execute(select(ActiveCall.user_id))).scalars())
