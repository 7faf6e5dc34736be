"""The call log (SPEC C1, M5): call processing writes one row per involved user; the user reads and deletes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.call_logs import CALL_KINDS, RECENT_PER_KIND, CallKind, validate_record
from hipper.store.events import add_event
from hipper.store.models import CallLog


@dataclass(frozen=True)
class CallRecord:
    """One user's side of one call, as call processing hands it to the batch writer (store/writer.py)."""

    user_id: int
    kind: CallKind
    started_at: datetime
    call_id: str = ""
    remote_number: str = ""
    remote_name: str = ""
    local_identity: str = ""
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str = ""
    plan: dict[str, Any] | None = None
    # Further outbox events for this user, queued right after the row's own `call_log.added`.
    events: tuple[tuple[str, dict[str, Any]], ...] = ()

    def values(self) -> dict[str, Any]:
        """The row's columns, validated (raises the domain's error for a record that cannot be stored)."""
        record = validate_record(
            kind=self.kind,
            call_id=self.call_id,
            remote_number=self.remote_number,
            remote_name=self.remote_name,
            local_identity=self.local_identity,
            started_at=self.started_at,
            answered_at=self.answered_at,
            ended_at=self.ended_at,
            outcome=self.outcome,
            plan=self.plan,
        )
        return {
            "user_id": self.user_id,
            "call_id": record.call_id,
            "direction": record.kind,
            "remote_number": record.remote_number,
            "remote_name": record.remote_name,
            "local_identity": record.local_identity,
            "started_at": record.started_at,
            "answered_at": record.answered_at,
            "ended_at": record.ended_at,
            "outcome": record.outcome,
            "plan": record.plan,
        }


async def record_call(
    session: AsyncSession,
    user_id: int,
    *,
    kind: CallKind,
    started_at: datetime,
    call_id: str = "",
    remote_number: str = "",
    remote_name: str = "",
    local_identity: str = "",
    answered_at: datetime | None = None,
    ended_at: datetime | None = None,
    outcome: str = "",
    plan: dict[str, Any] | None = None,
) -> CallLog:
    """Add the row for one user's side of one call and queue its `call_log.added` event; the caller commits.
    Validated like every call record. (Call processing hands its records to the batch writer, store/writer.py;
    this is the one-off path, e.g. for seeding data.)"""
    record = CallRecord(
        user_id, kind, started_at, call_id, remote_number, remote_name, local_identity, answered_at, ended_at,
        outcome, plan,
    )  # fmt: skip
    row = CallLog(**record.values())
    session.add(row)
    await session.flush()
    add_event(session, user_id, "call_log.added", {"id": row.id, "kind": row.direction})
    return row


async def recent(session: AsyncSession, user_id: int, kinds: Sequence[CallKind] = CALL_KINDS) -> list[CallLog]:
    """Up to RECENT_PER_KIND rows of each kind, newest first (one indexed query per kind)."""
    rows: list[CallLog] = []
    for kind in kinds:
        result = await session.execute(
            select(CallLog)
            .where(CallLog.user_id == user_id, CallLog.direction == kind)
            .order_by(CallLog.started_at.desc(), CallLog.id.desc())
            .limit(RECENT_PER_KIND)
        )
        rows.extend(result.scalars())
    rows.sort(key=lambda row: (row.started_at, row.id), reverse=True)
    return rows


async def delete_many(session: AsyncSession, user_id: int, ids: Sequence[int]) -> int:
    """Delete those of `ids` that are the user's; others are left alone, silently (the caller commits)."""
    result = await session.execute(
        delete(CallLog).where(CallLog.user_id == user_id, CallLog.id.in_(list(ids))).returning(CallLog.id)
    )
    deleted = list(result.scalars())
    if deleted:
        add_event(session, user_id, "call_log.deleted", {"ids": sorted(deleted)})
    return len(deleted)
