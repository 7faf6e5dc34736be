"""HTTP input is bounded while it is read and malformed JSON is a 4xx (issue 11, medium "HTTP input").

Before: a 300 MB chunked upload was written out before its 413, a 200 MB JSON login body took 780 MB, and
`1e309`, `NaN`, lone surrogates, bad UTF-8 and deep nesting gave 500s and dropped connections. Against a real
exchange process over TCP: the 413 comes while the body is still being sent, and every malformed body gets a
4xx on a connection that stays usable; the exchange serves normally afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx

from tests.support.exchange_process import PASSWORD, ExchangeProcess, exchange_process

MIB = 1024 * 1024
CHUNK = b"x" * (64 * 1024)
PACE_BYTES_PER_SECOND = 16 * MIB


async def send_chunked(
    exchange: ExchangeProcess, path: str, headers: dict[str, str], total: int, prefix: bytes = b""
) -> tuple[int, int]:
    """Send a chunked body (`prefix`, then filler up to `total` bytes) while reading the answer; (status, bytes
    sent before it came). The exchange must also close the connection then, rather than read the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", exchange.http_port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode())
    answer = asyncio.create_task(reader.readuntil(b"\r\n"))
    writer.write(b"%x\r\n%s\r\n" % (len(prefix), prefix) if prefix else b"")
    sent = len(prefix)
    try:
        async with asyncio.timeout(60):
            while sent < total and not answer.done():
                writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                sent += len(CHUNK)
                try:
                    await writer.drain()
                except ConnectionError:
                    break  # the exchange answered and closed: the status line is in our buffer
                # At most 16 MB/s: loopback takes 100 MB in a tenth of a second, less than a loaded machine may take
                # to answer; paced, the exchange has seconds to answer and close before the sender nears the bound
                # the tests hold it to (while one that reads on gets the whole body, seconds later).
                await asyncio.sleep(len(CHUNK) / PACE_BYTES_PER_SECOND)
            if sent >= total:
                writer.write(b"0\r\n\r\n")
            status_line = await answer
        async with asyncio.timeout(5):  # we send no more: only a closed connection ends this read
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return int(status_line.split()[1]), sent


async def test_a_chunked_300_mb_upload_is_refused_while_it_is_sent(tmp_path: Path) -> None:
    async with exchange_process(tmp_path, users=["alice"]) as exchange, httpx.AsyncClient(timeout=30) as http:
        token = await exchange.login(http, "alice")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=b0undary"}
        # A well-formed multipart stream whose one file part never ends.
        part = b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        status, sent = await send_chunked(exchange, "/api/v1/me/greetings", headers, 300 * MIB, part)
        assert status == 413
        assert sent < 200 * MIB, f"{sent // MIB} MiB were taken before the 413"
        # Nothing of it was kept, and the API still answers.
        assert (
            await http.get(f"{exchange.url}/api/v1/me/greetings", headers={"Authorization": f"Bearer {token}"})
        ).json() == {"greetings": []}


async def test_a_huge_json_login_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with exchange_process(tmp_path, users=["alice"]) as exchange, httpx.AsyncClient(timeout=30) as http:
        before = exchange.memory_kib("VmHWM")
        # Declared: refused from the Content-Length, without waiting for the 200 MB.
        reader, writer = await asyncio.open_connection("127.0.0.1", exchange.http_port)
        writer.write(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n" + b'{"username": "alice", "password": "' + b"a" * 4096
        )
        async with asyncio.timeout(5):
            status_line = await reader.readuntil(b"\r\n")
        writer.close()
        assert status_line.split()[1] == b"413"
        # Chunked: cut off once past the limit.
        status, sent = await send_chunked(
            exchange, "/api/v1/auth/login", {"Content-Type": "application/json"}, 200 * MIB
        )
        assert status == 413
        assert sent < 100 * MIB
        assert exchange.memory_kib("VmHWM") - before < 32 * 1024
        login = await http.post(f"{exchange.url}/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200


MALFORMED = {
    "a number beyond a double": b'{"username": "alice", "password": 1e309}',
    "NaN": b'{"username": "alice", "password": NaN}',
    "-Infinity": b'{"username": -Infinity, "password": "x"}',
    "a lone surrogate": b'{"username": "\\ud800", "password": "x"}',
    "a lone surrogate in a list": b'{"username": "alice", "password": ["\\udc00"]}',
    "bad UTF-8": b'{"username": "\xff\xfe", "password": "x"}',
    "deep nesting": b'{"username": ' + b"[" * 100_000 + b"]" * 100_000 + b', "password": "x"}',
    "nesting within the recursion limit": b'{"username": ' + b"[" * 900 + b"]" * 900 + b', "password": "x"}',
    "truncated": b'{"username": "alice", "pass',
}


async def test_malformed_json_bodies_get_a_4xx_on_a_connection_that_stays_usable(tmp_path: Path) -> None:
    async with (
        exchange_process(tmp_path, users=["alice"]) as exchange,
        # One connection for everything: a dropped connection would show as a transport error here.
        httpx.AsyncClient(base_url=exchange.url, timeout=30, limits=httpx.Limits(max_connections=1)) as http,
    ):
        token = await exchange.login(http, "alice")
        for path in ("/api/v1/auth/login", "/api/v1/auth/step-up", "/api/v1/me/services/do-not-disturb"):
            for name, body in MALFORMED.items():
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                response = await http.request(
                    "PUT" if "services" in path else "POST", path, content=body, headers=headers
                )
                assert 400 <= response.status_code < 500, (path, name, response.status_code, response.text[:200])
        # Emoji escaped as a surrogate pair (what json.dumps sends) are fine.
        pair = await http.post("/api/v1/auth/login", content=b'{"username": "\\ud83d\\ude00", "password": "x"}',
                               headers={"Content-Type": "application/json"})  # fmt: skip
        assert pair.status_code == 401
        assert (await http.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})).is_success
