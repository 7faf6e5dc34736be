"""A call-center queue served by agents on both nodes behind the Kamailio edge (issue 13; docs/scale-out.md
"Call-center queues"): callers reach whichever node the edge picks, agents' phones registered through either
node, and each agent is offered one queue call at a time whichever node offers it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hipper.domain.agent_state import AcdState
from hipper.domain.services import CallCenterAgent
from hipper.store import admin, service_settings
from hipper.store.db import create_engine, session_factory
from hipper.store.models import CallCenterCall, Company, User
from tests.calls.conftest import phone, place_call, scenario
from tests.scale.conftest import Cluster
from tests.scale.test_edge import via

pytestmark = [pytest.mark.sip, pytest.mark.postgres]


async def call_center(cluster: Cluster, agents: list[str]) -> None:
    """Call center "Helpdesk" on extension 600 with these agents available; the first one idle the longest."""
    engine = create_engine(cluster.database_url)
    try:
        async with session_factory(engine)() as session:
            first = await session.get(User, cluster.users[agents[0]])
            assert first is not None
            company = await session.get(Company, first.company_id)
            assert company is not None
            center = await admin.create_call_center(session, company, "Helpdesk", extension="600", wrap_up_seconds=30)
            since = datetime.now(UTC) - timedelta(minutes=len(agents))
            for name in agents:
                user = await session.get(User, cluster.users[name])
                assert user is not None
                await admin.add_call_center_member(session, center, user)
                agent = CallCenterAgent(state=AcdState.AVAILABLE, state_since=since)
                await service_settings.save(session, user.id, agent)
                since += timedelta(minutes=1)
            await session.commit()
    finally:
        await engine.dispose()


async def queue_rows(cluster: Cluster) -> list[tuple[str, str, int | None]]:
    engine = create_engine(cluster.database_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(select(CallCenterCall).order_by(CallCenterCall.id))
            return [(row.node_id, row.outcome, row.agent_user_id) for row in rows.scalars()]
    finally:
        await engine.dispose()


async def test_callers_through_both_nodes_are_served_by_agents_registered_through_both(cluster: Cluster) -> None:
    await call_center(cluster, ["alice", "bob"])  # alice first: idle longer
    await cluster.edge.only(cluster.a)
    alice = await phone(via(cluster), "alice", "alice", scenario("callee.xml", ring_ms=200), "-rtp_echo")
    await cluster.edge.only(cluster.b)
    bob = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=200), "-rtp_echo")
    # Carol's call goes to node B, which offers it to Alice (her phone registered through node A); while she
    # talks, Dave's call through node A goes to Bob (registered through node B): Alice is held by Carol's call.
    carol = await place_call(via(cluster), "carol", "600", "final_talks.xml", talk_ms=4000)
    await cluster.answered_on(cluster.b, "alice")
    await cluster.edge.only(cluster.a)
    dave = await place_call(via(cluster), "dave", "600", "final_talks.xml", talk_ms=500)
    await dave.succeeded()
    await bob.succeeded()
    await carol.succeeded()
    await alice.succeeded()
    assert await cluster.registered_through("alice") == {"node-a"}
    assert await cluster.registered_through("bob") == {"node-b"}
    assert [(node, agent) for node, _outcome, agent in await queue_rows(cluster)] == [
        ("node-b", cluster.users["alice"]),
        ("node-a", cluster.users["bob"]),
    ]
