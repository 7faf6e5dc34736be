"""baresip registers over TLS with digest auth and auto-answers a call from Alice (SIPp over UDP): the B2BUA
bridges UDP and TLS, audio flows both ways. Debian's SIPp has no TLS, so baresip is the TLS peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hipper.sip.transport import server_context
from tests.calls.conftest import Exchange, place_call
from tests.calls.test_baresip import baresip_config
from tests.sip.peers import free_udp_port, require, stop
from tests.support.certs import self_signed

pytestmark = pytest.mark.sip


async def test_baresip_over_tls_takes_a_call_from_a_udp_phone(exchange: Exchange, tmp_path: Path) -> None:
    baresip = require("baresip")
    cert_file, key_file = self_signed(tmp_path / "certs")
    await exchange.stack.transports.start_tls("127.0.0.1", 0, server_context(cert_file, key_file))
    tls = exchange.stack.transports.tls
    assert tls is not None
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    config = tmp_path / "baresip"
    baresip_config(config, free_udp_port(), tls.port, "bob")
    # The account names the TLS transport. The CA file is what a deployment with a private CA gives its phones;
    # baresip 1.0 (libre) does not enforce it (it registers with a wrong one too), so certificate verification is
    # shown by Python's ssl client in tests/sip/test_tls.py.
    accounts = (
        (config / "accounts").read_text().replace(f"127.0.0.1:{tls.port}>", f"127.0.0.1:{tls.port};transport=tls>")
    )
    (config / "accounts").write_text(accounts)
    with (config / "config").open("a") as handle:
        handle.write(f"sip_cafile {cert_file}\n")
    output = (tmp_path / "baresip.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        baresip, "-f", str(config), "-t", "25", "-s",
        stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(10):
            while not await exchange.registrations("bob"):  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.1)
        (registration,) = await exchange.registrations("bob")
        assert registration.source.startswith("tls:127.0.0.1:")
        assert "transport=tls" in registration.contact
        alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2500)
        await alice.succeeded()
        call = await exchange.next_call()
    finally:
        await stop(process)
        output.close()
    log = (tmp_path / "baresip.log").read_text(errors="replace")
    assert call.answered and call.branches == [("desk", 200)], (call, log[-3000:])
    # baresip's SIP trace (-s): our INVITE came over its TLS connection, with a TLS Via and a TLS Contact.
    assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls.port};" in log, log[-3000:]
    assert f"Contact: <sip:hipper@127.0.0.1:{tls.port};transport=tls>" in log
    # Both directions went through the engine: Alice's capture to baresip, baresip's tone back to Alice.
    assert call.media["callee_packets_sent"] > 50
    assert call.media["callee_packets_received"] > 50
    assert call.media["caller_packets_sent"] > 50
    logs = await exchange.call_logs("bob")
    assert [(row.direction, row.outcome) for row in logs] == [("received", "answered")]
