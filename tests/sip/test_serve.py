"""`hipper serve` starts the SIP stack beside the HTTP API in one process (on uvloop); SIPp registers to it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.db import create_engine, migrate, session_factory
from hipper.store.models import Registration, SipDevice
from tests.sip.peers import free_udp_port, run_sipp, stop
from tests.support.certs import self_signed

pytestmark = pytest.mark.sip


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_hipper_serve_runs_the_registrar(tmp_path: Path) -> None:
    """Also over TLS: the settings reach the stack, and `hipper serve` (uvloop) answers a verifying TLS client."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite+aiosqlite:///{data_dir / 'hipper.db'}"
    engine = create_engine(url)
    await migrate(engine)
    async with session_factory(engine)() as session:
        user = await admin.create_user(session, Hasher(1, 1024), username="carol", password="correct horse 1")
        a1 = "carol:serve.test:carol-pass-1"
        session.add(
            SipDevice(
                user_id=user.id,
                auth_username="carol",
                realm="serve.test",
                ha1_md5=hashlib.md5(a1.encode()).hexdigest(),
                ha1_sha256=hashlib.sha256(a1.encode()).hexdigest(),
                created_at=datetime.now(UTC),
            )
        )
        await session.commit()
    sip_port, http_port, tls_port = free_udp_port(), free_tcp_port(), free_tcp_port()
    cert_file, key_file = self_signed(tmp_path / "certs")
    env = {
        **os.environ,
        "HIPPER_DATA_DIR": str(data_dir),
        "HIPPER_SIP_PORT": str(sip_port),
        "HIPPER_HTTP_PORT": str(http_port),
        "HIPPER_SIP_REALM": "serve.test",
        "HIPPER_LOG_LEVEL": "WARNING",
        "HIPPER_SIP_TLS_PORT": str(tls_port),
        "HIPPER_SIP_TLS_CERT_FILE": str(cert_file),
        "HIPPER_SIP_TLS_KEY_FILE": str(key_file),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hipper",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:  # ready when the API answers; SIP is bound before uvicorn starts
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/api/v1/openapi.json")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        code, errors = await run_sipp(
            "register_auth.xml", sip_port, "-s", "carol", "-au", "carol", "-ap", "carol-pass-1", workdir=tmp_path
        )
        assert code == 0, errors
        context = ssl.create_default_context(cafile=str(cert_file))
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=context)
            writer.write(
                f"OPTIONS sip:127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n"
                "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKserve1;rport\r\nFrom: <sip:x@serve.test>;tag=1\r\n"
                "To: <sip:serve.test>\r\nCall-ID: serve-tls\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            writer.close()
        assert head.startswith(b"SIP/2.0 200 OK\r\n") and b"Call-ID: serve-tls" in head
        assert process.returncode is None  # still serving
    finally:
        await stop(process)
    async with session_factory(engine)() as session:
        assert list((await session.execute(select(Registration))).scalars()) == []  # it unregistered at the end
    await engine.dispose()
