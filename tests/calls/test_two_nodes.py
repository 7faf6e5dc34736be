"""Two exchange nodes on one PostgreSQL database route alike: a user on a call through node A is on a call for
node B too (store/presence.py) — with call waiting off B's call finds them busy, with it on B's call waits —
and a call via the exchange announced through node A's API may come in through node B (store/call_access.py).

Each node is a whole exchange in this process (its own SIP port, media engine, B2BUA and node id); the phones
register through node A, and node B finds their bindings in the shared database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import func, select

from hipper.domain.services import CallWaiting, Voicemail
from hipper.store import active_calls
from hipper.store.models import ActiveCall
from tests.calls.conftest import (
    Exchange,
    Nodes,
    Sipp,
    call_until_told,
    expect_headers,
    phone,
    place_call,
    scenario,
    start_sipp,
    trunk,
    two_nodes,
    until_on_a_call,
)
from tests.calls.test_app_calls import ACCESS, ALICE_DIRECT, ALICE_MOBILE, FAR, SHOWN, alice, serving_api
from tests.support import postgres

pytestmark = [pytest.mark.sip, pytest.mark.postgres]


@pytest.fixture
async def nodes(tmp_path: Path, postgres_server: postgres.PostgresServer) -> AsyncIterator[Nodes]:
    async with two_nodes(tmp_path, await postgres_server.template_copy(), {"call_access_number": ACCESS}) as (a, b):
        yield Nodes(a, b)


async def answered_on(exchange: Exchange, name: str, *peers: Sipp) -> None:
    """Until the user's call is answered on this node and that fact is in the shared database."""
    await until_on_a_call(exchange, name, *peers)
    await exchange.b2bua.presence.written()


async def test_a_call_on_node_a_makes_the_user_busy_for_node_b(nodes: Nodes) -> None:
    await nodes.add_user("alice", "201")
    await nodes.add_user("bob", "202")
    await nodes.add_user("carol", "203")
    await nodes.a.set_service("bob", CallWaiting(active=False))
    bob = await phone(nodes.a, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(nodes.a, "alice", "202", "final_talks.xml", talk_ms=3000)
    await answered_on(nodes.a, "bob", bob, alice)
    assert not nodes.b.b2bua.on_call(nodes.b.users["bob"])  # node B carries no call of Bob's itself
    carol = await place_call(nodes.b, "carol", "202", "final_rejected.xml", status=486)
    await carol.succeeded()
    second = await nodes.b.next_call()
    assert second.outcome == "busy" and second.branches == []  # busy by the plan: Bob's phone did not ring
    await alice.succeeded()
    await bob.succeeded()
    first = await nodes.a.next_call()
    assert first.outcome == "answered"
    busy = [r for r in await nodes.b.call_logs("bob") if r.outcome == "busy"]
    assert busy and busy[0].plan is not None and busy[0].plan["steps"][0]["line"] == 7
    # The call's end reached node B as well: Bob is free again everywhere.
    await nodes.a.b2bua.presence.written()
    async with nodes.b.b2bua.snapshots.reads.connect() as reads:
        assert not await nodes.b.b2bua.presence.on_call(reads, nodes.b.users["bob"], datetime.now(UTC))


async def test_a_caller_the_exchange_answered_on_node_a_is_busy_for_node_b(
    tmp_path: Path, postgres_server: postgres.PostgresServer
) -> None:
    """A call the exchange itself answers (here: a colleague's voicemail takes Alice's call) is Alice's call as
    much as one a phone answered: with call waiting off, Carol's call through node B finds her busy, and her call
    is in the shared store that every node lists calls from. Before, it was known only to node A's own listing
    and to nobody's routing. Once she hangs up she is free again everywhere."""
    silence = {"voicemail_silence_seconds": 30.0}  # Alice says nothing: the voicemail keeps listening meanwhile
    async with two_nodes(tmp_path, await postgres_server.template_copy(), silence) as (a, b):
        nodes = Nodes(a, b)
        await nodes.add_user("alice", "201")
        await nodes.add_user("bob", "202")
        await nodes.add_user("carol", "203")
        await a.set_service("alice", CallWaiting(active=False))
        await a.set_service("bob", Voicemail(active=True))  # no phone of Bob's registered: voicemail at once
        alice = await call_until_told(a, "alice", "202")
        await answered_on(a, "alice", alice)
        [(call_id, _)] = await calls_elsewhere(b, "alice")  # what node B's API lists and forwards by
        assert [call.call_id for call in a.b2bua.calls] == [call_id]
        carol = await place_call(b, "carol", "201", "final_rejected.xml", status=486)
        await carol.succeeded()
        second = await b.next_call()
        assert second.outcome == "busy" and second.branches == []  # by Alice's plan: nothing rang
        busy = [row for row in await b.call_logs("alice") if row.outcome == "busy"]
        assert busy and busy[0].plan is not None and busy[0].plan["steps"][0]["line"] == 7
        await alice.hang_up()
        first = await a.next_call()
        assert first.outcome == "voicemail"
        await a.b2bua.presence.written()
        assert not a.b2bua.on_call(a.users["alice"]) and await calls_elsewhere(b, "alice") == []
        async with b.b2bua.snapshots.reads.connect() as reads:
            assert not await b.b2bua.presence.on_call(reads, b.users["alice"], datetime.now(UTC))


async def test_with_call_waiting_on_node_b_rings_a_waiting_call(nodes: Nodes) -> None:
    await nodes.add_user("alice", "201")
    await nodes.add_user("bob", "202")
    await nodes.add_user("carol", "203")
    await nodes.a.add_device("bob", "bob-second")
    # Bob answers Alice's call through node A on one phone; Carol's call through node B rings the other phone
    # as a waiting call.
    first = await phone(nodes.a, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(nodes.a, "alice", "202", "final_talks.xml", talk_ms=4000)
    await answered_on(nodes.a, "bob", first, alice)
    bob2 = await phone(nodes.a, "bob-second", "bob-second", scenario("callee.xml", ring_ms=100))
    carol = await place_call(nodes.b, "carol", "202", "final_talks.xml", talk_ms=500)
    await carol.succeeded()
    await alice.succeeded()
    await first.succeeded()
    await bob2.succeeded()
    assert (await nodes.b.next_call()).answered
    assert (await nodes.a.next_call()).answered
    rows = await nodes.b.call_logs("bob")
    waiting = [r for r in rows if r.plan is not None and "waiting call" in r.plan["steps"][0]["reason"]]
    assert len(waiting) == 1 and waiting[0].call_id != (await nodes.a.call_logs("alice"))[0].call_id


async def test_a_call_via_the_exchange_armed_through_node_a_goes_out_through_node_b(nodes: Nodes) -> None:
    await alice(nodes.a, method="via_exchange")
    nodes.b.users.update(nodes.a.users)
    async with serving_api(nodes.a) as api:
        headers = await api.login("alice")
        placed = await api.http.post("/api/v1/me/calls", json={"to": FAR}, headers=headers)
        assert placed.status_code == 202, placed.text
    checks = expect_headers(("From", SHOWN), ("P-Asserted-Identity", SHOWN))
    network = await trunk(nodes.b, "far", scenario("callee.xml", ring_ms=100, **checks), "-rtp_echo")
    handset = await start_sipp(nodes.b, "handset", handset_call("final_talks.xml", talk_ms=1000), "-s", ACCESS,
                               port=nodes.b.mobile_port)  # fmt: skip
    await handset.succeeded()
    await network.succeeded()
    assert (await nodes.b.next_call()).answered
    rows = await nodes.b.call_logs("alice")
    assert [(r.direction, r.remote_number, r.local_identity) for r in rows] == [("placed", FAR, ALICE_DIRECT)]
    # The announcement was used up: calling the access number again, through either node, is refused.
    again = await start_sipp(nodes.a, "handset-again", handset_call("final_rejected.xml", status=403), "-s", ACCESS,
                             port=nodes.a.mobile_port)  # fmt: skip
    await again.succeeded()
    assert not (await nodes.a.next_call()).answered


def handset_call(final: str, **values: object) -> str:
    """Alice's mobile calling in from the mobile network."""
    return scenario("trunk_caller.xml", final=final, user=ALICE_MOBILE, from_user=ALICE_MOBILE, display="Alice",
                    extra="", **values)  # fmt: skip


async def test_a_killed_nodes_calls_stop_counting_when_its_lease_runs_out(nodes: Nodes, tmp_path: Path) -> None:
    # A third node as a process of its own (tests/media_apps/exchange_process.py) carries Bob's call and is
    # killed with SIGKILL: it never says goodbye, its rows stay — and count only until its lease runs out.
    await nodes.add_user("alice", "201")
    await nodes.add_user("bob", "202")
    lease = 3.0
    bob = alice = None
    async with nodes.third_node(tmp_path, "node-c", lease) as (process, node_c_process):
        node_c = cast(Exchange, node_c_process)
        try:
            bob = await phone(nodes.a, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
            alice = await place_call(node_c, "alice", "202", "final_talks.xml", talk_ms=20000)
            async with asyncio.timeout(10):
                while not await on_call_for(nodes.b, "bob"):  # noqa: ASYNC110 - written by another process
                    await asyncio.sleep(0.05)
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
            async with asyncio.timeout(lease * 3):  # node C renewed every lease / 3 until it was killed
                while await on_call_for(nodes.b, "bob"):  # noqa: ASYNC110 - a lease running out in the database
                    await asyncio.sleep(0.1)
            await nodes.b.b2bua.presence.renew()  # any node's next renewal deletes what node C left
            async with nodes.b.sessions() as session:
                assert (await session.execute(select(func.count()).select_from(ActiveCall))).scalar_one() == 0
        finally:
            for sipp in (alice, bob):
                if sipp is not None:
                    with contextlib.suppress(TimeoutError):
                        await sipp.result(1)  # their call died with node C: stop them


async def on_call_for(exchange: Exchange, name: str) -> bool:
    """What routing on `exchange` reads for the user now (the snapshot's `on_call`)."""
    state = await exchange.b2bua.snapshots.state(exchange.users[name], datetime.now(UTC))
    assert state is not None
    return state.on_call


async def test_a_call_ringing_on_node_a_is_known_to_node_b_without_making_the_user_busy(nodes: Nodes) -> None:
    """Bob's phone rings for alice's call on node A: once it has rung a moment node B knows where (its API lists
    the call and sends its control there, docs/scale-out.md), yet routes Bob as free; the row goes with the ring."""
    await nodes.add_user("alice", "201")
    await nodes.add_user("bob", "202")
    await nodes.a.set_service("bob", Voicemail(active=False))  # it rings until alice gives up
    bob = await phone(nodes.a, "bob", "bob", scenario("callee_rings.xml"))  # rings until cancelled
    alice = await place_call(
        nodes.a, "alice", "202", "final_cancel.xml", ring_ms=5000,
        provisional='<recv response="100" optional="true" />\n  <recv response="180" />',
    )  # fmt: skip
    async with asyncio.timeout(5):
        while not await calls_elsewhere(nodes.b, "bob"):  # noqa: ASYNC110 - a row node A writes
            await asyncio.sleep(0.05)
    [(call_id, _)] = await calls_elsewhere(nodes.b, "bob")
    assert [summary.call_id for summary in nodes.a.b2bua.calls] == [call_id]
    assert not await on_call_for(nodes.b, "bob")  # ringing is not busy: a second call rings him too
    await alice.succeeded()  # it gave up: CANCEL, 487
    await bob.succeeded()
    await nodes.a.next_call()
    await nodes.a.b2bua.presence.written()
    assert await calls_elsewhere(nodes.b, "bob") == []


async def calls_elsewhere(exchange: Exchange, name: str) -> list[tuple[str, str]]:
    """The user's calls on other live nodes as `exchange` finds them (its API lists and forwards by these)."""
    async with exchange.sessions() as session:
        return await active_calls.calls_elsewhere(
            session, exchange.users[name], exchange.settings.node_id, datetime.now(UTC)
        )
