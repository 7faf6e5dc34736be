"""`hipper serve` starts on a brand-new data directory, and stopping closes every database connection it opened.

Call processing ended after the app's lifespan had disposed of the engine: its last writes (the node leaving,
`Presence.close`) opened a pooled connection on the disposed engine's fresh pool, which nobody closed. Its aiosqlite
worker thread outlived the exchange's event loop, and when the connection was garbage collected later (in another
test, on another loop) the thread died with "Event loop is closed" (PytestUnhandledThreadExceptionWarning in CI).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import hipper.server
from hipper.config import Settings
from hipper.server import ExchangeServer, serve
from tests.support.ports import engine_range, server_port, sip_port


def aiosqlite_workers() -> set[threading.Thread]:
    # aiosqlite names them "Thread-N (_connection_worker_thread)".
    return {thread for thread in threading.enumerate() if "_connection_worker_thread" in thread.name}


async def test_serve_closes_every_database_connection_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers: list[ExchangeServer] = []

    class Recorded(ExchangeServer):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            servers.append(self)

    monkeypatch.setattr(hipper.server, "ExchangeServer", Recorded)
    rtp = engine_range()
    settings = Settings(
        data_dir=tmp_path / "data",
        http_port=server_port(),
        sip_port=sip_port(),
        rtp_port_min=rtp,
        rtp_port_max=rtp + 200,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        log_level="WARNING",
    )
    # A brand-new data directory: `serve` migrates before call processing starts (its start reads the outbox).
    before = aiosqlite_workers()
    serving = asyncio.create_task(serve(settings))
    async with asyncio.timeout(30):
        while not (servers and servers[0].started):  # uvicorn offers a flag, not an event
            if serving.done():
                serving.result()  # the start failed: say why
            await asyncio.sleep(0.02)
    assert aiosqlite_workers() - before, "call processing and the API opened pooled connections"
    servers[0].should_exit = True
    async with asyncio.timeout(30):
        await serving
    left = aiosqlite_workers() - before
    for thread in left:  # a closed connection's thread ends right after handing back the close
        await asyncio.to_thread(thread.join, 5)
    assert [thread.name for thread in left if thread.is_alive()] == []
