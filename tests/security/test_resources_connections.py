"""Idle connections cannot exhaust the exchange's file descriptors (issue 11, critical 5).

TCP connections to SIP and to HTTP that only ever sent CRLF keepalives were never closed, and one source could
open as many as it liked: 1,100 took the API down at a 1024 descriptor limit. Against a real exchange process:
one source (127.0.0.2) opens twice its per-source cap of connections and keeps them pinging; the surplus is
refused at once, the rest are closed after the idle limit however much they ping, and meanwhile another source
(127.0.0.1) is served over SIP and HTTP throughout. The open-file limit is raised at start, with a warning
when it stays low.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path

import httpx

from tests.security.test_http_logs import lines, wait_for_line
from tests.support.exchange_process import exchange_process

CAP = 20
IDLE = 3.0  # seconds: the idle limits, far beyond the moment the surplus is refused
ATTACKER = "127.0.0.2"


class Pinger:
    """A connection that sends only CRLF (SIP: RFC 5626 double-CRLF pings) and notes when it was closed."""

    def __init__(self, port: int, ping: bytes) -> None:
        self.port = port
        self.ping = ping
        self.answered = False  # a pong came back: the exchange took the connection
        self.closed_at: float | None = None

    async def run(self) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(ATTACKER, 0))
        except OSError:
            self.closed_at = time.monotonic()
            return
        try:
            while True:
                writer.write(self.ping)
                await writer.drain()
                try:
                    async with asyncio.timeout(0.3):
                        data = await reader.read(100)
                        if not data:
                            break
                        self.answered = True
                except TimeoutError:
                    pass
        except ConnectionError:
            pass
        finally:
            self.closed_at = time.monotonic()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def sip_options_over_tcp(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"OPTIONS sip:127.0.0.1:{port};transport=tcp SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKidle1;rport\r\nFrom: <sip:x@hipper.local>;tag=1\r\n"
        "To: <sip:hipper.local>\r\nCall-ID: idle-test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head


async def test_idle_sip_and_http_connections_are_capped_and_closed(tmp_path: Path) -> None:
    settings = {
        "sip_tcp_max_connections_per_source": str(CAP),
        "sip_tcp_first_message_seconds": str(IDLE),
        "http_max_connections_per_source": str(CAP),
        "http_idle_seconds": str(IDLE),
    }
    async with (
        exchange_process(tmp_path, users=["alice"], **settings) as exchange,
        httpx.AsyncClient(timeout=30) as http,
    ):
        baseline = exchange.open_files()
        pingers = [Pinger(exchange.sip_port, b"\r\n\r\n") for _ in range(2 * CAP)]
        pingers += [Pinger(exchange.http_port, b"\r\n") for _ in range(2 * CAP)]
        started = time.monotonic()
        tasks = [asyncio.create_task(pinger.run()) for pinger in pingers]
        sip, web = pingers[: 2 * CAP], pingers[2 * CAP :]
        # The refusals come at once; the idle limit is far enough off that none of the accepted is closed yet.
        async with asyncio.timeout(IDLE):
            while sum(p.closed_at is not None for p in pingers) < 2 * CAP:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
        assert sum(p.closed_at is None for p in sip) == CAP  # the cap holds exactly
        assert sum(p.closed_at is None for p in web) == CAP
        # Another source is served meanwhile, over both.
        assert (await sip_options_over_tcp(exchange.sip_port)).startswith(b"SIP/2.0 200 OK")
        assert (await http.get(f"{exchange.url}/api/v1/health")).status_code == 200
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
        lasted = max(p.closed_at or 0 for p in pingers) - started
        assert lasted < IDLE * 2 + 1.5, lasted  # within two idle intervals, pinging all along
        assert any(p.answered for p in sip)  # the pings were answered: the exchange just did not count them
        # Every descriptor is back, and the exchange still works for everyone, the attacker's address included.
        async with asyncio.timeout(5):
            while exchange.open_files() > baseline + 2:  # noqa: ASYNC110 - /proc has no event to wait on
                await asyncio.sleep(0.05)
        assert (await sip_options_over_tcp(exchange.sip_port)).startswith(b"SIP/2.0 200 OK")
        assert (await http.get(f"{exchange.url}/api/v1/health")).status_code == 200
        assert lines(tmp_path, "sip.stream.refused") and lines(tmp_path, "http.connection_refused")
        assert {line["why"] for line in lines(tmp_path, "sip.stream.abort")} == {"idle"}
        assert lines(tmp_path, "http.connection_idle")
        metrics = (await http.get(f"{exchange.url}/metrics")).text
        assert re.search(r'hipper_stream_connections_closed_total\{protocol="http",reason="idle"\} [1-9]', metrics)


async def test_the_open_file_limit_is_raised_at_start_with_a_warning_when_low(tmp_path: Path) -> None:
    async with exchange_process(tmp_path, open_files=(256, 4096)) as exchange:
        assert exchange.open_file_limits() == (4096, 4096)
        warning = await wait_for_line(tmp_path, "server.open_files_low")
        assert warning["limit"] == 4096 and warning["level"] == "warning"
