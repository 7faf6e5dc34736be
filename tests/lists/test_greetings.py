"""Greetings (SPEC H2): upload real audio in several formats, play, rename, choose the no-answer and the busy
greeting, delete; and the migration that brought the busy greeting."""

from __future__ import annotations

import asyncio
import importlib
import io
from collections.abc import Callable
from typing import Any

import pytest
import soundfile
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, inspect, select
from sqlalchemy.exc import IntegrityError

from hipper.domain.greetings import GreetingCase
from hipper.store import greetings
from hipper.store.models import Event, Greeting
from tests.conftest import LoggedIn, UserFactory
from tests.lists.conftest import Exchange, dominant_frequency, sine


async def upload(user: LoggedIn, data: bytes, filename: str = "hello.wav", **form: str) -> Any:
    return await user.client.post(
        "/api/v1/me/greetings",
        headers=user.headers,
        files={"file": (filename, data, "application/octet-stream")},
        data=form,
    )


async def patch(user: LoggedIn, greeting_id: int, body: dict[str, Any]) -> Any:
    return await user.client.patch(f"/api/v1/me/greetings/{greeting_id}", json=body, headers=user.headers)


@pytest.mark.parametrize(
    ("format", "subtype", "rate", "channels", "frequency"),
    [
        ("WAV", "PCM_16", 44100, 2, 440.0),
        ("FLAC", "PCM_16", 48000, 1, 1000.0),
        ("OGG", "VORBIS", 22050, 2, 660.0),
    ],
)
async def test_upload_is_stored_as_8_khz_mono_and_keeps_its_pitch(
    make_user: UserFactory, exchange: Exchange, format: str, subtype: str, rate: int, channels: int, frequency: float
) -> None:
    user = await make_user()
    data = sine(frequency, seconds=2, rate=rate, channels=channels, format=format, subtype=subtype)
    created = await upload(user, data, filename=f"welkom.{format.lower()}")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "welkom" and body["active"] is False
    assert body["duration_ms"] == pytest.approx(2000, abs=30)
    audio = await user.get(f"/me/greetings/{body['id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    info = soundfile.info(io.BytesIO(audio.content))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (8000, 1, "PCM_16", "WAV")
    assert dominant_frequency(audio.content) == pytest.approx(frequency, abs=2)
    # The stored file is the one served, and nothing temporary is left next to it.
    async with exchange.state.sessions() as session:
        row = (await session.execute(select(Greeting))).scalar_one()
    path = exchange.state.settings.data_dir / row.media_path
    assert path.read_bytes() == audio.content
    assert [p.name for p in path.parent.iterdir()] == [path.name]


async def test_rename_activate_and_delete(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    first = (await upload(user, sine(440), name="Kantoor")).json()
    second = (await upload(user, sine(880), name="Vakantie")).json()
    renamed = await patch(user, first["id"], {"name": "  Kantoor dicht  "})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Kantoor dicht"
    assert (await patch(user, first["id"], {"active": True})).json()["active"] is True
    # Choosing another makes that one the only active greeting.
    assert (await patch(user, second["id"], {"active": True})).json()["active"] is True
    listing = (await user.get("/me/greetings")).json()["greetings"]
    assert [(g["name"], g["active"]) for g in listing] == [("Kantoor dicht", False), ("Vakantie", True)]
    assert (await patch(user, second["id"], {"active": False})).json()["active"] is False
    assert [g["active"] for g in (await user.get("/me/greetings")).json()["greetings"]] == [False, False]

    assert (await patch(user, second["id"], {"active": True})).status_code == 200
    deleted = await user.delete(f"/me/greetings/{second['id']}")
    assert deleted.status_code == 204
    assert [g["id"] for g in (await user.get("/me/greetings")).json()["greetings"]] == [first["id"]]
    files = [p for p in (exchange.state.settings.data_dir / "media").rglob("*") if p.is_file()]
    assert len(files) == 1
    async with exchange.state.sessions() as session:
        types = list((await session.execute(select(Event.type).where(Event.user_id == user.id))).scalars())
    assert types.count("greeting.added") == 2 and "greeting.changed" in types and "greeting.deleted" in types


async def test_busy_and_no_answer_greetings_are_chosen_separately(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    ids = [(await upload(user, sine(f), name=n)).json()["id"] for f, n in ((440, "a"), (660, "b"), (880, "c"))]

    async def choices() -> list[tuple[str, bool, bool]]:
        listing = (await user.get("/me/greetings")).json()["greetings"]
        return [(g["name"], g["active"], g["active_busy"]) for g in listing]

    async def heard(case: GreetingCase) -> str | None:
        async with exchange.state.sessions() as session:
            row = await greetings.active_for(session, user.id, case)
        return None if row is None else row.name

    assert await heard("no_answer") is None and await heard("busy") is None  # the system greeting
    assert (await patch(user, ids[0], {"active": True})).json()["active_busy"] is False
    assert await heard("no_answer") == "a" and await heard("busy") == "a"  # busy falls back to no answer
    chosen = await patch(user, ids[1], {"active_busy": True})
    assert chosen.status_code == 200 and (chosen.json()["active"], chosen.json()["active_busy"]) == (False, True)
    assert await choices() == [("a", True, False), ("b", False, True), ("c", False, False)]
    assert await heard("no_answer") == "a" and await heard("busy") == "b"
    # One greeting may be both; choosing it takes each case from the one that had it.
    both = await patch(user, ids[2], {"active": True, "active_busy": True})
    assert (both.json()["active"], both.json()["active_busy"]) == (True, True)
    assert await choices() == [("a", False, False), ("b", False, False), ("c", True, True)]
    assert (await patch(user, ids[2], {"active": False})).status_code == 200
    assert await heard("no_answer") is None and await heard("busy") == "c"
    # Deleting the busy greeting: busy callers hear the no-answer greeting again.
    assert (await patch(user, ids[0], {"active": True})).status_code == 200
    assert (await user.delete(f"/me/greetings/{ids[2]}")).status_code == 204
    assert await heard("busy") == "a"
    refused = await patch(user, ids[0], {"active_busy": "sometimes"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "active_busy"]
    async with exchange.state.sessions() as session:
        events = (await session.execute(select(Event).where(Event.user_id == user.id).order_by(Event.id))).scalars()
        payloads = [(e.type, e.payload) for e in events if e.type.startswith("greeting.")]
    assert ("greeting.changed", {"id": ids[1], "name": "b", "active": False, "active_busy": True}) in payloads
    assert ("greeting.deleted", {"id": ids[2], "was_active": False, "was_active_busy": True}) in payloads


@pytest.mark.parametrize("column", ["active", "active_busy"])
async def test_the_database_refuses_two_active_greetings(
    make_user: UserFactory, exchange: Exchange, column: str
) -> None:
    user = await make_user()
    for name in ("a", "b"):
        assert (await upload(user, sine(), name=name)).status_code == 201
    async with exchange.state.sessions() as session:
        rows = list((await session.execute(select(Greeting).order_by(Greeting.id))).scalars())
        setattr(rows[0], column, True)
        setattr(rows[1], column, True)
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_bad_uploads_are_refused_naming_the_file(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    not_audio = await upload(user, b"%PDF-1.7 this is a document, not a recording", filename="cv.pdf")
    assert not_audio.status_code == 422
    assert not_audio.json()["detail"][0]["loc"] == ["body", "file"]
    assert "not an audio file" in not_audio.json()["detail"][0]["msg"]

    too_long = await upload(user, sine(seconds=181, rate=8000, format="FLAC"), filename="long.flac")
    assert too_long.status_code == 422
    assert "longer than 3 minutes" in too_long.json()["detail"][0]["msg"]

    too_large = await upload(user, b"RIFF" + bytes(10 * 1024 * 1024), filename="huge.wav")
    assert too_large.status_code == 413
    assert "file" in too_large.json()["detail"]

    # Refused from the Content-Length alone, before the form is parsed.
    huge = await upload(user, bytes(11 * 1024 * 1024), filename="huge.wav")
    assert huge.status_code == 413

    not_a_form = await user.post("/me/greetings", json={"file": "hello"})
    assert not_a_form.status_code in (400, 422)
    two_files = await user.client.post(
        "/api/v1/me/greetings",
        headers=user.headers,
        files=[("file", ("a.wav", sine(), "audio/wav")), ("file", ("b.wav", sine(), "audio/wav"))],
    )
    assert two_files.status_code in (400, 422)
    long_name = await upload(user, sine(), name="x" * 101)
    assert long_name.status_code == 422 and long_name.json()["detail"][0]["loc"] == ["body", "name"]

    silent = await upload(user, sine(0.0), filename="silence.wav")
    assert silent.status_code == 422 and "silent" in silent.json()["detail"][0]["msg"]

    missing = await user.client.post("/api/v1/me/greetings", headers=user.headers, data={"name": "x"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "file"]

    bad_name = await patch(user, 1, {"name": ""})
    assert bad_name.status_code == 422 and bad_name.json()["detail"][0]["loc"] == ["body", "name"]

    assert (await user.get("/me/greetings")).json()["greetings"] == []
    assert not [p for p in (exchange.state.settings.data_dir / "media").rglob("*") if p.is_file()]


async def test_unlicensed_user_gets_403_everywhere(make_user: UserFactory) -> None:
    user = await make_user(["do-not-disturb"])
    for response in (
        await user.get("/me/greetings"),
        await upload(user, sine()),
        await user.get("/me/greetings/1/audio"),
        await patch(user, 1, {"name": "x"}),
        await user.delete("/me/greetings/1"),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "not_licensed"


async def test_another_user_can_neither_see_play_rename_activate_nor_delete(make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    greeting = (await upload(alice, sine(), name="Alice")).json()
    assert (await bob.get("/me/greetings")).json()["greetings"] == []
    for target in (greeting["id"], greeting["id"] + 1000):
        for response in (
            await bob.get(f"/me/greetings/{target}/audio"),
            await patch(bob, target, {"name": "Bob's now"}),
            await patch(bob, target, {"active": True}),
            await bob.delete(f"/me/greetings/{target}"),
        ):
            # Someone else's greeting and one that does not exist answer exactly alike.
            assert (response.status_code, response.json()) == (404, {"detail": "no such greeting", "code": "not_found"})
    [kept] = (await alice.get("/me/greetings")).json()["greetings"]
    assert (kept["name"], kept["active"]) == ("Alice", False)
    assert (await alice.get(f"/me/greetings/{greeting['id']}/audio")).status_code == 200


@pytest.mark.parametrize("field", ["active", "active_busy"])
async def test_two_devices_choosing_at_once_leave_one_active(make_user: UserFactory, field: str) -> None:
    user = await make_user()
    ids = [(await upload(user, sine(), name=name)).json()["id"] for name in ("a", "b", "c")]
    for _round in range(3):
        responses = await asyncio.gather(*(patch(user, greeting_id, {field: True}) for greeting_id in ids))
        # Each request either won or was told to retry; never two active greetings.
        assert all(r.status_code in (200, 409) for r in responses), [r.text for r in responses]
        active = [g["id"] for g in (await user.get("/me/greetings")).json()["greetings"] if g[field]]
        assert len(active) == 1


async def test_renaming_and_choosing_at_once_never_deadlocks(make_user: UserFactory) -> None:
    """Each request renames its greeting (locking that row) and then chooses it for both cases (which switches
    the others off): without one lock taken first in every such request, two of them each held a row the other
    needed and PostgreSQL aborted one with a deadlock (a 500)."""
    user = await make_user()
    ids = [(await upload(user, sine(), name=name)).json()["id"] for name in ("a", "b", "c", "d")]
    for round_ in range(4):
        bodies = [{"name": f"r{round_}-{n}", "active": True, "active_busy": True} for n in range(len(ids))]
        responses = await asyncio.gather(*(patch(user, i, body) for i, body in zip(ids, bodies, strict=True)))
        assert [r.status_code for r in responses] == [200] * len(ids), [r.text for r in responses]
        listing = (await user.get("/me/greetings")).json()["greetings"]
        assert sum(g["active"] for g in listing) == 1 and sum(g["active_busy"] for g in listing) == 1
        assert sorted(g["name"] for g in listing) == sorted(b["name"] for b in bodies)


async def test_the_migration_keeps_the_active_greeting_as_the_no_answer_one(
    make_user: UserFactory, exchange: Exchange
) -> None:
    """0005_greetings down and up again on a database with greetings: the chosen one stays the no-answer
    greeting, nobody has a busy greeting, and the new index refuses a second busy one."""
    user = await make_user()
    ids = [(await upload(user, sine(), name=name)).json()["id"] for name in ("a", "b")]
    assert (await patch(user, ids[1], {"active": True, "active_busy": True})).status_code == 200
    migration = importlib.import_module("hipper.store.migrations.versions.0005_greetings_busy")

    def run(connection: Connection, step: Callable[[], None]) -> None:
        with Operations.context(MigrationContext.configure(connection)):
            step()

    engine = exchange.state.engine
    async with engine.begin() as connection:
        await connection.run_sync(run, migration.downgrade)
        columns = await connection.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("greetings")])
        assert "active_busy" not in columns and "active" in columns
        await connection.run_sync(run, migration.upgrade)
    async with exchange.state.sessions() as session:
        rows = (await session.execute(select(Greeting).order_by(Greeting.id))).scalars()
        assert [(g.name, g.active, g.active_busy) for g in rows] == [("a", False, False), ("b", True, False)]
    assert (await patch(user, ids[0], {"active_busy": True})).json()["active_busy"] is True
    async with exchange.state.sessions() as session:
        rows = list((await session.execute(select(Greeting).order_by(Greeting.id))).scalars())
        rows[1].active_busy = True
        with pytest.raises(IntegrityError):
            await session.commit()
