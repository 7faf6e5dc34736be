"""Issue 11, critical 1 and the medium "hostname in c=": one authenticated phone's SDP must not silence the node.

An offer with `m=audio 65535` once made the media ticker raise (OverflowError on RTCP's port + 1) and stop:
every prompt, ringback, voicemail and recording went silent while /health still said 200. A host name in `c=`
was resolved on the event loop every 20 ms. Now every field is checked and a bad offer is answered 488; /health
reports the media ticker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from hipper.api.app import create_app
from tests.calls.conftest import Exchange, exchange  # noqa: F401 - the fixture, shared with the call tests
from tests.security.calls_support import OFFER_CONNECTION_LINE, OFFER_MEDIA_LINE, refused_call, still_serves

BAD_OFFERS = {
    "port 65535 (RTCP would be 65536)": {OFFER_MEDIA_LINE: "m=audio 65535 RTP/AVP 8 101"},
    "port beyond 16 bits": {OFFER_MEDIA_LINE: "m=audio 70000 RTP/AVP 8 101"},
    "port count": {OFFER_MEDIA_LINE: "m=audio [media_port]/4000 RTP/AVP 8 101"},
    "payload type beyond 7 bits": {OFFER_MEDIA_LINE: "m=audio [media_port] RTP/AVP 8 200"},
    "a host name in c=": {OFFER_CONNECTION_LINE: "c=IN IP4 media.attacker.example"},
    "too many formats": {OFFER_MEDIA_LINE: "m=audio [media_port] RTP/AVP " + " ".join(map(str, range(100)))},
}


@pytest.fixture
async def http(exchange: Exchange) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """The exchange's HTTP API as `hipper serve` wires it: the B2BUA (and its media engine) on app.state.calls."""
    app = create_app(exchange.settings, run_migrations=False)
    app.state.calls = exchange.b2bua
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            yield client
    finally:
        await app.state.hipper.engine.dispose()


@pytest.mark.parametrize("attack", list(BAD_OFFERS))
async def test_a_bad_offer_is_488_and_the_media_keeps_running(
    exchange: Exchange,  # noqa: F811
    http: httpx.AsyncClient,
    attack: str,
) -> None:
    await exchange.add_user("mallory", "266")
    await exchange.add_user("bob", "202")
    # Dialling a colleague: on today's code the offer was taken (the ticker then died sending to port 65536).
    await refused_call(exchange, "mallory", "202", 488, **BAD_OFFERS[attack])
    health = await http.get("/api/v1/health")
    assert (health.status_code, health.json().get("media")) == (200, "ok")
    await still_serves(exchange)


async def test_health_is_503_when_the_media_ticker_stops(exchange: Exchange, http: httpx.AsyncClient) -> None:  # noqa: F811
    await still_serves(exchange)
    assert (await http.get("/api/v1/health")).json() == {"status": "ok", "database": "ok", "media": "ok"}
    await exchange.media.stop()  # what a dead ticker looks like from outside: nothing ticks any more
    response = await http.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "media": "stopped"}
