"""The whole OpenAPI, fuzzed by schemathesis against a real server: no input may cause a 5xx.

Every operation the app publishes is exercised — routers that other areas add later are covered without
touching this file — as a normal user and as an administrator, with valid (positive) and invalid (negative)
generated input. Then every operation with a body gets malformed JSON, a wrong content type and a huge body.
The number of examples is bounded (HIPPER_FUZZ_EXAMPLES, default 3 per operation, role and mode) to keep the
run within a couple of minutes on both databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from hipper.api.app import create_app
from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.db import create_engine, session_factory
from tests.ops.conftest import free_port

EXAMPLES = int(os.environ.get("HIPPER_FUZZ_EXAMPLES", "3"))
PASSWORD = "correct horse 1"
# Operations that would end the fuzzing identity itself; they are exercised by their own tests in tests/api.
SKIP = {("POST", "/api/v1/auth/logout")}


@dataclass
class Server:
    url: str
    tokens: dict[str, str]
    # The generated fuzzing runs in full on SQLite; on PostgreSQL a third of the examples cover the driver's own
    # edges (integer ranges, NUL bytes) while keeping the suite inside its time budget.
    examples: int = EXAMPLES


def _create_people(database_url: str, hasher: Hasher) -> None:
    async def create() -> None:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                company = await admin.create_company(session, "Fuzz", "+31201234000")
                for username, role, extension in (("fuzz-user", "user", "201"), ("fuzz-admin", "admin", "202")):
                    person = await admin.create_user(
                        session,
                        hasher,
                        username=username,
                        password=PASSWORD,
                        company=company,
                        licences=["full"],
                        role=role,
                        extension=extension,
                    )
                    person.pin_hash = await hasher.hash("2580")
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(create())


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        log_level="WARNING",
        log_json=True,
    )
    _create_people(database_url, Hasher(1, 1024))
    app = create_app(settings, run_migrations=False)
    port = free_port()
    # uvicorn in a thread with its own loop: schemathesis calls are synchronous (requests).
    # Event streams opened by the fuzzer never end by themselves: bound the graceful shutdown.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", timeout_graceful_shutdown=2
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="fuzz-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    tokens = {}
    for username in ("fuzz-user", "fuzz-admin"):
        response = httpx.post(f"{url}/api/v1/auth/login", json={"username": username, "password": PASSWORD}, timeout=30)
        assert response.status_code == 200, response.text
        tokens[username] = response.json()["token"]
    try:
        yield Server(url, tokens, EXAMPLES if database_url.startswith("sqlite") else max(1, EXAMPLES // 3))
    finally:
        uv.should_exit = True
        thread.join(timeout=20)


def _fuzz_operation(operation: Any, mode: GenerationMode, server: Server, token: str, failures: list[str]) -> int:
    calls = 0
    # The live event stream never ends by itself: read its status and headers only. (schemathesis' own call reads an
    # event stream until its timeout passes: 15 s for each stream it opened, with nothing more to judge.)
    stream = operation.path.endswith("/events")
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=server.examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        nonlocal calls
        headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        if stream:
            request = case.as_transport_kwargs(base_url=server.url, headers=headers)
            with requests.request(**{**request, "stream": True, "timeout": 15}) as opened:
                status, text = opened.status_code, opened.text[:300] if opened.status_code >= 500 else ""
        else:
            response = case.call(base_url=server.url, headers=headers, timeout=15)
            status, text = response.status_code, response.text[:300]
        calls += 1
        if status >= 500:
            failures.append(f"{status} {label}:\n  {case.as_curl_command()}\n  {text}")

    with contextlib.suppress(Unsatisfiable):
        check()
    return calls


def _fuzz(server: Server, token: str, failures: list[str]) -> int:
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
    calls = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"an operation's schema is invalid: {result.err()}")
            continue
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            calls += _fuzz_operation(operation, mode, server, token, failures)
    return calls


def test_no_generated_input_causes_a_server_error(server: Server) -> None:
    failures: list[str] = []
    calls = 0
    # The normal user first: the administrator's calls may delete or change that user.
    for username in ("fuzz-user", "fuzz-admin"):
        calls += _fuzz(server, server.tokens[username], failures)
    assert calls > 0
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(dict.fromkeys(failures))


def _operations_with_bodies(url: str) -> Iterator[tuple[str, str]]:
    spec = httpx.get(f"{url}/api/v1/openapi.json", timeout=60).json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation and (method.upper(), path) not in SKIP:
                # Path parameters get a plausible id; what matters is how the body is handled.
                yield method.upper(), re.sub(r"\{[^}]+\}", "1", path)


def test_malformed_huge_and_mistyped_bodies_never_cause_a_server_error(server: Server) -> None:
    failures = []
    huge = b'{"x": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    bodies: list[tuple[str, bytes, str]] = [
        ("malformed JSON", b'{"active": tru', "application/json"),
        ("not an object", b"[1, 2, 3]", "application/json"),
        ("not UTF-8", b'{"a": "\xff\xfe"}', "application/json"),
        ("wrong content type", b"active=true", "application/x-www-form-urlencoded"),
        ("plain text", b"hello", "text/plain"),
        ("5 MB body", huge, "application/json"),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        operations = list(_operations_with_bodies(server.url))
        assert operations, "the API has operations with a body"
        for token in server.tokens.values():
            for method, path in operations:
                for label, body, content_type in bodies:
                    response = http.request(
                        method,
                        path,
                        content=body,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
                    )
                    if response.status_code >= 500:
                        failures.append(f"{response.status_code} {method} {path} with {label}: {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_out_of_range_ids_never_cause_a_server_error(server: Server) -> None:
    """Ids beyond 64 bits or negative: databases refuse them (SQLite OverflowError, PostgreSQL int4 range)."""
    spec = httpx.get(f"{server.url}/api/v1/openapi.json", timeout=60).json()
    failures = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path, item in spec["paths"].items():
            if "{" not in path:
                continue
            for method, operation in item.items():
                if not isinstance(operation, dict) or (method.upper(), path) in SKIP:
                    continue
                for value in ("99999999999999999999999", "-1", "2147483648", "9223372036854775808"):
                    concrete = re.sub(r"\{[^}]+\}", value, path)
                    for token in server.tokens.values():
                        try:
                            response = http.request(
                                method.upper(), concrete, json={}, headers={"Authorization": f"Bearer {token}"}
                            )
                        except httpx.TransportError as exc:  # dropped connection (a crash) or no answer at all
                            failures.append(f"{exc!r} {method.upper()} {concrete}")
                            continue
                        if response.status_code >= 500:
                            failures.append(f"{response.status_code} {method.upper()} {concrete}")
    assert not failures, "\n".join(dict.fromkeys(failures))
