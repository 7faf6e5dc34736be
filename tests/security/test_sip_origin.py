"""Who sent an INVITE behind a trusted edge proxy (sip/proxies.py, issue 9): the address the proxy attests is worked
out once, where the request arrives, and every check (the trunk by its address, digest nonces, bans) uses that one
value; from anyone but a trusted proxy the header still means nothing (toll fraud: a caller claiming to be the
trunk would call out unauthenticated)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from hipper.sip.message import Request
from hipper.sip.proxies import TrustedProxies
from hipper.sip.transport import Peer
from hipper.store import outbound
from tests.security.conftest import Exchange, RawClient, ack_text, answer, attacker, challenged, final, invite_text

pytestmark = pytest.mark.sip

EDGE = "127.0.0.3"
ATTACKER = "127.0.0.2"
PHONE = "udp:203.0.113.5:5062"
THROUGH_EDGE = [{"sip_trusted_proxies": [EDGE]}]


def relayed(invite: str, source: str) -> str:
    """`invite` with the header an edge proxy adds (after the request line's headers, before the body)."""
    head, _, body = invite.partition("\r\n\r\n")
    return f"{head}\r\nX-Hipper-Source: {source}\r\n\r\n{body}"


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[int]]:
    """How often each received request's origin was worked out (by request object)."""
    counts: Counter[int] = Counter()
    kept: list[Request] = []  # alive, so that no two requests share an id
    original = TrustedProxies.origin

    def counting(self: TrustedProxies, request: Request, peer: Peer) -> Peer:
        counts[id(request)] += 1
        kept.append(request)
        return original(self, request, peer)

    monkeypatch.setattr(TrustedProxies, "origin", counting)
    yield counts


async def finished(client: RawClient, port: int, invite: str) -> int:
    """Send `invite`, acknowledge its final answer (any), return the status."""
    client.send(invite, port)
    answered = await final(client, wait=10.0)
    client.send(ack_text(invite, answered), port)
    return answered.status


@pytest.mark.parametrize("exchange", THROUGH_EDGE, indirect=True)
async def test_only_a_trusted_proxy_can_say_an_invite_came_from_the_trunk(exchange: Exchange) -> None:
    trunk = f"udp:127.0.0.1:{exchange.trunk_port}"
    await exchange.add_user("alice", "201")
    # A peer that is not the edge claims the trunk's address: it is itself, a device to challenge.
    async with attacker(ATTACKER) as spoofer:
        invite = relayed(invite_text(port=exchange.port, client=spoofer, host=ATTACKER, dialled="0031201234567"), trunk)
        assert (await challenged(spoofer, exchange.port, invite)).status == 407
    # The same claim relayed by the trusted edge is the trunk's call: not challenged, routed (201 is no number
    # the trunk can call: 404).
    async with attacker(EDGE) as edge:
        invite = relayed(invite_text(port=exchange.port, client=edge, host=EDGE, dialled="201"), trunk)
        assert await finished(edge, exchange.port, invite) == 404


@pytest.mark.parametrize("exchange", THROUGH_EDGE, indirect=True)
async def test_the_origin_of_an_invite_is_worked_out_once(exchange: Exchange, resolved: Counter[int]) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    async with attacker(EDGE) as edge:
        invite = relayed(invite_text(port=exchange.port, client=edge, host=EDGE, dialled="299"), PHONE)
        challenge = await challenged(edge, exchange.port, invite)
        assert challenge.status == 407
        auth = answer(challenge, uri=f"sip:299@127.0.0.1:{exchange.port}", method="INVITE")
        # The phone's credentials are no use to a peer that claims the phone's address itself: for it, the nonce
        # was given to someone else (a new challenge, nothing authenticated).
        async with attacker(ATTACKER) as spoofer:
            stolen = invite_text(
                port=exchange.port, client=spoofer, host=ATTACKER, dialled="299", cseq=2, proxy_authorization=auth
            )
            assert (await challenged(spoofer, exchange.port, relayed(stolen, PHONE))).status == 407
        again = invite_text(port=exchange.port, client=edge, host=EDGE, dialled="299", cseq=2, proxy_authorization=auth)
        # The nonce was given to the phone's attested address, and the authenticated INVITE is checked against
        # that address again: authenticated, it is routed (to an extension nobody has: 404).
        assert await finished(edge, exchange.port, relayed(again, PHONE)) == 404
    # Screening, authentication and the B2BUA's "is it the trunk?" all used the value worked out on arrival, once
    # for each of the three INVITEs (the phone's two, the spoofer's); an ACK needs none (the three sent here).
    assert list(resolved.values()) == [1, 1, 1], resolved


@pytest.mark.parametrize("exchange", THROUGH_EDGE, indirect=True)
async def test_an_authenticated_phone_claiming_to_be_the_trunk_calls_as_itself(exchange: Exchange) -> None:
    """alice's phone, with her valid credentials but not behind the edge, adds the edge's header naming the trunk
    to an INVITE for an international number she is barred from: the call is hers (refused by her barring), never
    the trunk's (which would not be barred, and would be routed as a call from outside)."""
    trunk = f"udp:127.0.0.1:{exchange.trunk_port}"
    await exchange.add_user("alice", "201")
    async with exchange.sessions() as session:
        await outbound.set_policy(
            session, user_id=exchange.users["alice"], barred=["international"], prefixes=[], max_calls=None
        )
        await session.commit()
    abroad = "+4930123456"
    async with attacker(ATTACKER) as phone:
        invite = relayed(invite_text(port=exchange.port, client=phone, host=ATTACKER, dialled=abroad), trunk)
        challenge = await challenged(phone, exchange.port, invite)
        assert challenge.status == 407  # a device to challenge, header or not
        auth = answer(challenge, uri=f"sip:{abroad}@127.0.0.1:{exchange.port}", method="INVITE")
        again = invite_text(
            port=exchange.port, client=phone, host=ATTACKER, dialled=abroad, cseq=2, proxy_authorization=auth
        )
        refused = await challenged(phone, exchange.port, relayed(again, trunk))
    assert refused.status == 403 and "International" in refused.reason, (refused.status, refused.reason)
