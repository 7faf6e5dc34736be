"""Voicemail greetings (SPEC H2): per user at most one active for "no answer" and one for "busy"; their files
are what callers hear (H3, `hipper.domain.greetings`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from hipper.domain.greetings import GreetingCase, chosen_greeting
from hipper.store import media_files
from hipper.store.events import add_event
from hipper.store.models import Greeting, User

MEDIA_KIND = "greetings"
MAX_GREETINGS = 20


def _event(greeting: Greeting) -> dict[str, object]:
    return {"id": greeting.id, "name": greeting.name, "active": greeting.active, "active_busy": greeting.active_busy}


def _column(case: GreetingCase) -> InstrumentedAttribute[bool]:
    return Greeting.active_busy if case == "busy" else Greeting.active


def is_active(greeting: Greeting, case: GreetingCase) -> bool:
    return greeting.active_busy if case == "busy" else greeting.active


async def list_for(session: AsyncSession, user_id: int) -> list[Greeting]:
    result = await session.execute(
        select(Greeting).where(Greeting.user_id == user_id).order_by(Greeting.created_at, Greeting.id)
    )
    return list(result.scalars())


async def count_for(session: AsyncSession, user_id: int) -> int:
    result = await session.execute(select(func.count()).select_from(Greeting).where(Greeting.user_id == user_id))
    return int(result.scalar_one())


async def get_for(session: AsyncSession, user_id: int, greeting_id: int) -> Greeting | None:
    """The greeting if it is the user's; None both when it does not exist and when it is someone else's."""
    result = await session.execute(select(Greeting).where(Greeting.user_id == user_id, Greeting.id == greeting_id))
    return result.scalar_one_or_none()


async def active_for(session: AsyncSession, user_id: int, case: GreetingCase = "no_answer") -> Greeting | None:
    """The greeting callers hear in `case`, or None for the exchange's system greeting."""
    result = await session.execute(
        select(Greeting).where(Greeting.user_id == user_id, or_(Greeting.active, Greeting.active_busy))
    )
    rows = list(result.scalars())
    no_answer = next((row.id for row in rows if row.active), None)
    busy = next((row.id for row in rows if row.active_busy), None)
    chosen = chosen_greeting(case, no_answer, busy)
    return next((row for row in rows if row.id == chosen), None)


async def add(
    session: AsyncSession,
    data_dir: Path,
    user_id: int,
    name: str,
    wav: bytes,
    duration_ms: int,
    *,
    published: Callable[[], None] | None = None,
) -> Greeting:
    """Store a new (inactive) greeting: the file durably first, then the row in one commit."""
    relative = media_files.new_relative_path(MEDIA_KIND, user_id)
    await media_files.write_atomically(data_dir, relative, wav)
    row = Greeting(
        user_id=user_id,
        name=name,
        duration_ms=duration_ms,
        active=False,
        media_path=relative,
        created_at=datetime.now(UTC),
    )
    try:
        session.add(row)
        await session.flush()
        add_event(session, user_id, "greeting.added", _event(row))
    except BaseException:
        # Nothing was committed: the file goes again.
        await session.rollback()
        await media_files.remove(data_dir, [relative])
        raise
    # Outside the try: a COMMIT that fails may have committed all the same (the connection dropped after the
    # server committed, the task was cancelled while it ran), and removing the file would then leave a row
    # without it. The file stays; the orphan sweep (store/media_sweep.py) removes it if no row names it.
    await session.commit()
    if published is not None:
        published()
    return row


async def lock_greetings(session: AsyncSession, user_id: int) -> None:
    """Serialise changes to one user's greetings: lock the user's row, before any greeting row is touched.

    Every change that touches greeting rows of a user (`rename`, `set_active`, `delete_one`) calls this first,
    in its transaction. Two requests at once used to lock the greeting rows themselves, each in its own order: a
    rename took its row, then `set_active` wanted all the others, while a second request did the same the other
    way round — a PostgreSQL deadlock (one of them got a 500). One parent row taken first cannot form a cycle:
    the second request waits for the first to commit and then sees its choice. `FOR NO KEY UPDATE` rather than
    `FOR UPDATE`: it does not block the `FOR KEY SHARE` that inserting rows which refer to the user (call logs,
    events) takes, so calls are never held up by a greeting change. SQLite ignores the clause: its single writer
    already serialises (the first UPDATE opens the write transaction and reads the latest data).
    """
    await session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


async def rename(session: AsyncSession, greeting: Greeting, name: str) -> None:
    await lock_greetings(session, greeting.user_id)
    greeting.name = name
    add_event(session, greeting.user_id, "greeting.changed", _event(greeting))


async def set_active(session: AsyncSession, greeting: Greeting, active: bool, case: GreetingCase = "no_answer") -> None:
    """Make `greeting` the one active greeting for `case` (or none). The caller commits.

    Two devices may choose at the same moment. On PostgreSQL the user's row is locked first (`lock_greetings`),
    so the second chooser waits for the first and then sees its choice. The changes themselves are UPDATE
    statements rather than edits of loaded rows, so they act on the newest committed state (on SQLite the first
    UPDATE opens the write transaction and so reads the latest data). The others are switched off before this
    one is switched on; a partial unique index per case (migrations 0002_lists, 0005_greetings) is the last guard.
    """
    user_id = greeting.user_id
    column = _column(case)
    await lock_greetings(session, user_id)
    if active:
        await session.execute(
            update(Greeting)
            .where(Greeting.user_id == user_id, Greeting.id != greeting.id, column)
            .values({column: False})
            .execution_options(synchronize_session="fetch")
        )
    await session.execute(
        update(Greeting)
        .where(Greeting.user_id == user_id, Greeting.id == greeting.id)
        .values({column: active})
        .execution_options(synchronize_session="fetch")
    )
    setattr(greeting, column.key, active)
    add_event(session, user_id, "greeting.changed", _event(greeting))


async def delete_one(session: AsyncSession, greeting: Greeting) -> str:
    """Delete the row; returns its media path to unlink after the commit."""
    await lock_greetings(session, greeting.user_id)
    await session.execute(delete(Greeting).where(Greeting.id == greeting.id, Greeting.user_id == greeting.user_id))
    was = {"was_active": greeting.active, "was_active_busy": greeting.active_busy}
    add_event(session, greeting.user_id, "greeting.deleted", {"id": greeting.id, **was})
    return greeting.media_path
