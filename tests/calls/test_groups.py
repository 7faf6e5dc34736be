"""Hunt groups and call centers on real calls (SPEC J1–J3, K): SIPp phones, the trunk and the mobile network.

Rings are 1 s here (`seconds_per_ring`), so a linear group gives each member 3 s (`hunt_member_rings`) and a
call-center agent is offered a call for 3 s (`queue_agent_rings`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hipper.api.app import create_app
from hipper.apps.groups import queues
from hipper.domain.services import FixedMobile
from hipper.store import admin, group_calls
from hipper.store.models import ActiveCall, Company, User
from tests.calls.conftest import (
    Exchange,
    Sipp,
    expect_headers,
    phone,
    place_call,
    register,
    scenario,
    start_sipp,
)
from tests.sip.peers import free_udp_port

pytestmark = pytest.mark.sip

OUTSIDE = "+31301234567"
HUNT_NUMBER = "+31201234500"
QUEUE_NUMBER = "+31201234600"
BOB_MOBILE = "+31612340002"


async def queued(exchange: Exchange, count: int, limit: float = 20.0) -> None:
    """Wait until `count` calls wait in this node's call-center queue (not a fixed sleep: SIPp and the call's
    routing take their time on a loaded machine, and the test's order of arrival must be the real one)."""
    async with asyncio.timeout(limit):
        while len(queues(exchange.b2bua).entries) < count:  # noqa: ASYNC110 - the queue is a list, no event
            await asyncio.sleep(0.05)


async def call_from_trunk(exchange: Exchange, dialled: str, *, talk_ms: int = 1000, status: int | None = None) -> Sipp:
    values: dict[str, Any] = {"user": OUTSIDE, "from_user": OUTSIDE, "display": "Outside", "extra": ""}
    if status is None:
        text = scenario("trunk_caller.xml", final="final_talks.xml", talk_ms=talk_ms, **values)
    else:
        text = scenario("trunk_caller.xml", final="final_rejected.xml", status=status, **values)
        text = text.replace("[branch-5]", "[branch-4]")
    return await start_sipp(exchange, "trunk-caller", text, "-s", dialled, port=exchange.trunk_port, limit=40)


async def hunt_group(exchange: Exchange, policy: str, members: list[str]) -> int:
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        group = await admin.create_hunt_group(
            session, company, "Reception", number=HUNT_NUMBER, extension="500", policy=policy,
            member_user_ids=[exchange.users[name] for name in members],
        )  # fmt: skip
        await session.commit()
        return group.id


async def call_center(exchange: Exchange, members: list[str], wrap_up_seconds: int = 2) -> int:
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        center = await admin.create_call_center(
            session, company, "Helpdesk", number=QUEUE_NUMBER, extension="600", wrap_up_seconds=wrap_up_seconds
        )
        for name in members:
            user = await session.get(User, exchange.users[name])
            assert user is not None
            await admin.add_call_center_member(session, center, user)
        await session.commit()
        return center.id


class Api:
    """The HTTP API on the exchange's database, as the agent's app uses it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.tokens: dict[str, dict[str, str]] = {}

    async def _headers(self, name: str) -> dict[str, str]:
        if name not in self.tokens:
            response = await self.http.post(
                "/api/v1/auth/login", json={"username": name, "password": "correct horse 1"}
            )
            assert response.status_code == 200, response.text
            self.tokens[name] = {"Authorization": f"Bearer {response.json()['token']}"}
        return self.tokens[name]

    async def agent(self, name: str) -> dict[str, Any]:
        response = await self.http.get("/api/v1/me/services/call-center-agent", headers=await self._headers(name))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def agent_in(self, state: str, name: str, limit: float = 5.0) -> dict[str, Any]:
        """The agent document once it shows `state`: the wrap-up is stored by the call's end, just after it."""
        async with asyncio.timeout(limit):
            while (shown := await self.agent(name))["state"] != state:  # noqa: ASYNC110 - the API has no push here
                await asyncio.sleep(0.1)
        return shown

    async def change_agent(self, name: str, **changes: Any) -> dict[str, Any]:
        response = await self.http.put(
            "/api/v1/me/services/call-center-agent", json=changes, headers=await self._headers(name)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def api(exchange: Exchange) -> AsyncIterator[Api]:
    app = create_app(exchange.settings, run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hipper.test") as http:
            yield Api(http)
    finally:
        await app.state.hipper.engine.dispose()


async def rows(exchange: Exchange, name: str) -> list[tuple[str, str, str]]:
    return [(r.direction, r.outcome, r.local_identity) for r in await exchange.call_logs(name)]


# -- hunt groups ---------------------------------------------------------------------------------------------


async def test_a_simultaneous_hunt_group_rings_every_member_at_once(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await hunt_group(exchange, "simultaneous", ["bob", "carol"])
    # Members see the group's name before the caller's, and the caller's own number.
    checks = expect_headers(("To", rf"sip:\{HUNT_NUMBER}@"), ("From", rf"Reception: Outside. <sip:\{OUTSIDE}@"))
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml", **checks))
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=500, **checks), "-rtp_echo")
    outside = await call_from_trunk(exchange, HUNT_NUMBER)
    await outside.succeeded()
    await carol.succeeded()
    await bob.succeeded()  # bob rang too, and was cancelled when carol answered
    call = await exchange.next_call()
    assert call.answered and sorted(call.branches) == [("desk", 200), ("desk", 487)]
    assert await rows(exchange, "carol") == [("received", "answered", HUNT_NUMBER)]
    assert await rows(exchange, "bob") == []  # a colleague took it: no missed call for bob


async def test_a_linear_hunt_group_rings_the_next_member_only_after_the_first_ones_time(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await hunt_group(exchange, "linear", ["bob", "carol"])
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    carol = await phone(exchange, "carol", "carol", scenario("callee.xml", ring_ms=100))
    outside = await call_from_trunk(exchange, HUNT_NUMBER)
    await outside.succeeded()
    await bob.succeeded()
    await carol.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 487), ("desk", 200)]  # bob first, then carol
    [row] = await exchange.call_logs("carol")
    assert row.answered_at is not None
    # Bob had his 3 s (3 rings of 1 s) before carol's phone was even invited.
    assert row.answered_at - row.started_at >= timedelta(seconds=2.9)
    assert row.plan is not None and row.plan["policy"] == "linear" and len(row.plan["rounds"]) == 2


async def test_a_circular_hunt_group_starts_after_the_member_who_took_the_last_call(exchange: Exchange) -> None:
    """Internal calls to the group's extension; the first call is taken by bob, so the next one starts at carol."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await hunt_group(exchange, "circular", ["bob", "carol"])
    carol_port = free_udp_port()
    await register(exchange, "carol", carol_port)  # registered, but nothing answers there during the first call
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100))
    alice = await place_call(exchange, "alice", "500", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await bob.succeeded()
    first = await exchange.next_call()
    assert first.answered and first.branches == [("desk", 200)]

    carol = await start_sipp(exchange, "carol", scenario("callee.xml", ring_ms=100), port=carol_port)
    alice = await place_call(exchange, "alice", "500", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await carol.succeeded()
    second = await exchange.next_call()
    assert second.answered and second.branches == [("desk", 200)]  # carol at once: bob is not rung first
    assert await rows(exchange, "carol") == [("received", "answered", "500")]
    assert [r.direction for r in await exchange.call_logs("alice")] == ["placed", "placed"]


async def test_a_hunt_group_skips_a_member_in_do_not_disturb_and_is_486_when_nobody_is_left(
    exchange: Exchange,
) -> None:
    from hipper.domain.services import DoNotDisturb

    await exchange.add_user("bob", "202")
    await hunt_group(exchange, "simultaneous", ["bob"])
    await register(exchange, "bob", free_udp_port())
    await exchange.set_service("bob", DoNotDisturb(active=True))
    outside = await call_from_trunk(exchange, HUNT_NUMBER, status=486)
    await outside.succeeded()
    call = await exchange.next_call()
    assert not call.answered and call.branches == []
    assert await rows(exchange, "bob") == []  # never alerted: no row


async def test_a_member_with_group_calls_to_mobile_is_rung_on_the_mobile_network_too(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    await exchange.set_service("bob", FixedMobile(group_calls_to_mobile=True))
    await hunt_group(exchange, "simultaneous", ["bob"])
    desk = await phone(exchange, "bob", "desk", scenario("callee_rings.xml"))
    handset_checks = expect_headers(("To", rf"sip:\{HUNT_NUMBER}@"))
    handset_checks["check"] = handset_checks["check"].replace(
        "</action>",
        '<ereg regexp="^INVITE sip:9\\+31612340002@" search_in="msg" check_it="true" assign_to="uri" /></action>',
    )
    handset_checks["refs"] = '<Reference variables="seen0,uri" />'
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=300, **handset_checks), port=exchange.mobile_port
    )
    outside = await call_from_trunk(exchange, HUNT_NUMBER)
    await outside.succeeded()
    await handset.succeeded()
    await desk.succeeded()
    call = await exchange.next_call()
    assert call.answered and sorted(call.branches) == [("desk", 487), ("mobile", 200)]
    assert await rows(exchange, "bob") == [("received", "answered", HUNT_NUMBER)]


async def test_without_group_calls_to_mobile_only_the_desk_phone_rings(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202", mobile=BOB_MOBILE)
    await exchange.set_service("bob", FixedMobile(group_calls_to_mobile=False))
    await hunt_group(exchange, "simultaneous", ["bob"])
    desk = await phone(exchange, "bob", "desk", scenario("callee.xml", ring_ms=200))
    outside = await call_from_trunk(exchange, HUNT_NUMBER)
    await outside.succeeded()
    await desk.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]


# -- call centers --------------------------------------------------------------------------------------------


async def test_a_call_center_call_goes_only_to_the_available_agent_who_then_wraps_up(
    exchange: Exchange, api: Api
) -> None:
    for name, extension in (("alice", "201"), ("bob", "202"), ("carol", "203"), ("dave", "204")):
        await exchange.add_user(name, extension)
    await call_center(exchange, ["alice", "bob", "carol", "dave"], wrap_up_seconds=2)
    # Dave is available (and idle longer than alice) but left the queue (J3).
    center = (await api.agent("dave"))["call_centers"][0]["id"]
    await api.change_agent("dave", state="available", call_centers=[{"id": center, "joined": False}])
    await api.change_agent("alice", state="available")
    await api.change_agent("bob", state="unavailable")
    await api.change_agent("carol", state="signed_out")
    for name in ("bob", "carol", "dave"):
        await register(exchange, name, free_udp_port())  # reachable phones: any INVITE would show as a branch
    checks = expect_headers(("To", rf"sip:\{QUEUE_NUMBER}@"))
    alice = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=200, **checks), "-rtp_echo")
    outside = await call_from_trunk(exchange, QUEUE_NUMBER)
    await outside.succeeded()
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    assert await rows(exchange, "alice") == [("received", "answered", QUEUE_NUMBER)]
    for name in ("bob", "carol", "dave"):
        assert await rows(exchange, name) == []

    # The call ended: alice wraps up (stored, so the app shows it), then is available again by herself.
    shown = await api.agent_in("wrap_up", "alice")
    assert shown["wrap_up_until"] is not None
    await asyncio.sleep(2.2)
    assert (await api.agent("alice"))["state"] == "available"


async def one_caller_waits_for_alice(exchange: Exchange, api: Api) -> tuple[Sipp, Sipp]:
    """Alice, the call center's one agent, is unavailable; a caller from outside waits in the queue (answered by
    it: hold prompt and tone, on for 6 s in all). Her phone and the caller."""
    await exchange.add_user("alice", "201")
    await call_center(exchange, ["alice"], wrap_up_seconds=30)
    await api.change_agent("alice", state="unavailable")
    alice = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=200), "-rtp_echo")
    outside = await call_from_trunk(exchange, QUEUE_NUMBER, talk_ms=6000)
    await queued(exchange, 1)
    return alice, outside


async def test_a_queued_caller_waits_and_gets_the_agent_who_becomes_available(exchange: Exchange, api: Api) -> None:
    alice, outside = await one_caller_waits_for_alice(exchange, api)
    await asyncio.sleep(1.0)  # the queue looks again meanwhile (queue_poll_seconds): alice is still unavailable
    assert exchange.b2bua.calls and not any(c.connected for c in exchange.b2bua.calls)
    await api.change_agent("alice", state="available")
    await outside.succeeded()
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    [row] = await exchange.call_logs("alice")
    assert (row.direction, row.outcome) == ("received", "answered")
    assert row.plan is not None and row.plan["kind"] == "call_center"
    await api.agent_in("wrap_up", "alice")


async def test_a_colleague_waiting_in_the_queue_is_on_a_call_once_and_free_after_the_agents_answer(
    exchange: Exchange, api: Api
) -> None:
    """Bob calls the call center from his desk phone. The queue answers him, so he is on a call while he waits (a
    second call would find him busy). When alice takes the call, he is still on it once, and once it ends he is free
    again: being answered twice (by the queue, then by her phone) does not count him twice."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await call_center(exchange, ["alice"], wrap_up_seconds=30)
    await api.change_agent("alice", state="unavailable")
    alice = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=200), "-rtp_echo")
    bob = await place_call(exchange, "bob", "600", "final_talks.xml", talk_ms=4000)
    await queued(exchange, 1)
    bob_id = exchange.users["bob"]
    assert exchange.b2bua.on_call(bob_id) and not any(c.connected for c in exchange.b2bua.calls)
    await api.change_agent("alice", state="available")
    await bob.succeeded()
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    assert not exchange.b2bua.on_call(bob_id) and not exchange.b2bua.on_call(exchange.users["alice"])
    await exchange.b2bua.presence.written()
    async with exchange.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(ActiveCall))).scalar_one() == 0
    await api.agent_in("wrap_up", "alice")


async def test_each_look_at_the_queue_reads_in_one_session(
    exchange: Exchange, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting caller's queue looks at its place in line and, first in line, at the agents every
    queue_poll_seconds: both in one database session (it was a session for each, per waiting caller per poll)."""
    reads: list[tuple[str, object]] = []  # the sessions themselves, kept alive: a freed one's id could be reused
    looked_twice = asyncio.Event()
    view_of, members_of = group_calls.queue_view, group_calls.queue_members

    async def queue_view(session: Any, *args: Any) -> group_calls.QueueView:
        reads.append(("view", session))
        return await view_of(session, *args)

    async def queue_members(session: Any, call_center_id: int) -> list[group_calls.QueueMember]:
        reads.append(("members", session))
        if sum(kind == "members" for kind, _ in reads) >= 2:
            looked_twice.set()
        return await members_of(session, call_center_id)

    monkeypatch.setattr(group_calls, "queue_view", queue_view)
    monkeypatch.setattr(group_calls, "queue_members", queue_members)
    alice, outside = await one_caller_waits_for_alice(exchange, api)
    await asyncio.wait_for(looked_twice.wait(), 15)
    for index, (kind, session) in enumerate(reads):
        if kind == "members":
            assert reads[index - 1] == ("view", session), reads
    await api.change_agent("alice", state="available")
    await outside.succeeded()
    await alice.succeeded()


async def test_a_call_center_without_a_signed_in_agent_is_480(exchange: Exchange, api: Api) -> None:
    await exchange.add_user("alice", "201")
    await call_center(exchange, ["alice"])
    await api.change_agent("alice", state="signed_out")
    outside = await call_from_trunk(exchange, QUEUE_NUMBER, status=480)
    await outside.succeeded()
    call = await exchange.next_call()
    assert not call.answered and call.branches == []


@pytest.mark.parametrize("exchange", [{"queue_max_wait_seconds": 2.0}], indirect=True)
async def test_a_queued_caller_is_told_and_let_go_after_the_longest_wait(exchange: Exchange, api: Api) -> None:
    await exchange.add_user("alice", "201")
    await call_center(exchange, ["alice"])
    await api.change_agent("alice", state="unavailable")
    # Answered by the queue; the exchange hangs up after 2 s and the announcement (the caller never hangs up).
    text = scenario(
        "trunk_caller.xml", final="final_application.xml", user=OUTSIDE, from_user=OUTSIDE, display="Outside",
        extra="",
    )  # fmt: skip
    outside = await start_sipp(exchange, "trunk-caller", text, "-s", QUEUE_NUMBER, port=exchange.trunk_port)
    await outside.succeeded(40)
    call = await exchange.next_call()
    assert not call.answered and call.branches == []


async def test_a_queued_call_goes_to_the_agent_whose_wrap_up_ends(exchange: Exchange, api: Api) -> None:
    from datetime import UTC, datetime

    from hipper.store import call_centers

    await exchange.add_user("alice", "201")
    center = await call_center(exchange, ["alice"], wrap_up_seconds=3)
    await api.change_agent("alice", state="available")
    alice = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=200))
    # Alice just finished a call of this call center (what the exchange writes when such a call ends).
    async with exchange.sessions() as session:
        await call_centers.call_center_call_ended(session, exchange.users["alice"], center, datetime.now(UTC))
        await session.commit()
    assert (await api.agent("alice"))["state"] == "wrap_up"
    outside = await call_from_trunk(exchange, QUEUE_NUMBER, talk_ms=6000)
    await outside.succeeded()
    await alice.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    [row] = await exchange.call_logs("alice")
    assert row.answered_at is not None and row.answered_at - row.started_at >= timedelta(seconds=1.5)


async def test_queued_callers_are_served_first_come_first_served(exchange: Exchange, api: Api) -> None:
    """Two callers wait; the one agent takes the first caller, then (no wrap-up) the second."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await call_center(exchange, ["alice"], wrap_up_seconds=0)
    await api.change_agent("alice", state="unavailable")
    alice = await phone(exchange, "alice", "alice", scenario("callee.xml", ring_ms=200), "-m", "2", limit=40)
    first = await call_from_trunk(exchange, QUEUE_NUMBER, talk_ms=5000)  # from its queue answer on
    await queued(exchange, 1)  # in line before the second call is even placed, however slow SIPp starts
    second = await place_call(exchange, "bob", "600", "final_talks.xml", talk_ms=10000, limit=40)
    await queued(exchange, 2)
    await api.change_agent("alice", state="available")
    await first.succeeded(40)
    await second.succeeded(40)
    await alice.succeeded(40)
    calls = [await exchange.next_call(), await exchange.next_call()]
    assert all(call.answered and call.branches == [("desk", 200)] for call in calls)
    taken = sorted(await exchange.call_logs("alice"), key=lambda row: row.answered_at or row.started_at)
    assert [(row.direction, row.remote_number) for row in taken] == [("received", OUTSIDE), ("received", "202")]


async def test_an_agent_with_calls_to_mobile_is_offered_queue_calls_on_the_mobile_too(
    exchange: Exchange, api: Api
) -> None:
    await exchange.add_user("alice", "201", mobile="+31612340001")
    await call_center(exchange, ["alice"])
    await api.change_agent("alice", state="available", calls_to_mobile=True)  # J2: stored as fixed-mobile's option
    desk = await phone(exchange, "alice", "desk", scenario("callee_rings.xml"))
    checks = expect_headers(("To", rf"sip:\{QUEUE_NUMBER}@"))
    handset = await start_sipp(
        exchange, "handset", scenario("callee.xml", ring_ms=300, **checks), port=exchange.mobile_port
    )
    outside = await call_from_trunk(exchange, QUEUE_NUMBER)
    await outside.succeeded()
    await handset.succeeded()
    await desk.succeeded()
    call = await exchange.next_call()
    assert call.answered and sorted(call.branches) == [("desk", 487), ("mobile", 200)]
    assert await rows(exchange, "alice") == [("received", "answered", QUEUE_NUMBER)]


async def test_a_hunt_group_call_nobody_answers_is_a_missed_call_for_every_member_who_rang(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    await exchange.add_user("carol", "203")
    await exchange.add_user("dave", "204")
    await hunt_group(exchange, "linear", ["bob", "carol", "dave"])  # dave has no phone: skipped, no row
    bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    carol = await phone(exchange, "carol", "carol", scenario("callee_rings.xml"))
    outside = await call_from_trunk(exchange, HUNT_NUMBER, status=480)
    await outside.succeeded()
    await bob.succeeded()
    await carol.succeeded()
    call = await exchange.next_call()
    # Both rang in turn (carol's 487 to the CANCEL may come after the summary is taken).
    assert not call.answered and [label for label, _status in call.branches] == ["desk", "desk"]
    assert await rows(exchange, "bob") == [("missed", "no-answer", HUNT_NUMBER)]
    assert await rows(exchange, "carol") == [("missed", "no-answer", HUNT_NUMBER)]
    assert await rows(exchange, "dave") == []


async def test_a_queued_caller_written_off_while_the_nodes_lease_lapsed_still_gets_an_agent(
    exchange: Exchange, api: Api
) -> None:
    """A node whose lease lapsed for a moment (a stall, a database hiccup) has its waiting callers written off by a
    survivor (store/active_calls.py `purge_expired` -> `lose_queued_calls`, here called as the survivor would) while
    they are still on the line here: the caller's next claim puts them back in line, and the free agent gets the
    call (before, every claim failed and the caller heard the queue until queue_max_wait_seconds)."""
    alice, outside = await one_caller_waits_for_alice(exchange, api)
    async with exchange.sessions() as session:
        written_off = await group_calls.lose_queued_calls(session, [exchange.b2bua.presence.node_id], datetime.now(UTC))
        await session.commit()
    assert written_off == 1
    await api.change_agent("alice", state="available")
    async with asyncio.timeout(5):  # the queue looks every queue_poll_seconds (1 s)
        while not any(call.connected for call in exchange.b2bua.calls):  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
    await outside.succeeded()
    await alice.succeeded()
