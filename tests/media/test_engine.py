"""The engine against real UDP sockets on loopback: what a phone would see on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from hipper.media import g711, tones
from hipper.media.dtmf import TelephoneEvent
from hipper.media.engine import (
    Connect,
    CreateEndpoint,
    CreateMixer,
    CreateOffer,
    Disconnect,
    DtmfReceived,
    EndpointCreated,
    MediaEngine,
    MediaError,
    MediaEvent,
    PauseRecording,
    Play,
    PlaybackFinished,
    PlayPcm,
    RecordingFinished,
    Release,
    ResumeRecording,
    RtpTimeout,
    SendDtmf,
    SessionUpdated,
    SetRemoteSdp,
    Started,
    StartRecording,
    StartSending,
    StopRecording,
)
from hipper.media.prompts import tone_path
from hipper.media.rtp import RtcpReceiverReport, RtcpSenderReport, RtpPacket, parse_rtcp
from hipper.media.sdp import build_offer
from tests.media.pcap import SIPP_CAPTURES, udp_payloads
from tests.media.phones import Phone, Received, band_energy, dominant_frequency, rms, tone
from tests.support.ports import engine_range, peer_media_port

E = TypeVar("E", bound=MediaEvent)


async def attach(engine: MediaEngine, phone: Phone, sdp_address: str = "127.0.0.1") -> str:
    """The phone offers; the engine answers and the answer goes out (what a B2BUA does with an incoming INVITE
    it answers at once): the endpoint sends from then on."""
    await phone.open()
    reply = await engine.execute(CreateEndpoint(remote_sdp=phone.offer(sdp_address)))
    assert isinstance(reply, EndpointCreated)
    phone.engine_address = ("127.0.0.1", reply.local_port)
    await engine.execute(StartSending(reply.endpoint_id))
    return reply.endpoint_id


async def next_event(engine: MediaEngine, kind: type[E], within: float = 10.0) -> E:
    async with asyncio.timeout(within):
        while True:
            event = await engine.events.get()
            if isinstance(event, kind):
                return event


def audio_packets(phone: Phone) -> list[Received]:
    return [r for r in phone.received if r.packet.payload_type in (0, 8)]


async def until(done: Callable[[], bool], limit: float = 10.0) -> None:
    """Until `done()` holds: what the engine sends reaches the test's sockets when the loop gets to read them,
    which on a loaded machine is later than any fixed pause."""
    async with asyncio.timeout(limit):
        while not done():  # noqa: ASYNC110 - packets arrive on the phones' protocols
            await asyncio.sleep(0.01)


def assert_one_continuous_stream(phone: Phone) -> list[int]:
    """Same SSRC, sequence +1 each packet, timestamps advancing with time; returns the marker positions."""
    received = audio_packets(phone)
    packets = [r.packet for r in received]
    assert len({p.ssrc for p in packets}) == 1
    markers = [i for i, p in enumerate(packets) if p.marker]
    for i, (previous, current) in enumerate(itertools.pairwise(received), start=1):
        assert current.packet.sequence_number == (previous.packet.sequence_number + 1) & 0xFFFF, i
        step = (current.packet.timestamp - previous.packet.timestamp) & 0xFFFFFFFF
        if current.packet.marker:
            # A switch: the timestamp jumps by about the time that passed (never backwards, never one frame less).
            # A packet's arrival time says little on a loaded machine: the phone shares the engine's loop, so a
            # stall delivers packets sent far apart together. What holds whatever the load: the stream's
            # timeline never runs ahead of the time since the phone opened (nothing can be sent before that).
            assert 160 <= step < 2**31, (i, step)  # forwards, by a frame at least (a step back wraps past 2**31)
            ahead = (current.packet.timestamp - packets[0].timestamp) & 0xFFFFFFFF
            assert ahead <= round((current.at - phone.opened_at) * 8000) + 800, (i, ahead)
        else:
            assert step == 160, (i, step)
    return markers


async def test_one_outgoing_stream_across_ringback_prompt_bridge_and_silence(engine: MediaEngine) -> None:
    caller, callee = Phone("PCMU"), Phone("PCMA")
    caller_ep, callee_ep = await attach(engine, caller), await attach(engine, callee)
    await asyncio.sleep(0.06)  # a moment of silence right after the answer
    await engine.execute(PlayPcm(caller_ep, tones.ringback(), loop=True))
    await asyncio.sleep(0.3)
    prompt = await engine.execute(Play(caller_ep, (tone_path("beep"),)))
    assert isinstance(prompt, Started)
    finished = await next_event(engine, PlaybackFinished)
    assert finished.playback_id == prompt.id
    await asyncio.sleep(0.1)

    def source_of(r: Received) -> str:
        pcm = g711.decode(r.packet.payload, "PCMU")
        if rms(pcm) == 0:
            return "silence"
        return min(
            ("ringback", 425.0),
            ("prompt", 1000.0),
            ("callee", 500.0),
            key=lambda s: abs(s[1] - dominant_frequency(pcm)),
        )[0]

    await engine.execute(Connect(caller_ep, callee_ep))
    await callee.talk(tone(500, 0.4))
    await until(lambda: [source_of(r) for r in audio_packets(caller)].count("callee") >= 20)
    await engine.execute(Disconnect(caller_ep))
    bridged = len(audio_packets(caller))
    await until(lambda: len(audio_packets(caller)) >= bridged + 3)  # silence after the bridge

    received = audio_packets(caller)
    markers = assert_one_continuous_stream(caller)
    sources = [source_of(r) for r in received]
    # Where what the caller hears changes, in order: silence, ringback, the prompt, silence (the prompt ran out:
    # same talkspurt), the bridged callee, silence after the bridge.
    changes = [0] + [i for i in range(1, len(sources)) if sources[i] != sources[i - 1]]
    assert [sources[i] for i in changes] == ["silence", "ringback", "prompt", "silence", "callee", "silence"]
    prompt_end = changes[3]
    # Every change of source carries the marker bit, except the prompt running out into silence.
    assert set(changes) - {prompt_end} <= set(markers)
    # Any other marker is the ticker skipping ahead after the loop was starved (a timestamp jump of 4+ frames).
    for i in set(markers) - set(changes):
        assert (received[i].packet.timestamp - received[i - 1].packet.timestamp) & 0xFFFFFFFF >= 4 * 160, i
    assert sources.count("callee") == 20  # every packet the callee sent, transcoded PCMA -> PCMU
    caller.close()
    callee.close()


async def test_media_goes_where_packets_come_from_not_to_the_sdp_address(engine: MediaEngine) -> None:
    phone = Phone()
    # Behind NAT: the SDP names an address nobody can reach (TEST-NET-1).
    endpoint = await attach(engine, phone, sdp_address="192.0.2.1")
    await asyncio.sleep(0.1)
    assert phone.received == []
    phone.send(g711.silence("PCMU"))
    await until(lambda: len(audio_packets(phone)) >= 4)
    assert engine.stats(endpoint)["packets_received"] == 1
    # Once latched, packets from elsewhere are ignored (no hijacking of the call's media).
    intruder = Phone()
    await intruder.open()
    intruder.engine_address = phone.engine_address
    intruder.send(g711.silence("PCMU"))
    await asyncio.sleep(0.05)
    assert engine.stats(endpoint)["packets_received"] == 1
    assert intruder.received == []
    phone.close()
    intruder.close()


async def test_relay_between_two_sockets_transcodes_and_loses_nothing(engine: MediaEngine) -> None:
    a, b = Phone("PCMU"), Phone("PCMA")
    ea, eb = await attach(engine, a), await attach(engine, b)
    await engine.execute(Connect(ea, eb))
    count = 400
    a_says, b_says = tone(700, count * 0.02), tone(1300, count * 0.02)
    # Both directions at once, at ten times real-time rate, to exercise the unpaced relay path.
    await asyncio.gather(a.talk(a_says, frame_seconds=0.002), b.talk(b_says, frame_seconds=0.002))
    silence = {g711.silence("PCMU"), g711.silence("PCMA")}

    def relayed(phone: Phone) -> list[Received]:
        return [r for r in audio_packets(phone) if r.packet.payload not in silence]

    # Whatever is relayed is on its way now; give it the time a loaded machine needs, but judge what was lost.
    with contextlib.suppress(TimeoutError):
        await until(lambda: len(relayed(a)) >= count and len(relayed(b)) >= count, limit=5)
    at_b, at_a = relayed(b), relayed(a)
    lost = (count - len(at_b)) + (count - len(at_a))
    assert lost <= count * 2 // 100, f"lost {lost} of {2 * count} packets"
    assert {r.packet.payload_type for r in at_b} == {8}
    expected = g711.transcode(g711.encode(a_says[:160], "PCMU"), "PCMU", "PCMA")
    assert at_b[0].packet.payload == expected
    assert dominant_frequency(np.concatenate([g711.decode(r.packet.payload, "PCMA") for r in at_b])) == (
        pytest.approx(700, abs=10)
    )
    if lost == 0:
        assert_one_continuous_stream(b)
    a.close()
    b.close()


async def test_dtmf_from_sipp_capture_is_reported_once_and_crosses_the_bridge_on_the_peers_payload_type(
    engine: MediaEngine,
) -> None:
    a, b = Phone("PCMU", dtmf_payload_type=101), Phone("PCMA", dtmf_payload_type=96)
    ea, eb = await attach(engine, a), await attach(engine, b)
    await engine.execute(Connect(ea, eb))
    for data in udp_payloads(SIPP_CAPTURES / "dtmf_2833_5.pcap"):
        captured = RtpPacket.parse(data)
        a.send(captured.payload, payload_type=101, marker=captured.marker, ts=captured.timestamp)
        await asyncio.sleep(0.005)
    event = await next_event(engine, DtmfReceived)
    assert (event.endpoint_id, event.digit, event.duration_ms) == (ea, "5", 280)

    def forwarded_packets() -> list[RtpPacket]:
        return [r.packet for r in b.received if r.packet.payload_type == 96]

    await until(lambda: len(forwarded_packets()) >= 10)  # every packet relayed (all were read: the event came)
    await asyncio.sleep(0.2)  # and no more: a second event or copy would come at once
    assert not any(isinstance(e, DtmfReceived) for e in drain(engine))
    forwarded = forwarded_packets()
    assert len(forwarded) == 10
    assert len({p.timestamp for p in forwarded}) == 1
    assert sum(TelephoneEvent.parse(p.payload).end for p in forwarded) == 3
    a.close()
    b.close()


async def test_a_digit_pressed_before_the_bridge_is_not_relayed_but_the_next_one_is(engine: MediaEngine) -> None:
    """Answer confirmation: the key is reported (end packet), then the bridge is made; the end packet's two repeats
    (RFC 4733 §2.5.1.4) come after it and must not reach the caller as the tail of a digit."""
    a, b = Phone("PCMU", dtmf_payload_type=101), Phone("PCMU", dtmf_payload_type=101)
    ea, eb = await attach(engine, a), await attach(engine, b)
    one = [RtpPacket.parse(data) for data in udp_payloads(SIPP_CAPTURES / "dtmf_2833_1.pcap")]
    five = [RtpPacket.parse(data) for data in udp_payloads(SIPP_CAPTURES / "dtmf_2833_5.pcap")]
    first_end = next(i for i, p in enumerate(one) if TelephoneEvent.parse(p.payload).end)
    for packet in one[: first_end + 1]:
        a.send(packet.payload, payload_type=101, marker=packet.marker, ts=packet.timestamp)
    assert (await next_event(engine, DtmfReceived)).digit == "1"
    await engine.execute(Connect(ea, eb))
    for packet in one[first_end + 1 :] + five:
        a.send(packet.payload, payload_type=101, marker=packet.marker, ts=packet.timestamp)
    assert (await next_event(engine, DtmfReceived)).digit == "5"

    def relayed_events() -> list[TelephoneEvent]:
        return [TelephoneEvent.parse(r.packet.payload) for r in b.received if r.packet.payload_type == 101]

    # The 5's three end packets reach b's socket; anything of the 1 would have come before them.
    await until(lambda: sum(event.end for event in relayed_events()) >= 3)
    relayed = relayed_events()
    # The 5 crossed the bridge; nothing of the 1 did (its repeats came before the 5's packets on loopback).
    assert relayed and {event.digit for event in relayed} == {"5"}
    a.close()
    b.close()


def drain(engine: MediaEngine) -> list[MediaEvent]:
    events = []
    while not engine.events.empty():
        events.append(engine.events.get_nowait())
    return events


async def test_send_dtmf_keeps_the_stream_continuous(engine: MediaEngine) -> None:
    phone = Phone(dtmf_payload_type=100)
    endpoint = await attach(engine, phone)
    await asyncio.sleep(0.06)
    await engine.execute(SendDtmf(endpoint, "1#", duration_ms=100))
    async with asyncio.timeout(10):  # both digits' packets, and audio again after them (a loaded machine is slow)
        while True:
            packets = [r.packet for r in phone.received]
            at = [i for i, p in enumerate(packets) if p.payload_type == 100]
            if len(at) >= 14 and at[-1] < len(packets) - 1:
                break
            await asyncio.sleep(0.02)
    assert len({p.ssrc for p in packets}) == 1
    for previous, current in itertools.pairwise(packets):
        assert current.sequence_number == (previous.sequence_number + 1) & 0xFFFF
    events = [p for p in packets if p.payload_type == 100]
    assert len(events) == 14  # two digits: 4 updates + 3 end packets each
    by_timestamp: dict[int, list[RtpPacket]] = {}
    for p in events:
        by_timestamp.setdefault(p.timestamp, []).append(p)
    assert len(by_timestamp) == 2
    digits = []
    for start, group in sorted(by_timestamp.items()):
        decoded = [TelephoneEvent.parse(p.payload) for p in group]
        assert group[0].marker and not any(p.marker for p in group[1:])
        assert [e.end for e in decoded] == [False] * 4 + [True] * 3
        digits.append(decoded[0].digit)
        after = next(p for p in packets if p.sequence_number == (group[-1].sequence_number + 1) & 0xFFFF)
        assert (after.timestamp - start) & 0xFFFFFFFF >= 800  # audio resumes after the event's duration
    assert digits == ["1", "#"]
    with pytest.raises(MediaError, match="digits"):
        await engine.execute(SendDtmf(endpoint, "1x"))
    phone.close()


async def written_to_the_end(engine: MediaEngine, recording_id: str) -> None:
    """Until a recording has written all that was said (then a tenth of a second of silence), before the test stops
    it: a loaded machine's test sends its last packet and stops the recording at once, before the engine read the
    packet (a mixer's participants are read on the ticker) — the stop's moment is the test's, not the engine's."""
    await until(lambda: engine.recording_quiet_seconds(recording_id) >= 0.1)


def read_recording(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def window(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[int(start * 8000) : int(end * 8000)]


@pytest.mark.parametrize("pause_writes_silence", [True, False])
async def test_recording_holds_the_received_audio_and_the_pause(
    engine: MediaEngine, tmp_path: Path, pause_writes_silence: bool
) -> None:
    phone = Phone("PCMA")
    endpoint = await attach(engine, phone)
    target = tmp_path / "calls" / "rec.wav"
    reply = await engine.execute(StartRecording((endpoint,), target, pause_writes_silence))
    assert isinstance(reply, Started)
    await phone.talk(tone(1000, 0.6))
    await engine.execute(PauseRecording(reply.id))
    await phone.talk(tone(1000, 0.4))  # said while paused: must not be in the file
    await engine.execute(ResumeRecording(reply.id))
    await phone.talk(tone(500, 0.6))
    assert not target.exists()  # the file appears only complete
    await written_to_the_end(engine, reply.id)
    await engine.execute(StopRecording(reply.id))
    finished = await next_event(engine, RecordingFinished)
    assert finished.path == target
    assert [p.name for p in target.parent.iterdir()] == ["rec.wav"]  # no temp file left behind
    assert finished.duration_seconds == pytest.approx(len(read_recording(target)) / 8000)
    samples = sounding(read_recording(target))
    assert dominant_frequency(window(samples, 0.1, 0.5)) == pytest.approx(1000, abs=10)
    if pause_writes_silence:
        assert len(samples) / 8000 == pytest.approx(1.6, abs=0.12)  # the pause lasts as long as the machine takes
        assert rms(window(samples, 0.7, 0.9)) == 0
        tail = window(samples, 1.1, 1.5)
    else:
        assert len(samples) / 8000 == pytest.approx(1.2, abs=0.12)
        tail = window(samples, 0.7, 1.1)
    assert dominant_frequency(tail) == pytest.approx(500, abs=10)
    phone.close()


async def test_a_pause_asked_for_after_a_stall_starts_where_it_was_asked_for(
    engine: MediaEngine, tmp_path: Path
) -> None:
    """The loop stalls 0.4 s (the phone quiet meanwhile) and the pause is asked for right after it, before the
    ticker caught up: the pause starts at the moment it was asked for, so the 0.4 s before it are in the file
    (silence), and the talk while paused is not. Before, it took effect where the ticker had got to — the stall's
    worth too early (the CI flake of the pause test under load: 1.04 s for 1.2 s)."""
    phone = Phone("PCMA")
    endpoint = await attach(engine, phone)
    reply = await engine.execute(StartRecording((endpoint,), tmp_path / "rec.wav", False))
    assert isinstance(reply, Started)
    await phone.talk(tone(1000, 0.6))
    time.sleep(0.4)  # noqa: ASYNC251 - blocks the loop: the ticker owes 20 frames when the pause comes
    phone.ts = (phone.ts + 3200) & 0xFFFFFFFF  # the phone's clock went on meanwhile (it sent nothing)
    await engine.execute(PauseRecording(reply.id))
    await phone.talk(tone(1000, 0.4))  # said while paused: must not be in the file
    await engine.execute(ResumeRecording(reply.id))
    await phone.talk(tone(500, 0.6))
    await written_to_the_end(engine, reply.id)
    await engine.execute(StopRecording(reply.id))
    samples = sounding(read_recording(tmp_path / "rec.wav"))
    assert len(samples) / 8000 == pytest.approx(1.6, abs=0.06)  # 0.6 s talk, the stall's 0.4 s, 0.6 s talk
    assert rms(window(samples, 0.7, 0.9)) == 0
    assert dominant_frequency(window(samples, 1.1, 1.5)) == pytest.approx(500, abs=10)
    phone.close()


async def test_recording_a_phone_that_sends_30_ms_packets_keeps_time(engine: MediaEngine, tmp_path: Path) -> None:
    # SIPp's own g711a capture uses 30 ms packets; the recorder takes 20 ms frames.
    phone = Phone("PCMA")
    endpoint = await attach(engine, phone)
    reply = await engine.execute(StartRecording((endpoint,), tmp_path / "rec.wav"))
    assert isinstance(reply, Started)
    await phone.talk(tone(1000, 0.99), packet_samples=240)
    await written_to_the_end(engine, reply.id)
    await engine.execute(StopRecording(reply.id))
    samples = sounding(read_recording(tmp_path / "rec.wav"))
    assert len(samples) / 8000 == pytest.approx(0.99, abs=0.03)
    assert dominant_frequency(window(samples, 0.1, 0.9)) == pytest.approx(1000, abs=10)
    assert rms(window(samples, 0.1, 0.9)) > 4000  # continuous tone, no silent frames interleaved
    phone.close()


async def test_call_recording_mixes_both_directions_of_a_bridge(engine: MediaEngine, tmp_path: Path) -> None:
    a, b = Phone("PCMU"), Phone("PCMA")
    ea, eb = await attach(engine, a), await attach(engine, b)
    await engine.execute(Connect(ea, eb))
    reply = await engine.execute(StartRecording((ea, eb), tmp_path / "call.wav"))
    assert isinstance(reply, Started)
    await asyncio.gather(a.talk(tone(600, 1.0)), b.talk(tone(1400, 1.0)))
    await engine.execute(StopRecording(reply.id))
    samples = read_recording(tmp_path / "call.wav")
    assert band_energy(samples, 600) > 0.3
    assert band_energy(samples, 1400) > 0.3
    a.close()
    b.close()


def loud_frames(samples: np.ndarray) -> np.ndarray:
    """Per 20 ms frame: whether it holds sound (a frame of silence inside a tone is a gap)."""
    frames = samples[: len(samples) - len(samples) % 160].reshape(-1, 160).astype(np.float64)
    return np.asarray(np.sqrt((frames**2).mean(axis=1)) > 1000)


def talking_frames(samples: np.ndarray, frequency: float) -> np.ndarray:
    """Per 20 ms frame: whether one talker's tone (`frequency`) is in it, in a mix of several."""
    frames = samples[: len(samples) - len(samples) % 160].reshape(-1, 160)
    return np.array([rms(frame) > 500 and band_energy(frame, frequency, width=100) > 0.1 for frame in frames])


def sounding(samples: np.ndarray) -> np.ndarray:
    """The recording from its first 20 ms frame with sound to its last: what was said. The silence before and
    after depends on when a loaded machine carried out the start and the stop, so no test measures it."""
    loud = loud_frames(samples)
    assert loud.any(), "a recording without sound"
    first, last = int(np.argmax(loud)), len(loud) - 1 - int(np.argmax(loud[::-1]))
    return samples[first * 160 : (last + 1) * 160]


async def test_a_call_recording_follows_the_call_into_a_conference(engine: MediaEngine, tmp_path: Path) -> None:
    a, b, c = Phone("PCMU"), Phone("PCMA"), Phone("PCMU")
    ea, eb, ec = await attach(engine, a), await attach(engine, b), await attach(engine, c)
    await engine.execute(Connect(ea, eb))
    reply = await engine.execute(StartRecording((ea, eb), tmp_path / "call.wav"))
    assert isinstance(reply, Started)

    async def merge_after(seconds: float) -> None:
        await asyncio.sleep(seconds)
        await engine.execute(CreateMixer((ea, eb, ec)))

    # b talks throughout; c talks all along too, but is in the recording only from the merge on.
    await asyncio.gather(a.talk(tone(600, 2.0)), b.talk(tone(1400, 2.0)), c.talk(tone(1000, 2.0)), merge_after(1.0))
    await written_to_the_end(engine, reply.id)
    await engine.execute(StopRecording(reply.id))
    samples = sounding(read_recording(tmp_path / "call.wav"))
    # One timeline: a's and b's talk, through the merge, is there whole — 2 s each (100 frames), with no gap, repeat
    # or skip at the merge. Counted per talker: c joins with a jitter buffer of its own, so on a loaded machine its
    # talk may end a frame or two after theirs, and all of it together lasts that much longer than 2 s.
    for frequency in (600, 1400):
        talk = np.flatnonzero(talking_frames(samples, frequency))
        assert len(talk) == pytest.approx(100, abs=1), (frequency, len(talk))
        assert talk[-1] - talk[0] + 1 == len(talk), (frequency, "a gap in the talk")
    assert loud_frames(samples).all(), "a frame of silence inside the talk"
    before, after = window(samples, 0.1, 0.9), window(samples, 1.2, 1.9)
    for part, expected in ((before, (600, 1400)), (after, (600, 1400, 1000))):
        for frequency in (600, 1400, 1000):
            if frequency in expected:
                assert band_energy(part, frequency) > 0.2, frequency
            else:
                assert band_energy(part, frequency) < 0.01, frequency
    for phone in (a, b, c):
        phone.close()


async def test_a_recording_started_in_a_conference_holds_every_participant(engine: MediaEngine, tmp_path: Path) -> None:
    phones = [Phone("PCMU"), Phone("PCMA"), Phone("PCMU")]
    ids = [await attach(engine, phone) for phone in phones]
    await engine.execute(CreateMixer(tuple(ids)))
    reply = await engine.execute(StartRecording((ids[0], ids[1]), tmp_path / "conference.wav"))
    assert isinstance(reply, Started)
    await asyncio.gather(*(p.talk(tone(f, 1.0)) for p, f in zip(phones, (500, 1100, 1900), strict=True)))
    await engine.execute(StopRecording(reply.id))
    samples = read_recording(tmp_path / "conference.wav")
    for frequency in (500, 1100, 1900):
        assert band_energy(samples, frequency) > 0.2, frequency


async def test_packets_arriving_late_leave_no_gap_in_a_recording(engine: MediaEngine, tmp_path: Path) -> None:
    """A sender that stalls (a loaded machine) and then sends the overdue packets in a burst."""
    phone = Phone("PCMA")
    endpoint = await attach(engine, phone)
    reply = await engine.execute(StartRecording((endpoint,), tmp_path / "rec.wav"))
    assert isinstance(reply, Started)
    samples = tone(1000, 2.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(100):
        if index % 20 == 10:
            await asyncio.sleep(0.12)  # six packets' worth of stall, then the burst below
        phone.send(g711.encode(samples[160 * index : 160 * index + 160], "PCMA"))
        phone.ts = (phone.ts + 160) & 0xFFFFFFFF
        await asyncio.sleep(max(0.0, start + 0.02 * (index + 1) - loop.time()))
    await written_to_the_end(engine, reply.id)
    await engine.execute(StopRecording(reply.id))
    recorded = sounding(read_recording(tmp_path / "rec.wav"))
    assert loud_frames(recorded).all(), "a late packet left a frame of silence"
    assert len(recorded) / 8000 == 2.0
    phone.close()


async def test_a_loop_stall_shared_by_sender_and_engine_leaves_no_gap_in_a_recording(
    engine: MediaEngine, tmp_path: Path
) -> None:
    """The whole loop stops for 0.7 s (a full garbage collection, a process not scheduled on a loaded machine):
    the engine and a sender in the same process both stall, and after it the engine catches up on its timeline
    before the sender's overdue packets arrive. A recording's jitter delay must cover that, or the stall is a
    gap in the file (CI once: 520 ms of a conference recording missing)."""
    a, b = Phone("PCMU"), Phone("PCMA")
    ea, eb = await attach(engine, a), await attach(engine, b)
    await engine.execute(Connect(ea, eb))
    reply = await engine.execute(StartRecording((ea, eb), tmp_path / "call.wav"))
    assert isinstance(reply, Started)
    loop = asyncio.get_running_loop()
    loop.call_later(1.0, time.sleep, 0.7)  # blocks everything on the loop, the test's own phones included
    await asyncio.gather(a.talk(tone(600, 3.0)), b.talk(tone(1400, 3.0)))
    await written_to_the_end(engine, reply.id)
    await engine.execute(StopRecording(reply.id))
    samples = sounding(read_recording(tmp_path / "call.wav"))
    assert len(samples) / 8000 == pytest.approx(3.0, abs=0.03)  # one timeline
    assert loud_frames(samples).all(), "the stall left a gap"
    a.close()
    b.close()


async def test_three_party_mixer_never_echoes_a_participant(engine: MediaEngine) -> None:
    phones = [Phone("PCMU"), Phone("PCMA"), Phone("PCMU")]
    frequencies = [500.0, 1100.0, 1900.0]
    ids = [await attach(engine, phone) for phone in phones]
    await engine.execute(CreateMixer(tuple(ids)))
    await asyncio.gather(*(p.talk(tone(f, 1.0)) for p, f in zip(phones, frequencies, strict=True)))
    await asyncio.sleep(0.05)
    for phone, own in zip(phones, frequencies, strict=True):
        heard = phone.audio()
        assert band_energy(heard, own) < 0.01, f"{own} Hz participant hears itself"
        for other in frequencies:
            if other != own:
                assert band_energy(heard, other) > 0.25
        assert_one_continuous_stream(phone)
    for phone in phones:
        phone.close()


async def test_rtp_timeout_fires_for_the_silent_endpoint_only(engine: MediaEngine) -> None:
    quiet, talking = Phone(), Phone()
    quiet_ep, _ = await attach(engine, quiet), await attach(engine, talking)
    talker = asyncio.create_task(talking.talk(tone(400, 2.5)))
    event = await next_event(engine, RtpTimeout, within=10)  # the talker's own would come only after its talk
    assert event.endpoint_id == quiet_ep
    assert event.silent_seconds >= 1.0
    await talker
    assert not any(isinstance(e, RtpTimeout) for e in drain(engine))
    quiet.close()
    talking.close()


async def test_offer_answer_through_the_engine_and_bad_input(engine: MediaEngine, tmp_path: Path) -> None:
    offer = await engine.execute(CreateEndpoint(codecs=("PCMA",)))
    assert isinstance(offer, EndpointCreated)
    assert "m=audio" in offer.local_sdp and offer.session is None
    phone = Phone("PCMA", dtmf_payload_type=98)
    await phone.open()
    updated = await engine.execute(SetRemoteSdp(offer.endpoint_id, phone.offer()))
    assert isinstance(updated, SessionUpdated) and updated.local_sdp is None  # it was the answer to our offer
    assert updated.session is not None and updated.session.remote_dtmf_payload_type == 98
    with pytest.raises(MediaError, match="remote_sdp"):
        await engine.execute(CreateEndpoint(remote_sdp="v=0\r\nbroken\r\n"))
    with pytest.raises(MediaError, match="codecs"):
        await engine.execute(CreateEndpoint(codecs=("G729",)))
    with pytest.raises(MediaError, match="endpoint_id"):
        await engine.execute(Connect(offer.endpoint_id, "ep-nope"))
    with pytest.raises(MediaError, match="files"):
        await engine.execute(Play(offer.endpoint_id, (tmp_path / "missing.wav",)))
    (tmp_path / "not.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(MediaError, match="files"):
        await engine.execute(Play(offer.endpoint_id, (tmp_path / "not.wav",)))
    with pytest.raises(MediaError, match="path"):
        await engine.execute(StartRecording((offer.endpoint_id,), Path("/proc/hipper/rec.wav")))
    with pytest.raises(MediaError, match="direction"):
        await engine.execute(CreateOffer(offer.endpoint_id, "sideways"))
    await engine.execute(Release(offer.endpoint_id))
    with pytest.raises(MediaError, match="endpoint_id"):
        engine.stats(offer.endpoint_id)
    await engine.execute(Release(offer.endpoint_id))  # releasing twice is harmless (BYE and timeout can race)
    phone.close()


async def test_hold_and_resume_by_re_offer_stop_and_restart_our_stream(engine: MediaEngine) -> None:
    phone = Phone()
    endpoint = await attach(engine, phone)
    await asyncio.sleep(0.1)
    # The phone puts us on hold: it offers sendonly, we answer recvonly and must not send (RFC 3264 §8.4).
    hold = await engine.execute(SetRemoteSdp(endpoint, phone.offer().replace("a=sendrecv", "a=sendonly")))
    assert isinstance(hold, SessionUpdated) and hold.local_sdp is not None
    assert "a=recvonly" in hold.local_sdp
    first_version = int(hold.local_sdp.split("o=hipper ")[1].split()[1])
    await asyncio.sleep(0.06)
    held_at = len(phone.received)
    await asyncio.sleep(0.2)
    assert len(phone.received) == held_at
    resume = await engine.execute(SetRemoteSdp(endpoint, phone.offer()))
    assert isinstance(resume, SessionUpdated) and resume.local_sdp is not None and "a=sendrecv" in resume.local_sdp
    assert int(resume.local_sdp.split("o=hipper ")[1].split()[1]) == first_version + 1
    await until(lambda: len(phone.received) >= held_at + 5)
    assert_one_continuous_stream(phone)  # the same stream resumes, with a marker
    # We put the phone on hold: a new offer from us, sendonly; the phone's answer is recvonly.
    reoffer = await engine.execute(CreateOffer(endpoint, "sendonly"))
    assert isinstance(reoffer, SessionUpdated) and reoffer.local_sdp is not None and "a=sendonly" in reoffer.local_sdp
    answered = await engine.execute(SetRemoteSdp(endpoint, phone.offer().replace("a=sendrecv", "a=recvonly")))
    assert isinstance(answered, SessionUpdated) and answered.local_sdp is None
    assert answered.session is not None and answered.session.on_hold
    phone.close()


async def test_the_answer_to_our_repeated_sdp_moves_the_stream_to_the_new_address(engine: MediaEngine) -> None:
    """A session refresh (RFC 4028) offers our last SDP again; a phone that moved answers from its new address."""
    before, after = Phone(), Phone()
    await before.open()
    await after.open()
    created = await engine.execute(CreateEndpoint(remote_sdp=before.offer()))
    assert isinstance(created, EndpointCreated)
    await engine.execute(StartSending(created.endpoint_id))  # our answer went out
    async with asyncio.timeout(5):
        while len(before.received) < 3:  # noqa: ASYNC110 - the phone counts what arrives
            await asyncio.sleep(0.02)
    with pytest.raises(MediaError, match="sdp"):
        await engine.execute(SetRemoteSdp(created.endpoint_id, "v=0\r\nbroken\r\n", answers=created.local_sdp))
    moved = await engine.execute(SetRemoteSdp(created.endpoint_id, after.offer(), answers=created.local_sdp))
    assert isinstance(moved, SessionUpdated) and moved.local_sdp is None  # an answer: nothing to send back
    assert moved.session is not None and moved.session.remote_port == after.port
    async with asyncio.timeout(5):
        while len(after.received) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # packets sent before the answer may still be read; none are sent there any more
    settled = len(before.received)
    await asyncio.sleep(0.3)
    assert len(before.received) == settled
    before.close()
    after.close()


def rtp_rtcp_pair() -> tuple[socket.socket, socket.socket, int]:
    """A phone's RTP and RTCP sockets: RTCP needs the RTP port + 1 (no rtcp-mux), so find a free pair."""
    for _ in range(50):
        rtp_sock, rtcp_sock = (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        )
        port = peer_media_port()
        try:
            rtp_sock.bind(("127.0.0.1", port))
            rtcp_sock.bind(("127.0.0.1", port + 1))
        except OSError:
            rtp_sock.close()
            rtcp_sock.close()
            continue
        rtp_sock.setblocking(False)
        rtcp_sock.setblocking(False)
        return rtp_sock, rtcp_sock, port
    raise AssertionError("no free RTP/RTCP port pair for the test phone")


def nothing_waiting(sock: socket.socket) -> bool:
    try:
        sock.recv(2048)
    except BlockingIOError:
        return True
    return False


async def test_an_answering_endpoint_sends_nothing_before_start_sending_but_receives_from_the_start() -> None:
    """RFC 3264 §6: the answerer sends once its answer is out. An endpoint created from the caller's offer sends
    no RTP (no prompt, no relayed audio) and no RTCP before ``StartSending`` (the B2BUA's 183 or 200 went out),
    yet it receives and latches meanwhile; one that offered starts when the answer arrives."""
    quiet_rtp, quiet_rtcp, quiet_port = rtp_rtcp_pair()
    control_rtp, control_rtcp, control_port = rtp_rtcp_pair()
    base = engine_range()
    loop = asyncio.get_running_loop()
    async with MediaEngine(port_min=base, port_max=base + 200, rtcp_interval_seconds=0.1) as engine:
        created = await engine.execute(CreateEndpoint(build_offer("127.0.0.1", quiet_port, ("PCMU",)).serialize()))
        assert isinstance(created, EndpointCreated)
        quiet = created.endpoint_id
        # The control endpoint offered and was answered: it sends without being told, and its packets show that
        # the ticker ran (RTP every 20 ms, RTCP every 0.1 s here).
        offered = await engine.execute(CreateEndpoint())
        assert isinstance(offered, EndpointCreated)
        await engine.execute(SetRemoteSdp(offered.endpoint_id, build_offer("127.0.0.1", control_port).serialize()))
        await engine.execute(PlayPcm(quiet, tone(800, 1.0), loop=True))
        packet = RtpPacket(0, 1, 160, 0x5EC0, g711.silence("PCMU")).serialize()
        quiet_rtp.sendto(packet, ("127.0.0.1", created.local_port))
        async with asyncio.timeout(3):
            for _ in range(10):
                await loop.sock_recv(control_rtp, 2048)
            for _ in range(2):
                await loop.sock_recv(control_rtcp, 2048)
            while engine.stats(quiet)["packets_received"] < 1:  # noqa: ASYNC110 - the engine's reader counts it
                await asyncio.sleep(0.01)
        # A bridge relays nothing to it either, although the other side's packets arrive.
        far = Phone()
        far_ep = await attach(engine, far)
        await engine.execute(Connect(quiet, far_ep))
        for _ in range(5):
            far.send(g711.silence("PCMU"))
        async with asyncio.timeout(3):
            while engine.stats(far_ep)["packets_received"] < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert nothing_waiting(quiet_rtp) and nothing_waiting(quiet_rtcp)
        assert engine.stats(quiet)["packets_sent"] == 0
        # The 200 OK went out: from now on it sends, to where it latched, RTP and then RTCP reports.
        await engine.execute(StartSending(quiet))
        far.send(g711.silence("PCMU"))
        async with asyncio.timeout(3):
            first = RtpPacket.parse(await loop.sock_recv(quiet_rtp, 2048))
            report = parse_rtcp(await loop.sock_recv(quiet_rtcp, 2048))[0]
            while not isinstance(report, RtcpSenderReport):  # a receiver report if the tick came before the RTP
                report = parse_rtcp(await loop.sock_recv(quiet_rtcp, 2048))[0]
    assert first.marker
    assert report.ssrc == first.ssrc
    far.close()
    for sock in (quiet_rtp, quiet_rtcp, control_rtp, control_rtcp):
        sock.close()


async def test_rtcp_sender_reports_go_out_and_garbage_rtcp_is_survived() -> None:
    rtp_sock, rtcp_sock, port = rtp_rtcp_pair()
    base = engine_range()
    async with MediaEngine(port_min=base, port_max=base + 200, rtcp_interval_seconds=0.2) as engine:
        offer = build_offer("127.0.0.1", port, ("PCMU",)).serialize()
        created = await engine.execute(CreateEndpoint(remote_sdp=offer))
        assert isinstance(created, EndpointCreated)
        await engine.execute(StartSending(created.endpoint_id))  # our answer went out
        rtcp_sock.sendto(b"\x80\xc9\x00\x07garbage", ("127.0.0.1", created.local_port + 1))
        rtcp_sock.sendto(RtcpReceiverReport(1234).serialize(), ("127.0.0.1", created.local_port + 1))
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(2):
            report = parse_rtcp(await loop.sock_recv(rtcp_sock, 2048))
        rtp = RtpPacket.parse(rtp_sock.recv(2048))
    rtp_sock.close()
    rtcp_sock.close()
    assert isinstance(report[0], RtcpSenderReport)
    assert report[0].ssrc == rtp.ssrc
    assert report[0].packet_count > 0


async def test_a_listener_gets_the_events_instead_of_the_queue() -> None:
    heard: list[MediaEvent] = []
    arrived = asyncio.Event()

    def listener(event: MediaEvent) -> None:
        heard.append(event)
        arrived.set()

    base = engine_range()
    async with MediaEngine(port_min=base, port_max=base + 200, listener=listener) as engine:
        phone = Phone()
        endpoint = await attach(engine, phone)
        reply = await engine.execute(PlayPcm(endpoint, tone(800, 0.06)))
        assert isinstance(reply, Started)
        async with asyncio.timeout(2):
            await arrived.wait()
        assert heard == [PlaybackFinished(endpoint, reply.id)]
        assert engine.events.empty()
        phone.close()


async def test_ports_come_in_even_odd_pairs_from_the_range_and_are_reused_after_release() -> None:
    base = engine_range()
    async with MediaEngine(port_min=base, port_max=base + 4) as engine:  # room for exactly two pairs
        first, second = await engine.execute(CreateEndpoint()), await engine.execute(CreateEndpoint())
        assert isinstance(first, EndpointCreated) and isinstance(second, EndpointCreated)
        assert {first.local_port, second.local_port} == {base, base + 2}
        with pytest.raises(MediaError, match="no free RTP port"):
            await engine.execute(CreateEndpoint())
        await engine.execute(Release(first.endpoint_id))
        third = await engine.execute(CreateEndpoint())
        assert isinstance(third, EndpointCreated) and third.local_port == first.local_port


def test_the_engine_runs_on_uvloop_as_in_production() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[int, float]:
        base = engine_range()
        async with MediaEngine(port_min=base, port_max=base + 200) as engine:
            a, b = Phone("PCMU"), Phone("PCMA")
            ea, eb = await attach(engine, a), await attach(engine, b)
            await engine.execute(Connect(ea, eb))
            await a.talk(tone(900, 0.4))

            def relayed() -> list[Received]:
                return [r for r in audio_packets(b) if r.packet.payload != g711.silence("PCMA")]

            with contextlib.suppress(TimeoutError):  # counted below
                await until(lambda: len(relayed()) >= 20)
            heard = relayed()
            a.close()
            b.close()
            return len(heard), dominant_frequency(g711.decode(b"".join(r.packet.payload for r in heard), "PCMA"))

    count, frequency = uvloop.run(scenario())
    assert count == 20
    assert frequency == pytest.approx(900, abs=25)


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


@pytest.mark.parametrize("buffer_bytes", [0, 512 * 1024])
async def test_a_burst_that_arrives_while_the_loop_is_busy_waits_in_the_socket_buffer(buffer_bytes: int) -> None:
    """A loop that is not scheduled for a while (a busy shared core) must not lose the audio that arrived
    meanwhile: the RTP socket's receive buffer holds it. With the kernel's default buffer (0: not set) a
    10-second burst overflows it, which shows that the burst tests the buffer at all."""
    if buffer_bytes and rmem_max() < buffer_bytes:
        pytest.skip("net.core.rmem_max is below the buffer the engine asks for")
    base = engine_range()
    async with MediaEngine(port_min=base, port_max=base + 200, socket_buffer_bytes=buffer_bytes) as engine:
        a, b = Phone("PCMU"), Phone("PCMU")
        ea, eb = await attach(engine, a), await attach(engine, b)
        assert b.transport is not None
        b.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
        await engine.execute(Connect(ea, eb))
        payload = g711.encode(tone(700, 0.02)[:160], "PCMU")
        count = 500  # 10 s of one G.711 stream
        for _ in range(count):
            a.send(payload)  # the engine cannot read meanwhile: the loop is ours until we yield

        def relayed() -> int:
            return sum(1 for r in audio_packets(b) if r.packet.payload == payload)

        if buffer_bytes:
            await until(lambda: relayed() >= count)
            assert relayed() == count
        else:
            await asyncio.sleep(0.5)  # what the full default buffer held is relayed; the rest never came
            assert relayed() < count
        a.close()
        b.close()


async def bridged_call(engine: MediaEngine, caller: Phone, callee: Phone) -> tuple[str, str]:
    """What a call asks of the engine (engine/call.py, fork.py): the caller's endpoint from its offer, the
    callee's from our offer and its answer, the bridge, our 200 to the caller."""
    await caller.open()
    await callee.open()
    a = await engine.execute(CreateEndpoint(remote_sdp=caller.offer(), signalling_host="127.0.0.1"))
    b = await engine.execute(CreateEndpoint(signalling_host="127.0.0.1"))
    assert isinstance(a, EndpointCreated) and isinstance(b, EndpointCreated)
    caller.engine_address = ("127.0.0.1", a.local_port)
    callee.engine_address = ("127.0.0.1", b.local_port)
    await engine.execute(SetRemoteSdp(b.endpoint_id, callee.offer(), signalling_host="127.0.0.1"))
    await engine.execute(Connect(a.endpoint_id, b.endpoint_id))
    await engine.execute(StartSending(a.endpoint_id))
    return a.endpoint_id, b.endpoint_id


async def test_the_ticker_rests_while_nothing_is_paced_and_wakes_for_a_prompt(engine: MediaEngine) -> None:
    """A bridged call relays as packets arrive: the 20 ms ticker does not wake for it (it cost ≈ 5 ms of CPU a
    second on an idle node). A prompt wakes it, and it rests again once nothing is paced."""
    steps = 0
    step = engine._step

    def counted(now: float, due: int) -> None:
        nonlocal steps
        steps += 1
        step(now, due)

    engine._step = counted  # type: ignore[method-assign]
    caller, callee = Phone(), Phone()
    a, b = await bridged_call(engine, caller, callee)
    await asyncio.sleep(0.3)  # 15 steps of a ticker that never rests
    assert (steps, engine.pacing, engine.alive) == (0, False, True)
    caller.send(g711.silence("PCMU"))
    await until(lambda: len(audio_packets(callee)) == 1)  # relayed without the ticker
    await engine.execute(PlayPcm(a, tone(800, 0.2)))
    await until(lambda: len(audio_packets(caller)) >= 5)
    assert engine.pacing and steps >= 5
    await engine.execute(Connect(a, b))
    await until(lambda: not engine.pacing)
    rested = steps
    await asyncio.sleep(0.2)
    assert steps == rested
    caller.close()
    callee.close()


async def test_rtp_timeouts_come_while_the_ticker_rests_and_only_for_silence(engine: MediaEngine) -> None:
    """The resting ticker still checks for RTP timeouts once a second, against the time packets really arrived
    (not the time of its last wake-up, up to a second old: with the fixture's 1 s timeout, talking phones would
    time out)."""
    caller, callee = Phone(), Phone()
    a, b = await bridged_call(engine, caller, callee)
    await asyncio.gather(caller.talk(tone(400, 2.5)), callee.talk(tone(500, 2.5)))
    assert not any(isinstance(event, RtpTimeout) for event in drain(engine))
    assert not engine.pacing
    timeouts = {(await next_event(engine, RtpTimeout, within=5)).endpoint_id for _ in range(2)}
    assert timeouts == {a, b}
    caller.close()
    callee.close()


async def test_rtp_timeouts_come_while_prompts_start_and_stop_the_ticker(engine: MediaEngine) -> None:
    """The ticker starting and resting several times a second (a short prompt, then the bridge again) does not put
    off the timeout check: it stays on its once-a-second schedule."""
    quiet, busy = Phone(), Phone()
    quiet_ep, busy_ep = await attach(engine, quiet), await attach(engine, busy)
    await engine.execute(Connect(quiet_ep, busy_ep))  # nothing paced: the ticker rests
    timeouts: list[str] = []
    async with asyncio.timeout(4):
        while not timeouts:
            busy.send(g711.silence("PCMU"))  # the busy phone talks: only the quiet one may time out
            await engine.execute(PlayPcm(busy_ep, tone(800, 0.04)))  # the ticker starts …
            while not isinstance(event := await engine.events.get(), PlaybackFinished):
                if isinstance(event, RtpTimeout):
                    timeouts.append(event.endpoint_id)
            await engine.execute(Connect(quiet_ep, busy_ep))  # … and rests again at its next step
            await until(lambda: not engine.pacing)
            await asyncio.sleep(0.25)
            timeouts += [e.endpoint_id for e in drain(engine) if isinstance(e, RtpTimeout)]
    assert timeouts == [quiet_ep]
    quiet.close()
    busy.close()
