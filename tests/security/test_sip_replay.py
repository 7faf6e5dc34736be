"""Toll fraud by replay (issue 11, critical 3): captured digest answers must not place calls or move registrations.

The trunk is a raw socket on the exchange's configured trunk address: an INVITE reaching it is a call that went
out to the public network, which is what each attack tries to cause.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hipper.sip.message import Request, parse_message
from tests.security.calls_support import still_serves
from tests.security.conftest import (
    Exchange,
    RawClient,
    answer,
    attacker,
    challenged,
    final,
    invite_text,
    register_text,
)

pytestmark = pytest.mark.sip

# An international number (Berlin) the default barring lets out: replayed answers would call out at the
# victim's cost (premium and high-cost numbers are barred anyway: test_toll_barring.py).
ABROAD = "004930901820"


async def nothing_reaches(trunk: RawClient) -> None:
    assert await invites_at(trunk) == set()


async def challenge_for(exchange: Exchange, phone: RawClient, host: str, dialled: str) -> tuple[str, str]:
    """An INVITE's 407 from the exchange: (the INVITE's Call-ID, the phone's digest answer for `dialled`)."""
    call_id = f"captured-{dialled}"
    invite = invite_text(port=exchange.port, client=phone, host=host, dialled=dialled, call_id=call_id)
    challenge = await challenged(phone, exchange.port, invite)
    assert challenge.status == 407, challenge
    uri = f"sip:{dialled}@127.0.0.1:{exchange.port}"
    return call_id, answer(challenge, uri=uri, method="INVITE")


async def test_an_answer_without_qop_is_refused(exchange: Exchange) -> None:
    """RFC 2069 answers carry no nonce count: one captured header would place call after call (issue: 3 calls)."""
    await exchange.add_user("alice", "201")
    async with attacker(port=exchange.trunk_port) as trunk, attacker() as phone:
        invite = invite_text(port=exchange.port, client=phone, host="127.0.0.1", dialled=ABROAD)
        challenge = await challenged(phone, exchange.port, invite)
        legacy = answer(challenge, uri=f"sip:{ABROAD}@127.0.0.1:{exchange.port}", method="INVITE", qop=False)
        text = invite_text(
            port=exchange.port, client=phone, host="127.0.0.1", dialled=ABROAD, cseq=2, proxy_authorization=legacy
        )
        refused = await challenged(phone, exchange.port, text)
        assert (refused.status, refused.reason) == (403, "Wrong credentials")
        await nothing_reaches(trunk)
    await still_serves(exchange)


async def test_an_answer_captured_for_one_number_does_not_call_another(exchange: Exchange) -> None:
    """The digest uri must be the Request-URI: alice's answer for a call to 202, withheld, sent to +252…."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    async with attacker(port=exchange.trunk_port) as trunk, attacker() as phone:
        _, captured = await challenge_for(exchange, phone, "127.0.0.1", "202")
        # Sent from alice's own address (a NAT she shares, or a spoofed source): only the Request-URI changed.
        text = invite_text(
            port=exchange.port, client=phone, host="127.0.0.1", dialled=ABROAD, cseq=2, proxy_authorization=captured
        )
        refused = await challenged(phone, exchange.port, text)
        assert (refused.status, refused.reason) == (403, "Wrong credentials")
        await nothing_reaches(trunk)
    await still_serves(exchange)


async def test_an_answer_replayed_from_another_address_gets_only_a_fresh_challenge(exchange: Exchange) -> None:
    """The nonce is bound to the address it was sent to: a captured answer is worth nothing elsewhere."""
    await exchange.add_user("alice", "201")
    async with attacker(port=exchange.trunk_port) as trunk, attacker() as phone, attacker("127.0.0.2") as thief:
        _, captured = await challenge_for(exchange, phone, "127.0.0.1", ABROAD)
        text = invite_text(
            port=exchange.port, client=thief, host="127.0.0.2", dialled=ABROAD, cseq=2, proxy_authorization=captured
        )
        again = await challenged(thief, exchange.port, text)
        assert again.status == 407
        assert "stale=true" in (again.headers.get("Proxy-Authenticate") or "")
        await nothing_reaches(trunk)
    await still_serves(exchange)


async def test_a_register_replayed_from_another_address_does_not_move_the_registration(exchange: Exchange) -> None:
    """A REGISTER answer captured (and withheld) on the way, sent from the thief's address to take alice's calls."""
    await exchange.add_user("alice", "201")
    async with attacker() as phone, attacker("127.0.0.3") as thief:
        phone.send(register_text(port=exchange.port, client_port=phone.port), exchange.port)
        challenge = await final(phone)
        assert challenge.status == 401
        captured = answer(challenge, uri=f"sip:127.0.0.1:{exchange.port}", method="REGISTER")
        text = register_text(port=exchange.port, client_port=phone.port, cseq=2, authorization=captured)
        thief.send(text, exchange.port)
        again = await final(thief)
        assert again.status == 401 and "stale=true" in (again.headers.get("WWW-Authenticate") or "")
        assert await exchange.registrations("alice") == []
    await still_serves(exchange)


async def test_an_invite_nonce_authorises_one_call_only(exchange: Exchange) -> None:
    """Single-use INVITE nonces: the same nonce with the next nonce count is challenged again (stale=true)."""
    await exchange.add_user("alice", "201")
    async with attacker(port=exchange.trunk_port) as trunk, attacker() as phone:
        invite = invite_text(port=exchange.port, client=phone, host="127.0.0.1", dialled=ABROAD)
        challenge = await challenged(phone, exchange.port, invite)
        uri = f"sip:{ABROAD}@127.0.0.1:{exchange.port}"
        first = answer(challenge, uri=uri, method="INVITE")
        phone.send(
            invite_text(port=exchange.port, client=phone, host="127.0.0.1", dialled=ABROAD, proxy_authorization=first),
            exchange.port,
        )
        async with asyncio.timeout(5):
            out = parse_message(await trunk.queue.get())  # the genuine call goes out to the network
        assert isinstance(out, Request) and out.method == "INVITE"
        second = answer(challenge, uri=uri, method="INVITE", nc="00000002")
        phone.send(
            invite_text(port=exchange.port, client=phone, host="127.0.0.1", dialled=ABROAD, proxy_authorization=second),
            exchange.port,
        )
        again = await final(phone)
        assert again.status == 407 and "stale=true" in (again.headers.get("Proxy-Authenticate") or "")
        # Only the first call went out (its INVITE may be retransmitted to the silent network; a second call would
        # be an INVITE with a Call-ID of its own).
        assert await invites_at(trunk) <= {out.call_id}
    await still_serves(exchange)


async def invites_at(trunk: RawClient, wait: float = 0.6) -> set[str]:
    """The Call-IDs of the INVITEs the network receives within `wait` seconds."""
    calls: set[str] = set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            while True:
                message = parse_message(await trunk.queue.get())
                if isinstance(message, Request) and message.method == "INVITE":
                    calls.add(message.call_id)
    return calls
