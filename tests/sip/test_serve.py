"""`hipper serve` starts the SIP stack beside the HTTP API in one process (on uvloop); SIPp registers to it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
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

pytestmark = pytest.mark.sip


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_hipper_serve_runs_the_registrar(tmp_path: Path) -> None:
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
    sip_port, http_port = free_udp_port(), free_tcp_port()
    env = {
        **os.environ,
        "HIPPER_DATA_DIR": str(data_dir),
        "HIPPER_SIP_PORT": str(sip_port),
        "HIPPER_HTTP_PORT": str(http_port),
        "HIPPER_SIP_REALM": "serve.test",
        "HIPPER_LOG_LEVEL": "WARNING",
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
        assert process.returncode is None  # still serving
    finally:
        await stop(process)
    async with session_factory(engine)() as session:
        assert list((await session.execute(select(Registration))).scalars()) == []  # it unregistered at the end
    await engine.dispose()
