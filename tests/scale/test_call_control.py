"""Call control across nodes (docs/scale-out.md, "Call control"): the app may talk to any node; a request about a
call another node carries is answered by that node, and the call list shows the user's calls on every node."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from tests.calls.conftest import call_until_told, phone, place_call, scenario
from tests.scale.conftest import Cluster
from tests.scale.test_edge import received, via

pytestmark = [pytest.mark.sip, pytest.mark.postgres]


async def test_a_call_on_node_b_is_listed_held_and_resumed_through_node_a(cluster: Cluster) -> None:
    await cluster.edge.only(cluster.b)
    bob_phone = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await call_until_told(via(cluster), "alice", "202")
    await cluster.answered_on(cluster.b, "bob")
    async with httpx.AsyncClient(timeout=10) as http:
        on_a = {"Authorization": f"Bearer {await cluster.a.login(http, 'bob')}"}
        on_b = {"Authorization": f"Bearer {await cluster.b.login(http, 'bob')}"}
        listed = await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=on_a)
        assert listed.status_code == 200, listed.text
        [call] = listed.json()["calls"]
        assert call["direction"] == "incoming" and call["state"] == "active" and not call["held"]
        assert listed.json() == (await http.get(f"{cluster.b.url}/api/v1/me/calls", headers=on_b)).json()

        held = await http.post(f"{cluster.a.url}/api/v1/me/calls/{call['id']}/hold", headers=on_a)
        assert held.status_code == 200, held.text
        assert held.json()["held"] and held.json()["id"] == call["id"]
        [there] = (await http.get(f"{cluster.b.url}/api/v1/me/calls", headers=on_b)).json()["calls"]
        assert there["held"]  # node B carries the call and holds it
        again = await http.post(f"{cluster.a.url}/api/v1/me/calls/{call['id']}/hold", headers=on_a)
        assert again.status_code == 409 and again.json()["code"] == "already_held"  # node B's refusal, unchanged

        # Another user's token never reaches Bob's call on either node.
        carol = {"Authorization": f"Bearer {await cluster.a.login(http, 'carol')}"}
        foreign = await http.post(f"{cluster.a.url}/api/v1/me/calls/{call['id']}/resume", headers=carol)
        assert foreign.status_code == 404
        assert (await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=carol)).json()["calls"] == []

        resumed = await http.post(f"{cluster.a.url}/api/v1/me/calls/{call['id']}/resume", headers=on_a)
        assert resumed.status_code == 200, resumed.text
        assert not resumed.json()["held"]
    await alice.hang_up()
    await bob_phone.succeeded()


async def ringing_through_a(cluster: Cluster, http: httpx.AsyncClient, user: str) -> tuple[dict[str, str], Any]:
    """The user's app logged in to node A, and the one call it lists: node B writes a ringing call to the shared
    table once it has rung a moment (another process: polled)."""
    on_a = {"Authorization": f"Bearer {await cluster.a.login(http, user)}"}
    url = f"{cluster.a.url}/api/v1/me/calls"
    async with asyncio.timeout(15):
        while not (listed := (await http.get(url, headers=on_a)).json()["calls"]):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    [call] = listed
    return on_a, call


async def test_a_call_ringing_on_node_b_is_listed_and_refused_through_node_a(cluster: Cluster) -> None:
    """Bob's phone rings on node B; his app, talking to node A, sees the call ringing and refuses it there: node B
    stops the ringing (CANCEL) and the call goes on as Bob's plan says for busy — his voicemail answers."""
    await cluster.edge.only(cluster.b)
    desk = await phone(via(cluster), "bob", "bob", scenario("callee_rings.xml"))  # rings until cancelled
    alice = await place_call(via(cluster), "alice", "202", "final_talks.xml", talk_ms=500)
    async with httpx.AsyncClient(timeout=10) as http:
        on_a, call = await ringing_through_a(cluster, http, "bob")
        assert (call["direction"], call["state"], call["remote_number"]) == ("incoming", "ringing", "201")
        assert await cluster.on_call("bob") == set()  # ringing, not on a call
        refused = await http.delete(f"{cluster.a.url}/api/v1/me/calls/{call['id']}", headers=on_a)
        assert refused.status_code == 204, refused.text
    await desk.succeeded()  # node B cancelled the ringing
    await alice.succeeded()


async def test_a_call_placed_on_node_b_still_ringing_is_listed_and_hung_up_through_node_a(cluster: Cluster) -> None:
    """Alice's desk phone calls Bob through node B and his phone rings; her app, talking to node A, sees her call
    ringing (it saw nothing until Bob answered) and hangs it up there: node B cancels it (CANCEL to Bob, 487 to
    her phone)."""
    await cluster.edge.only(cluster.b)
    desk = await phone(via(cluster), "bob", "bob", scenario("callee_rings.xml"))  # rings until cancelled
    alice = await place_call(via(cluster), "alice", "202", "final_rejected.xml", status=487)
    async with httpx.AsyncClient(timeout=10) as http:
        on_a, call = await ringing_through_a(cluster, http, "alice")
        assert (call["direction"], call["state"], call["remote_number"]) == ("outgoing", "ringing", "202")
        assert await cluster.on_call("alice") == set()  # ringing, not on a call
        hung_up = await http.delete(f"{cluster.a.url}/api/v1/me/calls/{call['id']}", headers=on_a)
        assert hung_up.status_code == 204, hung_up.text
        await alice.succeeded()  # node B ended her call: 487
        await desk.succeeded()  # and cancelled Bob's ringing
        async with asyncio.timeout(10):
            while (await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=on_a)).json()["calls"]:  # noqa: ASYNC110 - another process's rows
                await asyncio.sleep(0.1)


async def test_a_callback_running_on_node_b_is_seen_refused_twice_and_hung_up_through_node_a(cluster: Cluster) -> None:
    await cluster.edge.only(cluster.b)
    desk = await phone(via(cluster), "bob", "bob", scenario("callee_rings.xml"))  # rings until cancelled
    async with httpx.AsyncClient(timeout=10) as http:
        on_a, _, callback_id = await bobs_callback_through_b(cluster, http)
        await until_received(cluster, "bob", "INVITE ")  # node B rings Bob's desk phone

        [listed] = (await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=on_a)).json()["calls"]
        assert listed["id"] == callback_id and listed["state"] == "ringing"
        again = await http.post(
            f"{cluster.a.url}/api/v1/me/calls", json={"to": "201", "method": "callback"}, headers=on_a
        )
        assert again.status_code == 409 and again.json()["code"] == "callback_under_way"

        hung_up = await http.delete(f"{cluster.a.url}/api/v1/me/calls/{callback_id}", headers=on_a)
        assert hung_up.status_code == 204, hung_up.text
        await desk.succeeded()  # node B cancelled the ringing
        async with asyncio.timeout(10):
            while (await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=on_a)).json()["calls"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # the callback's row goes once its call-log row is written


async def until_received(cluster: Cluster, sipp: str, start: str, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            with contextlib.suppress(AssertionError):
                received(cluster, sipp, start)
                return
            await asyncio.sleep(0.05)  # SIPp's message log is a file it appends to


async def test_a_callback_transferred_away_on_node_b_does_not_refuse_the_next_one_through_node_a(
    cluster: Cluster,
) -> None:
    """After Bob blind-transfers his callback it goes on on node B without him: its shared row says it is no longer
    ringing, so node A places his next callback (it answered 409 callback_under_way while Alice and Carol talked)."""
    await cluster.edge.only(cluster.b)
    desk = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await phone(via(cluster), "alice", "alice", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    # Carol talks five seconds, then hangs up through the edge (its BYE follows the dialog's route set).
    talks = (
        scenario("callee_hangs_up.xml")
        .replace('<pause milliseconds="1000" />', '<pause milliseconds="5000" />')
        .replace('<recv request="INVITE">', '<recv request="INVITE" rrs="true">')
        .replace("BYE sip:hipper@[remote_ip]:[remote_port] SIP/2.0", "BYE [next_url] SIP/2.0\n      [routes]")
    )
    carol = await phone(via(cluster), "carol", "carol", talks, "-rtp_echo")
    async with httpx.AsyncClient(timeout=10) as http:
        on_a, on_b, callback_id = await bobs_callback_through_b(cluster, http)
        async with asyncio.timeout(10):
            while await states(http, f"{cluster.b.url}/api/v1/me/calls", on_b) != ["active"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # another process answers
        moved = await http.post(
            f"{cluster.a.url}/api/v1/me/calls/{callback_id}/transfer",
            json={"mode": "blind", "to": "203"},
            headers=on_a,
        )
        assert moved.status_code == 202, moved.text
        await desk.succeeded()  # Bob's leg is released: he is off the call
        async with asyncio.timeout(10):
            while await cluster.on_call("bob"):  # noqa: ASYNC110 - rows another process writes
                await asyncio.sleep(0.05)
        assert (await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=on_a)).json()["calls"] == []
        again = await http.post(
            f"{cluster.a.url}/api/v1/me/calls", json={"to": "201", "method": "callback"}, headers=on_a
        )
        assert again.status_code == 202, again.text  # was 409 callback_under_way while Alice and Carol talked
        hung_up = await http.delete(f"{cluster.a.url}/api/v1/me/calls/{again.json()['id']}", headers=on_a)
        assert hung_up.status_code == 204
    await carol.succeeded()
    await alice.succeeded()


async def test_two_callbacks_asked_of_two_nodes_at_once_ring_the_user_once(cluster: Cluster) -> None:
    """A double tap the balancer sends to both nodes: one callback rings, the other request gets 409
    callback_under_way (the shared row is claimed under a unique index before anything rings)."""
    await cluster.edge.only(cluster.b)
    desk = await phone(via(cluster), "bob", "bob", scenario("callee_rings.xml"))
    async with httpx.AsyncClient(timeout=10) as http:
        nodes = (cluster.a, cluster.b)
        on = {node.url: {"Authorization": f"Bearer {await node.login(http, 'bob')}"} for node in nodes}
        body = {"to": "201", "method": "callback"}
        answers = await asyncio.gather(
            *(http.post(f"{node.url}/api/v1/me/calls", json=body, headers=on[node.url]) for node in nodes)
        )
        placed = [(node, answer.json()["id"]) for node, answer in zip(nodes, answers, strict=True)
                  if answer.status_code == 202]  # fmt: skip
        await until_received(cluster, "bob", "INVITE ")
        for node, callback_id in placed:
            await http.delete(f"{node.url}/api/v1/me/calls/{callback_id}", headers=on[node.url])
        assert sorted(answer.status_code for answer in answers) == [202, 409], [a.text for a in answers]
    with contextlib.suppress(TimeoutError):  # a second INVITE (the race) would break the one-call scenario
        await desk.result(limit=10)


async def test_a_pull_to_a_desk_phone_forwarded_to_node_b_is_answered_when_it_answers_after_ten_seconds(
    cluster: Cluster,
) -> None:
    """POST …/pull to another desk phone behind the edge answers when the device answers, after up to
    PULL_RING_SECONDS (30 s): node A waits that long for the node carrying the call (it answered 503
    node_unreachable after 10 s)."""
    await cluster.edge.only(cluster.b)
    bob_phone = await phone(via(cluster), "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(via(cluster), "alice", "202", "final_talks.xml", talk_ms=16000, limit=40)
    await cluster.answered_on(cluster.b, "bob")
    # Registered through the edge once the call is answered (it would ring for the call itself otherwise) and picked
    # up after 11 s. Behind the edge every phone has the edge's address: the phone the call is on is told apart
    # by its contact (the pull to "desk" found nothing to ring here before).
    second = await phone(
        via(cluster), "bob-second", "bob-second", scenario("callee.xml", ring_ms=11000), "-rtp_echo", limit=40
    )
    async with httpx.AsyncClient(timeout=40) as http:
        on_a = {"Authorization": f"Bearer {await cluster.a.login(http, 'bob')}"}
        [call] = (await http.get(f"{cluster.a.url}/api/v1/me/calls", headers=on_a)).json()["calls"]
        pulled = await http.post(f"{cluster.a.url}/api/v1/me/calls/{call['id']}/pull", json={"device": "desk"},
                                 headers=on_a)  # fmt: skip
        assert pulled.status_code == 200, pulled.text  # was 503 node_unreachable after 10 s
    await bob_phone.succeeded()  # its leg got BYE: the call is on the second phone
    await alice.succeeded(40)
    await second.succeeded(40)


async def states(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[str]:
    return [call["state"] for call in (await http.get(url, headers=headers)).json()["calls"]]


async def bobs_callback_through_b(
    cluster: Cluster, http: httpx.AsyncClient
) -> tuple[dict[str, str], dict[str, str], str]:
    """Bob logged in on both nodes (his headers for A, for B) and a callback to alice placed through node B."""
    on_a = {"Authorization": f"Bearer {await cluster.a.login(http, 'bob')}"}
    on_b = {"Authorization": f"Bearer {await cluster.b.login(http, 'bob')}"}
    placed = await http.post(f"{cluster.b.url}/api/v1/me/calls", json={"to": "201", "method": "callback"}, headers=on_b)
    assert placed.status_code == 202, placed.text
    return on_a, on_b, str(placed.json()["id"])
