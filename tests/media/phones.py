"""A test "phone": a real UDP socket that sends paced RTP to the engine and records what comes back."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import numpy as np

from hipper.media import g711
from hipper.media.g711 import Pcm
from hipper.media.rtp import RtpPacket
from hipper.media.sdp import build_offer


@dataclass
class Received:
    packet: RtpPacket
    at: float
    source: tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, phone: Phone) -> None:
        self.phone = phone

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.phone.received.append(Received(RtpPacket.parse(data), asyncio.get_running_loop().time(), addr))


@dataclass
class Phone:
    codec: str = "PCMU"
    dtmf_payload_type: int = 101
    received: list[Received] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    port: int = 0
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    ts: int = field(default_factory=lambda: random.getrandbits(32))
    sent: int = 0
    engine_address: tuple[str, int] | None = None
    opened_at: float = 0.0  # the loop's time at open(): before the engine can have sent us anything

    async def open(self) -> Phone:
        loop = asyncio.get_running_loop()
        self.opened_at = loop.time()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=("127.0.0.1", 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def offer(self, address: str = "127.0.0.1") -> str:
        return build_offer(address, self.port, (self.codec,), self.dtmf_payload_type).serialize()

    def send(
        self, payload: bytes, payload_type: int | None = None, marker: bool = False, ts: int | None = None
    ) -> None:
        assert self.transport is not None and self.engine_address is not None
        self.seq = (self.seq + 1) & 0xFFFF
        packet = RtpPacket(
            payload_type if payload_type is not None else (0 if self.codec == "PCMU" else 8),
            self.seq,
            self.ts if ts is None else ts,
            self.ssrc,
            payload,
            marker,
        )
        self.transport.sendto(packet.serialize(), self.engine_address)
        self.sent += 1

    async def talk(self, samples: Pcm, frame_seconds: float = 0.02, packet_samples: int = 160) -> None:
        """Send audio in packets (20 ms unless told) paced on absolute deadlines of the loop clock."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        for start in range(0, len(samples) - packet_samples + 1, packet_samples):
            self.send(g711.encode(samples[start : start + packet_samples], self.codec))
            self.ts = (self.ts + packet_samples) & 0xFFFFFFFF
            deadline += frame_seconds * packet_samples / 160
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    def audio(self) -> Pcm:
        """Everything received on the audio payload type, decoded, in arrival order."""
        pt = 0 if self.codec == "PCMU" else 8
        frames = [g711.decode(r.packet.payload, self.codec) for r in self.received if r.packet.payload_type == pt]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


def tone(frequency: float, seconds: float, amplitude: float = 8000.0) -> Pcm:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def dominant_frequency(samples: Pcm) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])


def band_energy(samples: Pcm, frequency: float, width: float = 30.0) -> float:
    """Share of the signal's energy within ±width Hz of frequency."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    total = float(spectrum.sum()) or 1.0
    return float(spectrum[np.abs(freqs - frequency) <= width].sum()) / total


def rms(samples: Pcm) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
