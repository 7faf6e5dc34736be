"""Log lines keep their fields (issue 11: "Logs drop their `extra` fields").

The standard library's `extra=` fields never reached the JSON lines, so a log shipper (fail2ban, an alert)
saw "sip.stream.abort" without the peer it was about. Against a real exchange process: a SIP connection
killed for garbage and a wrong login each leave a JSON line naming the peer and the user.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.exchange_process import exchange_log, exchange_process


def lines(tmp_path: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in exchange_log(tmp_path).splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                found.append(record)
    return found


async def wait_for_line(tmp_path: Path, event: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while not (found := lines(tmp_path, event)):  # noqa: ASYNC110 - a file to poll, no event to wait on
            await asyncio.sleep(0.05)
    return found[0]


async def test_log_lines_carry_their_extra_fields(tmp_path: Path) -> None:
    async with exchange_process(tmp_path, users=["alice"]) as exchange, httpx.AsyncClient(timeout=30) as http:
        reader, writer = await asyncio.open_connection("127.0.0.1", exchange.sip_port)
        writer.write(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")  # an absurd length: aborted
        await writer.drain()
        local_port = writer.get_extra_info("sockname")[1]
        assert await reader.read() == b""
        writer.close()
        abort = await wait_for_line(tmp_path, "sip.stream.abort")
        assert abort["peer"] == f"tcp:127.0.0.1:{local_port}" and abort["why"] == "absurd Content-Length"
        wrong = await http.post(f"{exchange.url}/api/v1/auth/login", json={"username": "alice", "password": "nope-1"})
        assert wrong.status_code == 401
        failure = await wait_for_line(tmp_path, "auth.wrong_password")
        assert failure["user_id"] == exchange.users["alice"]
        assert "password" not in failure  # secrets never (drop_secrets runs after the extras are added)
