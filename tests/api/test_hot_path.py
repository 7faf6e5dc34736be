"""The settings hot path (GET/PUT /me/services/{service}): correct under concurrency, and lean in SQL.

The benchmark (bench/api, docs/performance.md) drives these two routes; these tests pin what its changes must
keep: no 5xx when one user's PUTs race, the stored document and the last event agree, and the number of SQL
statements a request costs does not creep back up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event, select

from hipper.store.models import Event, ServiceSetting
from tests.conftest import UserFactory


@contextmanager
def counting_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends while the block runs (pool resets included)."""
    statements: list[str] = []
    engine = app.state.hipper.engine.sync_engine

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_concurrent_puts_of_one_service_never_fail(make_user: UserFactory, app: FastAPI) -> None:
    # The first PUTs race to create the row: a read-then-insert answered 500 (unique key) for the losers.
    user = await make_user(["full"])
    bodies = [{"active": n % 2 == 0} for n in range(24)]
    responses = await asyncio.gather(*(user.put("/me/services/do-not-disturb", json=body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses if r.is_error]

    final = (await user.get("/me/services/do-not-disturb")).json()
    assert final["active"] in {True, False}
    async with app.state.hipper.sessions() as session:
        rows = (await session.execute(select(ServiceSetting).where(ServiceSetting.user_id == user.id))).scalars()
        stored = [row for row in rows if row.service == "do-not-disturb"]
        events = (
            (
                await session.execute(
                    select(Event).where(Event.user_id == user.id, Event.type == "service.changed").order_by(Event.id)
                )
            )
            .scalars()
            .all()
        )
    assert len(stored) == 1
    assert stored[0].data == final
    # One event per accepted change, and the last one published tells listeners the state that was kept.
    changes = [e for e in events if e.payload["service"] == "do-not-disturb"]
    assert len(changes) == len(bodies)
    assert changes[-1].payload["settings"] == final


async def test_concurrent_puts_of_different_services(make_user: UserFactory) -> None:
    user = await make_user(["full"])
    puts = [
        user.put("/me/services/do-not-disturb", json={"active": True}),
        user.put("/me/services/call-waiting", json={"active": False}),
        user.put("/me/services/anonymous", json={"desk": True}),
    ] * 4
    responses = await asyncio.gather(*puts)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.is_error]
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is True
    assert (await user.get("/me/services/call-waiting")).json()["active"] is False
    assert (await user.get("/me/services/anonymous")).json()["desk"] is True


async def test_statements_per_settings_request(make_user: UserFactory, app: FastAPI) -> None:
    # GET: one statement, the session lookup (session, user, company, department, call-center number) with the
    # stored document joined in. PUT: the same lookup, the upsert and the event; the documents of related services
    # (voicemail's rules look at call waiting) in one more statement.
    user = await make_user(["full"])
    await user.get("/me/services/do-not-disturb")  # warm: the first request may compile and connect
    with counting_statements(app) as statements:
        response = await user.get("/me/services/do-not-disturb")
    assert response.status_code == 200
    assert statements == ["SELECT"]
    with counting_statements(app) as statements:
        response = await user.put("/me/services/do-not-disturb", json={"active": True})
    assert response.status_code == 200
    assert sorted(statements) == ["INSERT", "INSERT", "SELECT"]
    # Voicemail's rules look at call waiting: both documents are read in one statement.
    with counting_statements(app) as statements:
        response = await user.put("/me/services/voicemail", json={})
    assert response.status_code == 200, response.text
    assert statements.count("SELECT") == 2


async def test_the_document_read_with_the_session_is_the_users_own(make_user: UserFactory) -> None:
    # The GET joins the stored document into the session lookup: it must be the caller's, per service, and the
    # defaults when the caller has none stored, whatever other users stored.
    alice, bob = await make_user(["full"]), await make_user(["full"])
    assert (await alice.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await alice.put("/me/services/call-waiting", json={"active": False})).status_code == 200
    assert (await bob.get("/me/services/do-not-disturb")).json()["active"] is False
    assert (await bob.get("/me/services/call-waiting")).json()["active"] is True
    assert (await alice.get("/me/services/do-not-disturb")).json()["active"] is True
    assert (await alice.get("/me/services/call-waiting")).json()["active"] is False
    assert (await bob.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await alice.put("/me/services/do-not-disturb", json={"active": False})).status_code == 200
    assert (await bob.get("/me/services/do-not-disturb")).json()["active"] is True
    # An ended session reads nothing, document or not.
    assert (await alice.client.post("/api/v1/auth/logout", headers=alice.headers)).status_code == 204
    assert (await alice.get("/me/services/do-not-disturb")).status_code == 401


async def test_numbers_come_with_the_session(make_user: UserFactory, app: FastAPI) -> None:
    # The call-center number is read in the session lookup's statement; it must still reach the numbers.
    from hipper.store.models import CallCenter, CallCenterMember, User

    user = await make_user(["full"])
    async with app.state.hipper.sessions() as session:
        company_id = (await session.get(User, user.id)).company_id
        center = CallCenter(company_id=company_id, name="Support", number="+31201234999")
        session.add(center)
        await session.flush()
        session.add(CallCenterMember(call_center_id=center.id, user_id=user.id))
        await session.commit()
    profile = (await user.client.get("/api/v1/me", headers=user.headers)).json()
    assert profile["numbers"]["call_center"] == "+31201234999"
    assert profile["numbers"]["company"] == "+31201234000"


def test_the_fast_request_line_reads_like_any_other_line() -> None:
    # hot_line skips the standard library's record machinery; what it writes must not differ from log.info.
    import io
    import json
    import logging

    import structlog

    from hipper import logs

    fields: dict[str, Any] = {"request_id": "r1", "user_id": 7, "method": "GET", "status": 200, "token": "s3cret"}
    for as_json in (True, False):
        stream = io.StringIO()
        logs.configure("INFO", json=as_json, stream=stream)
        try:
            structlog.get_logger("hipper.http").info("request", **fields)
            assert logs.hot_line(logging.getLogger("hipper.http"), "request", **fields)
            logs.configure("WARNING", json=as_json, stream=stream)
            assert logs.hot_line(logging.getLogger("hipper.http"), "request", **fields)  # below the level
        finally:
            logs.configure("WARNING", json=True)
        ordinary, fast = stream.getvalue().splitlines()
        assert "s3cret" not in fast
        if as_json:
            ordinary_fields, fast_fields = json.loads(ordinary), json.loads(fast)
            assert ordinary_fields.pop("timestamp") and fast_fields.pop("timestamp")
            assert list(fast_fields.items()) == list(ordinary_fields.items())
        else:
            assert ordinary.split(" ", 1)[1] == fast.split(" ", 1)[1]  # all but the timestamp


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_settings_get_opens_no_transaction_on_postgresql(
    make_user: UserFactory, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GET is one SELECT: asyncpg's BEGIN and ROLLBACK around it would be two more round trips. A PUT must
    # still write in one transaction (the change and its outbox event commit together).
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    begun: list[object] = []
    original = AsyncAdapt_asyncpg_connection._start_transaction

    async def counting_start(self: AsyncAdapt_asyncpg_connection) -> None:
        await original(self)
        if self._transaction is not None:  # BEGIN was sent (in autocommit the adapter sends nothing)
            begun.append(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "_start_transaction", counting_start)
    user = await make_user(["full"])
    assert (await user.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    begun.clear()
    with counting_statements(app) as statements:
        response = await user.get("/me/services/do-not-disturb")
    assert response.json()["active"] is True
    assert statements == ["SELECT"]
    assert begun == []
    with counting_statements(app) as statements:
        response = await user.put("/me/services/do-not-disturb", json={"active": False})
    assert response.status_code == 200
    assert len(begun) == 1
    # And the pooled connection the GET used is back to transactions for the next request that writes.
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is False
    assert len(begun) == 1
