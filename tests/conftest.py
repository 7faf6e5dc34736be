"""Shared fixtures: every store/API test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hipper.api.app import create_app
from hipper.api.state import AppState
from hipper.config import Settings
from hipper.store import admin
from hipper.store.db import create_engine, migrate
from tests.support import postgres

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection built (≈ 280,000 objects: modules, test items), as `hipper serve` freezes its start-up
    heap (server.freeze_heap_when_started). A test process hosts the exchange, its phones and the SIP peers on
    one loop, and a full collection walking those objects (≈ 0.2 s idle, several times that under load) stalls
    them all at once: the phones' audio then arrives late together with everything else."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL must be installed in CI (scripts/test installs it)")
        pytest.skip("PostgreSQL is not installed here")
    server = postgres.PostgresServer()
    server.start()

    # One migrated template database; each test gets a fresh copy of it.
    async def _prepare() -> None:
        engine = create_async_engine(server.url(), isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text("CREATE DATABASE hipper_template"))
        await engine.dispose()
        template = create_engine(server.url("hipper_template"))
        await migrate(template)
        await template.dispose()

    asyncio.run(_prepare())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "hipper.db"

    async def _prepare() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await migrate(engine)
        await engine.dispose()

    asyncio.run(_prepare())
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "hipper.db"
        shutil.copy(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    yield asyncio.run(server.template_copy())


# For a test whose subject the database cannot change (request validation, the OpenAPI document, a licence refusal):
# `database_url` would otherwise run it on PostgreSQL too, for nothing but time. Where storage matters, keep both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, **FAST_ARGON2)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, run_migrations=False)
    yield application
    await application.state.hipper.engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        yield http


@dataclass
class LoggedIn:
    """A user with a session token, for API tests."""

    id: int
    username: str
    password: str
    token: str
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(f"/api/v1{path}", headers=self.headers, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.client.put(f"/api/v1{path}", json=json, headers=self.headers, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.client.post(f"/api/v1{path}", json=json, headers=self.headers, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.delete(f"/api/v1{path}", headers=self.headers, **kwargs)

    async def step_up(self, pin: str = "2580") -> None:
        response = await self.post("/auth/step-up", json={"pin": pin})
        assert response.status_code == 200, response.text


class UserFactory:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.state: AppState = app.state.hipper
        self.client = client
        self.company_id: int | None = None
        self._count = 0

    async def __call__(
        self, licences: list[str] | None = None, *, pin: str | None = "2580", role: str = "user", **fields: Any
    ) -> LoggedIn:
        self._count += 1
        n = self._count
        async with self.state.sessions() as session:
            if self.company_id is None:
                company = await admin.create_company(session, "Acme", "+31201234000")
                self.company_id = company.id
            from hipper.store.models import Company

            company = await session.get(Company, self.company_id)
            username = fields.pop("username", f"user{n}")
            password = "correct horse 1"
            defaults: dict[str, Any] = {
                "extension": str(200 + n),
                "direct_number": f"+3120123{4100 + n}",
                "mobile_number": f"+3161234{5600 + n}",
            }
            defaults.update(fields)
            user = await admin.create_user(
                session,
                self.state.hasher,
                username=username,
                password=password,
                company=company,
                licences=licences if licences is not None else ["full"],
                role=role,
                **defaults,
            )
            if pin is not None:
                user.pin_hash = await self.state.hasher.hash(pin)
            await session.commit()
            user_id = user.id
        response = await self.client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return LoggedIn(user_id, username, password, response.json()["token"], self.client)


@pytest.fixture
def make_user(app: FastAPI, client: httpx.AsyncClient) -> UserFactory:
    return UserFactory(app, client)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a missing peer (SIPp, baresip, Chromium, PostgreSQL) is a failure, not a quiet skip:
    scripts/test installs them all, so a skip there would hide a broken install step."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and "not installed" in str(report.longrepr):
        report.outcome = "failed"


# The longest tests (CPU-bound fuzzing, the accessibility walk over every screen) start first: with the suite
# spread over workers (scripts/test runs pytest-xdist), a long test picked up last leaves the other worker idle.
SLOW_FIRST = ("tests/ops/test_fuzz.py", "tests/web/test_accessibility.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))
