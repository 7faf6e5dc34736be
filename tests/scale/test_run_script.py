"""The one command to try scale-out (deploy/scale-out/run.sh, docs/scale-out.md): it starts PostgreSQL, two nodes
and the Kamailio edge, a demo phone registers through the edge, and stopping the script removes everything."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import cast

import pytest

from tests.calls.conftest import Exchange, scenario, start_sipp
from tests.media_apps.exchange_process import Elsewhere
from tests.scale.conftest import ROOT
from tests.sip.peers import free_udp_port, require
from tests.support import postgres

pytestmark = [pytest.mark.sip, pytest.mark.postgres]

SCRIPT = ROOT / "deploy" / "scale-out" / "run.sh"


async def test_run_sh_serves_phones_through_the_edge_and_cleans_up(tmp_path: Path) -> None:
    require("kamailio")
    if not postgres.available():
        pytest.skip("PostgreSQL is not installed here")
    ports = [free_udp_port() for _ in range(6)]
    edge = ports[0]
    env = {
        **os.environ,
        "HIPPER": str(ROOT / ".venv" / "bin" / "hipper"),
        "EDGE_PORT": str(edge),
        "NODE_SIP_PORTS": f"{ports[1]} {ports[2]}",
        "NODE_HTTP_PORTS": f"{ports[3]} {ports[4]}",
        "PG_PORT": str(ports[5]),
        "RTP_PORT_BASE": "52000",  # above the 40000-50200 the other tests' nodes draw their media ports from
    }
    process = await asyncio.create_subprocess_exec(
        "timeout", "300", str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    work: Path | None = None
    seen: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not seen or not seen[-1].startswith("ready:"):
                line = (await process.stdout.readline()).decode()
                assert line, "".join(seen)
                seen.append(line)
                if line.startswith("work directory: "):
                    work = Path(line.split(": ", 1)[1].strip())
        assert any(line.startswith("edge: ") and "2 nodes up" in line for line in seen), "".join(seen)
        register = scenario("register.xml")
        phone = await start_sipp(
            cast(Exchange, Elsewhere(edge, tmp_path)), "anna-desk", register, "-s", "anna-desk",
            "-au", "anna-desk", "-ap", "hipper-sip-1", "-auth_uri", f"127.0.0.1:{edge}",
        )  # fmt: skip
        await phone.succeeded(20)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # `timeout` passes it on to the script, whose trap cleans up
        async with asyncio.timeout(60):
            await process.communicate()
    assert work is not None and not work.exists()
