"""A call-center queue served by two exchange nodes on one PostgreSQL database (issue 13; docs/scale-out.md
"Call-center queues"): the queue is `call_center_calls` rows every node reads, so a caller who came in through
node A is offered to an agent whose phone registered through node B, positions count the callers waiting on
every node, an agent is offered one queue call at a time whatever node claims them, and a node that dies leaves
its waiting callers written off as lost by a survivor — once.

Each node is a whole exchange in this process (tests/calls/test_two_nodes.py); the node that is killed is a
process of its own (tests/media_apps/exchange_process.py)."""

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
from sqlalchemy import select, text

from hipper.domain.agent_state import AcdState
from hipper.domain.services import CallCenterAgent
from hipper.media.g711 import Pcm
from hipper.media.prompts import prompt_path
from hipper.media.wavfile import read_wav
from hipper.store import group_calls
from hipper.store.models import CallCenterCall
from tests.calls.conftest import Exchange, Nodes, Sipp, phone, scenario, start_sipp, two_nodes
from tests.calls.test_groups import OUTSIDE, QUEUE_NUMBER, call_center, call_from_trunk
from tests.media_apps.conftest import Ear, call_from_phone, ear
from tests.media_apps.test_voicemail_greetings import match
from tests.support import postgres

pytestmark = [pytest.mark.sip, pytest.mark.postgres]

RINGBACK_HZ = 425.0  # the hold tone a queued caller hears after the announcement (media/tones.py)
ANNOUNCE_SECONDS = 3.0  # how often a waiting caller hears their place again


class QueueNodes(Nodes):
    async def agent(self, name: str, state: AcdState) -> None:
        await self.a.set_service(name, CallCenterAgent(state=state, state_since=datetime.now(UTC)))

    async def queue(self) -> list[CallCenterCall]:
        async with self.a.sessions() as session:
            return list((await session.execute(select(CallCenterCall).order_by(CallCenterCall.id))).scalars())

    async def until_waiting_on_a_lock(self, limit: float = 10.0) -> None:
        """Until a statement of this database waits on a lock another transaction holds (PostgreSQL says so)."""
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        async with asyncio.timeout(limit):
            while True:
                async with self.a.sessions() as session:
                    if (await session.execute(waiting)).scalar_one():
                        return
                await asyncio.sleep(0.02)

    async def until_queued(self, waiting: int, limit: float = 20.0) -> None:
        """Until `waiting` callers wait in the shared queue (whichever node took them)."""
        async with asyncio.timeout(limit):
            while sum(row.state in group_calls.WAITING for row in await self.queue()) < waiting:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # rows written by the nodes' call tasks: no event to wait on


@pytest.fixture
async def nodes(tmp_path: Path, postgres_server: postgres.PostgresServer) -> AsyncIterator[QueueNodes]:
    url = await postgres_server.template_copy()
    async with two_nodes(tmp_path, url, {"queue_announce_seconds": ANNOUNCE_SECONDS}) as (a, b):
        yield QueueNodes(a, b)


def numbers_heard(heard: Pcm) -> tuple[float, float]:
    """How well "one" and "two" match what a caller heard (about 0.999 for a word said, 0.3 for another)."""
    return match(heard, read_wav(prompt_path("en", "n1"))), match(heard, read_wav(prompt_path("en", "n2")))


async def position_heard(caller: Ear) -> tuple[float, float]:
    """The words a queued caller heard until the hold tone after the first announcement: "one" and "two"."""
    await caller.wait_for_tone(RINGBACK_HZ, limit=30)  # after the words: the hold tone
    return numbers_heard(caller.audio())


async def test_a_caller_through_node_a_gets_the_agent_registered_through_node_b_and_positions_count_both_nodes(
    nodes: QueueNodes,
) -> None:
    for name, extension in (("alice", "201"), ("bob", "202"), ("carol", "203")):
        await nodes.add_user(name, extension)
    await call_center(nodes.a, ["alice"], wrap_up_seconds=60)  # after her call she stays in wrap-up
    await nodes.agent("alice", AcdState.AVAILABLE)
    agent = await phone(nodes.b, "alice", "alice", scenario("callee.xml", ring_ms=200), "-rtp_echo")
    first = await call_from_trunk(nodes.a, QUEUE_NUMBER, talk_ms=1000)
    await first.succeeded()
    await agent.succeeded()
    call = await nodes.a.next_call()
    assert call.answered and call.branches == [("desk", 200)]  # node A rang the phone node B registered
    [row] = await nodes.b.call_logs("alice")
    assert (row.direction, row.outcome, row.remote_number) == ("received", "answered", OUTSIDE)

    # Alice wraps up: the next callers wait. Bob's call comes in through node B, then Carol's through node A,
    # which counts Bob's: she is second in line.
    bob, carol = await ear(), await ear()
    try:
        bob_call = await call_from_phone(nodes.b, "bob", "600", bob, "end_hang_up.xml", talk_ms=15000)
        await nodes.until_queued(1)
        carol_call = await call_from_phone(nodes.a, "carol", "600", carol, "end_hang_up.xml", talk_ms=25000)
        one, two = await position_heard(bob)
        assert one > 0.95 and two < 0.6, (one, two)
        one, two = await position_heard(carol)
        assert two > 0.95 and one < 0.6, (one, two)
        # Bob gives up: Carol moves up, and the next time she is told her place it is "one".
        await bob_call.succeeded(40)
        moved_up = len(carol.audio())
        async with asyncio.timeout(ANNOUNCE_SECONDS + 8):
            while True:  # polled: the heard audio has no event to wait on
                since = carol.audio()[moved_up:]
                if len(since) > 8000 and numbers_heard(since)[0] > 0.95:
                    break
                await asyncio.sleep(0.2)
        await carol_call.succeeded(40)
    finally:
        bob.close()
        carol.close()
    # Their calls ended on the nodes (each call leaves the queue before it ends).
    assert not (await nodes.b.next_call()).answered and not (await nodes.a.next_call()).answered
    rows = await nodes.queue()
    assert [(r.node_id, r.state, r.outcome, r.agent_user_id) for r in rows] == [
        ("node-a", "ended", "answered", nodes.a.users["alice"]),
        ("node-b", "ended", "abandoned", None),
        ("node-a", "ended", "abandoned", None),
    ]


async def test_two_nodes_claiming_one_agent_at_once_never_both_get_them(nodes: QueueNodes) -> None:
    """The claim race itself, made to happen: node A's claim is not committed yet when node B's arrives; B's
    waits for it (the partial unique index) and is refused once A commits. Then the agent is free again."""
    await nodes.add_user("alice", "201")
    first = await call_center(nodes.a, ["alice"])
    now = datetime.now(UTC)
    async with nodes.a.sessions() as session:
        a_entry = await group_calls.enter_queue(session, first, "node-a", "call-a", (OUTSIDE, ""), now)
        b_entry = await group_calls.enter_queue(session, first, "node-b", "call-b", (OUTSIDE, ""), now)
        await session.commit()
    alice = nodes.a.users["alice"]
    async with nodes.a.sessions() as on_a, nodes.b.sessions() as on_b:
        assert await group_calls.claim_agent(on_a, a_entry, alice)
        racing = asyncio.ensure_future(group_calls.claim_agent(on_b, b_entry, alice))
        await nodes.until_waiting_on_a_lock()
        assert not racing.done()  # PostgreSQL holds B's claim until A's transaction ends
        await on_a.commit()
        assert not await racing
        await on_b.commit()
    rows = await nodes.queue()
    assert [(r.state, r.agent_user_id) for r in rows] == [("offering", alice), ("waiting", None)]
    async with nodes.b.sessions() as session:
        view = await group_calls.queue_view(session, b_entry, first, "node-b", datetime.now(UTC))
        assert view.held == {alice} and view.position == 2 and view.first_in_line
        # A's offer ends unanswered: the agent is free for B's call.
        await group_calls.queue_state(session, a_entry, "waiting")
        assert await group_calls.claim_agent(session, b_entry, alice)
        await session.commit()


async def test_a_killed_nodes_waiting_caller_is_written_off_as_lost_once(
    nodes: QueueNodes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await nodes.add_user("alice", "201")
    await call_center(nodes.a, ["alice"])
    await nodes.agent("alice", AcdState.UNAVAILABLE)  # signed in, not taking calls: callers wait
    caplog.set_level("WARNING", logger="hipper.store.group_calls")
    lease = 3.0
    caller: Sipp | None = None
    async with nodes.third_node(tmp_path, "node-c", lease) as (process, node_c_process):
        node_c = cast(Exchange, node_c_process)
        try:
            text = scenario("trunk_caller.xml", final="final_talks.xml", talk_ms=30000, user=OUTSIDE,
                            from_user=OUTSIDE, display="Outside", extra="")  # fmt: skip
            caller = await start_sipp(node_c, "trunk-caller", text, "-s", QUEUE_NUMBER, port=nodes.a.trunk_port)
            await nodes.until_queued(1)
            # Node B counts node C's caller while node C lives.
            async with nodes.b.sessions() as session:
                [row] = await nodes.queue()
                view = await group_calls.queue_view(
                    session, row.id + 1, row.call_center_id, "node-b", datetime.now(UTC)
                )
                assert view.position == 2
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
            # Both survivors do their housekeeping at the same moment once node C's lease has run out: one of them
            # writes the caller off, the other finds nothing left to do.
            await asyncio.sleep(lease)
            async with asyncio.timeout(lease * 3):
                while True:
                    await asyncio.gather(nodes.a.b2bua.presence.renew(), nodes.b.b2bua.presence.renew())
                    if (await nodes.queue())[0].state == "ended":
                        break
                    await asyncio.sleep(0.2)
            await asyncio.gather(nodes.a.b2bua.presence.renew(), nodes.b.b2bua.presence.renew())
        finally:
            if caller is not None:
                with contextlib.suppress(TimeoutError):
                    await caller.result(1)  # its call died with node C: stop it
    [row] = await nodes.queue()
    assert (row.node_id, row.state, row.outcome) == ("node-c", "ended", group_calls.LOST)
    assert row.ended_at is not None
    lost = [r for r in caplog.records if r.getMessage() == "call_center.caller_lost"]
    assert len(lost) == 1 and getattr(lost[0], "call_id", "") == row.call_id
