"""Two exchange nodes behind the Kamailio edge, one PostgreSQL (docs/scale-out.md): phones register and call
through the edge only, whichever node takes a dialog routes it alike, and a node killed with SIGKILL costs only
its own calls."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import cast

import httpx
import pytest

from tests.calls.conftest import Exchange, call_until_told, phone, place_call, scenario
from tests.scale.conftest import Cluster
from tests.security.conftest import attacker, flood
from tests.support.exchange_process import ExchangeProcess

pytestmark = [pytest.mark.sip, pytest.mark.postgres]

CALL_WAITING = "/api/v1/me/services/call-waiting"


def via(cluster: Cluster) -> Exchange:
    """The SIPp helpers take an exchange for its port and working directory: here the edge's."""
    return cast(Exchange, cluster)


async def test_phones_registered_through_different_nodes_call_each_other(cluster: Cluster) -> None:
    await cluster.edge.only(cluster.a)
    bob = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    await cluster.edge.only(cluster.b)
    alice = await place_call(via(cluster), "alice", "202", "final_talks.xml", "-cid_str", "cross-%u", talk_ms=500)
    await alice.succeeded()
    await bob.succeeded()
    assert await cluster.registered_through("bob") == {"node-a"}
    # Node B carried the call (its one line per call), to a phone whose binding node A wrote.
    await cluster.wait_in_log(cluster.b, '"call_id": "cross-1"')
    assert '"outcome": "answered"' in next(
        line for line in cluster.log(cluster.b).splitlines() if '"cross-1"' in line and "call.ended" in line
    )
    assert "cross-1" not in cluster.log(cluster.a)
    # Node B's answer kept the edge in the dialog's path (RFC 3261 §12.1.1), so Alice's phone sends the rest of
    # the dialog through the edge by its route set, not just by luck of the address.
    answer = received(cluster, "caller-alice", "SIP/2.0 200 OK")
    assert re.search(rf"^Record-Route: <sip:127\.0\.0\.1:{cluster.port};lr[;>]", answer, re.MULTILINE), answer


async def out_of_the_set(cluster: Cluster, node: ExchangeProcess, after: int) -> float:
    """When the edge took the node out of its set (monotonic time)."""
    await cluster.edge.wait_for(f"node down sip:127\\.0\\.0\\.1:{node.sip_port}$", 10, after=after)
    return time.monotonic()


def received(cluster: Cluster, sipp: str, start: str) -> str:
    """The first message SIPp `sipp` received that starts with `start` (from its -trace_msg log)."""
    for log in cluster.workdir.glob(f"{sipp}_*_messages.log"):
        for block in log.read_text(errors="replace").split("-----------------------------------------------"):
            if "message received" in block and f"\n{start}" in block:
                return block
    raise AssertionError(f"{sipp} received no {start!r}")


async def test_busy_and_waiting_across_nodes_follow_settings_changed_through_either_api(cluster: Cluster) -> None:
    # Bob talks to Alice through node A; his call-waiting setting, changed through node A's API and then node B's,
    # decides what calls through node B get: busy, then a waiting call on his second phone.
    async with httpx.AsyncClient(timeout=10) as http:
        bob_on_a = {"Authorization": f"Bearer {await cluster.a.login(http, 'bob')}"}
        off = await http.put(
            f"{cluster.a.url}/api/v1/me/services/call-waiting", json={"active": False}, headers=bob_on_a
        )
        assert off.status_code == 200, off.text
        await cluster.edge.only(cluster.a)
        first = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
        alice = await call_until_told(via(cluster), "alice", "202")
        await cluster.answered_on(cluster.a, "bob")
        await cluster.edge.only(cluster.b)
        carol = await place_call(via(cluster), "carol", "202", "final_rejected.xml", "-cid_str", "busy-%u", status=486)
        await carol.succeeded()
        await cluster.wait_in_log(cluster.b, '"call_id": "busy-1"')
        ended = [line for line in cluster.log(cluster.b).splitlines() if '"busy-1"' in line and "call.ended" in line]
        assert '"outcome": "busy"' in ended[0]
        bob_on_b = {"Authorization": f"Bearer {await cluster.b.login(http, 'bob')}"}
        on = await http.put(f"{cluster.b.url}{CALL_WAITING}", json={"active": True}, headers=bob_on_b)
        assert on.status_code == 200, on.text
    second = await phone(via(cluster), "bob-second", "bob-second", scenario("callee.xml", ring_ms=100))
    dave = await place_call(via(cluster), "dave", "202", "final_talks.xml", "-cid_str", "waiting-%u", talk_ms=300)
    await dave.succeeded()
    await second.succeeded()
    await alice.hang_up()
    await first.succeeded()
    await cluster.wait_in_log(cluster.b, '"call_id": "waiting-1"')
    assert "waiting-1" not in cluster.log(cluster.a)


async def test_a_killed_node_ends_its_own_calls_only_and_new_calls_go_to_the_other(cluster: Cluster) -> None:
    await cluster.edge.only(cluster.a)
    bob = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    # Alice's call dies with node A: her BYE reaches nobody, and the edge answers it 408 (RFC 3261 §12.2.1.2:
    # the dialog is over for her phone).
    alice = await call_until_told(via(cluster), "alice", "202", bye_status=408)
    await cluster.answered_on(cluster.a, "bob")
    await cluster.edge.only(cluster.b)
    dave = await phone(via(cluster), "dave", "dave", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    carol = await call_until_told(via(cluster), "carol", "204")
    await cluster.answered_on(cluster.b, "dave")
    await cluster.edge.all()
    after = len(cluster.edge.lines)
    cluster.kill(cluster.a)
    killed = time.monotonic()
    down = asyncio.create_task(out_of_the_set(cluster, cluster.a, after))
    # A new call at once: a dialog the hash sends to node A is failed over to node B (tm's 2 s timer), and node
    # A is out of the set after its first unanswered probe or failed-over request, whichever comes first.
    frank = await phone(via(cluster), "frank", "frank", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    erin = await place_call(via(cluster), "erin", "206", "final_talks.xml", talk_ms=100)
    assert await down - killed < 5
    await erin.succeeded()
    await frank.succeeded()
    await carol.hang_up()  # node B's call went on until she hung up
    await dave.succeeded()
    await alice.hang_up()
    with contextlib.suppress(TimeoutError):
        await bob.result(1)  # his leg was node A's: a real phone ends it at its session timer
    # …which node A's INVITE set up (RFC 4028 §9: the phone sends BYE before the interval ends unrefreshed).
    invite = received(cluster, "bob", "INVITE ")
    assert re.search(r"^Session-Expires: 1800(;|\s|$)", invite, re.MULTILINE), invite
    assert await cluster.registered_through("bob") == {"node-a"}  # nothing of the shared store was lost


async def test_a_flood_from_one_address_is_cut_off_at_the_edge_and_calls_still_complete(cluster: Cluster) -> None:
    """The nodes exempt the edge from their per-address limit (it carries everyone's traffic), so the edge limits
    each outside address itself: 2,000 INVITEs from one address get at most the edge's allowance per 2-second
    window through to a node (here its 407), the rest is dropped there; the phones' calls go on."""
    limit = 400  # kamailio.cfg FLOOD_LIMIT, the default
    async with attacker("127.0.0.5") as flooder:
        started = time.time()  # Kamailio's windows follow the wall clock ($Ts)
        await flood(flooder, cluster.port, "127.0.0.5", "201")
        sent = time.time()
        answered: set[str] = set()  # by Call-ID: the edge retransmits a final answer nobody ACKs
        with contextlib.suppress(TimeoutError):
            while True:
                answer = await flooder.receive(2.0)
                if answer.status >= 200:  # the edge's own 100 Trying aside
                    answered.add(answer.call_id)
    windows = int(sent // 2) - int(started // 2) + 1
    assert 0 < len(answered) <= limit * windows, (len(answered), windows)
    await cluster.edge.wait_for(r"hipper-edge: flood from 127\.0\.0\.5 cut off")
    # An exempt address (the trunk's, FLOOD_EXEMPT) sending as much gets through to the nodes (spread over ≈ 1 s,
    # so that socket buffers, not the limit, are never what drops it).
    async with attacker("127.0.0.6") as trunk_like:
        started = time.time()
        await flood(trunk_like, cluster.port, "127.0.0.6", "201", gap=0.05)
        sent = time.time()
        exempt: set[str] = set()
        with contextlib.suppress(TimeoutError):
            while True:
                answer = await trunk_like.receive(2.0)
                if answer.status >= 200:
                    exempt.add(answer.call_id)
    assert len(exempt) > limit * (int(sent // 2) - int(started // 2) + 1), len(exempt)
    bob = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(via(cluster), "alice", "202", "final_talks.xml", talk_ms=300)
    await alice.succeeded()
    await bob.succeeded()
