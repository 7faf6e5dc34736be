"""The in-process media engine: RTP endpoints on the asyncio loop, driven by message-shaped commands.

A B2BUA (or any application) sends commands (``CreateEndpoint``, ``Connect``, ``Play``, ``StartRecording``, …)
through ``MediaEngine.execute`` and reads ``MediaEvent``s (DTMF, playback finished, RTP timeout, recording
finished) from ``MediaEngine.events`` or a listener. Commands and events are plain dataclasses with ids and
strings only, so the same interface can later cross a process boundary (one media worker per core, the way SIP
proxies pair with rtpengine) without changing the callers.

Design notes (see DESIGN.md "Media" and "Telephony traps"):

- Every endpoint sends ONE outgoing stream for its whole life: one SSRC, continuous sequence numbers and
  timestamps, whatever it is fed (ringback, prompt, bridged peer, mixer, silence). At every switch of source the
  timestamp jumps by the wall-clock time since the last packet and the marker bit is set (RFC 3551 §4.1), so the
  far end's jitter buffer resynchronises instead of discarding "late" packets from a "new" stream.
- Nothing is sent before our SDP is out (RFC 3264 §6): an endpoint answering an offer waits for
  ``StartSending`` (the B2BUA sends it with the 183 or 200), one that offered starts when the answer arrives.
  Besides being right, it saves the largest per-call cost there was: silence sent to callers still ringing.
- Packets go to where the remote's packets come from (latching / symmetric RTP, RFC 4961): the SDP address is
  only the first guess, because a phone behind NAT announces an address nobody can reach.
- Paced sources (players, tones, the mixer, DTMF) run off one 20 ms ticker scheduled with ``loop.call_at`` on
  absolute deadlines of the loop's monotonic clock, so lateness does not accumulate (no ``sleep(0.02)`` drift).
  It runs only while something is paced (an endpoint sending silence, a prompt or DTMF; a mixer; a recording):
  bridged calls relay as packets arrive, and calls that ring or are bridged need no 20 ms wake-up (each costs
  ≈ 50–100 µs of CPU on a VM, 50 a second, with or without calls). Otherwise one wake-up a second does the
  housekeeping (RTP timeouts, RTCP), and none at all without endpoints.
- Relayed audio is forwarded as it arrives (no pacing, no jitter buffer): the header is rewritten with
  ``struct`` and PCMU<->PCMA is a ``bytes.translate``; no per-packet logging or objects beyond the datagram.
- Sockets are non-blocking and read with ``add_reader`` until EAGAIN (several times the throughput of
  ``DatagramProtocol`` here, see docs/performance.md).
- Latching is strict (rtpengine's strict-source, docs/security.md "Media"): only a source the signalling vouches
  for may latch (the SDP's address, or, when that address is not globally routable — a phone behind NAT — the
  host the SIP came from), and once latched, datagrams from any other address are dropped and counted (no media
  hijacking). Only new SDP (``SetRemoteSdp``: a re-INVITE or UPDATE) unlatches, for a phone that moved.
- Port pairs are drawn at random from the free ones (``secrets``, not the ``random`` whose state the SSRCs and
  sequence numbers we send would reveal), so a call's ports cannot be guessed from another call's.
- A released pair keeps its sockets (bound, sized, non-blocking, registered with the loop, a reader that drops what
  arrives) and is drawn again, at random among such pairs, once it has rested: opening, binding, sizing, closing
  and (un)registering two sockets was about a third of a call's media CPU. Nothing of the old call survives in it:
  what arrived meanwhile is drained, and the new call's signalled peer is set afresh, so strict latching refuses the
  old peer as any other stranger. A pooled port is one an earlier call used; as before it rests first, and latching,
  not the port's secrecy, is what refuses a third party (spraying the whole range takes milliseconds).
- No exception of one endpoint stops the shared ticker or another endpoint: it is logged, counted, and that
  endpoint is dropped (its call sees an ``RtpTimeout`` and ends). ``alive`` says whether the ticker still runs
  (``/health`` reports it).

A call, as a B2BUA drives it::

    caller = await engine.execute(CreateEndpoint(remote_sdp=invite_sdp))      # answer goes in our 183 / 200 OK
    await engine.execute(Play(caller.endpoint_id, (tone_path("ringback"),), loop=True))
    ...  # the 183 (or 200) with caller.local_sdp goes out
    await engine.execute(StartSending(caller.endpoint_id))                    # the ringback is heard from now
    callee = await engine.execute(CreateEndpoint())                           # offer goes in the new INVITE
    await engine.execute(SetRemoteSdp(callee.endpoint_id, answer_sdp))        # the callee answered
    await engine.execute(Connect(caller.endpoint_id, callee.endpoint_id))     # ringback -> callee, one stream
    rec = await engine.execute(StartRecording((caller.endpoint_id, callee.endpoint_id), path))
    ...  # DtmfReceived / RtpTimeout events arrive on engine.events (or the listener)
    await engine.execute(StopRecording(rec.id))                               # -> RecordingFinished
    await engine.execute(Release(caller.endpoint_id))
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import resource
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from prometheus_client import Counter

from hipper.config import Settings
from hipper.media import g711
from hipper.media.dtmf import DtmfReceiver, digit_to_event, event_payloads
from hipper.media.g711 import PCMA, PCMU, SAMPLES_PER_FRAME, Pcm
from hipper.media.jitter import DELAY_FRAMES, RecordingBuffer
from hipper.media.mixer import SILENT_FRAME, FrameBuffer, Mixer, mix
from hipper.media.rtp import RTP_HEADER, RtcpReceiverReport, RtcpSenderReport, ntp_timestamp, parse_rtcp
from hipper.media.sdp import (
    AudioSession,
    SdpError,
    SessionDescription,
    accept_answer,
    answer_offer,
    build_offer,
    routable,
)
from hipper.media.wavfile import AsyncWavWriter, append_all, read_wav
from hipper.offload import run_cpu
from hipper.socket_buffers import size_buffers

log = logging.getLogger(__name__)

FRAME_SECONDS: Final = 0.020
# When the loop was blocked, send at most this many overdue frames at once; beyond that, skip ahead (a burst of
# old audio is worse than a gap).
MAX_CATCH_UP_FRAMES: Final = 3
RECORDING_CATCH_UP_FRAMES: Final = 50
RTCP_INTERVAL_SECONDS: Final = 5.0
# RTP socket buffers (SO_RCVBUF / SO_SNDBUF) asked for per endpoint: ≈ 5–10 s of one G.711 stream at the
# kernel's per-packet accounting, so a loop that is not scheduled for a few seconds does not lose audio.
SOCKET_BUFFER_BYTES: Final = 512 * 1024
# A recorded frame whose peak stays at or below this (about -50 dBFS, line noise and comfort noise) is silence.
SILENCE_LEVEL: Final = 100
# Datagrams read per readiness callback before yielding to other endpoints (fairness under load).
READ_BATCH: Final = 64
# Recordings hand their audio to the writer thread about once a second, spread over the second.
FLUSH_FRAMES: Final = 50
PROMPT_CACHE_SIZE: Final = 512
# The ticker counts as dead (``MediaEngine.alive`` false, /health 503) when it has not run for this long.
LIVENESS_SECONDS: Final = 5.0
# A caller told "no free port" tries again after this long (SIP 503 Retry-After, RFC 3261 §21.5.4).
PORTS_RETRY_AFTER_SECONDS: Final = 5
# Random draws tried before giving up on finding a bindable pair (ports another process holds are skipped).
BIND_ATTEMPTS: Final = 64
# A released port pair rests this long before it is drawn again, unless no other pair is free. The far end may go
# on sending for a moment after the BYE (in flight, or a phone slow to stop), and a new endpoint on that port would
# take those packets for its own peer's: the signalled host on another port may latch (NAT), so the old stream
# could latch first and the new call's real peer be refused. Seen in the tests, where every phone is 127.0.0.1: a
# transferor's phone, still sending, took the leg to the transfer target, and the target was never heard.
PORT_REST_SECONDS: Final = 10.0
# Released pairs kept open for reuse (resting or ready), at most: ≈ the pairs released in PORT_REST_SECONDS at
# 50 calls/s (two endpoints a call). Beyond that a released pair is closed, as all were before.
POOLED_PAIRS: Final = 1024


def pooled_pairs_for_open_files() -> int:
    """POOLED_PAIRS, or fewer where the open-file limit is low: the idle pairs' sockets (two each) take at most an
    eighth of it, so phones on TCP, HTTP clients and live calls keep the rest (`server.raise_open_file_limit`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return POOLED_PAIRS
    return max(0, min(POOLED_PAIRS, soft // 16))


RTP_REJECTED = Counter(
    "hipper_rtp_rejected_packets_total",
    "RTP datagrams dropped because they came from a source the call's signalling does not vouch for",
)
MEDIA_ENDPOINT_ERRORS = Counter(
    "hipper_media_endpoint_errors_total",
    "Endpoints dropped because handling them raised (the media ticker and the other calls go on)",
)
_UNPACK_HEADER = RTP_HEADER.unpack_from
_PACK_HEADER = RTP_HEADER.pack


class MediaError(Exception):
    """A command that cannot be carried out (unknown endpoint, no free port, bad SDP, bad file)."""


class PortsExhausted(MediaError):
    """No free RTP port pair: a temporary overload, not bad input (SIP 503 with Retry-After, never 500/488)."""

    retry_after_seconds = PORTS_RETRY_AFTER_SECONDS


# ---------------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class CreateEndpoint:
    """Allocate an RTP/RTCP port pair. With ``remote_sdp`` (an offer) the reply carries our answer; without, an
    offer, whose answer is given later with ``SetRemoteSdp``."""

    remote_sdp: str | None = None
    codecs: tuple[str, ...] = (PCMU, PCMA)
    # The IP address the SIP of this endpoint's dialog came from: behind NAT (a non-routable SDP address) only
    # this host may latch the media (docs/security.md "Media"). None: any source may latch in that case.
    signalling_host: str | None = None


@dataclass(frozen=True, slots=True)
class SetRemoteSdp:
    """The remote's SDP: the answer to our pending offer, or else a new offer (re-INVITE, hold), which the reply
    (``SessionUpdated.local_sdp``) answers. Resets latching: the remote may have moved.

    ``answers``: the SDP of ours it answers when that is not a pending offer of the engine's — a session refresh
    (RFC 4028) offers our last SDP again, unchanged, and a phone that moved meanwhile answers with its new
    address."""

    endpoint_id: str
    sdp: str
    answers: str | None = None
    signalling_host: str | None = None  # as in ``CreateEndpoint``; None keeps the endpoint's


@dataclass(frozen=True, slots=True)
class CreateOffer:
    """A new offer for an existing endpoint (a re-INVITE: hold with ``sendonly``, resume with ``sendrecv``)."""

    endpoint_id: str
    direction: str = "sendrecv"


@dataclass(frozen=True, slots=True)
class StartSending:
    """Our SDP is out (the answer in a 183 or the 200 OK, or, with a late offer, our offer in the 200): from now on
    the endpoint may send RTP and RTCP. An endpoint created from the remote's offer sends nothing before this (RFC
    3264 §6: the answerer may send once the answer is out; the remote cannot even tell our packets from a
    stranger's before it has our SDP). An endpoint whose offer the remote answered (``SetRemoteSdp``) needs no
    such command: the answer arriving is that moment. Receiving and latching work from creation either way."""

    endpoint_id: str


@dataclass(frozen=True, slots=True)
class Connect:
    """Bridge two endpoints: each hears what the other receives (transcoding if their codecs differ)."""

    endpoint_a: str
    endpoint_b: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Stop whatever an endpoint hears (bridge, player, mixer); it then sends silence."""

    endpoint_id: str


@dataclass(frozen=True, slots=True)
class Play:
    """Play a WAV file (8 kHz mono 16-bit) or a sequence of them (a composed sentence) to an endpoint."""

    endpoint_id: str
    files: tuple[Path, ...]
    loop: bool = False


@dataclass(frozen=True, slots=True)
class PlayPcm:
    """Play generated audio (a tone, a ringback cadence) to an endpoint."""

    endpoint_id: str
    samples: Pcm = field(compare=False)
    loop: bool = False


@dataclass(frozen=True, slots=True)
class SendDtmf:
    endpoint_id: str
    digits: str
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record what one endpoint receives, or (two endpoints of a bridged pair) a mix of both directions.

    A recording follows its endpoints into a conference: when one of them is (or comes to be) in a mixer
    (``CreateMixer``, ``AddToMixer``), every participant of that mixer is recorded too, so from then on the file
    holds the conference (everyone once), continuing the same timeline.

    Received audio is placed by its RTP timestamps with a fixed delay (``jitter.RecordingBuffer``), so late
    packets do not leave gaps; pause and resume take effect at the point of the stream where they were asked for.
    Pausing writes silence by default, so the recording keeps the call's timeline (a listener hears where the
    pause was and how long it lasted); ``pause_writes_silence=False`` cuts the paused stretch out instead.
    """

    endpoint_ids: tuple[str, ...]
    path: Path
    pause_writes_silence: bool = True


@dataclass(frozen=True, slots=True)
class PauseRecording:
    recording_id: str


@dataclass(frozen=True, slots=True)
class ResumeRecording:
    recording_id: str


@dataclass(frozen=True, slots=True)
class RecordAlso:
    """Add an endpoint to a running recording, on the same timeline: the call moved a party to a new leg (a call
    pull), whose voice the recording keeps from now on."""

    recording_id: str
    endpoint_id: str


@dataclass(frozen=True, slots=True)
class StopRecording:
    recording_id: str


@dataclass(frozen=True, slots=True)
class CreateMixer:
    """A conference: each endpoint hears the sum of the others, never itself."""

    endpoint_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddToMixer:
    mixer_id: str
    endpoint_id: str


@dataclass(frozen=True, slots=True)
class Release:
    endpoint_id: str


Command = (
    CreateEndpoint | SetRemoteSdp | CreateOffer | StartSending | Connect | Disconnect | Play | PlayPcm | SendDtmf
    | StartRecording | PauseRecording | ResumeRecording | RecordAlso | StopRecording | CreateMixer | AddToMixer
    | Release
)  # fmt: skip


# ------------------------------------------------------------------------------------------------------ replies


@dataclass(frozen=True, slots=True)
class EndpointCreated:
    endpoint_id: str
    local_port: int
    local_sdp: str
    session: AudioSession | None


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """Reply to ``SetRemoteSdp`` / ``CreateOffer``: what was agreed so far, and SDP to send (an answer or an
    offer), if any."""

    endpoint_id: str
    session: AudioSession | None
    local_sdp: str | None


@dataclass(frozen=True, slots=True)
class Started:
    """Reply to commands that start something with an id (a playback, a recording, a mixer)."""

    id: str


@dataclass(frozen=True, slots=True)
class Done:
    pass


Reply = EndpointCreated | SessionUpdated | Started | Done


# ------------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    endpoint_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    endpoint_id: str
    playback_id: str


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    endpoint_id: str
    silent_seconds: float


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    recording_id: str
    path: Path
    duration_seconds: float


MediaEvent = DtmfReceived | PlaybackFinished | RtpTimeout | RecordingFinished


# ----------------------------------------------------------------------------------------------------- internals

# What an endpoint's outgoing stream is fed by.
SOURCE_NONE: Final = 0  # nothing sent (not yet answered, or on hold)
SOURCE_SILENCE: Final = 1
SOURCE_PLAYER: Final = 2
SOURCE_PEER: Final = 3  # relayed packets from the bridged peer
SOURCE_MIXER: Final = 4


class _Player:
    """Linear audio, encoded one 20 ms frame at a time when sent: the leg's codec can change (re-INVITE)."""

    __slots__ = ("index", "loop", "playback_id", "samples")

    def __init__(self, playback_id: str, samples: Pcm, loop: bool) -> None:
        self.playback_id = playback_id
        padding = -len(samples) % SAMPLES_PER_FRAME  # whole frames: the last one is padded with silence
        self.samples = np.concatenate([samples.astype(np.int16), np.zeros(padding, dtype=np.int16)])
        self.index = 0
        self.loop = loop

    def next_frame(self) -> Pcm | None:
        if self.index >= len(self.samples):
            if not self.loop or not len(self.samples):
                return None
            self.index = 0
        frame = self.samples[self.index : self.index + SAMPLES_PER_FRAME]
        self.index += SAMPLES_PER_FRAME
        return frame


class _Endpoint:
    def __init__(self, endpoint_id: str, rtp: socket.socket, rtcp: socket.socket, port: int) -> None:
        self.id = endpoint_id
        self.rtp = rtp
        self.rtcp = rtcp
        self.port = port
        self.codecs: tuple[str, ...] = (PCMU, PCMA)
        self.pending_offer: SessionDescription | None = None
        # RFC 3264 §8: every new SDP from us keeps the o= session id and increments the version.
        self.sdp_session_id = random.getrandbits(31)
        self.sdp_version = 0
        self.session: AudioSession | None = None
        # Sending needs both: our SDP is out (``StartSending``, or the remote answered our offer), and the
        # negotiated direction lets us send (not recvonly/inactive). ``may_send`` is their conjunction, kept as one
        # flag because the relay checks it per packet.
        self.started = False
        self.direction_sends = True
        self.may_send = False
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.latched = False
        # Latching rules (``_may_latch``): the SDP's address, whether it is globally routable, the SIP's host.
        self.signalled: tuple[str, int] | None = None
        self.signalled_routable = True
        self.signalling_host: str | None = None
        self.packets_rejected = 0
        self.codec = PCMU
        self.payload_type = 0
        self.send_dtmf_pt: int | None = None
        self.recv_dtmf_pts: frozenset[int] = frozenset()
        # Outgoing stream state (RFC 3550 §5.1): random initial values, then continuous.
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.last_sent = 0.0  # loop time of the last packet sent; 0 = never
        self.switched = True  # next packet starts a new talkspurt/source: marker bit, time-based timestamp jump
        self.packets_sent = 0
        self.octets_sent = 0
        self.source = SOURCE_NONE
        self.player: _Player | None = None
        self.peer: _Endpoint | None = None
        self.relay_ssrc = -1  # the SSRC we last rebased relayed packets from; a change means a new rebase
        self.ts_offset = 0
        self.seq_offset = 0
        self.mixer: Mixer | None = None
        self.dtmf_out: deque[bytes | None] = deque()
        self.dtmf_ts = 0
        self.dtmf_first = False
        self.dtmf_rx = DtmfReceiver()
        # The telephone-event being received (its RTP timestamp) and whether a bridge carried its first packet.
        self.dtmf_event_ts = -1
        self.dtmf_relayed = False
        # Decoded received audio for the mixer and for recordings; both empty for plain bridges (no decoding).
        self.taps: list[FrameBuffer] = []
        self.recorders: list[RecordingBuffer] = []
        self.last_received = 0.0
        self.packets_received = 0
        self.timed_out = False


class _Recording:
    def __init__(self, recording_id: str, path: Path, writer: AsyncWavWriter, pause_writes_silence: bool) -> None:
        self.id = recording_id
        self.path = path
        self.writer = writer
        self.pause_writes_silence = pause_writes_silence
        self.sources: list[tuple[_Endpoint, RecordingBuffer]] = []
        self.paused = False  # as written now; a command takes effect DELAY_FRAMES later (see ``toggles``)
        # (frame index, paused): pause/resume at the frame holding the audio that arrived when it was asked for.
        self.toggles: deque[tuple[int, bool]] = deque()
        self.frames = 0  # frames taken from the sources so far
        self.pending: list[Pcm] = []
        self.flush_after = random.randint(1, FLUSH_FRAMES)  # spread: recordings started together flush apart
        self.loud_at = 0.0  # loop time of the last frame above the silence level (voicemail ends on silence)

    def add_source(self, endpoint: _Endpoint) -> None:
        buffer = RecordingBuffer()
        endpoint.recorders.append(buffer)
        self.sources.append((endpoint, buffer))

    def toggle(self, paused: bool, behind: int) -> None:
        """`behind`: frames the ticker owes (a stalled loop catches up at its next tick): the command came at the
        moment those frames stand for, not where the ticker has got to."""
        self.toggles.append((self.frames + behind + DELAY_FRAMES, paused))


def _drained(sock: socket.socket) -> bool:
    """Read and drop what waits in a socket; False when more than a batch waits (a flood: not worth reading on)."""
    for _ in range(READ_BATCH):
        try:
            sock.recv(1)  # a datagram is dequeued whole, whatever the size read
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            continue  # an ICMP error queued on the socket: reported once, then gone
    return False


def _allowed_ports(port_min: int, port_max: int) -> list[int]:
    first = port_min + (port_min % 2)  # RTP on even ports, RTCP on the next odd one (RFC 3550 §11)
    return list(range(first, port_max - 1, 2))


class MediaEngine:
    """Owns every endpoint, the 20 ms ticker and the events. Use from one event loop only.

    Events go to ``listener`` when one is given (called on the loop; it must not block), else to ``events``.
    """

    def __init__(
        self,
        bind_address: str = "127.0.0.1",
        advertised_address: str | None = None,
        port_min: int = 20000,
        port_max: int = 30000,
        rtp_timeout_seconds: float = 30.0,
        listener: Callable[[MediaEvent], None] | None = None,
        rtcp_interval_seconds: float = RTCP_INTERVAL_SECONDS,
        socket_buffer_bytes: int = SOCKET_BUFFER_BYTES,
        port_rest_seconds: float = PORT_REST_SECONDS,
        pooled_pairs: int | None = None,
    ) -> None:
        if port_max - port_min < 2:
            raise ValueError("the RTP port range must hold at least one even/odd port pair")
        self.bind_address = bind_address
        self.advertised_address = advertised_address or bind_address
        self.rtp_timeout_seconds = rtp_timeout_seconds
        self.rtcp_interval_seconds = rtcp_interval_seconds
        self.socket_buffer_bytes = socket_buffer_bytes
        self._buffers_checked = False
        self.events: asyncio.Queue[MediaEvent] = asyncio.Queue()
        self._listener = listener
        # Free port pairs, drawn at random (``_bind_pair``); released ones rest first (``port_rest_seconds``), oldest
        # release first in ``_resting`` (release time, port, its sockets when they were kept open); rested ones
        # with their sockets wait in ``_pool`` (port, RTP, RTCP), the others go back to ``_free_ports``.
        self.port_rest_seconds = port_rest_seconds
        self.pooled_pairs = pooled_pairs_for_open_files() if pooled_pairs is None else pooled_pairs
        self._free_ports = _allowed_ports(port_min, port_max)
        self._resting: deque[tuple[float, int, socket.socket | None, socket.socket | None]] = deque()
        self._pool: list[tuple[int, socket.socket, socket.socket]] = []
        self._open_idle = 0  # pairs in ``_resting`` with their sockets, and in ``_pool``
        self._endpoints: dict[str, _Endpoint] = {}
        self._recordings: dict[str, _Recording] = {}
        self._mixers: dict[str, Mixer] = {}
        self._prompt_cache: dict[Path, tuple[int, Pcm]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._now = 0.0
        self._next_housekeeping = 0.0
        self._next_rtcp = 0.0
        self._writes: list[tuple[AsyncWavWriter, bytes]] = []
        self._last_tick = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self._running = False
        self._served = 0  # endpoints the last 20 ms step sent for
        # Whether the ticker runs every 20 ms (something is paced) or only for the housekeeping (see ``_tick``).
        self._pacing = False
        # Endpoints a command may have given something to send while the ticker rests: looked at once at the end of
        # the loop's turn (``_check_waking``), when the command's caller has done the rest of its step — a callee's
        # answer is followed by the bridge, a release by the other leg's release, and neither needs the ticker.
        self._waking: list[_Endpoint] = []

    # ------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time()
        self._deadline = self._now + FRAME_SECONDS
        self._next_housekeeping = self._now + 1.0
        self._next_rtcp = self._now + self.rtcp_interval_seconds
        self._last_tick = self._now
        self._running = True

    async def stop(self) -> None:
        for recording_id in list(self._recordings):
            await self._stop_recording(recording_id)
        for endpoint_id in list(self._endpoints):
            self._release(endpoint_id)
        for _, port, rtp, rtcp in self._resting:
            if rtp is not None and rtcp is not None:
                self._close_pair(rtp, rtcp)
            self._free_ports.append(port)
        for port, rtp, rtcp in self._pool:
            self._close_pair(rtp, rtcp)
            self._free_ports.append(port)
        self._resting.clear()
        self._pool.clear()
        self._open_idle = 0
        self._running = False
        self._pacing = False
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    @property
    def alive(self) -> bool:
        """The ticker does what is asked of it: it ran within ``LIVENESS_SECONDS`` (it runs at least once a second
        while there are endpoints), or there is nothing to tick for: prompts, tones and recordings work."""
        if self._loop is None or not self._running or self._loop.is_closed():
            return False
        if self._tick_handle is None:
            return not (self._endpoints or self._recordings or self._mixers)
        return self._loop.time() - self._last_tick < LIVENESS_SECONDS

    @property
    def pacing(self) -> bool:
        """Whether the 20 ms ticker runs (something is paced); else it wakes once a second at most."""
        return self._pacing

    async def __aenter__(self) -> MediaEngine:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -------------------------------------------------------------------------------------------- commands

    async def execute(self, command: Command) -> Reply:
        """Carry out one command; raises ``MediaError`` with a reason when it cannot."""
        if self._loop is None:
            raise MediaError("the media engine is not started")
        match command:
            case CreateEndpoint():
                return self._create_endpoint(command)
            case SetRemoteSdp():
                endpoint = self._endpoint(command.endpoint_id)
                if command.signalling_host is not None:
                    endpoint.signalling_host = command.signalling_host
                return self._set_remote_sdp(endpoint, command.sdp, command.answers)
            case CreateOffer():
                return self._create_offer(self._endpoint(command.endpoint_id), command.direction)
            case StartSending():
                self._start_sending(self._endpoint(command.endpoint_id))
            case Connect():
                self._connect(self._endpoint(command.endpoint_a), self._endpoint(command.endpoint_b))
            case Disconnect():
                self._detach(self._endpoint(command.endpoint_id))
            case Play():
                endpoint = self._endpoint(command.endpoint_id)
                parts = [await self._load_prompt(Path(path)) for path in command.files]
                samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
                return Started(self._play(endpoint, samples, command.loop))
            case PlayPcm():
                return Started(self._play(self._endpoint(command.endpoint_id), command.samples, command.loop))
            case SendDtmf():
                self._send_dtmf(self._endpoint(command.endpoint_id), command.digits, command.duration_ms)
            case StartRecording():
                return Started(await self._start_recording(command))
            case PauseRecording():
                self._recording(command.recording_id).toggle(True, self._frames_behind())
            case ResumeRecording():
                self._recording(command.recording_id).toggle(False, self._frames_behind())
            case RecordAlso():
                recording = self._recording(command.recording_id)
                endpoint = self._endpoint(command.endpoint_id)
                if all(source is not endpoint for source, _ in recording.sources):
                    recording.add_source(endpoint)
            case StopRecording():
                await self._stop_recording(command.recording_id)
            case CreateMixer():
                return Started(self._create_mixer(command.endpoint_ids))
            case AddToMixer():
                mixer = self._mixers.get(command.mixer_id)
                if mixer is None:
                    raise MediaError(f"unknown mixer_id {command.mixer_id!r}")
                self._join_mixer(mixer, self._endpoint(command.endpoint_id))
                self._recordings_follow(mixer)
            case Release():
                self._release(command.endpoint_id)
        return Done()

    def recording_quiet_seconds(self, recording_id: str) -> float:
        """How long a running recording has heard nothing above the silence level (0 = sound just now)."""
        return max(0.0, self._now - self._recording(recording_id).loud_at)

    def recording_stats(self, recording_id: str) -> dict[str, int]:
        """Of a running recording's streams: packets that came too late to be written (beyond the jitter delay),
        and the times a stream was placed afresh (its first packet, a new SSRC, a timestamp jump)."""
        sources = [buffer for _, buffer in self._recording(recording_id).sources]
        return {
            "late_packets_dropped": sum(buffer.dropped_late for buffer in sources),
            "streams_placed": sum(buffer.reanchored for buffer in sources),
        }

    def local_port(self, endpoint_id: str) -> int:
        return self._endpoint(endpoint_id).port

    def stats(self, endpoint_id: str) -> dict[str, int]:
        endpoint = self._endpoint(endpoint_id)
        return {
            "packets_sent": endpoint.packets_sent,
            "packets_received": endpoint.packets_received,
            "packets_rejected": endpoint.packets_rejected,
            "octets_sent": endpoint.octets_sent,
        }

    # ------------------------------------------------------------------------------------ command handlers

    def _endpoint(self, endpoint_id: str) -> _Endpoint:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            raise MediaError(f"unknown endpoint_id {endpoint_id!r}")
        return endpoint

    def _recording(self, recording_id: str) -> _Recording:
        recording = self._recordings.get(recording_id)
        if recording is None:
            raise MediaError(f"unknown recording_id {recording_id!r}")
        return recording

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _bind_pair(self) -> tuple[socket.socket, socket.socket, int]:
        free = self._free_ports
        resting = self._resting
        pool = self._pool
        rested = time.monotonic() - self.port_rest_seconds
        while resting and (resting[0][0] <= rested or not (free or pool)):  # a resting pair rather than none
            self._rested(resting.popleft())
        while pool:
            index = secrets.randbelow(len(pool))
            port, rtp, rtcp = pool[index]
            pool[index] = pool[-1]  # O(1) removal; the order of the pool does not matter
            pool.pop()
            self._open_idle -= 1
            if _drained(rtp) and _drained(rtcp):
                return rtp, rtcp, port
            # Still receiving a flood after its rest: closed, and the port rests again (a fresh pair instead).
            self._close_pair(rtp, rtcp)
            resting.append((time.monotonic(), port, None, None))
        for _ in range(BIND_ATTEMPTS):
            if not free:
                break
            index = secrets.randbelow(len(free))
            port = free[index]
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtp.bind((self.bind_address, port))
                rtcp.bind((self.bind_address, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue  # another process holds it: it stays in the pool, for when that process lets go
            free[index] = free[-1]  # O(1) removal; the order of the pool does not matter
            free.pop()
            for sock in (rtp, rtcp):
                sock.setblocking(False)
            self._size_buffers(rtp)
            return rtp, rtcp, port
        if resting:  # the free pairs are held by other processes: the resting ones rather than a refusal
            while resting:
                self._rested(resting.popleft())
            return self._bind_pair()
        log.warning("media.ports_exhausted", extra={"free": len(free), "endpoints": len(self._endpoints)})
        raise PortsExhausted("no free RTP port pair in the configured range")

    def _rested(self, entry: tuple[float, int, socket.socket | None, socket.socket | None]) -> None:
        _, port, rtp, rtcp = entry
        if rtp is None or rtcp is None:
            self._free_ports.append(port)
        else:
            self._pool.append((port, rtp, rtcp))

    def _close_pair(self, rtp: socket.socket, rtcp: socket.socket) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(rtp.fileno())
            self._loop.remove_reader(rtcp.fileno())
        rtp.close()
        rtcp.close()

    def _drop_idle(self, sock: socket.socket) -> None:
        """The reader of a released socket: what still arrives (a phone slow to stop) is dropped as it comes."""
        _drained(sock)

    def _size_buffers(self, rtp: socket.socket) -> None:
        """Room for `socket_buffer_bytes` of RTP each way (the default 208 KiB is ≈ 1–2 s at 50 packets/s once
        the kernel's per-packet overhead is counted). Packets that arrive while the loop is not scheduled wait in
        the receive buffer; when it is full the kernel drops them (RcvbufErrors): a larger buffer turns a stall of
        a few seconds into late audio rather than lost audio. The kernel caps the size at net.core.rmem_max /
        wmem_max; the effective size is checked once and a cap is logged."""
        wanted = self.socket_buffer_bytes
        if wanted <= 0:
            return
        got = size_buffers(rtp, wanted)
        if not self._buffers_checked:
            self._buffers_checked = True
            if got < wanted:
                log.warning(
                    "media.socket_buffer_capped",
                    extra={"wanted": wanted, "got": got, "hint": "raise net.core.rmem_max and net.core.wmem_max"},
                )

    def _create_endpoint(self, command: CreateEndpoint) -> EndpointCreated:
        assert self._loop is not None
        unknown = [codec for codec in command.codecs if codec not in (PCMU, PCMA)]
        if unknown or not command.codecs:
            raise MediaError(f"codecs must be PCMU and/or PCMA, got {command.codecs!r}")
        rtp, rtcp, port = self._bind_pair()
        endpoint = _Endpoint(self._new_id("ep"), rtp, rtcp, port)
        endpoint.codecs = command.codecs
        endpoint.signalling_host = command.signalling_host
        try:
            if command.remote_sdp is not None:
                local_sdp = self._answer(endpoint, SessionDescription.parse(command.remote_sdp))
            else:
                local_sdp = self._offer(endpoint, "sendrecv")
        except SdpError as error:
            self._close_pair(rtp, rtcp)  # unused: a pooled pair closes, and its port is free again
            self._free_ports.append(port)
            raise MediaError(f"remote_sdp: {error}") from error
        self._endpoints[endpoint.id] = endpoint
        # A pooled pair is registered already: this replaces its reader (no system call).
        self._loop.add_reader(rtp.fileno(), self._on_rtp_readable, endpoint)
        self._loop.add_reader(rtcp.fileno(), self._on_rtcp_readable, endpoint)
        endpoint.last_received = now = self._loop.time()
        if self._tick_handle is None:  # the first endpoint: the housekeeping's times are stale
            self._last_tick = now  # rested with nothing to do: not a stalled ticker
            self._next_housekeeping = max(self._next_housekeeping, now + 1.0)
            self._next_rtcp = max(self._next_rtcp, now + self.rtcp_interval_seconds)
            self._schedule_housekeeping()
        return EndpointCreated(endpoint.id, port, local_sdp, endpoint.session)

    def _offer(self, endpoint: _Endpoint, direction: str) -> str:
        endpoint.sdp_version += 1
        endpoint.pending_offer = build_offer(
            self.advertised_address,
            endpoint.port,
            endpoint.codecs,
            direction=direction,
            session_id=endpoint.sdp_session_id,
            session_version=endpoint.sdp_version,
        )
        return endpoint.pending_offer.serialize()

    def _answer(self, endpoint: _Endpoint, offer: SessionDescription) -> str:
        answer, session = answer_offer(
            offer,
            self.advertised_address,
            endpoint.port,
            endpoint.codecs,
            session_id=endpoint.sdp_session_id,
            session_version=endpoint.sdp_version + 1,
        )
        endpoint.sdp_version += 1
        self._apply_session(endpoint, session)
        return answer.serialize()

    def _set_remote_sdp(self, endpoint: _Endpoint, sdp: str, answers: str | None = None) -> SessionUpdated:
        try:
            remote = SessionDescription.parse(sdp)
            if answers is not None:
                session = accept_answer(SessionDescription.parse(answers), remote)
                self._apply_session(endpoint, session)
                return SessionUpdated(endpoint.id, session, None)
            if endpoint.pending_offer is not None:
                session = accept_answer(endpoint.pending_offer, remote)
                endpoint.pending_offer = None
                self._apply_session(endpoint, session)
                self._start_sending(endpoint)  # the offer/answer exchange is complete: we may send
                return SessionUpdated(endpoint.id, session, None)
            answer = self._answer(endpoint, remote)  # first: the session it agrees is what the reply reports
            return SessionUpdated(endpoint.id, endpoint.session, answer)
        except SdpError as error:
            raise MediaError(f"sdp: {error}") from error

    def _create_offer(self, endpoint: _Endpoint, direction: str) -> SessionUpdated:
        if direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
            raise MediaError(f"direction must be sendrecv, sendonly, recvonly or inactive, got {direction!r}")
        return SessionUpdated(endpoint.id, endpoint.session, self._offer(endpoint, direction))

    async def _load_prompt(self, path: Path) -> Pcm:
        """Decoded prompt audio, cached by path and modification time (prompts repeat on every call)."""
        try:
            stamp = (await run_cpu(path.stat)).st_mtime_ns
            cached = self._prompt_cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            samples = await run_cpu(read_wav, path)
        except OSError as error:
            raise MediaError(f"files: cannot read {path}: {error.strerror or error}") from error
        except ValueError as error:
            raise MediaError(f"files: {error}") from error
        if len(self._prompt_cache) >= PROMPT_CACHE_SIZE:
            self._prompt_cache.pop(next(iter(self._prompt_cache)))
        self._prompt_cache[path] = (stamp, samples)
        return samples

    def _apply_session(self, endpoint: _Endpoint, session: AudioSession) -> None:
        endpoint.session = session
        endpoint.codec = session.codec
        endpoint.payload_type = session.payload_type
        endpoint.send_dtmf_pt = session.remote_dtmf_payload_type
        # Accept DTMF on our own declared payload type, and on the remote's (some phones send what they declared).
        endpoint.recv_dtmf_pts = frozenset(
            pt for pt in (session.local_dtmf_payload_type, session.remote_dtmf_payload_type) if pt is not None
        )
        endpoint.latched = False  # new SDP, the only thing that may move the media (see ``_may_latch``)
        # RFC 3264 §6.1: recvonly/inactive from our point of view means we must not send.
        endpoint.direction_sends = session.direction in ("sendrecv", "sendonly")
        endpoint.may_send = endpoint.started and endpoint.direction_sends
        endpoint.signalled = (session.remote_address, session.remote_port)
        endpoint.signalled_routable = routable(session.remote_address)  # parsed once, with the SDP (media/sdp.py)
        if session.remote_address != "0.0.0.0" and session.remote_port:
            endpoint.remote = (session.remote_address, session.remote_port)
            endpoint.remote_rtcp = (session.remote_address, session.remote_port + 1)
        if endpoint.source == SOURCE_NONE:
            self._set_source(endpoint, SOURCE_SILENCE)
        else:
            self._may_wake(endpoint)

    def _start_sending(self, endpoint: _Endpoint) -> None:
        if endpoint.started:
            return
        endpoint.started = True
        endpoint.may_send = endpoint.direction_sends
        endpoint.switched = True  # a prompt or a bridge that began before: its first packet is marked
        self._may_wake(endpoint)

    def _set_source(self, endpoint: _Endpoint, source: int) -> None:
        endpoint.source = source
        endpoint.switched = True
        endpoint.relay_ssrc = -1
        if source != SOURCE_PEER:
            self._may_wake(endpoint)

    def _detach(self, endpoint: _Endpoint) -> None:
        """Take an endpoint out of any bridge or mixer and stop its player; it falls back to silence."""
        peer = endpoint.peer
        if peer is not None:
            endpoint.peer = peer.peer = None
            if peer.source == SOURCE_PEER:
                self._set_source(peer, SOURCE_SILENCE)
        if endpoint.mixer is not None:
            mixer = endpoint.mixer
            buffer = mixer.buffers.get(endpoint.id)
            mixer.remove(endpoint.id)
            if buffer is not None:
                endpoint.taps = [tap for tap in endpoint.taps if tap is not buffer]
            endpoint.mixer = None
            if self._loop is not None and endpoint.id in self._endpoints:
                self._loop.add_reader(endpoint.rtp.fileno(), self._on_rtp_readable, endpoint)  # see _join_mixer
        endpoint.player = None
        self._set_source(endpoint, SOURCE_SILENCE)

    def _connect(self, a: _Endpoint, b: _Endpoint) -> None:
        if a is b:
            raise MediaError("cannot connect an endpoint to itself")
        self._detach(a)
        self._detach(b)
        a.peer, b.peer = b, a
        self._set_source(a, SOURCE_PEER)
        self._set_source(b, SOURCE_PEER)

    def _play(self, endpoint: _Endpoint, samples: Pcm, loop: bool) -> str:
        if endpoint.mixer is not None or endpoint.peer is not None:
            self._detach(endpoint)
        playback_id = self._new_id("play")
        endpoint.player = _Player(playback_id, samples, loop)
        self._set_source(endpoint, SOURCE_PLAYER)
        return playback_id

    def _send_dtmf(self, endpoint: _Endpoint, digits: str, duration_ms: int) -> None:
        if endpoint.send_dtmf_pt is None:
            raise MediaError("the remote did not negotiate telephone-event")
        try:
            for digit in digits:
                digit_to_event(digit)
            for index, digit in enumerate(digits):
                if index:
                    endpoint.dtmf_out.extend([None, None, None])  # 60 ms pause between digits
                endpoint.dtmf_out.extend(event_payloads(digit, duration_ms))
        except ValueError as error:
            raise MediaError(f"digits: {error}") from error
        self._may_wake(endpoint)

    async def _start_recording(self, command: StartRecording) -> str:
        endpoints = [self._endpoint(endpoint_id) for endpoint_id in command.endpoint_ids]
        if not 1 <= len(endpoints) <= 2:
            raise MediaError("endpoint_ids: record one endpoint, or the two endpoints of a bridged pair")
        try:
            writer = await AsyncWavWriter.open(command.path)
        except OSError as error:
            raise MediaError(f"path: cannot write {command.path}: {error.strerror or error}") from error
        recording = _Recording(self._new_id("rec"), command.path, writer, command.pause_writes_silence)
        recording.loud_at = self._loop.time() if self._loop is not None else self._now
        # The sources' first DELAY_FRAMES frames are always empty (audio is placed that far behind its arrival):
        # not written, so the file starts when the recording was asked for.
        recording.frames = -DELAY_FRAMES
        for endpoint in endpoints:
            recording.add_source(endpoint)
        self._recordings[recording.id] = recording
        for endpoint in endpoints:
            if endpoint.mixer is not None:
                self._recordings_follow(endpoint.mixer)
        self._start_pacing()
        return recording.id

    def _recordings_follow(self, mixer: Mixer) -> None:
        """Recordings of a mixer's participants record every participant: the conference, each voice once."""
        for recording in self._recordings.values():
            recorded = {endpoint.id for endpoint, _ in recording.sources}
            if recorded.isdisjoint(mixer.buffers):
                continue
            for participant in mixer.buffers:
                endpoint = self._endpoints.get(participant)
                if participant not in recorded and endpoint is not None:
                    recording.add_source(endpoint)

    async def _stop_recording(self, recording_id: str) -> None:
        recording = self._recording(recording_id)
        del self._recordings[recording_id]
        for endpoint, buffer in recording.sources:
            endpoint.recorders = [tap for tap in endpoint.recorders if tap is not buffer]
        # Audio that arrived but is not written yet (the jitter delay) belongs in it.
        while any(len(buffer) for _, buffer in recording.sources):
            self._write_frame(recording)
        self._flush_recording(recording)
        self._flush_writes()
        try:
            samples = await recording.writer.commit()
        except OSError as error:
            raise MediaError(f"recording {recording.path}: {error}") from error
        self._emit(RecordingFinished(recording.id, recording.path, samples / g711.SAMPLE_RATE))

    def _create_mixer(self, endpoint_ids: tuple[str, ...]) -> str:
        endpoints = [self._endpoint(endpoint_id) for endpoint_id in endpoint_ids]
        mixer = Mixer(self._new_id("mix"))
        self._mixers[mixer.mixer_id] = mixer
        self._start_pacing()
        for endpoint in endpoints:
            self._join_mixer(mixer, endpoint)
        self._recordings_follow(mixer)
        return mixer.mixer_id

    def _join_mixer(self, mixer: Mixer, endpoint: _Endpoint) -> None:
        self._detach(endpoint)
        endpoint.taps.append(mixer.add(endpoint.id))
        endpoint.mixer = mixer
        self._set_source(endpoint, SOURCE_MIXER)
        # A participant's packets are read on the ticker (``_frame``), not as they arrive: the mixer takes one
        # frame per tick anyway, so nobody hears them sooner, and a conference then wakes the loop 50 times a
        # second instead of 50 times per participant more (each wake-up costs about as much as the mixing).
        if self._loop is not None:
            self._loop.remove_reader(endpoint.rtp.fileno())

    def _release(self, endpoint_id: str) -> None:
        endpoint = self._endpoints.pop(endpoint_id, None)
        if endpoint is None:
            return
        endpoint.may_send = False  # it sends nothing more (and does not wake the ticker on its way out)
        self._detach(endpoint)
        endpoint.source = SOURCE_NONE
        if self._loop is not None and self._open_idle < self.pooled_pairs:
            # Kept for a later call (see the module's notes): its readers now drop what arrives.
            self._loop.add_reader(endpoint.rtp.fileno(), self._drop_idle, endpoint.rtp)
            self._loop.add_reader(endpoint.rtcp.fileno(), self._drop_idle, endpoint.rtcp)
            self._open_idle += 1
            self._resting.append((time.monotonic(), endpoint.port, endpoint.rtp, endpoint.rtcp))
        else:
            self._close_pair(endpoint.rtp, endpoint.rtcp)
            self._resting.append((time.monotonic(), endpoint.port, None, None))
        if endpoint.packets_rejected:
            log.warning(
                "media.rtp_rejected_total",
                extra={"endpoint_id": endpoint.id, "packets": endpoint.packets_rejected, "remote": endpoint.remote},
            )
        for mixer_id, mixer in list(self._mixers.items()):
            if not mixer.buffers:
                del self._mixers[mixer_id]

    def _emit(self, event: MediaEvent) -> None:
        if self._listener is None:
            self.events.put_nowait(event)
            return
        # With a listener nobody reads the queue, so events go only to the listener (no unbounded growth).
        try:
            self._listener(event)
        except Exception:
            log.exception("media event listener failed for %r", event)

    # --------------------------------------------------------------------------------------- receive path

    def _fail_endpoint(self, endpoint: _Endpoint, where: str, error: Exception) -> None:
        """Handling one endpoint raised: log it, drop the endpoint, tell its call (an ``RtpTimeout`` ends it).
        Nothing here may raise into the shared ticker or reader."""
        MEDIA_ENDPOINT_ERRORS.inc()
        log.error("media.endpoint_failed", extra={"endpoint_id": endpoint.id, "where": where}, exc_info=error)
        try:
            self._release(endpoint.id)
        except Exception:
            log.exception("media.endpoint_release_failed", extra={"endpoint_id": endpoint.id})
        self._emit(RtpTimeout(endpoint.id, 0.0))

    def _on_rtp_readable(self, endpoint: _Endpoint) -> None:
        recvfrom = endpoint.rtp.recvfrom
        # The time of arrival (last_received, the relay's last_sent): the ticker's is up to a second old while it
        # rests.
        self._now = self._time()
        try:
            for _ in range(READ_BATCH):
                try:
                    data, address = recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return  # e.g. ICMP errors surfacing on the socket: nothing to read
                self._on_rtp(endpoint, data, address)
        except Exception as error:
            self._fail_endpoint(endpoint, "rtp", error)

    def _may_latch(self, endpoint: _Endpoint, address: tuple[str, int]) -> bool:
        """Whether the first packet from ``address`` may become the endpoint's remote (cold path: only until
        latched). The signalled address and port, or the signalled host on another port (a NAT that keeps the
        address), always; when the signalled address is not routable (behind NAT), the host the SIP came from.
        Anything else is a third party spraying the port range."""
        signalled = endpoint.signalled
        if signalled is None:
            return False  # no SDP from the remote yet (our offer is unanswered): nobody vouched for anyone
        if address[0] == signalled[0]:
            return True
        if endpoint.signalled_routable:
            return False
        return endpoint.signalling_host is None or address[0] == endpoint.signalling_host

    def _reject(self, endpoint: _Endpoint, address: tuple[str, int]) -> None:
        endpoint.packets_rejected += 1
        RTP_REJECTED.inc()
        if endpoint.packets_rejected == 1:  # one line per endpoint (a flood must not flood the log too)
            log.warning(
                "media.rtp_rejected",
                extra={
                    "endpoint_id": endpoint.id,
                    "source": f"{address[0]}:{address[1]}",
                    "latched": endpoint.latched,
                    "remote": f"{endpoint.remote[0]}:{endpoint.remote[1]}" if endpoint.remote else None,
                },
            )

    def _on_rtp(self, endpoint: _Endpoint, data: bytes, address: tuple[str, int]) -> None:
        # Hot path: called for every datagram. Header fields straight from struct; no objects, no logging.
        if len(data) < 12:
            return
        first, second, seq, ts, ssrc = _UNPACK_HEADER(data)
        if first & 0xC0 != 0x80 or 72 <= (second & 0x7F) <= 76:
            return  # not RTP v2, or RTCP multiplexed on the RTP port (RFC 5761): ignored here
        if endpoint.latched:
            if address != endpoint.remote:
                self._reject(endpoint, address)  # after latching, only the latched source (no media hijacking)
                return
        elif not self._may_latch(endpoint, address):
            self._reject(endpoint, address)
            return
        else:
            # Symmetric RTP: answer to where the media really comes from, not to the (maybe NATed) SDP address.
            endpoint.remote = address
            endpoint.remote_rtcp = (address[0], address[1] + 1)
            endpoint.latched = True
            self._may_wake(endpoint)  # it may have had nowhere to send before (an old-style hold's c=0.0.0.0)
        endpoint.last_received = self._now
        endpoint.packets_received += 1
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if len(data) < offset + 4:
                return
            offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
        end = len(data) - data[-1] if first & 0x20 else len(data)
        if offset > end:
            return
        payload_type = second & 0x7F
        if payload_type == endpoint.payload_type:
            if endpoint.taps or endpoint.recorders:
                pcm = g711.decode(data[offset:end], endpoint.codec)
                for tap in endpoint.taps:
                    tap.push(pcm)
                for recorder in endpoint.recorders:
                    recorder.push(pcm, ts, ssrc)
            peer = endpoint.peer
            if peer is not None and peer.source == SOURCE_PEER and peer.may_send and not peer.dtmf_out:
                payload = data[offset:end]
                if peer.codec != endpoint.codec:
                    payload = g711.transcode(payload, endpoint.codec, peer.codec)
                self._relay(peer, payload, seq, ts, ssrc, second & 0x80, peer.payload_type)
        elif payload_type in endpoint.recv_dtmf_pts:
            for digit in endpoint.dtmf_rx.feed(ts, data[offset:end]):
                self._emit(DtmfReceived(endpoint.id, digit.digit, digit.duration_ms))
            peer = endpoint.peer
            bridged = peer is not None and peer.source == SOURCE_PEER
            if ts != endpoint.dtmf_event_ts:
                # A new event (RFC 4733 §2.5.1.1: one timestamp per event) is relayed only when a bridge carries
                # its start: a key pressed before the bridge (answer confirmation's "press 1") must not reach the
                # other side as the tail of a digit — the end packets are repeated after it (§2.5.1.4).
                endpoint.dtmf_event_ts = ts
                endpoint.dtmf_relayed = bridged
            if endpoint.dtmf_relayed and peer is not None and peer.may_send and peer.send_dtmf_pt is not None:
                # DTMF passes through the bridge on the peer's own telephone-event payload type.
                self._relay(peer, data[offset:end], seq, ts, ssrc, second & 0x80, peer.send_dtmf_pt)

    def _relay(self, out: _Endpoint, payload: bytes, seq: int, ts: int, ssrc: int, marker: int, pt: int) -> None:
        remote = out.remote
        if remote is None:
            return  # the peer's remote is not known yet (our offer is unanswered)
        if ssrc != out.relay_ssrc:
            # A new incoming stream (first packet after a switch, or the peer restarted): rebase it onto our
            # continuous outgoing stream.
            now = self._loop.time() if self._loop is not None else self._now
            next_ts = self._next_switch_ts(out, now)
            out.ts_offset = (next_ts - ts) & 0xFFFFFFFF
            out.seq_offset = (out.seq + 1 - seq) & 0xFFFF
            out.relay_ssrc = ssrc
            out.switched = False
            marker = 0x80
        out_seq = (seq + out.seq_offset) & 0xFFFF
        out_ts = (ts + out.ts_offset) & 0xFFFFFFFF
        packet = _PACK_HEADER(0x80, marker | pt, out_seq, out_ts, out.ssrc) + payload
        try:
            out.rtp.sendto(packet, remote)
        except OSError:
            return  # a full socket buffer or an ICMP error: this packet is lost, like on the wire
        out.seq = out_seq
        out.ts = out_ts
        out.last_sent = self._now
        out.packets_sent += 1
        out.octets_sent += len(payload)

    def _on_rtcp_readable(self, endpoint: _Endpoint) -> None:
        self._now = self._time()
        try:
            for _ in range(READ_BATCH):
                try:
                    data, address = endpoint.rtcp.recvfrom(2048)
                except OSError:
                    return
                if not endpoint.latched or endpoint.remote is None or address[0] != endpoint.remote[0]:
                    continue  # only the latched host's RTCP counts: a stranger cannot keep a dead call alive
                endpoint.remote_rtcp = address
                with contextlib.suppress(ValueError):
                    # RTCP only proves the remote is alive here; reports are not acted on yet.
                    parse_rtcp(data)
                    endpoint.last_received = self._now
        except Exception as error:
            self._fail_endpoint(endpoint, "rtcp", error)

    # ------------------------------------------------------------------------------------------ send path

    def _next_switch_ts(self, endpoint: _Endpoint, now: float) -> int:
        """The first timestamp after a source switch: advanced by the wall-clock time since the last packet."""
        if not endpoint.last_sent:
            return endpoint.ts
        elapsed = round((now - endpoint.last_sent) * g711.SAMPLE_RATE)
        return (endpoint.ts + max(SAMPLES_PER_FRAME, elapsed)) & 0xFFFFFFFF

    def _send_frame(self, endpoint: _Endpoint, payload: bytes, payload_type: int, now: float) -> None:
        if endpoint.switched:
            ts = self._next_switch_ts(endpoint, now)
            marker = 0x80
            endpoint.switched = False
        else:
            ts = (endpoint.ts + SAMPLES_PER_FRAME) & 0xFFFFFFFF
            marker = 0
        self._send_packet(endpoint, payload, payload_type, ts, marker, now)

    def _send_packet(self, endpoint: _Endpoint, payload: bytes, pt: int, ts: int, marker: int, now: float) -> None:
        seq = (endpoint.seq + 1) & 0xFFFF
        if endpoint.remote is not None:
            with contextlib.suppress(OSError):
                endpoint.rtp.sendto(_PACK_HEADER(0x80, marker | pt, seq, ts, endpoint.ssrc) + payload, endpoint.remote)
        endpoint.seq = seq
        endpoint.ts = ts
        endpoint.last_sent = now
        endpoint.packets_sent += 1
        endpoint.octets_sent += len(payload)

    def _send_dtmf_tick(self, endpoint: _Endpoint, now: float) -> None:
        payload = endpoint.dtmf_out.popleft()
        assert endpoint.send_dtmf_pt is not None
        if payload is None:  # the pause between two digits
            endpoint.dtmf_first = False
            return
        if not endpoint.dtmf_first:
            # A new event: it starts at the stream's next timestamp and keeps it for all its packets (RFC 4733).
            endpoint.dtmf_ts = self._next_switch_ts(endpoint, now)
            endpoint.dtmf_first = True
            marker = 0x80
        else:
            marker = 0
        self._send_packet(endpoint, payload, endpoint.send_dtmf_pt, endpoint.dtmf_ts, marker, now)
        if payload[1] & 0x80 and (not endpoint.dtmf_out or endpoint.dtmf_out[0] != payload):
            # Last end packet sent: continue the stream after the event's duration, as a new talkspurt.
            duration = (payload[2] << 8) | payload[3]
            endpoint.ts = (endpoint.dtmf_ts + duration - SAMPLES_PER_FRAME) & 0xFFFFFFFF
            endpoint.dtmf_first = False
            endpoint.switched = True
            endpoint.relay_ssrc = -1

    def _frames_behind(self) -> int:
        """The frames the ticker's next step will take beyond its one (0 when it is on time): after a stall."""
        if self._loop is None:
            return 0
        late = self._loop.time() - self._deadline
        return max(0, min(int(late / FRAME_SECONDS) + 1, RECORDING_CATCH_UP_FRAMES) - 1) if late >= 0 else 0

    def _time(self) -> float:
        return self._loop.time() if self._loop is not None else self._now

    def _paced(self, endpoint: _Endpoint) -> bool:
        """Whether the ticker has something to send for this endpoint (the test of ``_frame``/``_frame_of``)."""
        return (
            endpoint.may_send
            and endpoint.remote is not None
            and endpoint.source != SOURCE_NONE
            and (endpoint.source != SOURCE_PEER or bool(endpoint.dtmf_out))
        )

    def _may_wake(self, endpoint: _Endpoint) -> None:
        """A command (or latching) may have given `endpoint` something to send: while the ticker rests, look at it
        at the end of this turn of the loop."""
        if self._pacing or self._loop is None or not self._paced(endpoint):
            return  # not sending now: whatever makes it send later passes here again
        if not self._waking:
            self._loop.call_soon(self._check_waking)
        self._waking.append(endpoint)

    def _check_waking(self) -> None:
        waking, self._waking = self._waking, []
        if self._pacing or not self._running:
            return
        endpoints = self._endpoints
        if any(endpoints.get(endpoint.id) is endpoint and self._paced(endpoint) for endpoint in waking):
            self._start_pacing()

    def _start_pacing(self) -> None:
        """The ticker runs every 20 ms from the next step of its grid on (the first frame comes as it always did,
        within 20 ms; no catch-up for the time it rested)."""
        if self._pacing or self._loop is None or not self._running:
            return
        now = self._loop.time()
        if self._deadline <= now:
            self._deadline += (int((now - self._deadline) / FRAME_SECONDS) + 1) * FRAME_SECONDS
        if self._tick_handle is None:
            self._last_tick = now
        else:
            self._tick_handle.cancel()
        self._pacing = True
        self._tick_handle = self._loop.call_at(self._deadline, self._tick)

    def _schedule_housekeeping(self) -> None:
        """The resting ticker's next wake-up: the next timeout check or RTCP round, as they were due (a ticker that
        starts and rests often must not put them off), none without endpoints."""
        assert self._loop is not None
        if not self._endpoints:
            self._tick_handle = None
            return
        self._tick_handle = self._loop.call_at(min(self._next_housekeeping, self._next_rtcp), self._tick)

    def _tick(self) -> None:
        """The 20 ms step, or (nothing paced) the housekeeping. Whatever one step raises, the next one is
        scheduled: the ticker serves every call's prompts, tones, mixers and recordings, so it must outlive any one
        call's fault (issue: one SDP once stopped it for the whole node)."""
        assert self._loop is not None
        now = self._loop.time()
        self._now = now
        self._last_tick = now
        if not self._pacing:
            try:
                self._housekeeping(now)
            except Exception:
                log.exception("media.tick_failed")
            self._schedule_housekeeping()
            return
        due = max(1, int((now - self._deadline) / FRAME_SECONDS) + 1)
        try:
            self._step(now, due)
        except Exception:
            log.exception("media.tick_failed")  # a bug outside any one endpoint: logged, the ticker goes on
        self._deadline += due * FRAME_SECONDS
        if self._served or self._recordings or self._mixers:
            self._tick_handle = self._loop.call_at(self._deadline, self._tick)
        else:
            self._pacing = False  # nothing sent this step: rest until a command gives something to send
            self._tick_handle = None
            self._schedule_housekeeping()

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + 1.0
            self._check_timeouts(now)
        if now >= self._next_rtcp:
            self._next_rtcp = now + self.rtcp_interval_seconds
            self._send_rtcp()

    def _step(self, now: float, due: int) -> None:
        if due > 1 and self._recordings:
            # After a stall the packets of the stalled time wait in the sockets: read them before catching up,
            # else the catch-up records silence for audio that did arrive (a gap) and the burst read later
            # overflows the frame buffer.
            for recording in self._recordings.values():
                for endpoint, _ in recording.sources:
                    if endpoint.id in self._endpoints:
                        self._on_rtp_readable(endpoint)
        # Recordings keep the call's timeline even when the loop was blocked (up to a second of catch-up);
        # sending skips ahead instead, because a burst of stale frames is worse for the listener than a gap.
        for _ in range(min(due, RECORDING_CATCH_UP_FRAMES) - min(due, MAX_CATCH_UP_FRAMES)):
            self._record_frame()
        if due > MAX_CATCH_UP_FRAMES:
            for endpoint in self._endpoints.values():
                endpoint.switched = True  # the skipped time shows in the timestamps, with a marker
        for _ in range(min(due, MAX_CATCH_UP_FRAMES)):
            self._frame(now)
            self._record_frame()
        self._flush_writes()
        self._housekeeping(now)

    def _frame(self, now: float) -> None:
        """One 20 ms step of every paced source."""
        mixed: dict[str, Pcm] = {}
        failed: list[tuple[_Endpoint, Exception]] = []
        for mixer in list(self._mixers.values()):
            for participant in list(mixer.buffers):
                endpoint = self._endpoints.get(participant)
                if endpoint is not None:
                    self._on_rtp_readable(endpoint)
            try:
                mixed.update(mixer.tick())
            except Exception as error:
                failed += [(e, error) for p in mixer.buffers if (e := self._endpoints.get(p)) is not None]
        served = 0
        for endpoint in self._endpoints.values():
            if endpoint.remote is None or endpoint.source == SOURCE_NONE or not endpoint.may_send:
                continue
            if endpoint.source != SOURCE_PEER or endpoint.dtmf_out:
                served += 1
            try:
                self._frame_of(endpoint, mixed, now)
            except Exception as error:
                failed.append((endpoint, error))  # dropped after the loop: the table must not change under it
        self._served = served
        for endpoint, cause in failed:
            if endpoint.id in self._endpoints:
                self._fail_endpoint(endpoint, "ticker", cause)

    def _frame_of(self, endpoint: _Endpoint, mixed: dict[str, Pcm], now: float) -> None:
        """One endpoint's 20 ms of paced sending."""
        if endpoint.dtmf_out:
            self._send_dtmf_tick(endpoint, now)
            if endpoint.player is not None:
                endpoint.player.next_frame()  # a prompt keeps its place in time under the DTMF
            return
        source = endpoint.source
        if source == SOURCE_PLAYER:
            player = endpoint.player
            frame = player.next_frame() if player is not None else None
            if frame is None:
                endpoint.player = None
                self._set_source(endpoint, SOURCE_SILENCE)
                if player is not None:
                    self._emit(PlaybackFinished(endpoint.id, player.playback_id))
                endpoint.switched = False  # silence continues the prompt's talkspurt seamlessly
                payload = _SILENCE[endpoint.codec]
            else:
                payload = g711.encode(frame, endpoint.codec)
            self._send_frame(endpoint, payload, endpoint.payload_type, now)
        elif source == SOURCE_SILENCE:
            self._send_frame(endpoint, _SILENCE[endpoint.codec], endpoint.payload_type, now)
        elif source == SOURCE_MIXER:
            pcm = mixed.get(endpoint.id, SILENT_FRAME)
            self._send_frame(endpoint, g711.encode(pcm, endpoint.codec), endpoint.payload_type, now)

    def _record_frame(self) -> None:
        for recording in list(self._recordings.values()):
            try:
                self._write_frame(recording)
            except Exception:
                log.exception("media.recording_failed", extra={"recording_id": recording.id})
                self._abandon_recording(recording)

    def _abandon_recording(self, recording: _Recording) -> None:
        """A recording whose frame could not be written: stop feeding it and keep what was written (its
        owner gets ``RecordingFinished`` as for a stop); the other recordings and the ticker go on."""
        self._recordings.pop(recording.id, None)
        for endpoint, buffer in recording.sources:
            endpoint.recorders = [tap for tap in endpoint.recorders if tap is not buffer]
        recording.pending = []

        async def commit() -> None:
            try:
                samples = await recording.writer.commit()
            except Exception:
                log.exception("media.recording_commit_failed", extra={"recording_id": recording.id})
                samples = 0
            self._emit(RecordingFinished(recording.id, recording.path, samples / g711.SAMPLE_RATE))

        if self._loop is not None:
            task = self._loop.create_task(commit())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _write_frame(self, recording: _Recording) -> None:
        frames = [buffer.pop() for _, buffer in recording.sources]
        index = recording.frames
        recording.frames = index + 1
        if index < 0:
            return  # the jitter delay at the start (see _start_recording)
        toggles = recording.toggles
        while toggles and toggles[0][0] <= index:
            recording.paused = toggles.popleft()[1]
        if recording.paused:
            if not recording.pause_writes_silence:
                return
            frame = SILENT_FRAME
        else:
            frame = mix(frames)
            if int(np.abs(frame).max()) > SILENCE_LEVEL:
                recording.loud_at = self._now
        recording.pending.append(frame)
        if len(recording.pending) >= recording.flush_after:  # about a second of audio at a time to the writer
            recording.flush_after = FLUSH_FRAMES
            self._flush_recording(recording)

    def _flush_recording(self, recording: _Recording) -> None:
        if recording.pending:
            self._writes.append((recording.writer, np.concatenate(recording.pending).astype("<i2").tobytes()))
            recording.pending = []

    def _flush_writes(self) -> None:
        """One job for the writer thread per tick, whatever the number of recordings (no per-file wake-ups)."""
        if self._writes:
            append_all(self._writes)
            self._writes = []

    def _check_timeouts(self, now: float) -> None:
        for endpoint in list(self._endpoints.values()):
            if endpoint.timed_out or endpoint.session is None:
                continue
            if endpoint.session.direction in ("sendonly", "inactive"):
                endpoint.last_received = now  # on hold the remote sends nothing, rightly (RFC 3264 §8.4)
                continue
            silent = now - endpoint.last_received
            if silent >= self.rtp_timeout_seconds:
                endpoint.timed_out = True
                self._emit(RtpTimeout(endpoint.id, round(silent, 1)))

    def _send_rtcp(self) -> None:
        wall = time.time()
        failed: list[tuple[_Endpoint, Exception]] = []
        for endpoint in self._endpoints.values():
            if endpoint.remote_rtcp is None or not endpoint.started:
                continue  # RTCP starts with RTP: nothing goes to the remote before our SDP is out
            try:
                self._send_report(endpoint, wall)
            except Exception as error:
                failed.append((endpoint, error))
        for endpoint, cause in failed:
            self._fail_endpoint(endpoint, "rtcp", cause)

    def _send_report(self, endpoint: _Endpoint, wall: float) -> None:
        report: RtcpSenderReport | RtcpReceiverReport
        if endpoint.packets_sent:
            report = RtcpSenderReport(
                endpoint.ssrc,
                ntp_timestamp(wall),
                endpoint.ts,
                endpoint.packets_sent & 0xFFFFFFFF,
                endpoint.octets_sent & 0xFFFFFFFF,
            )
        else:
            report = RtcpReceiverReport(endpoint.ssrc)
        assert endpoint.remote_rtcp is not None
        with contextlib.suppress(OSError):
            endpoint.rtcp.sendto(report.serialize(), endpoint.remote_rtcp)


_SILENCE: Final = {PCMU: g711.silence(PCMU), PCMA: g711.silence(PCMA)}


def engine_from_settings(settings: Settings, listener: Callable[[MediaEvent], None] | None = None) -> MediaEngine:
    return MediaEngine(
        bind_address=settings.media_bind_address,
        advertised_address=settings.media_advertised_address or None,
        port_min=settings.rtp_port_min,
        port_max=settings.rtp_port_max,
        rtp_timeout_seconds=settings.rtp_timeout_seconds,
        listener=listener,
    )


__all__ = [
    "AddToMixer",
    "Command",
    "Connect",
    "CreateEndpoint",
    "CreateMixer",
    "Disconnect",
    "Done",
    "DtmfReceived",
    "EndpointCreated",
    "MediaEngine",
    "MediaError",
    "MediaEvent",
    "PauseRecording",
    "Play",
    "PlayPcm",
    "PlaybackFinished",
    "PortsExhausted",
    "RecordAlso",
    "RecordingFinished",
    "Release",
    "ResumeRecording",
    "RtpTimeout",
    "SendDtmf",
    "SetRemoteSdp",
    "StartRecording",
    "StartSending",
    "Started",
    "StopRecording",
    "engine_from_settings",
]
