"""INVITE floods (issue 11, medium): challenges are stateless and never retransmitted, so a flood (perhaps from a
spoofed source) neither fills the transaction table nor is amplified toward its victim."""

from __future__ import annotations

import asyncio

import pytest

from tests.security.conftest import Exchange, attacker, final, invite_text, still_serves

pytestmark = pytest.mark.sip


async def test_a_challenge_keeps_no_state_and_is_sent_once(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    async with attacker("127.0.0.4") as flooder:
        # Never acknowledged, as from a spoofed source: a transaction would retransmit it (Timer G, 0.5 s, 1 s …).
        flooder.send(invite_text(port=exchange.port, client=flooder, host="127.0.0.4", dialled="201"), exchange.port)
        challenge = await final(flooder)
        assert challenge.status == 407
        assert not exchange.stack.transactions.server  # no server transaction holds it
        await flooder.nothing(1.2)  # past two Timer G intervals: no retransmission
    await still_serves(exchange)


async def test_a_burst_of_invites_leaves_no_state_and_calls_still_complete(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    async with attacker("127.0.0.5") as flooder:
        for batch in range(20):
            for index in range(100):
                text = invite_text(
                    port=exchange.port, client=flooder, host="127.0.0.5", dialled="201", call_id=f"f{batch}-{index}"
                )
                flooder.send(text, exchange.port)
            await asyncio.sleep(0.01)  # under the loopback buffer: what the stack keeps is the question, not loss
        # The stack reads its socket in order: one more INVITE answered means the burst before it was handled.
        flooder.send(
            invite_text(port=exchange.port, client=flooder, host="127.0.0.5", dialled="201", call_id="last"),
            exchange.port,
        )
        async with asyncio.timeout(20):
            while (await final(flooder)).call_id != "last":
                pass
        assert not exchange.stack.transactions.server
    await still_serves(exchange)
