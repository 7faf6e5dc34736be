"""Media application tests: the call tests' real exchange, SIPp for the signalling, and a test-owned RTP socket
per phone that sends tones and RFC 4733 digits and keeps what it hears, so tests judge the audio itself.

SIPp's SDP names the test socket (`$rtp_port`), so the exchange's media engine sends there and latches on to
what the socket sends (symmetric RTP): SIPp does SIP, the socket does the talking and listening.
"""

from __future__ import annotations

import asyncio
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hipper.media.dtmf import event_payloads
from hipper.media.g711 import Pcm
from hipper.media.wavfile import read_wav
from hipper.store import media_files
from hipper.store.models import Recording
from tests.calls.conftest import PASSWORD, Caller, Exchange, calling, exchange, poke, register, start_sipp
from tests.media.phones import Phone, band_energy, dominant_frequency, rms, tone
from tests.sip.peers import free_udp_port

SCENARIOS = Path(__file__).parent / "scenarios"

__all__ = ["Caller", "band_energy", "dominant_frequency", "exchange", "poke", "rms", "tone"]


def scenario(name: str, end: str | None = None, **values: Any) -> str:
    text = (SCENARIOS / name).read_text()
    if end is not None:
        values["end"] = string.Template((SCENARIOS / end).read_text()).safe_substitute(
            {k: str(v) for k, v in values.items()}
        )
    values.setdefault("end", "")
    return string.Template(text).safe_substitute({k: str(v) for k, v in values.items()})


@dataclass
class Ear:
    """A phone's audio side: sends paced audio and DTMF from its own port, records everything it receives."""

    phone: Phone = field(default_factory=lambda: Phone(codec="PCMA"))
    talking: asyncio.Task[None] | None = None
    sipp_logs: tuple[Path, str] | None = None  # SIPp's message log (directory, name prefix), for the engine's SDP

    async def open(self) -> Ear:
        await self.phone.open()
        return self

    @property
    def port(self) -> int:
        return self.phone.port

    def close(self) -> None:
        if self.talking is not None:
            self.talking.cancel()
        self.phone.close()

    def _engine_port_from_sdp(self) -> int | None:
        """The exchange's RTP port from the SDP in SIPp's message log (any m=audio port that is not ours)."""
        if self.sipp_logs is None:
            return None
        directory, prefix = self.sipp_logs
        for log in directory.glob(f"{prefix}_*_messages.log"):
            ports = [int(port) for port in re.findall(r"m=audio (\d+)", log.read_text(errors="replace"))]
            theirs = [port for port in ports if port != self.port]
            if theirs:
                return theirs[-1]
        return None

    async def connected(self, limit: float = 15.0) -> None:
        """Learn where the exchange's media is: its first packet, or (a bridged leg hears nothing before the
        other side talks) the SDP it sent. From then on it latches on to what we send (symmetric RTP)."""
        if self.phone.engine_address is not None:
            return
        async with asyncio.timeout(limit):
            while True:  # polled: neither the datagram protocol nor SIPp's log has an event to wait on
                if self.phone.received:
                    self.phone.engine_address = self.phone.received[0].source
                    return
                port = self._engine_port_from_sdp()
                if port is not None:
                    self.phone.engine_address = ("127.0.0.1", port)
                    return
                await asyncio.sleep(0.02)

    def audio(self) -> Pcm:
        return self.phone.audio()

    async def talk(self, samples: Pcm) -> None:
        await self.connected()
        await self.phone.talk(samples)

    def keep_talking(self, samples: Pcm) -> None:
        """Send `samples` in the background (e.g. a conference participant's tone), replacing what was sent."""
        if self.talking is not None:
            self.talking.cancel()
        self.talking = asyncio.ensure_future(self.talk(samples))

    async def quiet(self) -> None:
        if self.talking is not None:
            self.talking.cancel()
            self.talking = None

    async def press(self, digits: str) -> None:
        """RFC 4733 telephone-events on payload type 101, each a new event with its own timestamp."""
        await self.connected()
        for digit in digits:
            first = True
            for payload in event_payloads(digit, 100):
                self.phone.send(payload, payload_type=101, marker=first)
                first = False
                await asyncio.sleep(0.02)
            self.phone.ts = (self.phone.ts + 1600) & 0xFFFFFFFF
            await asyncio.sleep(0.08)

    async def wait_for_tone(self, frequency: float, limit: float = 30.0, after: int = 0) -> int:
        """Wait until the last 200 ms heard are mostly `frequency`; returns the sample index where it was heard."""
        async with asyncio.timeout(limit):
            while True:
                audio = self.audio()
                recent = audio[-1600:]
                if len(audio) - after >= 1600 and band_energy(recent, frequency) > 0.6 and rms(recent) > 300:
                    return len(audio)
                await asyncio.sleep(0.05)


def tone_heard(audio: Pcm, frequency: float) -> bool:
    """Whether some 200 ms of `audio` is mostly `frequency` (speech has energy there too, but never that pure)."""
    for start in range(0, len(audio) - 1600 + 1, 400):
        window = audio[start : start + 1600]
        if rms(window) > 300 and band_energy(window, frequency) > 0.6:
            return True
    return False


def silence(seconds: float) -> Pcm:
    return np.zeros(int(8000 * seconds), dtype=np.int16)


async def ear() -> Ear:
    return await Ear().open()


async def call_from_phone(
    exchange: Exchange, user: str, dialled: str, ear: Ear, end: str = "end_wait_bye.xml", limit: int = 40, **values: Any
) -> Caller:
    """A registered user's phone dials `dialled`; its audio runs through `ear`."""
    text = scenario("caller.xml", end, user=user, from_user=user, rtp_port=ear.port, **values)
    ear.sipp_logs = (exchange.workdir, f"caller-{user}")
    name = f"caller-{user}"
    return await calling(exchange, name, text, "-s", dialled, "-au", user, "-ap", PASSWORD, limit=limit)


async def call_from_trunk(
    exchange: Exchange, from_number: str, dialled: str, ear: Ear, end: str = "end_wait_bye.xml", limit: int = 40,
    **values: Any,
) -> Caller:  # fmt: skip
    text = scenario("trunk_caller.xml", end, from_user=from_number, rtp_port=ear.port, **values)
    ear.sipp_logs = (exchange.workdir, "trunk-caller")
    return await calling(exchange, "trunk-caller", text, "-s", dialled, port=exchange.trunk_port, limit=limit)


async def answering_phone(exchange: Exchange, user: str, ear: Ear, limit: int = 40, hang_up_ms: int = 0) -> Any:
    """`user` registers from a fresh port and answers the next call there, its audio through `ear`; with
    `hang_up_ms` it hangs up itself that long after answering."""
    port = free_udp_port()
    await register(exchange, user, port)
    if hang_up_ms:
        text = scenario("callee_hangs_up.xml", rtp_port=ear.port, talk_ms=hang_up_ms)
    else:
        text = scenario("callee.xml", rtp_port=ear.port)
    ear.sipp_logs = (exchange.workdir, f"callee-{user}")
    return await start_sipp(exchange, f"callee-{user}", text, port=port, limit=limit)


async def settled_calls(exchange: Exchange, limit: float = 15.0) -> None:
    """Every call of the exchange ended and logged (the B2BUA forgets a call once its rows are written)."""
    async with asyncio.timeout(limit):
        while exchange.b2bua.calls or exchange.applications.app_calls.callbacks:  # noqa: ASYNC110 - B2BUA state
            await asyncio.sleep(0.05)


async def settled(exchange: Exchange, limit: float = 10.0) -> None:
    """Recordings are stored (or discarded) just after the call ends: wait until the spool is empty."""
    spool = exchange.settings.data_dir / "spool"
    async with asyncio.timeout(limit):
        while True:  # polled: storing happens in the exchange's own task, with no event a test can await
            if not [p for p in spool.rglob("*") if p.is_file()]:
                return
            await asyncio.sleep(0.05)


def audio_of(exchange: Exchange, row: Recording) -> np.ndarray:
    return read_wav(media_files.resolve(exchange.settings.data_dir, row.media_path))


def utc(moment: datetime | None) -> datetime:
    """A stored time (a call-log row's) as UTC: SQLite gives it back without its zone."""
    assert moment is not None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
