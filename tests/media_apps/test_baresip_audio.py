"""A real softphone on the far end of a recorded call: baresip (bob) auto-answers and sends a 660 Hz tone, alice's
SIPp phone sends 440 Hz. Judged on the audio: alice hears baresip's tone through the anchor, and alice's recording
holds both voices."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from hipper.domain.services import CallRecording
from hipper.store.models import Recording
from tests.calls.conftest import Exchange
from tests.calls.test_baresip import baresip_config
from tests.media_apps.conftest import audio_of, band_energy, call_from_phone, ear, settled, tone, tone_heard
from tests.sip.peers import free_udp_port, require, stop

pytestmark = pytest.mark.sip

BOB_TONE = 660.0
ALICE_TONE = 440.0


async def test_a_call_to_baresip_is_heard_and_recorded_both_ways(exchange: Exchange, tmp_path: Path) -> None:
    baresip = require("baresip")
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("alice", CallRecording(mode="always"))
    config = tmp_path / "baresip"
    baresip_config(config, free_udp_port(), exchange.port, "bob", frequency=BOB_TONE)
    output = (tmp_path / "baresip.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        baresip, "-f", str(config), "-t", "30",
        stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    alice = await ear()
    try:
        async with asyncio.timeout(10):
            while not await exchange.registrations("bob"):  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.1)
        sipp = await call_from_phone(exchange, "alice", "202", alice, end="end_hang_up.xml", talk_ms=4000)
        await alice.wait_for_tone(BOB_TONE, limit=15)  # baresip answered; its tone came through the anchor
        await alice.talk(tone(ALICE_TONE, 1.5))
        await sipp.succeeded(20)
    finally:
        alice.close()
        await stop(process)
        output.close()
    call = await exchange.next_call()
    log = (tmp_path / "baresip.log").read_text(errors="replace")
    assert call.answered and call.branches == [("desk", 200)], (call, log[-3000:])
    assert tone_heard(alice.audio(), BOB_TONE)
    assert not tone_heard(alice.audio(), ALICE_TONE)  # the anchor does not echo alice back to herself

    await settled(exchange)
    async with exchange.sessions() as session:
        [row] = (await session.execute(select(Recording))).scalars()
    assert row.user_id == exchange.users["alice"] and row.remote_number == "202"
    audio = audio_of(exchange, row)
    # Both voices are in the recording: each tone carries a real share of the recording's energy.
    assert band_energy(audio, BOB_TONE, width=15) > 0.1
    assert band_energy(audio, ALICE_TONE, width=15) > 0.1
