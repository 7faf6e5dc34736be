"""baresip (Debian 1.0), a real softphone, over SIP over TLS with digest auth, calling and called by a SIPp phone
on UDP: the B2BUA bridges UDP and TLS, audio flows both ways. Debian's SIPp has no TLS, so baresip is the TLS peer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hipper.sip.transport import server_context
from tests.calls.conftest import Exchange, phone, place_call, scenario
from tests.calls.test_baresip import baresip_config
from tests.sip.peers import free_udp_port, require, stop
from tests.support.certs import self_signed

pytestmark = pytest.mark.sip


async def start_tls(exchange: Exchange, tmp_path: Path) -> tuple[int, Path]:
    """Turn SIP over TLS on in the running exchange with a fresh self-signed certificate: its port and cert."""
    cert_file, key_file = self_signed(tmp_path / "certs")
    await exchange.stack.transports.start_tls("127.0.0.1", 0, server_context(cert_file, key_file))
    assert exchange.stack.transports.tls_port is not None
    return exchange.stack.transports.tls_port, cert_file


def tls_baresip_config(directory: Path, tls_port: int, cert_file: Path, user: str) -> None:
    baresip_config(directory, free_udp_port(), tls_port, user)
    # The account names the TLS transport. The CA file is what a deployment with a private CA gives its phones;
    # baresip 1.0 (libre) does not enforce it (it registers with a wrong one too), so certificate verification is
    # shown by Python's ssl client in tests/sip/test_tls.py.
    accounts = (directory / "accounts").read_text()
    (directory / "accounts").write_text(accounts.replace(f":{tls_port}>", f":{tls_port};transport=tls>"))
    with (directory / "config").open("a") as handle:
        handle.write(f"sip_cafile {cert_file}\n")


async def start_baresip(directory: Path, log: Path, *commands: str) -> asyncio.subprocess.Process:
    """baresip with its SIP trace (-s) into `log`, quitting by itself after 25 s; `commands` run at start (-e)."""
    baresip = require("baresip")
    extra = [argument for command in commands for argument in ("-e", command)]
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            baresip, "-f", str(directory), "-t", "25", "-s", *extra,
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


async def test_baresip_over_tls_takes_a_call_from_a_udp_phone(exchange: Exchange, tmp_path: Path) -> None:
    require("baresip")
    tls_port, cert_file = await start_tls(exchange, tmp_path)
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    config = tmp_path / "baresip"
    tls_baresip_config(config, tls_port, cert_file, "bob")
    process = await start_baresip(config, tmp_path / "baresip.log")
    try:
        async with asyncio.timeout(10):
            while not await exchange.registrations("bob"):  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.1)
        (registration,) = await exchange.registrations("bob")
        assert registration.source.startswith("tls:127.0.0.1:")  # requests to Bob go over this connection
        assert "transport=tls" in registration.contact
        alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2500)
        await alice.succeeded()
        call = await exchange.next_call()
    finally:
        await stop(process)
    log = (tmp_path / "baresip.log").read_text(errors="replace")
    assert call.answered and call.branches == [("desk", 200)], (call, log[-3000:])
    # baresip's SIP trace: our INVITE came over its TLS connection, with a TLS Via and a TLS Contact.
    assert f"Via: SIP/2.0/TLS 127.0.0.1:{tls_port};" in log, log[-3000:]
    assert f"Contact: <sip:hipper@127.0.0.1:{tls_port};transport=tls>" in log
    # Both directions went through the engine: Alice's capture to baresip, baresip's tone back to Alice.
    assert call.media["callee_packets_sent"] > 50
    assert call.media["callee_packets_received"] > 50
    assert call.media["caller_packets_sent"] > 50
    logs = await exchange.call_logs("bob")
    assert [(row.direction, row.outcome) for row in logs] == [("received", "answered")]


async def test_baresip_over_tls_calls_a_udp_phone(exchange: Exchange, tmp_path: Path) -> None:
    """The other direction: baresip's INVITE over TLS is challenged and answered with our TLS Contact; the BYE
    of the UDP phone reaches baresip over TLS."""
    require("baresip")
    tls_port, cert_file = await start_tls(exchange, tmp_path)
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    # Bob (SIPp, UDP) answers, echoes the audio for three seconds, then hangs up.
    bob_text = scenario("callee_hangs_up.xml").replace('<pause milliseconds="1000" />', '<pause milliseconds="3000" />')
    bob = await phone(exchange, "bob", "bob", bob_text, "-rtp_echo")
    config = tmp_path / "baresip"
    tls_baresip_config(config, tls_port, cert_file, "alice")
    dial = f"/dial sip:202@127.0.0.1:{tls_port}"  # baresip adds the account's transport=tls
    process = await start_baresip(config, tmp_path / "baresip.log", dial)
    try:
        await bob.succeeded()
        call = await exchange.next_call()
    finally:
        await stop(process)
    log = (tmp_path / "baresip.log").read_text(errors="replace")
    assert call.answered and call.branches == [("desk", 200)], (call, log[-3000:])
    assert f"INVITE sip:202@127.0.0.1:{tls_port};transport=tls SIP/2.0" in log
    assert "SIP/2.0 407 Proxy Authentication Required" in log  # the INVITE was challenged (digest), over TLS
    assert f"Contact: <sip:hipper@127.0.0.1:{tls_port};transport=tls>" in log
    assert "BYE sip:alice" in log  # the exchange's BYE reached baresip over TLS
    # baresip's tone reached Bob and came back from his echo, through the engine.
    assert call.media["caller_packets_received"] > 50
    assert call.media["caller_packets_sent"] > 50
    placed = await exchange.call_logs("alice")
    assert [(row.direction, row.outcome, row.remote_number) for row in placed] == [("placed", "answered", "202")]
