"""The per-user snapshot cache: reused between calls, dropped by the outbox events that change routing."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from hipper.domain.routing import RegisteredDevice
from hipper.domain.services import DoNotDisturb
from hipper.domain.services.call_recording import CallRecording
from hipper.engine import snapshots
from hipper.engine.directory import NotAUser, resolve, resolve_user
from hipper.engine.snapshots import _NEW_EVENTS, SnapshotCache
from hipper.store import admin, call_logs, db, service_settings
from hipper.store.db import LOOP_READ_BUDGET_SECONDS, CallPathReads, PooledReads, Prepared, Reads
from hipper.store.events import NEWEST_EVENT
from hipper.store.models import Company, User
from hipper.store.registrations import Binding, BindingChange
from hipper.store.user_state import _REACHABLE, load_user_state, reachable, read_user_state
from tests.calls.conftest import Exchange, phone, place_call, scenario
from tests.support.sql import statements_through_sqlalchemy

pytestmark = pytest.mark.sip


async def test_snapshots_are_reused_and_dropped_by_relevant_events_only(exchange: Exchange) -> None:
    bob = await exchange.add_user("bob", "202")
    cache = SnapshotCache(exchange.sessions)
    now = datetime.now(UTC)
    first = await cache.state(bob, now, on_call=False)
    assert first is not None and cache.loads == 1
    again = await cache.state(bob, now, on_call=True)
    assert again is not None and again.on_call and (cache.loads, cache.hits) == (1, 1)

    await exchange.set_service("bob", DoNotDisturb(active=True))  # emits service.changed for Bob
    changed = await cache.state(bob, now, on_call=False)
    assert changed is not None and cache.loads == 2
    dnd = changed.services["do-not-disturb"]
    assert isinstance(dnd, DoNotDisturb) and dnd.active

    async with exchange.sessions() as session:  # a call-log row changes nothing the policy reads
        await call_logs.record_call(session, bob, kind="missed", started_at=now, outcome="busy")
        await session.commit()
    await cache.state(bob, now, on_call=False)
    assert cache.loads == 2

    async with exchange.sessions() as session:  # a company-wide change (no user named) drops everything
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        await admin.set_night_mode(session, company, True)
        await session.commit()
    await cache.state(bob, now, on_call=False)
    assert cache.loads == 3
    assert await cache.state(10_000, now, on_call=False) is None


async def test_the_next_call_sees_a_setting_changed_between_calls(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=500)
    await alice.succeeded()
    await bob.succeeded()
    assert (await exchange.next_call()).answered
    await exchange.set_service("bob", DoNotDisturb(active=True))
    alice = await place_call(exchange, "alice", "202", "final_rejected.xml", status=486)
    await alice.succeeded()
    assert (await exchange.next_call()).outcome == "busy"
    assert exchange.b2bua.snapshots.loads == 2  # Bob's cached snapshot was dropped by the change's event


async def test_resolved_numbers_are_cached_until_an_event_may_change_them(exchange: Exchange) -> None:
    bob = await exchange.add_user("bob", "202")
    cache = SnapshotCache(exchange.sessions)
    first = await cache.resolve("202", exchange.company_id, "NL")
    assert first.kind == "user" and first.callee is not None and first.callee.user_id == bob
    await exchange.set_service("bob", DoNotDisturb(active=True))  # a service setting: numbers unchanged
    assert await cache.resolve("202", exchange.company_id, "NL") is first
    async with exchange.sessions() as session:  # the extension moves to another user: the next call sees it
        row = await admin.get_user(session, bob)
        await admin.update_user(session, row, {"extension": "209"})
        await session.commit()
    carol = await exchange.add_user("carol", "202")
    again = await cache.resolve("202", exchange.company_id, "NL")
    assert again.callee is not None and again.callee.user_id == carol
    assert (await cache.resolve("209", exchange.company_id, "NL")).callee == dataclasses.replace(
        first.callee, extension="209"
    )


async def test_an_outside_number_that_becomes_a_hunt_group_is_seen_by_the_next_call(exchange: Exchange) -> None:
    cache = SnapshotCache(exchange.sessions)
    assert (await cache.resolve("+31201234999", exchange.company_id, "NL")).kind == "external"
    async with exchange.sessions() as session:  # hunt-group events leave snapshots alone, not numbers
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        await admin.create_hunt_group(session, company, "Sales", number="+31201234999")
        await session.commit()
    assert (await cache.resolve("+31201234999", exchange.company_id, "NL")).kind == "hunt_group"


async def test_a_replaced_or_expired_registration_is_no_longer_rung(exchange: Exchange) -> None:
    # What a call rings comes from the call path's own reads (on SQLite straight from sqlite3, on the loop):
    # they see every change the registrar commits, and never a binding past its expiry.
    bob = await exchange.add_user("bob", "202")
    registrar = exchange.stack.registrar
    assert registrar is not None
    device = await registrar.devices.lookup("bob")
    assert device is not None
    cache = exchange.b2bua.snapshots
    now = datetime.now(UTC)

    def register(contact: str, seconds: int) -> Callable[[list[Binding]], BindingChange]:
        binding = Binding(device.id, bob, contact, "udp:127.0.0.1:5099", now + timedelta(seconds=seconds), "c", 1)
        return lambda live: BindingChange([binding], [b.contact for b in live if b.contact != contact])

    await registrar.locations.change(device, register("sip:bob@127.0.0.1:5099", 60))
    state = await cache.state(bob, now, on_call=False)
    assert state is not None and [d.id for d in state.devices] == [device.id]
    assert [b.contact for b in await cache.bindings(bob, now)] == ["sip:bob@127.0.0.1:5099"]

    await registrar.locations.change(device, register("sip:bob@127.0.0.1:6000", 60))  # the phone moved
    state = await cache.state(bob, now, on_call=False)
    assert [b.contact for b in await cache.bindings(bob, now)] == ["sip:bob@127.0.0.1:6000"]

    later = now + timedelta(seconds=61)  # past the binding's expiry: not registered any more
    state = await cache.state(bob, later, on_call=False)
    assert state is not None and state.devices == ()
    assert await cache.bindings(bob, later) == []


@pytest.mark.parametrize("budget", [LOOP_READ_BUDGET_SECONDS, 0.0])
async def test_call_path_reads_return_what_sqlalchemy_returns(
    exchange: Exchange, budget: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Straight from sqlite3 (the parameters and columns converted by SQLAlchemy's own type processors), or,
    # with no time on the loop for it (budget 0), again on a pooled connection: the same rows either way.
    monkeypatch.setattr(db, "LOOP_READ_BUDGET_SECONDS", budget)
    bob = await exchange.add_user("bob", "202")
    registrar = exchange.stack.registrar
    assert registrar is not None
    device = await registrar.devices.lookup("bob")
    assert device is not None
    now = datetime.now(UTC)
    binding = Binding(
        device.id, bob, "sip:bob@127.0.0.1:5099", "udp:127.0.0.1:5099", now + timedelta(seconds=60), "c", 7
    )
    await registrar.locations.change(device, lambda live: BindingChange([binding], []))
    engine = exchange.sessions.kw["bind"]
    reads = CallPathReads(engine)
    try:
        reachable_values = {"user_id": bob, "now": now, "node_id": ""}
        for statement, values in ((_REACHABLE, reachable_values), (_NEW_EVENTS, {"after": 0})):
            async with engine.connect() as connection:
                expected = [tuple(row) for row in await PooledReads(connection).rows(statement, values)]
            assert expected and [tuple(row) for row in await reads.rows(statement, values)] == expected
        found = (await reachable(reads, bob, now)).bindings
        assert [dataclasses.replace(b, node="") for b in found] == [binding]  # the registrar adds its node
    finally:
        reads.close()


async def test_a_snapshot_built_from_the_call_path_reads_is_the_one_the_orm_builds(exchange: Exchange) -> None:
    # `read_user_state` on the call path's own connection, on a pooled one and through `load_user_state` (the API's
    # ORM session): every number kind, licences, stored and default documents, and no such user.
    bob = await exchange.add_user("bob", "202", direct="+31201234202", mobile="+31612345202")
    carol = await exchange.add_user("carol", "203", licences=())
    await exchange.set_service("bob", DoNotDisturb(active=True))
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        group = await admin.create_group(session, company, "Sales", "+31201234500")
        center = await admin.create_call_center(session, company, "Support", number="+31201234600")
        bob_row = await session.get(User, bob)
        assert bob_row is not None
        bob_row.group_id = group.id
        await admin.add_call_center_member(session, center, bob_row)
        await session.commit()
    now = datetime.now(UTC)
    devices = [RegisteredDevice(id=7, kind="desk", name="desk")]
    engine = exchange.sessions.kw["bind"]
    direct = CallPathReads(engine)
    try:
        for user_id in (bob, carol):
            async with exchange.sessions() as session:
                user = await session.get(User, user_id)
                assert user is not None
                expected = await load_user_state(session, user, now, devices=devices)
            async with engine.connect() as connection:
                pooled = await read_user_state(PooledReads(connection), user_id, devices=devices)
            assert await read_user_state(direct, user_id, devices=devices) == pooled == expected
        bob_state = await read_user_state(direct, bob, devices=devices)
        assert bob_state is not None and set(bob_state.numbers) == {"company", "direct", "department", "mobile",
                                                                    "call_center"}  # fmt: skip
        assert bob_state.services["do-not-disturb"] == DoNotDisturb(active=True)
        assert await read_user_state(direct, 10_000, devices=[]) is None
        async with exchange.sessions() as session:  # the ORM path reads what its session holds, flushed or not
            carol_row = await session.get(User, carol)
            assert carol_row is not None
            carol_row.direct_number = "+31201234203"
            carol_state = await load_user_state(session, carol_row, now, devices=devices)
            assert carol_state.numbers["direct"] == "+31201234203"
    finally:
        direct.close()


async def test_a_number_resolved_on_the_call_path_reads_is_what_resolve_says(exchange: Exchange) -> None:
    # `resolve_user` answers for users and unusable numbers exactly as `resolve` does, and leaves the rest to it.
    await exchange.add_user("bob", "202", direct="+31201234202", mobile="+31612345202")
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        await admin.create_group(session, company, "Sales", "+31201234500")
        await session.commit()
    engine = exchange.sessions.kw["bind"]
    reads = CallPathReads(engine)
    try:
        for dialled, company_id, kind in (("202", exchange.company_id, "user"), ("0201234202", None, "user"),
                                          ("+31612345202", None, "user"), ("202", None, "unknown"),
                                          ("not a number", None, "unknown")):  # fmt: skip
            async with exchange.sessions() as session:
                expected = await resolve(session, dialled, company_id, "NL")
            assert expected.kind == kind and await resolve_user(reads, dialled, company_id, "NL") == expected, dialled
        assert expected.callee is None
        for dialled, company_id, kind in (("209", exchange.company_id, "unknown"), ("+31201234500", None, "group"),
                                          ("+31301112222", None, "external")):  # fmt: skip
            async with exchange.sessions() as session:
                assert (await resolve(session, dialled, company_id, "NL")).kind == kind
            found = await resolve_user(reads, dialled, company_id, "NL")
            assert isinstance(found, NotAUser), dialled
    finally:
        reads.close()


async def test_a_number_that_is_no_users_is_looked_up_as_a_user_once(exchange: Exchange) -> None:
    # The cache's `resolve` asks the cheap reads for a user, then an ORM session for the rest: the session must
    # not look for the user again (it did: one statement more on every first call to a group or outside number).
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        await admin.create_group(session, company, "Sales", "+31201234500")
        await session.commit()
    cache = SnapshotCache(exchange.sessions)
    try:
        for number, kind in (("+31201234500", "group"), ("+31301112222", "external")):
            cache.reads.direct_statements.clear()
            with statements_through_sqlalchemy(exchange.sessions.kw["bind"]) as statements:
                assert (await cache.resolve(number, exchange.company_id, "NL")).kind == kind
            sent = [*statements, *cache.reads.direct_statements.elements()]
            user_lookups = [sql for sql in sent if "FROM users" in sql and "users.mobile_number =" in sql]
            assert len(user_lookups) == 1, sent
    finally:
        cache.reads.close()


async def test_a_document_a_call_needs_is_read_on_the_call_path_reads(exchange: Exchange) -> None:
    # `document` (the recording mode at answer) on a cache miss reads what `service_settings.load` reads — a
    # stored document and the defaults — on the call path's cheap reads: on a SQLite file no statement through
    # SQLAlchemy (an ORM session for it cost ≈ 0.5 ms of CPU on every user's first call).
    bob = await exchange.add_user("bob", "202")
    carol = await exchange.add_user("carol", "203")
    await exchange.set_service("bob", CallRecording(mode="always"))
    cache = SnapshotCache(exchange.sessions)
    statements: list[str] = []
    try:
        await cache.resolve("202", exchange.company_id, "NL")  # a call's first look at the outbox
        for user_id in (bob, carol):
            with statements_through_sqlalchemy(exchange.sessions.kw["bind"]) as sent:
                got = await cache.document(user_id, CallRecording)
            statements += sent
            async with exchange.sessions() as session:
                assert got == await service_settings.load(session, user_id, CallRecording)
        assert isinstance(got, CallRecording) and got.mode == "never"  # carol: the defaults
        assert (await cache.document(bob, CallRecording)).mode == "always"  # cached
        if cache.reads._sqlite is not None:
            assert statements == []
    finally:
        cache.close()


async def test_a_document_not_cached_is_read_without_an_outbox_look_of_its_own(exchange: Exchange) -> None:
    # A user's first call answered: `resolve` looked at the outbox when the call came in, and the recording mode,
    # not cached, is read as it is now — a look before that read found nothing it needs (1.42 → 1.0 looks per
    # call at 40 calls/s, 500 of 1,200 being first calls). A change made later is still seen at the next call.
    bob = await exchange.add_user("bob", "202")
    await exchange.set_service("bob", CallRecording(mode="always"))
    cache = SnapshotCache(exchange.sessions)
    looks = 0
    read_events = cache._read_events

    async def counted(reads: Reads) -> None:
        nonlocal looks
        looks += 1
        await read_events(reads)

    cache._read_events = counted  # type: ignore[method-assign]
    try:
        await cache.resolve("202", exchange.company_id, "NL")
        assert await cache.state(bob, datetime.now(UTC)) is not None
        got = await cache.document(bob, CallRecording)
        assert isinstance(got, CallRecording) and got.mode == "always"
        assert looks == 1
        await exchange.set_service("bob", CallRecording(mode="never"))
        await cache.resolve("202", exchange.company_id, "NL")  # the next call's look drops Bob's documents
        got = await cache.document(bob, CallRecording)
        assert isinstance(got, CallRecording) and got.mode == "never"
    finally:
        cache.close()


async def test_a_snapshot_or_document_read_while_its_change_was_seen_is_not_cached(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL a read waits for the database, and meanwhile another call's look at the outbox may see the
    # event of a change the read did not see (committed after the read's snapshot). That look had nothing to drop
    # yet; kept, the stale read would be served until the user's next change. Here the change and the other look
    # happen inside the read.
    bob = await exchange.add_user("bob", "202")
    cache = SnapshotCache(exchange.sessions)
    real_state, real_read = snapshots.read_user_state, snapshots.service_settings.read

    async def another_call_looks() -> None:
        async with cache.reads.connect() as reads:
            await cache._catch_up(reads)

    async def state_then_change(*args: Any, **kwargs: Any) -> Any:
        state = await real_state(*args, **kwargs)
        await exchange.set_service("bob", DoNotDisturb(active=True))
        await another_call_looks()
        return state

    async def document_then_change(*args: Any, **kwargs: Any) -> Any:
        document = await real_read(*args, **kwargs)
        await exchange.set_service("bob", CallRecording(mode="always"))
        await another_call_looks()
        return document

    try:
        await cache.resolve("202", exchange.company_id, "NL")  # the first look
        with monkeypatch.context() as patch:
            patch.setattr(snapshots, "read_user_state", state_then_change)
            stale = await cache.state(bob, datetime.now(UTC), on_call=False)
        assert stale is not None and not stale.services["do-not-disturb"].active  # type: ignore[attr-defined]
        await another_call_looks()  # nothing new
        fresh = await cache.state(bob, datetime.now(UTC), on_call=False)
        assert fresh is not None and fresh.services["do-not-disturb"].active  # type: ignore[attr-defined]

        with monkeypatch.context() as patch:
            patch.setattr(snapshots.service_settings, "read", document_then_change)
            old = await cache.document(bob, CallRecording)
        assert isinstance(old, CallRecording) and old.mode == "never"
        await another_call_looks()  # nothing new
        new = await cache.document(bob, CallRecording)
        assert isinstance(new, CallRecording) and new.mode == "always"
    finally:
        cache.close()


def _reference_parameters(prepared: Prepared, values: dict[str, Any]) -> tuple[Any, ...]:
    """`Prepared.parameters` as it was (every statement through `construct_params`)."""
    given = prepared.compiled.construct_params(values)
    return tuple(
        given[name] if process is None or given[name] is None else process(given[name])
        for name, process in zip(prepared.names, prepared.binds, strict=True)
    )


def _reference_row(prepared: Prepared, raw: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        value if process is None or value is None else process(value)
        for process, value in zip(prepared.results, raw, strict=True)
    )


def _outcome(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return ("value", function(*args))
    except Exception as error:
        return ("error", type(error), str(error))


def test_prepared_statements_convert_as_sqlalchemy_does_without_construct_params() -> None:
    # `Prepared.parameters` finds each value as `construct_params` does but without building its dictionary, and
    # `row` converts only the columns that have a converter: the same parameters, rows and errors as the old
    # code (kept above as the reference) for every statement the cheap reads and the settings writer prepare,
    # plus anonymous literals, a computed value and missing ones, on 20,000 random value sets.
    from hipper.api.deps import SETTINGS_LOOKUP
    from hipper.apps.mwi import _FOLLOWED
    from hipper.engine.directory import _USER_BY_EXTENSION, _USER_BY_NUMBER
    from hipper.server import _DEVICE_EVENTS_AFTER
    from hipper.store.active_calls import ON_CALL_ELSEWHERE
    from hipper.store.events import EVENT_INSERT
    from hipper.store.models import Event
    from hipper.store.user_state import _SNAPSHOT_DOCUMENTS, _SNAPSHOT_USER

    statements: list[Any] = [
        _NEW_EVENTS, NEWEST_EVENT, _REACHABLE, _SNAPSHOT_USER, _SNAPSHOT_DOCUMENTS, service_settings._LOAD,
        ON_CALL_ELSEWHERE, _USER_BY_EXTENSION, _USER_BY_NUMBER, SETTINGS_LOOKUP, _FOLLOWED, _DEVICE_EVENTS_AFTER,
        service_settings._UPSERTS["sqlite"], EVENT_INSERT,
        select(Event.id, Event.payload, Event.created_at).where(Event.id > 5, Event.type == "x").limit(3),
        select(Event.id).where(Event.id > bindparam("after", callable_=lambda: 7)),
        select(Event.id).where(Event.id > bindparam("after", 4), Event.user_id == bindparam("user_id")),
    ]  # fmt: skip
    dialect = sqlite_dialect()
    rng = random.Random(12)
    now = datetime.now(UTC)
    samples: list[Any] = [
        None, 0, 1, 42, -3, "", "text", "+31201234567", now, now.replace(tzinfo=None), {"a": [1, None]}, [], True,
    ]  # fmt: skip
    raw_samples: list[Any] = [None, 0, 1, 7, "text", "2026-12-07 16:05:00.123456", '{"a": [1, null]}', "[]"]
    checked = 0
    for statement in statements:
        prepared = Prepared(statement, dialect)
        names = {*prepared.names, *(bind.key for bind in prepared.compiled.binds.values()), "unrelated"}
        for _ in range(20_000 // len(statements)):
            values = {name: rng.choice(samples) for name in names if rng.random() < 0.85}
            assert _outcome(prepared.parameters, values) == _outcome(_reference_parameters, prepared, values)
            checked += 1
        width = len(prepared.results)
        for _ in range(500):
            raw = tuple(rng.choice(raw_samples) for _ in range(width + rng.choice((0, 0, 0, 1, -1))))
            assert _outcome(prepared.row, raw) == _outcome(_reference_row, prepared, raw)
    assert checked >= 19_000


def test_plain_prepared_statements_do_without_construct_params(monkeypatch: pytest.MonkeyPatch) -> None:
    # ≈ 1 µs of a cheap read's ≈ 7 µs was `construct_params` building a dictionary of every bind.
    prepared = Prepared(_REACHABLE, sqlite_dialect())

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("construct_params called")

    monkeypatch.setattr(prepared.compiled, "construct_params", refused)
    now = datetime.now(UTC)
    assert len(prepared.parameters({"user_id": 1, "now": now, "node_id": "a"})) == len(prepared.names)
