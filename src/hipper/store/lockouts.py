"""Lockouts after wrong passwords and PINs, counted atomically in the database (docs/security.md "Lockouts").

A guess first *claims* an attempt — one `UPDATE … WHERE not locked … RETURNING`, committed before the slow hash
is checked — and only a claimed attempt is checked at all. Counting afterwards (read, hash, then write) let
parallel guesses all read "not locked" and all be checked: 59 parallel wrong passwords and then the right one
got in with a limit of 5. With the claim, the limit-th claim sets the lock itself, so however many guesses run
at once, at most `limit` of them are ever checked per lockout period, on every node (the row is the counter).

The statement is atomic on both databases: SQLite runs one writer at a time, and PostgreSQL re-evaluates the
WHERE clause and the SET expressions on the newest row version when a concurrent UPDATE of the row committed
first (READ COMMITTED), so two claims can never both see the same count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import case, literal, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from hipper.store.models import User


class Counter(Enum):
    """Which secret: the login password (also the password change) or the PIN (step-up, voicemail by phone)."""

    PASSWORD = "password"
    PIN = "pin"


@dataclass(frozen=True)
class Limit:
    attempts: int
    lockout_seconds: int


def _columns(counter: Counter) -> tuple[InstrumentedAttribute[int], InstrumentedAttribute[datetime | None]]:
    if counter is Counter.PASSWORD:
        return User.failed_logins, User.locked_until
    return User.failed_pins, User.pin_locked_until


async def claim(session: AsyncSession, user_id: int, counter: Counter, limit: Limit, now: datetime) -> bool:
    """Count one attempt before it is checked; False (nothing counted) while the user is locked.

    The claim that reaches the limit locks the user for `lockout_seconds` at once; a lock that has run out starts
    the count again. Commits what `session` holds first: the statement then runs on its own in autocommit, so the
    claim holds before the caller spends time on the hash, and SQLite's write lock is held for that one statement
    only — not across event-loop turns until a COMMIT, which under a flood of guesses made the waiting writers
    give up ("database is locked"). The session's connection is the only one used (a second one per request ran
    the pool dry under the same flood).
    """
    failures, locked_until = _columns(counter)
    expired = locked_until.is_not(None) & (locked_until <= now)
    counted = case((expired, literal(1)), else_=failures + 1)
    until = now + timedelta(seconds=limit.lockout_seconds)
    statement = (
        update(User)
        .where(User.id == user_id, or_(locked_until.is_(None), locked_until <= now))
        .values({failures: counted, locked_until: case((counted >= limit.attempts, until), else_=None)})
        .returning(failures)
    )
    await session.commit()
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    row = (await connection.execute(statement)).first()
    await session.commit()  # hands the autocommit connection back; the session's next work gets a normal one
    return row is not None


async def succeeded(session: AsyncSession, user_id: int, counter: Counter) -> None:
    """The secret was right: the count starts again (also lifting the lock its own claim may have set).

    Not committed here: the caller commits it with whatever the success does (a new session, the step-up).
    """
    failures, locked_until = _columns(counter)
    statement = (
        update(User)
        .where(User.id == user_id)
        .values({failures: 0, locked_until: None})
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)


async def check(
    sessions: async_sessionmaker[AsyncSession],
    user_id: int,
    counter: Counter,
    limit: Limit,
    now: datetime,
    verify: Callable[[], Awaitable[bool]],
) -> bool | None:
    """Claim an attempt in a session of its own, then verify: True right, False wrong, None locked (not checked).

    For callers without a request session (the voicemail menu on a call); a right secret resets the count. A
    locked user's secret is still hashed (the answer is None whatever it gives), so the time taken does not
    tell a locked user from a wrong guess.
    """
    async with sessions() as session:
        claimed = await claim(session, user_id, counter, limit, now)
    if not claimed:
        await verify()
        return None
    if not await verify():
        return False
    async with sessions() as session:
        await succeeded(session, user_id, counter)
        await session.commit()
    return True
