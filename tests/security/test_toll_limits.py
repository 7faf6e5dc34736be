"""Issue 11, medium "Outbound": one phone held 249 trunk calls. Concurrent outbound calls are limited per user,
per company and on the trunk; a full RTP port range answers 503 with Retry-After (it was 488/500)."""

from __future__ import annotations

import asyncio

import pytest

from hipper.domain.outgoing import CallerIdentity
from hipper.media.engine import CreateEndpoint, EndpointCreated, MediaError, Release
from tests.calls.conftest import (  # noqa: F401 - the fixture
    Caller,
    Exchange,
    Sipp,
    call_until_told,
    exchange,
    phone,
    scenario,
    start_sipp,
)
from tests.security.calls_support import refused_call, still_serves
from tests.security.test_toll_barring import hipper_cli

LIMITS = [
    ({"outbound_max_calls_per_user": 1}, "alice", None, 403, "Too Many Calls for This User"),
    ({}, "bob", 1, 403, "Too Many Calls for This Company"),  # the company's own limit, set with the CLI
    ({"outbound_max_calls_per_user": 0, "trunk_max_calls": 1}, "bob", None, 503, "Trunk Busy"),
    (
        {"outbound_max_calls_per_user": 1, "outbound_limit_status": 503},
        "alice",
        None,
        503,
        "Too Many Calls for This User",
    ),
]


async def alice_calls_out(exchange: Exchange) -> tuple[Sipp, Caller]:  # noqa: F811
    """alice's call out through the trunk, answered there: once it returns, the call counts against the limits,
    until she is told to hang up."""
    network = await start_sipp(exchange, "trunk", scenario("callee.xml", ring_ms=100), "-rtp_echo",
                               port=exchange.trunk_port)  # fmt: skip
    first = await call_until_told(exchange, "alice", "0612345678")
    async with asyncio.timeout(15):
        while exchange.b2bua.outbound.gate.trunk < 1:  # noqa: ASYNC110 - admitted: it counts from then on
            await asyncio.sleep(0.01)
    return network, first


@pytest.mark.parametrize(
    ("exchange", "second", "company_limit", "status", "reason"),
    LIMITS,
    indirect=["exchange"],
    ids=["user", "company", "trunk", "user-503"],
)
async def test_concurrent_outbound_calls_are_limited(
    exchange: Exchange,  # noqa: F811
    second: str,
    company_limit: int | None,
    status: int,
    reason: str,
) -> None:
    await exchange.add_user("alice", "201", direct="+31201234101")
    await exchange.add_user("bob", "202", direct="+31201234102")
    if company_limit is not None:
        await hipper_cli(exchange, "barring", "set", "--company", "Acme", "--bar", "premium", "--max-calls", "1")
    network, first = await alice_calls_out(exchange)
    gate = exchange.b2bua.outbound.gate
    await refused_call(exchange, second, "0612345679", status, reason)
    await first.hang_up()
    await network.succeeded()
    ended = [await exchange.next_call() for _ in range(2)]  # the refused call, the first one
    assert sorted(call.answered for call in ended) == [False, True]
    async with asyncio.timeout(5):
        while gate.trunk:  # noqa: ASYNC110 - released when the call ended
            await asyncio.sleep(0.01)
    await still_serves(exchange)


async def test_a_full_port_range_answers_503_with_retry_after(exchange: Exchange) -> None:  # noqa: F811
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    held: list[str] = []
    try:
        while True:  # every port pair of the range taken (by calls, as far as the exchange can tell)
            created = await exchange.media.execute(CreateEndpoint())
            assert isinstance(created, EndpointCreated)
            held.append(created.endpoint_id)
    except MediaError:
        pass
    assert len(held) >= 50
    await refused_call(exchange, "alice", "202", 503, "No Media Ports Free", header=r"Retry-After: [0-9]+")
    for endpoint_id in held:
        await exchange.media.execute(Release(endpoint_id))
    await still_serves(exchange)


@pytest.mark.parametrize("exchange", [{"trunk_max_calls": 1}], indirect=True)
async def test_a_callback_out_through_the_trunk_counts_against_the_limits(exchange: Exchange) -> None:  # noqa: F811
    """A call placed from the app (and so every consultation to an outside number) leaves through the trunk like a
    phone's call: with the trunk full it is not placed, and the far end is never called."""
    await exchange.add_user("alice", "201", direct="+31201234101")
    await exchange.add_user("bob", "202", direct="+31201234102")
    network, first = await alice_calls_out(exchange)
    gate = exchange.b2bua.outbound.gate
    desk = await phone(exchange, "bob", "bob-desk", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    app_calls = exchange.applications.app_calls
    targets = await app_calls.user_targets(exchange.users["bob"], "desk", None, "+31201234102")
    identity = CallerIdentity(kind="direct", number="+31201234102", anonymous=False, from_user="+31201234102",
                              from_host=None, from_display=None, privacy=None, asserted_identity="+31201234102",
                              reason="bob's direct number")  # fmt: skip
    app_calls.start_callback("a" * 16, exchange.users["bob"], exchange.company_id, "+31201234102", "+31612345679",
                             identity, targets)  # fmt: skip
    async with asyncio.timeout(20):
        callback = await exchange.callbacks_ended.get()
    assert callback.outcome == "not-reachable" and callback.far_leg is None
    await desk.succeeded()  # bob answered, heard the busy tone, and was hung up
    await first.hang_up()
    await network.succeeded()  # one call on the trunk: the first, never the callback's
    async with asyncio.timeout(5):
        while gate.trunk:  # noqa: ASYNC110 - released when the first call ended
            await asyncio.sleep(0.01)
