"""Every field of a remote's SDP is checked (issue 11): a refusal is one SdpError naming the field (the call
path answers 488), never another exception or a value that later breaks the engine."""

from __future__ import annotations

import pytest

from hipper.media.sdp import MAX_SDP_BYTES, SdpError, SessionDescription

HEAD = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\n"
GOOD_MEDIA = "c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"


@pytest.mark.parametrize(
    ("body", "port", "address"),
    [
        (GOOD_MEDIA, 4000, "198.51.100.7"),
        (GOOD_MEDIA.replace("4000", "65534"), 65534, "198.51.100.7"),
        (GOOD_MEDIA.replace("4000", "4001"), 4001, "198.51.100.7"),  # odd: RFC 3550 says SHOULD be even
        (GOOD_MEDIA.replace("4000", "4000/1"), 4000, "198.51.100.7"),
        (GOOD_MEDIA.replace("198.51.100.7", "0.0.0.0"), 4000, "0.0.0.0"),  # hold (RFC 2543 style)
        ("c=IN IP4 10.1.2.3\r\n" + GOOD_MEDIA.replace("c=IN IP4 198.51.100.7\r\n", ""), 4000, "10.1.2.3"),
    ],
)
def test_good_offers_parse(body: str, port: int, address: str) -> None:
    audio = SessionDescription.parse(HEAD + body).media[0]
    assert audio.port == port
    assert (audio.connection or SessionDescription.parse(HEAD + body).connection) == address


@pytest.mark.parametrize(
    ("replace", "by", "says"),
    [
        ("m=audio 4000", "m=audio 65535", "1-65534"),
        ("m=audio 4000", "m=audio 65536", "port"),
        ("m=audio 4000", "m=audio -2", "port"),
        ("m=audio 4000", "m=audio +4000", "port"),
        ("m=audio 4000", "m=audio 4_000", "port"),
        ("m=audio 4000", "m=audio 4000/2", "count"),
        ("RTP/AVP 0 101", "RTP/AVP 0 128", "payload type"),
        ("RTP/AVP 0 101", "RTP/AVP 0 \u0661", "payload type"),
        ("RTP/AVP 0 101", "RTP/AVP " + " ".join(["0"] * 40), "formats"),
        ("a=rtpmap:101", "a=rtpmap:300", "payload type"),
        ("telephone-event/8000", "telephone-event/0", "rtpmap"),
        ("c=IN IP4 198.51.100.7", "c=IN IP4 media.example.net", "host name"),
        ("c=IN IP4 198.51.100.7", "c=IN IP4 224.2.1.1/127", "IPv4 address"),
        ("c=IN IP4 198.51.100.7", "c=IN IP6 ::1", "IPv6"),
        ("c=IN IP4 198.51.100.7", "c=IN IP4 239.1.1.1", "multicast"),
    ],
)
def test_bad_fields_are_refused(replace: str, by: str, says: str) -> None:
    with pytest.raises(SdpError, match=says):
        SessionDescription.parse(HEAD + GOOD_MEDIA.replace(replace, by))


def test_sizes_are_bounded() -> None:
    with pytest.raises(SdpError, match="longer than"):
        SessionDescription.parse(HEAD + GOOD_MEDIA + "a=x\r\n" * (MAX_SDP_BYTES // 5))
    with pytest.raises(SdpError, match="m= lines"):
        SessionDescription.parse(HEAD + "t=0 0\r\n" + "m=video 0 RTP/AVP 31\r\n" * 9)
    with pytest.raises(SdpError, match="attributes"):
        SessionDescription.parse(HEAD + GOOD_MEDIA + "a=candidate:x\r\n" * 65)
    with pytest.raises(SdpError, match="session id"):
        SessionDescription.parse("v=0\r\no=- 99999999999999999999999 1 IN IP4 1.2.3.4\r\ns=-\r\n")
    with pytest.raises(SdpError, match="ptime"):
        SessionDescription.parse(HEAD + GOOD_MEDIA + "a=ptime:100000\r\n")
