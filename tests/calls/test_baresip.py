"""baresip, a real softphone, registers with digest auth as Bob and auto-answers a call from Alice (SIPp)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.calls.conftest import PASSWORD, Exchange, place_call
from tests.sip.peers import free_udp_port, require, stop

pytestmark = pytest.mark.sip


def baresip_config(directory: Path, sip_port: int, server_port: int, user: str, frequency: float = 440.0) -> None:
    """baresip as `user`: registers with digest auth, auto-answers, and sends 20 s of a `frequency` tone."""
    directory.mkdir(parents=True, exist_ok=True)
    samples = (8000 * np.sin(2 * np.pi * frequency * np.arange(8000 * 20) / 8000)).astype("<i2")
    with wave.open(str(directory / "tone.wav"), "wb") as tone:
        tone.setnchannels(1)
        tone.setsampwidth(2)
        tone.setframerate(8000)
        tone.writeframes(samples.tobytes())
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{sip_port}",
                "net_interface 127.0.0.1",  # "lo" fails here (TELEPHONY-TESTING.md)
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module_app account.so",
                "module_app menu.so",  # menu carries out answermode=auto in baresip 1.0
                "audio_player aufile,/dev/null",
                f"audio_source aufile,{directory / 'tone.wav'}",  # the tone toward the caller
                "audio_alert aufile,/dev/null",
                "",
            ]
        )
    )
    (directory / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{server_port}>;auth_pass={PASSWORD};regint=60;answermode=auto;audio_codecs=PCMA,PCMU\n"
    )


async def test_baresip_registers_and_auto_answers_an_internal_call(exchange: Exchange, tmp_path: Path) -> None:
    baresip = require("baresip")
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    config = tmp_path / "baresip"
    baresip_config(config, free_udp_port(), exchange.port, "bob")
    output = (tmp_path / "baresip.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        baresip, "-f", str(config), "-t", "25",
        stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(10):
            while not await exchange.registrations("bob"):  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.1)
        alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2500)
        await alice.succeeded()
        call = await exchange.next_call()
    finally:
        await stop(process)
        output.close()
    log = (tmp_path / "baresip.log").read_text(errors="replace")
    assert call.answered and call.branches == [("desk", 200)], (call, log[-3000:])
    # Both directions went through the engine: Alice's capture to baresip, baresip's tone back to Alice.
    assert call.media["callee_packets_sent"] > 50
    assert call.media["callee_packets_received"] > 50
    assert call.media["caller_packets_sent"] > 50
    logs = await exchange.call_logs("bob")
    assert [(row.direction, row.outcome) for row in logs] == [("received", "answered")]
