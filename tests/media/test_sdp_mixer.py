from __future__ import annotations

import numpy as np
import pytest

from hipper.media.mixer import SILENT_FRAME, FrameBuffer, Mixer, mix, mix_minus
from hipper.media.sdp import SdpError, SessionDescription, accept_answer, answer_offer, build_offer

PHONE_OFFER = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 9 8 0 96\r\na=rtpmap:9 G722/8000\r\na=rtpmap:96 telephone-event/8000\r\n"
    "a=fmtp:96 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    "m=video 51372 RTP/AVP 31\r\n"
)


def test_answer_takes_the_first_common_codec_and_the_offerers_dtmf_payload_type() -> None:
    answer, session = answer_offer(SessionDescription.parse(PHONE_OFFER), "127.0.0.1", 20000)
    assert (session.codec, session.payload_type) == ("PCMA", 8)
    assert session.remote_dtmf_payload_type == session.local_dtmf_payload_type == 96
    assert (session.remote_address, session.remote_port) == ("192.0.2.1", 49170)
    text = answer.serialize()
    assert "m=audio 20000 RTP/AVP 8 96\r\n" in text
    assert "a=rtpmap:96 telephone-event/8000" in text
    assert "m=video 0 RTP/AVP 31\r\n" in text  # rejected, not dropped (RFC 3264 §6)
    assert SessionDescription.parse(text).audio() is not None


def test_offerer_sends_dtmf_with_the_answerers_payload_type_and_receives_with_its_own() -> None:
    offer = build_offer("127.0.0.1", 20000, dtmf_payload_type=101)
    answer = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\na=recvonly\r\n"
    )
    session = accept_answer(offer, SessionDescription.parse(answer))
    assert session.codec == "PCMU"
    assert session.remote_dtmf_payload_type == 100
    assert session.local_dtmf_payload_type == 101
    assert session.direction == "sendonly"
    assert session.on_hold


def test_hold_offer_is_answered_recvonly_and_media_level_connection_wins() -> None:
    offer = PHONE_OFFER.replace("a=sendrecv", "a=sendonly\r\nc=IN IP4 198.51.100.7")
    answer, session = answer_offer(SessionDescription.parse(offer), "127.0.0.1", 20000)
    assert session.direction == "recvonly"
    assert session.remote_address == "198.51.100.7"
    assert "a=recvonly" in answer.serialize()


def test_no_common_codec_is_an_sdp_error() -> None:
    offer = PHONE_OFFER.replace("9 8 0 96", "9 96")
    with pytest.raises(SdpError, match="no common audio codec"):
        answer_offer(SessionDescription.parse(offer), "127.0.0.1", 20000)


@pytest.mark.parametrize(
    "text",
    ["", "v=0\r\nnonsense\r\n", "v=0\r\no=a b c IN IP4 x\r\n", "v=0\r\no=- 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n"],
)
def test_malformed_sdp_is_an_sdp_error(text: str) -> None:
    with pytest.raises(SdpError):
        SessionDescription.parse(text)


def test_mix_minus_never_returns_a_participant_to_itself() -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(-8000, 8000, 160, dtype=np.int16) for _ in range(3)]
    out = mix_minus(frames)
    for i in range(3):
        expected = sum(frames[j].astype(np.int32) for j in range(3) if j != i)
        assert np.array_equal(out[i], expected)


def test_mixing_clips_to_int16_instead_of_wrapping() -> None:
    loud = np.full(160, 30000, dtype=np.int16)
    assert mix_minus([loud, loud, loud])[0].tolist() == [32767] * 160
    assert mix([-loud, -loud]).tolist() == [-32768] * 160


def test_mixer_uses_silence_for_a_participant_without_audio() -> None:
    mixer = Mixer("m")
    for name in ("a", "b", "c"):
        mixer.add(name)
    mixer.buffers["a"].push(np.full(160, 100, dtype=np.int16))
    out = mixer.tick()
    assert out["a"].max() == 0  # a hears only b and c, who are silent
    assert out["b"].tolist() == out["c"].tolist() == [100] * 160


def test_frame_buffer_recuts_30_ms_packets_into_20_ms_frames() -> None:
    buffer = FrameBuffer()
    audio = np.arange(720, dtype=np.int16)
    for start in range(0, 720, 240):  # three 30 ms packets = 90 ms = 4.5 frames
        buffer.push(audio[start : start + 240])
    assert len(buffer) == 4
    frames = [buffer.pop() for _ in range(4)]
    assert np.array_equal(np.concatenate(frames), audio[:640])
    assert buffer.pop() is SILENT_FRAME  # the half frame waits for the next packet


def test_frame_buffer_drops_the_oldest_beyond_its_bound() -> None:
    buffer = FrameBuffer(max_frames=2)
    for value in (1, 2, 3):
        buffer.push(np.full(160, value, dtype=np.int16))
    assert [int(buffer.pop()[0]) for _ in range(2)] == [2, 3]
