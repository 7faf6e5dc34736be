"""Attack tests against a real exchange (SIP stack + registrar + B2BUA + media on loopback sockets).

The exchange is the call tests' (`tests/calls/conftest.py`). Attackers are raw UDP clients bound to other
loopback addresses (127.0.0.2 …) than the real phones (SIPp on 127.0.0.1), so a ban of the attacker's address
is seen not to touch the phones. Every test ends with `calls_support.still_serves`: a phone registers and a call
completes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hipper.sip.digest import ha1, parse_credentials, response
from hipper.sip.message import Response
from tests.calls.conftest import (  # noqa: F401 - the exchange fixture, registered for this package
    PASSWORD,
    REALM,
    Exchange,
    exchange,
)
from tests.sip.conftest import RawClient, register_text

__all__ = ["PASSWORD", "REALM", "RawClient", "register_text"]


@asynccontextmanager
async def attacker(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RawClient]:
    """A raw SIP client on `host` (any 127.0.0.0/8 address works on Linux loopback)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(RawClient, local_addr=(host, port))
    try:
        yield client
    finally:
        transport.close()


async def final(client: RawClient, wait: float = 5.0) -> Response:
    """The next final response, skipping 100 Trying and other provisional ones."""
    while True:
        answer = await client.receive(wait)
        if answer.status >= 200:
            return answer


def invite_text(
    *,
    port: int,
    client: RawClient,
    host: str,
    dialled: str,
    user: str = "alice",
    call_id: str | None = None,
    cseq: int = 1,
    proxy_authorization: str | None = None,
) -> str:
    """An INVITE with an SDP offer from a raw client on `host` to `dialled` at the exchange."""
    sdp = (
        f"v=0\r\no=x 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    lines = [
        f"INVITE sip:{dialled}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{client.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag=a{secrets.token_hex(3)}",
        f"To: <sip:{dialled}@{REALM}>",
        f"Call-ID: {call_id or secrets.token_hex(8)}",
        f"CSeq: {cseq} INVITE",
        f"Contact: <sip:{user}@{host}:{client.port}>",
        "Content-Type: application/sdp",
    ]
    if proxy_authorization:
        lines.append(f"Proxy-Authorization: {proxy_authorization}")
    return "\r\n".join(lines) + f"\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"


async def flood(client: RawClient, port: int, host: str, dialled: str, gap: float = 0.01) -> None:
    """2,000 INVITEs to `dialled` at `port` from `client` on `host`, in 20 bursts of 100 `gap` seconds apart
    (Call-IDs f<burst>-<n>): a flood from one address."""
    for batch in range(20):
        for index in range(100):
            text = invite_text(port=port, client=client, host=host, dialled=dialled, call_id=f"f{batch}-{index}")
            client.send(text, port)
        await asyncio.sleep(gap)


def ack_text(invite: str, answered: Response) -> str:
    """The ACK of a non-2xx final answer to `invite` (§17.1.1.3: same branch, the answer's To tag)."""
    head = invite.split("\r\n\r\n")[0].split("\r\n")
    method_line = head[0].replace("INVITE ", "ACK ", 1)
    keep = [line for line in head[1:] if line.split(":")[0] in ("Via", "From", "Call-ID", "Max-Forwards")]
    cseq = next(line for line in head if line.startswith("CSeq:")).replace("INVITE", "ACK")
    to = f"To: {answered.headers.get('To')}"
    return "\r\n".join([method_line, *keep, to, cseq, "Content-Length: 0"]) + "\r\n\r\n"


async def challenged(client: RawClient, port: int, invite: str) -> Response:
    """Send `invite`, take its final answer and acknowledge it, as a phone does."""
    client.send(invite, port)
    answered = await final(client)
    client.send(ack_text(invite, answered), port)
    return answered


def answer(
    challenge: Response,
    *,
    uri: str,
    method: str,
    user: str = "alice",
    password: str = PASSWORD,
    nc: str = "00000001",
    qop: bool = True,
) -> str:
    """The digest answer to `challenge` a phone would send (MD5, RFC 7616 §3.4), or the RFC 2069 form without qop."""
    name = "Proxy-Authenticate" if challenge.status == 407 else "WWW-Authenticate"
    offer = parse_credentials(challenge.headers.get_all(name)[0])
    cnonce = secrets.token_hex(4)
    digest = response(
        algorithm="MD5",
        ha1_hex=ha1(user, offer["realm"], password),
        method=method,
        uri=uri,
        nonce=offer["nonce"],
        qop="auth" if qop else None,
        nc=nc,
        cnonce=cnonce,
    )
    value = f'Digest username="{user}", realm="{offer["realm"]}", nonce="{offer["nonce"]}", uri="{uri}", '
    value += f'response="{digest}", algorithm=MD5'
    if qop:
        value += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    return value
