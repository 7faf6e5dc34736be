"""In-process profile of the settings hot path: SQL statements and CPU per request, optionally cProfile.

    .venv/bin/python -m bench.api.profile --db sqlite --requests 2000 [--cprofile get|put]

Runs the app in this process through httpx's ASGI transport (so the figures include ≈ 0.3–0.5 ms of test
client), against a fresh database with a handful of users. Complements the open-loop benchmark (`bench.api`):
that one says how fast, this one says where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from tests.support.postgres import PostgresServer

from bench.api.__main__ import populate
from hipper.api.app import create_app
from hipper.config import Settings

VERBOSE = False
PATH = "/api/v1/me/services/do-not-disturb"


async def run(url: str, data_dir: Path, requests: int, profile_op: str | None) -> None:
    tokens = await populate(url, 200)
    app = create_app(Settings(data_dir=data_dir, database_url=url, log_level="INFO"), run_migrations=False)
    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements[statement.split(None, 1)[0].upper() if not VERBOSE else " ".join(statement.split())[:160]] += 1

    async with app.router.lifespan_context(app):
        event.listen(app.state.hipper.engine.sync_engine, "before_cursor_execute", count)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for op in ("get", "put"):

                async def one(op: str = op) -> None:
                    headers = {"Authorization": f"Bearer {random.choice(tokens)}"}
                    if op == "get":
                        response = await client.get(PATH, headers=headers)
                    else:
                        response = await client.put(PATH, json={"active": random.random() < 0.5}, headers=headers)
                    assert response.status_code == 200, response.text

                for _ in range(200):  # warm the statement caches and the connection pool
                    await one()
                statements.clear()
                profiler = cProfile.Profile() if profile_op == op else None
                started = time.process_time()
                if profiler:
                    profiler.enable()
                for _ in range(requests):
                    await one()
                if profiler:
                    profiler.disable()
                cpu_ms = (time.process_time() - started) / requests * 1000
                per_request = {kind: round(n / requests, 2) for kind, n in sorted(statements.items())}
                print(f"{op.upper()}: {cpu_ms:.2f} ms CPU/request (client included); statements/request {per_request}")
                if profiler:
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cprofile", choices=["get", "put"])
    parser.add_argument("--statements", action="store_true", help="count each distinct statement")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.statements
    with tempfile.TemporaryDirectory(prefix="hipper-profile-") as tmp:
        data_dir = Path(tmp)
        if args.db == "sqlite":
            asyncio.run(run(f"sqlite+aiosqlite:///{data_dir}/hipper.db", data_dir, args.requests, args.cprofile))
            return
        server = PostgresServer()
        server.start()
        try:
            asyncio.run(run(server.url(), data_dir, args.requests, args.cprofile))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
