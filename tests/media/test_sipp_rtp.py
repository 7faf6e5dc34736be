"""SIPp as a third-party RTP peer (its pcap player), driven by three hand-written SIP messages."""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from hipper.media.engine import (
    CreateEndpoint,
    DtmfReceived,
    EndpointCreated,
    MediaEngine,
    SessionUpdated,
    SetRemoteSdp,
)
from tests.media.test_engine import drain, next_event
from tests.sip.peers import free_udp_port

pytestmark = [
    pytest.mark.sip,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp (Debian sip-tester) is not installed"),
]
SCENARIO = Path(__file__).with_name("sipp_media_only.xml")


def request(method: str, sipp_port: int, my_port: int, call_id: str, cseq: int, to_tag: str, body: str = "") -> bytes:
    headers = [
        f"{method} sip:media@127.0.0.1:{sipp_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{my_port};branch=z9hG4bK{uuid.uuid4().hex[:12]}",
        "Max-Forwards: 70",
        "From: <sip:test@127.0.0.1>;tag=test1",
        f"To: <sip:media@127.0.0.1>{to_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:test@127.0.0.1:{my_port}>",
    ]
    if body:
        headers.append("Content-Type: application/sdp")
    headers.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


async def test_dtmf_played_by_sipp_reaches_the_engine_once(engine: MediaEngine, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    sipp_port, media_port = free_udp_port(), free_udp_port() & ~1
    errors = tmp_path / "sipp_stderr.txt"
    with errors.open("wb") as stderr:
        # SIPp runs directly (no `timeout` wrapper, whose death would orphan it) and bounds itself with -timeout;
        # its output goes to a file, since a pipe held by a stray process would block Process.wait().
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(sipp_port),
            "-mi", "127.0.0.1", "-mp", str(media_port), "-m", "1", "-nostdin", "-trace_err", "-timeout", "15s",
            "-error_file", str(tmp_path / "sipp_errors.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr, cwd=tmp_path,
        )  # fmt: skip
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.setblocking(False)
    my_port = sip.getsockname()[1]
    try:
        offer = await engine.execute(CreateEndpoint())
        assert isinstance(offer, EndpointCreated)
        call_id = uuid.uuid4().hex
        invite = request("INVITE", sipp_port, my_port, call_id, 1, "", offer.local_sdp)
        async with asyncio.timeout(15):  # SIPp's start (a loaded machine's may take seconds), then its answer
            while True:  # SIPp may not listen yet: resend like a SIP client (RFC 3261 timer A) until answered
                await loop.sock_sendto(sip, invite, ("127.0.0.1", sipp_port))
                try:
                    async with asyncio.timeout(0.5):
                        answer = (await loop.sock_recv(sip, 4096)).decode()
                    if answer.startswith("SIP/2.0 200"):
                        break
                except TimeoutError:
                    continue
        head, _, body = answer.partition("\r\n\r\n")
        to_tag = next(line for line in head.split("\r\n") if line.lower().startswith("to:")).split(">", 1)[1]
        updated = await engine.execute(SetRemoteSdp(offer.endpoint_id, body))
        assert isinstance(updated, SessionUpdated) and updated.session is not None
        assert updated.session.codec == "PCMA"
        await loop.sock_sendto(sip, request("ACK", sipp_port, my_port, call_id, 1, to_tag), ("127.0.0.1", sipp_port))
        digit = await next_event(engine, DtmfReceived, within=15)  # SIPp plays its pcap after the ACK
        assert (digit.endpoint_id, digit.digit) == (offer.endpoint_id, "1")
        await asyncio.sleep(0.3)
        assert not any(isinstance(event, DtmfReceived) for event in drain(engine))  # three end packets, one digit
        await loop.sock_sendto(sip, request("BYE", sipp_port, my_port, call_id, 2, to_tag), ("127.0.0.1", sipp_port))
        async with asyncio.timeout(10):
            await sipp.wait()
        assert sipp.returncode == 0, errors.read_text(errors="replace")[-2000:]
    finally:
        sip.close()
        if sipp.returncode is None:
            sipp.kill()  # by its own process id
            async with asyncio.timeout(5):
                await sipp.wait()
