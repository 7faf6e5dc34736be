"""The SDP connection address is parsed once (media/sdp.py), for the c= line's checks and for the engine's latching
rule alike (issue 9: the engine parsed it a second time, with a cache of its own)."""

from __future__ import annotations

import functools
import ipaddress

import pytest

from hipper.media import engine as engine_module
from hipper.media import sdp as sdp_module
from hipper.media.engine import CreateEndpoint, EndpointCreated, MediaEngine, Release
from hipper.media.sdp import SdpError, SessionDescription, build_offer, routable

ADDRESS = "198.51.100.23"  # a documentation address: behind NAT as far as latching goes


async def test_the_address_of_an_offer_is_parsed_once_for_the_sdp_and_the_engine(
    engine: MediaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (sdp_module, engine_module):  # start cold: whatever caches of addresses these modules keep
        for value in vars(module).values():
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()
    parsed: list[object] = []
    real = ipaddress.IPv4Address

    class Counted(real):  # type: ignore[valid-type,misc]
        __slots__ = ()

        def __init__(self, address: object) -> None:
            parsed.append(address)
            super().__init__(address)

    monkeypatch.setattr(ipaddress, "IPv4Address", Counted)
    created = await engine.execute(CreateEndpoint(remote_sdp=build_offer(ADDRESS, 40000).serialize()))
    assert isinstance(created, EndpointCreated)
    await engine.execute(Release(created.endpoint_id))
    assert parsed.count(ADDRESS) == 1


def test_what_the_one_parse_says() -> None:
    assert routable("8.8.8.8") and not routable(ADDRESS) and not routable("10.0.0.7") and not routable("0.0.0.0")
    assert not routable("phone.example")
    offer = build_offer("192.0.2.1", 40000).serialize()
    assert SessionDescription.parse(offer).connection == "192.0.2.1"
    with pytest.raises(SdpError, match="host name"):
        SessionDescription.parse(offer.replace("c=IN IP4 192.0.2.1", "c=IN IP4 phone.example"))
    with pytest.raises(SdpError, match="multicast"):
        SessionDescription.parse(offer.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1"))
