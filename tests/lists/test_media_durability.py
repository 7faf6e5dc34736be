"""A row never names a missing file: a failed COMMIT keeps the file (the row may exist after all), a failure
before it removes the file; files no row names — after a crash, a failed commit, a deleted user — are swept."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from hipper.api.state import AppState
from hipper.server import housekeeping_once
from hipper.store import admin, greetings, media_files, media_sweep, recordings, voicemails
from hipper.store.models import User, Voicemail
from tests.conftest import UserFactory
from tests.lists.conftest import telephony_wav

HOUR = 3600.0


def files_under(data_dir: Path) -> list[str]:
    root = data_dir / media_files.MEDIA_DIR
    return sorted(p.relative_to(data_dir).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def age(data_dir: Path, relative: str, seconds: float) -> None:
    path = data_dir / relative
    then = time.time() - seconds
    os.utime(path, (then, then))


async def refuse_the_next_commit(state: AppState, session: object) -> int | None:
    """Make the COMMIT of this session's voicemail insert fail in the database itself, after the row was
    flushed. Returns the user id to deposit for."""
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    if state.engine.dialect.name == "sqlite":
        # Foreign keys checked at COMMIT, for a user that does not exist.
        await session.execute(text("PRAGMA defer_foreign_keys = ON"))
        return 999_999
    async with state.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON voicemails "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    return None


async def test_a_failed_commit_keeps_the_file_and_the_sweep_removes_it(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    data_dir = state.settings.data_dir
    user = await make_user()
    async with state.sessions() as session:
        owner = await refuse_the_next_commit(state, session) or user.id
        with pytest.raises(DBAPIError):
            await voicemails.deposit(session, data_dir, owner, telephony_wav(), received_at=datetime.now(UTC))
    if state.engine.dialect.name == "postgresql":
        async with state.engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER refuse_at_commit ON voicemails"))
    async with state.sessions() as session:
        # Nothing of the failed transaction is seen (SQLite keeps a transaction whose COMMIT failed: the
        # connection is dropped rather than handed to the next session as it is, store/db.py) ...
        assert (await session.execute(select(Voicemail))).scalars().all() == []
        # ... and nothing holds the write lock: the next message is stored at once.
        async with asyncio.timeout(3):
            stored = await voicemails.deposit(
                session, data_dir, user.id, telephony_wav(), received_at=datetime.now(UTC)
            )
    async with state.sessions() as session:
        assert [row.id for row in (await session.execute(select(Voicemail))).scalars()] == [stored.id]
        await voicemails.delete_many(session, user.id, [stored.id])
        await session.commit()
    await media_files.remove(data_dir, [stored.media_path])
    # The COMMIT failed, so the row may or may not exist: the file stays rather than risk a row without it.
    [kept] = files_under(data_dir)
    assert kept.startswith(f"media/voicemail/{owner}/")
    async with state.sessions() as session:
        assert await media_sweep.sweep_orphans(session, data_dir) == []  # not an hour old: a commit may follow
        age(data_dir, kept, 2 * HOUR)
        assert await media_sweep.sweep_orphans(session, data_dir) == [kept]
    assert files_under(data_dir) == []


async def test_a_failure_before_the_commit_removes_the_file(app: FastAPI) -> None:
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        with pytest.raises(DBAPIError):  # no such user: the foreign key refuses the row at once
            await voicemails.deposit(
                session, state.settings.data_dir, 999_999, telephony_wav(), received_at=datetime.now(UTC)
            )
    assert files_under(state.settings.data_dir) == []


async def test_the_sweep_keeps_what_rows_name_and_removes_a_deleted_users_files(
    app: FastAPI, make_user: UserFactory
) -> None:
    state: AppState = app.state.hipper
    data_dir = state.settings.data_dir
    anna, bram = await make_user(), await make_user()
    kept: list[str] = []
    gone: list[str] = []
    for user, paths in ((anna, kept), (bram, gone)):
        async with state.sessions() as session:
            message = await voicemails.deposit(
                session, data_dir, user.id, telephony_wav(), received_at=datetime.now(UTC)
            )
        async with state.sessions() as session:
            greeting = await greetings.add(session, data_dir, user.id, "Hallo", telephony_wav(), 1000)
        async with state.sessions() as session:
            recording = await recordings.add(
                session, data_dir, user.id, telephony_wav(), call_id="c", remote_number="+31612345678",
                started_at=datetime.now(UTC), duration_ms=1000,
            )  # fmt: skip
        paths += [message.media_path, greeting.media_path, recording.media_path]
    # A row whose path is spelled differently still names its file.
    odd = f"media/voicemail/{anna.id}/odd.wav"
    (data_dir / odd).write_bytes(telephony_wav())
    async with state.sessions() as session:
        session.add(
            Voicemail(
                user_id=anna.id, caller_number="", caller_name="", received_at=datetime.now(UTC), duration_ms=1000,
                heard=False, media_path=f"./media/voicemail/{anna.id}/../{anna.id}/odd.wav",
            )
        )  # fmt: skip
        await session.commit()
    kept.append(odd)
    # A temporary file of a write a killed process never finished, and something that is not ours.
    temp = f"media/greetings/{anna.id}/{media_files.TEMP_PREFIX}abc"
    (data_dir / temp).write_bytes(b"half")
    foreign = "media/other/notes.txt"
    (data_dir / foreign).parent.mkdir(parents=True)
    (data_dir / foreign).write_bytes(b"mine")
    async with state.sessions() as session:
        user = await session.get(User, bram.id)
        assert user is not None
        # Bram's rows go with him (foreign keys); the process stops before it unlinks his files.
        assert sorted(await admin.delete_user(session, user)) == sorted(gone)
        await session.commit()
    for relative in [*kept, *gone, temp, foreign]:
        age(data_dir, relative, 2 * HOUR)
    async with state.sessions() as session:
        removed = await media_sweep.sweep_orphans(session, data_dir)
    assert sorted(removed) == sorted([*gone, temp])
    assert files_under(data_dir) == sorted([*kept, foreign])


async def test_serve_sweeps_too(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    data_dir = state.settings.data_dir
    user = await make_user()
    orphan = media_files.new_relative_path(voicemails.MEDIA_KIND, user.id)
    await media_files.write_atomically(data_dir, orphan, telephony_wav())
    age(data_dir, orphan, 2 * HOUR)
    await housekeeping_once(state)
    assert files_under(data_dir) == []


def test_every_new_directory_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fresh data directory the first file makes media/, media/<kind>/ and the user's directory: each new
    entry is durable only once its parent directory is synced (and the file's own directory after the rename)."""
    synced: list[Path] = []
    real = media_files._fsync_directory

    def spy(directory: Path) -> None:
        synced.append(directory)
        real(directory)

    monkeypatch.setattr(media_files, "_fsync_directory", spy)
    final = media_files.write_atomically_sync(tmp_path, "media/voicemail/7/x.wav", b"data")
    assert final.read_bytes() == b"data"
    assert synced == [tmp_path, tmp_path / "media", tmp_path / "media/voicemail", tmp_path / "media/voicemail/7"]
    synced.clear()
    media_files.write_atomically_sync(tmp_path, "media/voicemail/7/y.wav", b"data")
    assert synced == [tmp_path / "media/voicemail/7"]


async def test_a_file_that_cannot_be_removed_does_not_fail_the_delete(app: FastAPI, make_user: UserFactory) -> None:
    """The row's removal is committed first; a file that then cannot be unlinked is logged and left for the
    sweep, rather than answering 500 for a delete that happened."""
    state: AppState = app.state.hipper
    data_dir = state.settings.data_dir
    user = await make_user()
    async with state.sessions() as session:
        greeting = await greetings.add(session, data_dir, user.id, "Hallo", telephony_wav(), 1000)
    path = data_dir / greeting.media_path
    path.unlink()
    path.mkdir()  # unlink() of a directory fails (EISDIR), whoever we run as
    (path / "inside").write_bytes(b"x")
    response = await user.delete(f"/me/greetings/{greeting.id}")
    assert response.status_code == 204, response.text
    assert (await user.get("/me/greetings")).json()["greetings"] == []


async def test_deleting_a_user_removes_their_files_after_the_commit(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    data_dir = state.settings.data_dir
    root = await make_user(role="admin")
    anna, bram = await make_user(), await make_user()
    for user in (anna, bram):
        async with state.sessions() as session:
            await voicemails.deposit(session, data_dir, user.id, telephony_wav(), received_at=datetime.now(UTC))
        async with state.sessions() as session:
            await greetings.add(session, data_dir, user.id, "Hallo", telephony_wav(), 1000)
    response = await root.delete(f"/admin/users/{bram.id}")
    assert response.status_code == 204, response.text
    left = files_under(data_dir)
    assert len(left) == 2 and all(path.split("/")[2] == str(anna.id) for path in left)
