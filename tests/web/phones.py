"""SIPp phones for browser tests and screenshots: the exchange's SIP side (LiveServer with call processing) as the
call tests see it, so their helpers (tests/calls/conftest.py) place, answer and judge the calls. SIPp runs on the
exchange's own event loop (LiveServer.run): the test thread is Playwright's.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.calls.conftest import PASSWORD, REALM, Exchange, Sipp, phone, place_call, scenario, start_sipp
from tests.sip.peers import free_udp_port, stop
from tests.support.ports import engine_range
from tests.web.live_server import LiveServer

# The mobile network's port stays bound here while no SIPp plays the mobile: a module-long exchange keeps that port
# for all its tests, and in between any process binding "a free port" could get it (SIPp then cannot bind it).
_held: dict[int, socket.socket] = {}


def hold(port: int) -> None:
    if port in _held:
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return
    _held[port] = sock


def release(port: int) -> None:
    sock = _held.pop(port, None)
    if sock is not None:
        sock.close()


def done_with(settings: dict[str, Any]) -> None:
    """The exchange made with these `sip_settings()` has stopped: its mobile port is let go."""
    release(int(settings["mobile_network_address"].rsplit(":", 1)[1]))


def sip_settings() -> dict[str, Any]:
    """LiveServer.extra_settings for an exchange SIPp phones can call: the call tests' realm, one-second rings, a
    trunk and a mobile network on free ports, its own RTP range."""
    base = engine_range()
    mobile = free_udp_port()
    hold(mobile)
    return {
        "sip_realm": REALM,
        "seconds_per_ring": 1,
        "branch_provisional_seconds": 8.0,  # SIPp may start slowly on a shared machine
        "trunk_address": f"udp:127.0.0.1:{free_udp_port()}",
        "mobile_network_address": f"udp:127.0.0.1:{mobile}",
        "rtp_port_min": base,
        "rtp_port_max": base + 200,
    }


@dataclass
class Phones:
    """The exchange's SIP side as the call tests see it, and the SIPp phones a test started (stopped at its end)."""

    server: LiveServer
    exchange: Exchange
    started: list[Sipp] = field(default_factory=list)

    def run(self, work: Any, limit: float = 60.0) -> Any:
        return self.server.run(work, limit)

    def desk_phone(self, user: str, text: str | None = None, limit: int = 60) -> Sipp:
        """`user`'s desk phone registers and answers the next call, then waits for the BYE."""
        sipp: Sipp = self.run(phone(self.exchange, user, f"desk-{user}", text or scenario("callee.xml", ring_ms=100),
                                    "-rtp_echo", limit=limit))  # fmt: skip
        self.started.append(sipp)
        return sipp

    def mobile(self, text: str | None = None, limit: int = 60) -> Sipp:
        """The mobile network (where every user's mobile is reached) answers the next call there."""
        text = text or scenario("callee.xml", ring_ms=100)
        release(self.exchange.mobile_port)
        sipp: Sipp = self.run(start_sipp(self.exchange, "mobile", text, "-rtp_echo", port=self.exchange.mobile_port,
                                         limit=limit))  # fmt: skip
        self.started.append(sipp)
        return sipp

    def call(self, caller: str, dialled: str, limit: int = 60) -> Sipp:
        """`caller`'s desk phone calls `dialled` and stays on until the exchange sends its BYE."""
        sipp: Sipp = self.run(place_call(self.exchange, caller, dialled, "final_application.xml", limit=limit))
        self.started.append(sipp)
        return sipp

    def ends_well(self, sipp: Sipp, limit: float = 30.0) -> None:
        self.run(sipp.succeeded(limit), limit + 5)

    @classmethod
    def of(cls, server: LiveServer, workdir: Path) -> Phones:
        """The phones of `server` (started with `sip_settings()`); SIPp writes its scenarios and logs in `workdir`."""
        settings, b2bua = server.sip_settings, server.b2bua
        assert settings is not None and b2bua is not None and server.sip is not None and server.sessions is not None
        trunk, mobile = (int(a.rsplit(":", 1)[1]) for a in (settings.trunk_address, settings.mobile_network_address))
        return cls(server, Exchange(settings, server.sip, server.sessions, b2bua.media, b2bua, trunk, workdir, mobile))

    @staticmethod
    def add_desk_phone(server: LiveServer, username: str) -> None:
        """The user's desk phone: a SIP device registering as `username` with the call tests' password."""
        server.add_device(username, username, PASSWORD, REALM)

    def stop(self) -> None:
        """Every phone still running (parties a transfer or merge left talking to each other, the phones of a test
        that failed half-way) stopped by its own pid."""
        for sipp in self.started:
            self.run(stop(sipp.process))
        hold(self.exchange.mobile_port)
