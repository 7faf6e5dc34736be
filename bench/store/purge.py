"""Outbox retention benchmark: how fast `store.events.purge` deletes a backlog, and how long each batch's
transaction lasts (what other writers may wait behind), on SQLite and PostgreSQL.

    .venv/bin/python -m bench.store.purge --rows 200000

A fresh database gets `--rows` old events (as after a first purge on a long-running exchange: 7 days of a busy
exchange at a few events per second is a few million) plus a few young ones, written straight in with
multi-row inserts; then one `purge` runs with the default batch. Prints rows per second and the slowest batch.
docs/performance.md ("Housekeeping") has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.postgres import PostgresServer

from hipper.store import events
from hipper.store.db import create_engine, migrate, session_factory
from hipper.store.models import Event

CHUNK = 5000


async def run(url: str, rows: int) -> dict[str, Any]:
    engine = create_engine(url)
    await migrate(engine)
    old = datetime.now(UTC) - timedelta(days=30)
    payload = {"service": "do-not-disturb", "settings": {"active": True, "ring_splash": False}}
    async with engine.begin() as connection:
        for start in range(0, rows, CHUNK):
            await connection.execute(
                insert(Event),
                [
                    {"user_id": None, "company_id": 1, "type": "service.changed", "payload": payload, "created_at": old}
                    for _ in range(min(CHUNK, rows - start))
                ],
            )
        await connection.execute(
            insert(Event),
            [{"user_id": None, "company_id": 1, "type": "x", "payload": {}, "created_at": datetime.now(UTC)}] * 10,
        )
    commits: list[float] = []
    began: list[float] = []

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(_connection: Any) -> None:
        began.append(time.perf_counter())

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(_connection: Any) -> None:
        commits.append(time.perf_counter() - began[-1])

    async with session_factory(engine)() as session:
        started = time.perf_counter()
        result = await events.purge(session, timedelta(days=7))
        seconds = time.perf_counter() - started
    await engine.dispose()
    assert result.deleted == rows, result
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "batches": len(commits),
        "slowest_batch_ms": round(max(commits) * 1000, 1),
        "median_batch_ms": round(sorted(commits)[len(commits) // 2] * 1000, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as directory:
            figures = await run(f"sqlite+aiosqlite:///{Path(directory) / 'hipper.db'}", args.rows)
        print("sqlite    ", figures)
    if args.db in ("postgresql", "both"):
        server = PostgresServer()
        server.start()
        try:
            admin = create_async_engine(server.url(), isolation_level="AUTOCOMMIT")
            async with admin.connect() as connection:
                await connection.execute(text("CREATE DATABASE bench"))
            await admin.dispose()
            figures = await run(server.url("bench"), args.rows)
            print("postgresql", figures)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
