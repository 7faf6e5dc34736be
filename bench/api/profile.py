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
from hipper.api import deps
from hipper.api.app import create_app
from hipper.api.deps import reads_of
from hipper.config import Settings

VERBOSE = False
PATH = "/api/v1/me/services/do-not-disturb"


def asgi_client(app: Any) -> Any:
    """Calls the ASGI app directly, without an HTTP client: what the app alone costs (uvicorn's part excluded)."""

    async def request(method: str, token: str, body: bytes = b"") -> int:
        headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
        if body:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return request


async def run(
    url: str, data_dir: Path, requests: int, profile_op: str | None, ops: tuple[str, ...], asgi: bool = False
) -> None:
    tokens = await populate(url, 200)
    app = create_app(Settings(data_dir=data_dir, database_url=url, log_level="INFO"), run_migrations=False)
    statements: Counter[str] = Counter()

    def counted(statement: str) -> None:
        statements[statement.split(None, 1)[0].upper() if not VERBOSE else " ".join(statement.split())[:160]] += 1

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counted(statement)

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection._conn.set_trace_callback(counted)

    engine = app.state.hipper.engine.sync_engine
    if url.startswith("sqlite"):
        # What SQLite itself runs, BEGIN and COMMIT included: the settings routes send statements past SQLAlchemy
        # (a read connection of their own, one worker-thread call per write) that its events do not see.
        event.listen(engine, "connect", trace)
        sqlite_reads = reads_of(app.state.hipper)._sqlite
        if sqlite_reads is not None:
            sqlite_reads.set_trace_callback(counted)
        # The settings writes' own connection (store/service_settings.py); looked up by name so that this profile
        # also runs against an older tree (PYTHONPATH) for a before/after in the same minutes.
        writer_of = getattr(deps, "writer_of", None)
        writer = writer_of(app.state.hipper) if writer_of is not None else None
        if writer is not None:
            writer.connection.set_trace_callback(counted)
    else:
        event.listen(engine, "before_cursor_execute", count)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            direct = asgi_client(app)
            for op in ops:

                async def one(op: str = op) -> None:
                    token = random.choice(tokens)
                    if asgi:
                        active = b"true" if random.random() < 0.5 else b"false"
                        body = b'{"active": ' + active + b"}" if op == "put" else b""
                        status = await direct(op.upper(), token, body)
                        assert status == 200, status
                        return
                    headers = {"Authorization": f"Bearer {token}"}
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
                client_part = "ASGI calls, no client" if asgi else "client included"
                print(f"{op.upper()}: {cpu_ms:.2f} ms CPU/request ({client_part}); statements/request {per_request}")
                if profiler:
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cprofile", choices=["get", "put"])
    parser.add_argument("--ops", default="get,put", help="which operations to run, in order (get,put)")
    parser.add_argument("--asgi", action="store_true", help="call the ASGI app directly (no HTTP client's cost)")
    parser.add_argument("--statements", action="store_true", help="count each distinct statement")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.statements
    ops = tuple(op for op in args.ops.split(",") if op in ("get", "put"))
    with tempfile.TemporaryDirectory(prefix="hipper-profile-") as tmp:
        data_dir = Path(tmp)
        if args.db == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir}/hipper.db"
            asyncio.run(run(url, data_dir, args.requests, args.cprofile, ops, args.asgi))
            return
        server = PostgresServer()
        server.start()
        try:
            asyncio.run(run(server.url(), data_dir, args.requests, args.cprofile, ops, args.asgi))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
