"""Voicemail messages (SPEC C2, H3, M3): depositing (call processing) and the user's list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.media.audio_files import wav_duration_ms
from hipper.offload import run_cpu
from hipper.store import media_files
from hipper.store.events import add_event
from hipper.store.models import Voicemail

MEDIA_KIND = "voicemail"


async def deposit(
    session: AsyncSession,
    data_dir: Path,
    user_id: int,
    wav: bytes,
    *,
    received_at: datetime,
    duration_ms: int | None = None,
    caller_number: str = "",
    caller_name: str = "",
    published: Callable[[], None] | None = None,
) -> Voicemail:
    """Store a left message: the WAV durably first, then the row (with its event) in one commit.

    `published` is called after the commit (the event hub's wake-up), keeping "commit, then publish".
    If the row cannot be added (before the commit) the file is removed again; if the commit itself fails the
    file is left for the orphan sweep, since the row may exist after all.
    Without `duration_ms` the length is read from the WAV header; a WAV that cannot be read raises
    AudioRejected before anything is written.
    """
    measured = await run_cpu(wav_duration_ms, wav)
    if duration_ms is None:
        duration_ms = measured
    relative = media_files.new_relative_path(MEDIA_KIND, user_id)
    await media_files.write_atomically(data_dir, relative, wav)
    row = Voicemail(
        user_id=user_id,
        caller_number=caller_number,
        caller_name=caller_name,
        received_at=received_at,
        duration_ms=duration_ms,
        heard=False,
        media_path=relative,
    )
    try:
        session.add(row)
        await session.flush()
        add_event(session, user_id, "voicemail.deposited", {"id": row.id, "caller_number": caller_number})
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


async def list_for(session: AsyncSession, user_id: int, heard: bool | None = None) -> list[Voicemail]:
    query = select(Voicemail).where(Voicemail.user_id == user_id)
    if heard is not None:
        query = query.where(Voicemail.heard == heard)
    result = await session.execute(query.order_by(Voicemail.received_at.desc(), Voicemail.id.desc()))
    return list(result.scalars())


async def get_for(session: AsyncSession, user_id: int, voicemail_id: int) -> Voicemail | None:
    """The message if it is the user's; None both when it does not exist and when it is someone else's."""
    result = await session.execute(select(Voicemail).where(Voicemail.user_id == user_id, Voicemail.id == voicemail_id))
    return result.scalar_one_or_none()


async def count_new(session: AsyncSession, user_id: int) -> int:
    result = await session.execute(
        select(func.count()).select_from(Voicemail).where(Voicemail.user_id == user_id, ~Voicemail.heard)
    )
    return int(result.scalar_one())


async def mark(session: AsyncSession, user_id: int, ids: Sequence[int], heard: bool) -> list[int]:
    """Mark the user's messages among `ids` heard or new; returns the ids changed (the caller commits)."""
    result = await session.execute(
        update(Voicemail)
        .where(Voicemail.user_id == user_id, Voicemail.id.in_(list(ids)))
        .values(heard=heard)
        .returning(Voicemail.id)
    )
    changed = sorted(result.scalars())
    if changed:
        add_event(
            session,
            user_id,
            "voicemail.changed",
            {"ids": changed, "heard": heard, "new_count": await count_new(session, user_id)},
        )
    return changed


async def delete_many(session: AsyncSession, user_id: int, ids: Sequence[int]) -> list[str]:
    """Delete the user's messages among `ids`; returns their media paths to unlink after the commit."""
    result = await session.execute(
        delete(Voicemail)
        .where(Voicemail.user_id == user_id, Voicemail.id.in_(list(ids)))
        .returning(Voicemail.id, Voicemail.media_path)
    )
    removed = list(result.all())
    if removed:
        add_event(
            session,
            user_id,
            "voicemail.deleted",
            {"ids": sorted(row[0] for row in removed), "new_count": await count_new(session, user_id)},
        )
    return [row[1] for row in removed]
