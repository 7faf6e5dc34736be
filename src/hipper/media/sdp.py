"""SDP (RFC 4566) for audio, and the offer/answer rules (RFC 3264) the media engine needs.

Scope: one audio stream, G.711 (PCMU/PCMA) and telephone-event (RFC 4733). Other media lines are kept and
rejected in an answer (port 0), as RFC 3264 §6 requires, rather than dropped.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from dataclasses import dataclass, field
from typing import Final

from hipper.media.g711 import PCMA, PCMU

TELEPHONE_EVENT: Final = "telephone-event"
# RFC 3551 static payload types: these may appear without an a=rtpmap line.
STATIC_PAYLOAD_TYPES: Final = {0: (PCMU, 8000), 8: (PCMA, 8000)}
DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR: Final = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}

# Bounds on what a remote's SDP may hold (docs/security.md "Media"). A phone's offer is a few hundred bytes with
# one or two m= lines; anything far beyond is refused (488) before it costs memory or reaches the engine.
MAX_SDP_BYTES: Final = 16 * 1024
MAX_LINES: Final = 256
MAX_LINE_LENGTH: Final = 1024
MAX_MEDIA: Final = 8
MAX_FORMATS: Final = 32
MAX_ATTRIBUTES: Final = 64
MAX_PTIME_MS: Final = 1000
MAX_CLOCK_RATE: Final = 192_000
# RFC 4566 §5.2: session id and version are numeric; they fit 64 bits (NTP-style values).
MAX_SESSION_NUMBER: Final = 2**64 - 1
# Strict ASCII digits: int() alone also takes "+5", " 5", "1_0" and other scripts' digits.
_NUMBER = re.compile(r"[0-9]{1,20}")
_PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")


class SdpError(ValueError):
    """SDP we cannot parse, refuse, or cannot agree with: the one error the call path turns into 488 Not
    Acceptable Here (RFC 3261 §21.4.26), through the engine's ``MediaError``."""


@dataclass(slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str = "sendrecv"
    ptime: int | None = None
    other_attributes: list[str] = field(default_factory=list)

    def codec_of(self, payload_type: int) -> tuple[str, int] | None:
        return self.rtpmap.get(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)

    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if _PAYLOAD_TYPE.fullmatch(f)]


@dataclass(slots=True)
class SessionDescription:
    origin_username: str
    session_id: int
    session_version: int
    origin_address: str
    session_name: str = "-"
    connection: str | None = None
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> SessionDescription:
        """Parse and validate a remote's SDP; every refusal is an ``SdpError`` naming the field (never another
        exception, never a half-checked value reaching the engine)."""
        if len(text) > MAX_SDP_BYTES:
            raise SdpError(f"SDP is longer than {MAX_SDP_BYTES} bytes")
        session: SessionDescription | None = None
        current: MediaDescription | None = None
        lines = text.replace("\r\n", "\n").split("\n")
        if len(lines) > MAX_LINES:
            raise SdpError(f"SDP has more than {MAX_LINES} lines")
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                continue
            if len(line) > MAX_LINE_LENGTH:
                raise SdpError(f"SDP line {number} is longer than {MAX_LINE_LENGTH} characters")
            if len(line) < 2 or line[1] != "=":
                raise SdpError(f"SDP line {number} is not 'x=value': {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise SdpError("SDP o= line needs 6 fields")
                session = cls(parts[0], _session_number(parts[1]), _session_number(parts[2]), parts[5])
            elif session is None:
                if kind != "v":
                    raise SdpError("SDP must start with v= and o=")
            elif kind == "s":
                session.session_name = value
            elif kind == "c":
                address = _connection_address(value)
                if current is None:
                    session.connection = address
                else:
                    current.connection = address
            elif kind == "m":
                if len(session.media) >= MAX_MEDIA:
                    raise SdpError(f"SDP has more than {MAX_MEDIA} m= lines")
                current = _media_line(value)
                session.media.append(current)
            elif kind == "a" and current is not None:
                if len(current.other_attributes) >= MAX_ATTRIBUTES:
                    raise SdpError(f"SDP m= section has more than {MAX_ATTRIBUTES} attributes")
                _media_attribute(current, value)
        if session is None:
            raise SdpError("SDP has no o= line")
        return session

    def serialize(self) -> str:
        lines = [
            "v=0",
            f"o={self.origin_username} {self.session_id} {self.session_version} IN IP4 {self.origin_address}",
            f"s={self.session_name}",
        ]
        if self.connection:
            lines.append(f"c=IN IP4 {self.connection}")
        lines.append("t=0 0")
        for media in self.media:
            lines.append(f"m={media.media} {media.port} {media.proto} {' '.join(media.formats)}")
            if media.connection:
                lines.append(f"c=IN IP4 {media.connection}")
            for payload_type in media.payload_types():
                if payload_type in media.rtpmap:
                    name, rate = media.rtpmap[payload_type]
                    lines.append(f"a=rtpmap:{payload_type} {name}/{rate}")
                if payload_type in media.fmtp:
                    lines.append(f"a=fmtp:{payload_type} {media.fmtp[payload_type]}")
            if media.ptime:
                lines.append(f"a=ptime:{media.ptime}")
            if media.port:
                lines.append(f"a={media.direction}")
        return "\r\n".join(lines) + "\r\n"

    def audio(self) -> MediaDescription | None:
        return next((m for m in self.media if m.media == "audio" and m.port != 0), None)


def _session_number(text: str) -> int:
    if not _NUMBER.fullmatch(text) or int(text) > MAX_SESSION_NUMBER:
        raise SdpError(f"SDP o= session id and version must be numbers below 2^64: {text[:30]!r}")
    return int(text)


def _media_line(value: str) -> MediaDescription:
    """``m=<media> <port>[/<count>] <proto> <fmt> ...`` (RFC 4566 §5.14), checked field by field."""
    parts = value.split()
    if len(parts) < 4:
        raise SdpError("SDP m= line needs media, port, proto and at least one format")
    media, port_field, proto, formats = parts[0], parts[1], parts[2], parts[3:]
    port_text, _, count = port_field.partition("/")
    if not _NUMBER.fullmatch(port_text) or int(port_text) > 65535:
        raise SdpError(f"SDP m= port is not a port number: {port_field[:30]!r}")
    if count and count != "1":
        raise SdpError(f"SDP m= port count must be 1 (one stream per m= line): {port_field[:30]!r}")
    port = int(port_text)
    if len(formats) > MAX_FORMATS:
        raise SdpError(f"SDP m= line has more than {MAX_FORMATS} formats")
    if proto.startswith("RTP/"):
        # RTCP goes to the next port (RFC 3550 §11), so 65534 is the highest RTP port; 0 rejects the stream
        # (RFC 3264 §6). An odd port is accepted: "SHOULD be even" (RFC 3550 §11), and rtcp-mux endpoints and
        # some SBCs announce odd ones. Formats are RTP payload types, 0-127 (RFC 3550 §5.1, 7 bits).
        if not 0 <= port <= 65534:
            raise SdpError(f"SDP m= RTP port must be within 1-65534: {port}")
        for fmt in formats:
            _payload_type(fmt, "m=")
    return MediaDescription(media, port, proto, formats)


def _payload_type(text: str, where: str) -> int:
    if not _PAYLOAD_TYPE.fullmatch(text) or int(text) > 127:
        raise SdpError(f"SDP {where} payload type must be a number 0-127: {text[:30]!r}")
    return int(text)


def _connection_address(value: str) -> str:
    """``c=IN IP4 <unicast IPv4 literal>``. A host name is refused, not resolved: resolving it would block the
    loop (and the SDP is the remote's to choose, so would our DNS traffic be). IPv6 media is not supported by
    the engine's sockets yet, multicast never (RFC 4566 §5.7 TTL/count suffixes)."""
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"SDP c= line must be 'IN IP4 <address>': {value[:60]!r}")
    if parts[1] == "IP6":
        raise SdpError("SDP c= IPv6 media is not supported: offer IP4")
    address = _ipv4(parts[2])
    if address is None:
        raise SdpError(f"SDP c= address must be an IPv4 address, not a host name: {parts[2][:60]!r}")
    if address.multicast:
        raise SdpError(f"SDP c= multicast address not supported: {parts[2]}")
    return address.text


@dataclass(frozen=True, slots=True)
class _Ipv4:
    text: str  # the normal form
    multicast: bool
    routable: bool  # see `routable`


@functools.lru_cache(maxsize=4096)
def _ipv4(text: str) -> _Ipv4 | None:
    """An IPv4 literal and what the call path asks of it; None for anything else. The one parse of an SDP address
    (the c= line here, `routable` for the media engine), cached: ≈ 5 µs through ipaddress and ≈ 7 µs more for
    `is_global`, for every SDP, from few addresses; the cache holds only what the SDP line limits allow."""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return _Ipv4(str(address), address.is_multicast, address.is_global)


def routable(address: str) -> bool:
    """Whether packets can come from this SDP address: private, shared (CGNAT), documentation and other
    special-purpose addresses are what a phone behind NAT announces (RFC 6890); not an IPv4 literal: no."""
    parsed = _ipv4(address)
    return parsed is not None and parsed.routable


def _media_attribute(media: MediaDescription, value: str) -> None:
    name, _, rest = value.partition(":")
    try:
        if name == "rtpmap":
            payload_type, encoding = rest.split(None, 1)
            codec, _, clock = encoding.partition("/")
            rate_text = clock.split("/")[0] or "8000"
            if not _NUMBER.fullmatch(rate_text) or not 1 <= int(rate_text) <= MAX_CLOCK_RATE:
                raise ValueError(rate_text)
            media.rtpmap[_payload_type(payload_type, "a=rtpmap")] = (codec, int(rate_text))
        elif name == "fmtp":
            payload_type, _, parameters = rest.partition(" ")
            media.fmtp[_payload_type(payload_type, "a=fmtp")] = parameters.strip()
        elif name == "ptime":
            if not _NUMBER.fullmatch(rest.strip()) or not 1 <= int(rest) <= MAX_PTIME_MS:
                raise ValueError(rest)
            media.ptime = int(rest)
        elif name in DIRECTIONS:
            media.direction = name
        else:
            media.other_attributes.append(value)
    except ValueError as error:
        if isinstance(error, SdpError):
            raise
        raise SdpError(f"SDP a={name} is malformed: {value[:60]!r}") from error


@dataclass(frozen=True, slots=True)
class AudioSession:
    """What offer/answer agreed for one side: where to send, which codec, which DTMF payload types."""

    remote_address: str
    remote_port: int
    codec: str
    payload_type: int
    # telephone-event payload type as the *remote* declared it (we send DTMF with it) and as *we* declared it
    # (we receive DTMF with it); they can differ when we were the offerer (RFC 3264 §5.1, each side's own SDP).
    remote_dtmf_payload_type: int | None
    local_dtmf_payload_type: int | None
    direction: str  # from our point of view: sendrecv / sendonly / recvonly / inactive

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.remote_address == "0.0.0.0"

    @property
    def held_by_peer(self) -> bool:
        """The other side put the call on hold: its offer was sendonly or inactive (our answer recvonly or inactive,
        RFC 3264 §8.4), or the old-style c=0.0.0.0 (RFC 2543; RFC 6337 §5.3 still expects it from older phones)."""
        return self.direction in ("recvonly", "inactive") or self.remote_address == "0.0.0.0"


def build_offer(
    address: str,
    port: int,
    codecs: tuple[str, ...] = (PCMU, PCMA),
    dtmf_payload_type: int = 101,
    direction: str = "sendrecv",
    session_id: int | None = None,
    session_version: int = 1,
) -> SessionDescription:
    static = {name: pt for pt, (name, _) in STATIC_PAYLOAD_TYPES.items()}
    media = MediaDescription("audio", port, "RTP/AVP", [], direction=direction, ptime=20)
    for codec in codecs:
        payload_type = static[codec]
        media.formats.append(str(payload_type))
        media.rtpmap[payload_type] = (codec, 8000)
    media.formats.append(str(dtmf_payload_type))
    media.rtpmap[dtmf_payload_type] = (TELEPHONE_EVENT, 8000)
    media.fmtp[dtmf_payload_type] = "0-16"
    sid = session_id if session_id is not None else int(time.time())
    return SessionDescription("hipper", sid, session_version, address, connection=address, media=[media])


def answer_offer(
    offer: SessionDescription,
    address: str,
    port: int,
    codecs: tuple[str, ...] = (PCMU, PCMA),
    session_id: int | None = None,
    session_version: int = 1,
) -> tuple[SessionDescription, AudioSession]:
    """RFC 3264 §6: answer with the offerer's payload type numbers, the first offered codec we support."""
    answer_media: list[MediaDescription] = []
    agreed: AudioSession | None = None
    for media in offer.media:
        if agreed is not None or media.media != "audio" or media.port == 0 or "RTP/AVP" not in media.proto:
            answer_media.append(MediaDescription(media.media, 0, media.proto, media.formats[:1]))
            continue
        chosen = _first_supported(media, codecs)
        if chosen is None:
            answer_media.append(MediaDescription(media.media, 0, media.proto, media.formats[:1]))
            continue
        codec, payload_type = chosen
        dtmf = _dtmf_payload_type(media)
        answer = MediaDescription("audio", port, media.proto, [str(payload_type)], ptime=20)
        answer.rtpmap[payload_type] = (codec, 8000)
        if dtmf is not None:
            answer.formats.append(str(dtmf))
            answer.rtpmap[dtmf] = (TELEPHONE_EVENT, 8000)
            answer.fmtp[dtmf] = "0-16"
        answer.direction = _MIRROR[media.direction]
        answer_media.append(answer)
        remote_address = media.connection or offer.connection
        if remote_address is None:
            raise SdpError("SDP offer has no c= line for its audio stream")
        agreed = AudioSession(remote_address, media.port, codec, payload_type, dtmf, dtmf, answer.direction)
    if agreed is None:
        raise SdpError("no common audio codec: we support " + ", ".join(codecs))
    sid = session_id if session_id is not None else int(time.time())
    answer_sdp = SessionDescription("hipper", sid, session_version, address, connection=address, media=answer_media)
    return answer_sdp, agreed


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> AudioSession:
    """Our offer was answered: take codec, address and the answerer's own telephone-event payload type."""
    ours, theirs = offer.audio(), answer.audio()
    if ours is None:
        raise SdpError("our offer has no audio stream")
    if theirs is None:
        raise SdpError("the answer rejected the audio stream")
    offered = {codec[0].upper() for pt in ours.payload_types() if (codec := ours.codec_of(pt)) is not None}
    chosen = _first_supported(theirs, tuple(n for n in (PCMU, PCMA) if n in offered))
    if chosen is None:
        raise SdpError("the answer chose no codec we offered")
    remote_address = theirs.connection or answer.connection
    if remote_address is None:
        raise SdpError("SDP answer has no c= line for its audio stream")
    return AudioSession(
        remote_address,
        theirs.port,
        chosen[0],
        chosen[1],
        _dtmf_payload_type(theirs),
        _dtmf_payload_type(ours),
        _MIRROR[theirs.direction],
    )


def _first_supported(media: MediaDescription, codecs: tuple[str, ...]) -> tuple[str, int] | None:
    for payload_type in media.payload_types():
        codec = media.codec_of(payload_type)
        if codec is not None and codec[0].upper() in codecs and codec[1] == 8000:
            return codec[0].upper(), payload_type
    return None


def _dtmf_payload_type(media: MediaDescription) -> int | None:
    for payload_type in media.payload_types():
        codec = media.codec_of(payload_type)
        if codec is not None and codec[0].lower() == TELEPHONE_EVENT and codec[1] == 8000:
            return payload_type
    return None
