"""Health, Prometheus metrics and the structured request log, against the real app and database."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from hipper import logs, metrics
from hipper.api.app import create_app
from hipper.config import Settings
from hipper.store import db
from tests.conftest import UserFactory


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for metric_sample in family.samples:
            if metric_sample.name == name and all(metric_sample.labels.get(k) == v for k, v in labels.items()):
                return float(metric_sample.value)
    return 0.0


async def test_health_answers_ok_with_a_working_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_health_answers_503_when_the_database_fails(tmp_path: Path) -> None:
    # A SQLite file in a directory that does not exist cannot be opened.
    broken = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db",
        argon2_time_cost=1,
        argon2_memory_cost=1024,
    )
    app = create_app(broken, run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            response = await http.get("/api/v1/health")
    finally:
        await app.state.hipper.engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}


def test_a_database_that_cannot_be_opened_leaves_no_thread_raising_after_the_loop(tmp_path: Path) -> None:
    # aiosqlite stops the connection's worker thread after a failed open without waiting for it; the thread then
    # handed its stop's result to a loop the caller may have closed already (the health check above, in a test)
    # and raised there: "Event loop is closed", an unhandled exception in a thread, reported in a later test.
    raised: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: raised.append(args.exc_value)
    try:
        loop = asyncio.new_event_loop()
        connection = db._loop_reads_creator(str(tmp_path / "missing" / "x.db"))()
        with pytest.raises(sqlite3.OperationalError):
            loop.run_until_complete(connection)
        loop.close()  # at once, as a test's loop closes after its last await
        connection._thread.join(5)
    finally:
        threading.excepthook = hook
    assert not connection._thread.is_alive()
    assert raised == []


async def test_health_answers_503_when_postgresql_is_down(tmp_path: Path) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    broken = Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/hipper",
        argon2_time_cost=1,
        argon2_memory_cost=1024,
    )
    app = create_app(broken, run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            response = await http.get("/api/v1/health")
    finally:
        await app.state.hipper.engine.dispose()
    assert response.status_code == 503


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient, make_user: UserFactory) -> None:
    user = await make_user()
    route = "/api/v1/me/services/do-not-disturb"
    before = sample(
        (await client.get("/metrics")).text, "hipper_http_requests_total", method="GET", route=route, status="200"
    )
    for _ in range(3):
        assert (await user.get("/me/services/do-not-disturb")).status_code == 200
    assert (await client.get("/api/v1/me/services/do-not-disturb")).status_code == 401
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "hipper_http_requests_total", method="GET", route=route, status="200") == before + 3
    assert sample(text, "hipper_http_requests_total", method="GET", route=route, status="401") >= 1
    assert sample(text, "hipper_http_request_duration_seconds_count", method="GET", route=route) >= 4
    # Unknown paths share one label instead of one series per path.
    await client.get("/api/v1/no/such/thing/42")
    text = (await client.get("/metrics")).text
    assert "/api/v1/no/such/thing/42" not in text


async def test_metrics_show_open_event_streams(live_url: str, make_user: UserFactory) -> None:
    user = await make_user()
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        before = sample((await http.get("/metrics")).text, "hipper_sse_streams_open")
        async with http.stream("GET", "/api/v1/events", headers=user.headers) as response:
            await anext(response.aiter_lines())
            assert sample((await http.get("/metrics")).text, "hipper_sse_streams_open") == before + 1
        # The server notices the closed connection and the gauge goes back.
        async with asyncio.timeout(5):
            while sample((await http.get("/metrics")).text, "hipper_sse_streams_open") != before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)


async def test_event_loop_lag_is_measured() -> None:
    async with metrics.loop_lag_monitor(interval=0.01):
        await asyncio.sleep(0.05)
        # Block the loop on purpose: the monitor must report roughly that delay.
        time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.03)
    from prometheus_client import generate_latest

    text = generate_latest().decode()
    assert sample(text, "hipper_event_loop_lag_max_seconds") >= 0.04


async def test_request_log_is_json_with_request_and_user_but_no_secrets(
    app: FastAPI, client: httpx.AsyncClient, make_user: UserFactory
) -> None:
    user = await make_user()
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    try:
        response = await client.get(
            "/api/v1/me/services/do-not-disturb",
            headers={**user.headers, "X-Request-ID": "req-123"},
            params={"token": user.token},
        )
        await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    finally:
        logs.configure("WARNING", json=True)
    assert response.headers["x-request-id"] == "req-123"
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    requests = [line for line in lines if line.get("event") == "request"]
    first = requests[0]
    assert first["request_id"] == "req-123"
    assert first["user_id"] == user.id
    assert first["path"] == "/api/v1/me/services/do-not-disturb"
    assert first["route"] == "/api/v1/me/services/do-not-disturb"
    assert first["status"] == 200
    assert first["duration_ms"] > 0
    assert first["level"] == "info" and "timestamp" in first
    # The test's own HTTP client (httpx) logs its URLs; everything the server side logged must be clean.
    server_side = json.dumps([line for line in lines if line.get("logger") != "httpx"])
    assert user.token not in server_side
    assert user.password not in server_side


async def test_a_request_id_that_is_not_an_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health", headers={"X-Request-ID": 'x"\n{"injected": 1}'})
    assert response.headers["x-request-id"] != 'x"\n{"injected": 1}'
    assert len(response.headers["x-request-id"]) == 32
