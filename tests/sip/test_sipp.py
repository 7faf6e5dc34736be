"""SIPp (a real, independent SIP implementation) registers against the running registrar."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from hipper.store.models import Registration
from tests.sip.conftest import PASSWORD, SipServer
from tests.sip.peers import run_sipp

pytestmark = pytest.mark.sip


async def test_sipp_registers_reregisters_and_unregisters_with_digest(sip_server: SipServer, tmp_path: Path) -> None:
    run = asyncio.create_task(
        run_sipp("register_auth.xml", sip_server.port, "-s", "alice", "-au", "alice", "-ap", PASSWORD, workdir=tmp_path)
    )
    # While SIPp pauses after the re-REGISTER, the binding is stored with the real source and 300 s.
    seen: list[Registration] = []
    async with asyncio.timeout(20):
        while not seen and not run.done():
            async with sip_server.sessions() as session:
                rows = list((await session.execute(select(Registration))).scalars())
            if rows and rows[0].contact.endswith(":" + rows[0].source.rsplit(":", 1)[1]) and rows[0].cseq >= 3:
                seen = rows
            await asyncio.sleep(0.1)
    code, errors = await run
    assert code == 0, errors
    assert len(seen) == 1
    row = seen[0]
    assert row.contact.startswith("sip:alice@192.0.2.1:")
    assert row.source.startswith("udp:127.0.0.1:")
    assert row.user_agent == "SIPp"
    async with sip_server.sessions() as session:
        assert list((await session.execute(select(Registration))).scalars()) == []  # unregistered
