"""baresip (Debian), a real softphone, registers with digest auth, then unregisters when it stops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from hipper.store.models import Registration
from tests.sip.conftest import PASSWORD, SipServer
from tests.sip.peers import free_udp_port, require, stop

pytestmark = pytest.mark.sip


def baresip_config(directory: Path, sip_port: int, server_port: int, password: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{sip_port}",
                "net_interface 127.0.0.1",  # "lo" fails here (TELEPHONY-TESTING.md)
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module_app account.so",
                "module_app menu.so",
                "audio_player aufile,/dev/null",
                "audio_source aufile,/dev/null",
                "",
            ]
        )
    )
    (directory / "accounts").write_text(f"<sip:alice@127.0.0.1:{server_port}>;auth_pass={password};regint=60\n")


async def stored(server: SipServer) -> list[Registration]:
    async with server.sessions() as session:
        return list((await session.execute(select(Registration))).scalars())


async def test_baresip_registers_with_digest(sip_server: SipServer, tmp_path: Path) -> None:
    baresip = require("baresip")
    sip_port = free_udp_port()
    config_dir = tmp_path / "baresip"
    baresip_config(config_dir, sip_port, sip_server.port, PASSWORD)
    process = await asyncio.create_subprocess_exec(
        baresip,
        "-f",
        str(config_dir),
        "-t",
        "20",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    rows: list[Registration] = []
    try:
        async with asyncio.timeout(15):
            while not rows:
                rows = await stored(sip_server)
                await asyncio.sleep(0.1)
    except TimeoutError:
        pass  # reported below with baresip's own output
    finally:
        await stop(process)  # SIGTERM: baresip unregisters (Expires: 0) on its way out
        output = (await process.stdout.read()).decode(errors="replace") if process.stdout else ""
    assert len(rows) == 1, output
    assert await stored(sip_server) == [], output
    row = rows[0]
    assert row.source == f"udp:127.0.0.1:{sip_port}", output
    assert row.contact.startswith("sip:alice")  # baresip adds a per-instance suffix to the user
    assert "baresip" in row.user_agent.lower()
    assert row.user_id == sip_server.user_id
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    assert 45 < (expires_at - datetime.now(UTC)).total_seconds() <= 60  # regint=60
