"""Call recordings (SPEC I): written by call processing, listed, played and deleted by their owner only."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store import media_files
from hipper.store.events import add_event
from hipper.store.models import Recording

MEDIA_KIND = "recordings"


async def add(
    session: AsyncSession,
    data_dir: Path,
    user_id: int,
    wav: bytes,
    *,
    call_id: str,
    remote_number: str,
    started_at: datetime,
    duration_ms: int,
) -> Recording:
    """Store a kept recording: the WAV durably first (temp, fsync, rename), then the row in one commit."""
    relative = media_files.new_relative_path(MEDIA_KIND, user_id)
    await media_files.write_atomically(data_dir, relative, wav)
    row = Recording(
        user_id=user_id,
        call_id=call_id[:200],
        remote_number=remote_number[:64],
        started_at=started_at,
        duration_ms=duration_ms,
        media_path=relative,
    )
    try:
        session.add(row)
        await session.flush()
        add_event(session, user_id, "recording.added", {"id": row.id, "remote_number": row.remote_number})
    except BaseException:
        # Nothing was committed: the file goes again.
        await session.rollback()
        await media_files.remove(data_dir, [relative])
        raise
    # Outside the try: a COMMIT that fails may have committed all the same (the connection dropped after the
    # server committed, the task was cancelled while it ran), and removing the file would then leave a row
    # without it. The file stays; the orphan sweep (store/media_sweep.py) removes it if no row names it.
    await session.commit()
    return row


async def list_for(session: AsyncSession, user_id: int) -> list[Recording]:
    result = await session.execute(
        select(Recording).where(Recording.user_id == user_id).order_by(Recording.started_at.desc(), Recording.id.desc())
    )
    return list(result.scalars())


async def get_for(session: AsyncSession, user_id: int, recording_id: int) -> Recording | None:
    """The recording if it is the user's; None both when it does not exist and when it is someone else's."""
    result = await session.execute(select(Recording).where(Recording.user_id == user_id, Recording.id == recording_id))
    return result.scalar_one_or_none()


async def delete_one(session: AsyncSession, recording: Recording) -> str:
    """Delete the row (the caller commits, then unlinks the returned media path)."""
    await session.execute(delete(Recording).where(Recording.id == recording.id, Recording.user_id == recording.user_id))
    add_event(session, recording.user_id, "recording.deleted", {"id": recording.id})
    return recording.media_path
