"""What the media and toll-fraud attack tests share: a caller whose INVITE gets a final error (its status, reason
phrase and headers checked by SIPp), and the proof that the exchange still serves after an attack."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from tests.calls.conftest import PASSWORD, Exchange, phone, place_call, scenario, start_sipp

# A phone's ordinary offer line in tests/calls/scenarios/caller.xml (both of its INVITEs carry it).
OFFER_MEDIA_LINE = "m=audio [media_port] RTP/AVP 8 101"
OFFER_CONNECTION_LINE = "c=IN IP4 [media_ip]"


def refused_caller_text(user: str, status: int, reason: str | None = None, header: str | None = None,
                        **replacements: str) -> str:  # fmt: skip
    """caller.xml ending in `status` (then ACK); SIPp fails unless the status line carries `reason` and the
    response the header regexp `header` ("Name: regexp"). `replacements` rewrite lines of the offer."""
    text = scenario("caller.xml", final="final_rejected.xml", user=user, status=status)
    for old, new in replacements.items():
        text = text.replace(old, new)
    checks: list[str] = []
    if reason is not None:
        regexp = rf"SIP/2\.0 {status} {reason}"  # POSIX ERE on the whole message (no \r escapes)
        checks.append(f'<ereg regexp="{escape(regexp)}" search_in="msg" check_it="true" assign_to="reason" />')
    if header is not None:
        name, _, regexp = header.partition(":")
        checks.append(
            f'<ereg regexp="{escape(regexp.strip())}" search_in="hdr" header="{name}:" check_it="true" '
            'assign_to="header" />'
        )
    if checks:
        names = ",".join(n for n, on in (("reason", reason), ("header", header)) if on is not None)
        text = text.replace(
            f'<recv response="{status}" />',
            f'<recv response="{status}"><action>{"".join(checks)}</action></recv>\n  <Reference variables="{names}" />',
        )
    return text


async def refused_call(exchange: Exchange, user: str, dialled: str, status: int, reason: str | None = None,
                       header: str | None = None, **replacements: str) -> None:  # fmt: skip
    text = refused_caller_text(user, status, reason, header, **replacements)
    caller = await start_sipp(exchange, f"refused-{user}", text, "-s", dialled, "-au", user, "-ap", PASSWORD)
    await caller.succeeded()


async def still_serves(exchange: Exchange, **talk: Any) -> None:
    """After the attack: a phone registers and a call between two users is answered with audio both ways."""
    if "victim" not in exchange.users:
        await exchange.add_user("victim", "290")
    if "witness" not in exchange.users:
        await exchange.add_user("witness", "291")
    callee = await phone(exchange, "witness", "witness", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    assert await exchange.registrations("witness")
    caller = await place_call(exchange, "victim", "291", "final_talks.xml", talk_ms=talk.get("talk_ms", 1500))
    await caller.succeeded()
    await callee.succeeded()
    witness = exchange.users["witness"]
    for _ in range(20):  # the attack's calls may end (and be reported) after this one started
        call = await exchange.next_call()
        if any(party[0] == witness for party in call.parties):
            break
    assert call.answered
    assert call.media["caller_packets_received"] > 25  # the victim's audio reached the exchange …
    assert call.media["caller_packets_sent"] > 25  # … and the echo came back through the bridge
