"""INVITE floods (issue 11, medium): challenges are stateless and never retransmitted, so a flood (perhaps from a
spoofed source) neither fills the transaction table nor is amplified toward its victim."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.security.calls_support import still_serves
from tests.security.conftest import Exchange, attacker, final, flood, invite_text

pytestmark = pytest.mark.sip


async def test_a_challenge_keeps_no_state_and_is_sent_once(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    async with attacker("127.0.0.4") as flooder:
        # Never acknowledged, as from a spoofed source: a transaction would retransmit it (Timer G, 0.5 s, 1 s …).
        invite = invite_text(port=exchange.port, client=flooder, host="127.0.0.4", dialled="201")
        flooder.send(invite, exchange.port)
        challenge = await final(flooder)
        assert challenge.status == 407
        assert not exchange.stack.transactions.server  # no server transaction holds it
        # A retransmission of the request gets the same answer (§8.2.7), as a transaction would have sent it.
        flooder.send(invite, exchange.port)
        again = await final(flooder)
        assert again.headers.get("Proxy-Authenticate") == challenge.headers.get("Proxy-Authenticate")
        assert again.to.tag == challenge.to.tag
        await flooder.nothing(1.2)  # past two Timer G intervals: no retransmission
    await still_serves(exchange)


async def test_a_burst_from_one_source_is_cut_off_and_calls_still_complete(exchange: Exchange) -> None:
    """2,000 INVITEs in 0.2 s from one address: beyond its burst allowance they are dropped unread."""
    await exchange.add_user("alice", "201")
    settings = exchange.settings
    allowance = settings.sip_source_burst + settings.sip_source_messages_per_second * 1.0
    async with attacker("127.0.0.5") as flooder:
        started = asyncio.get_running_loop().time()
        await flood(flooder, exchange.port, "127.0.0.5", "201")
        answers = 0
        with contextlib.suppress(TimeoutError):
            while True:
                assert (await flooder.receive(1.0)).status == 407
                answers += 1
        elapsed = asyncio.get_running_loop().time() - started - 1.0
        assert 0 < answers <= allowance + settings.sip_source_messages_per_second * elapsed
        assert answers < 2000
        assert not exchange.stack.transactions.server
    await still_serves(exchange)
