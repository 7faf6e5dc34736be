"""GET /me/call-logs and POST /me/call-logs/delete: the recent calls (SPEC C1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from hipper.api.deps import MAX_ROW_ID, CurrentUser, Session, State, commit
from hipper.domain.call_logs import CALL_KINDS, MAX_DELETE, CallKind, duration_seconds
from hipper.domain.moments import aware
from hipper.domain.numbers import is_dutch_mobile
from hipper.store import call_logs
from hipper.store.models import CallLog

router = APIRouter(prefix="/me/call-logs", tags=["calls"])


BodyRowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class CallLogItem(BaseModel):
    id: int
    kind: CallKind
    remote_number: str
    remote_name: str
    local_identity: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int
    outcome: str
    whatsapp: bool


class CallLogList(BaseModel):
    calls: list[CallLogItem]


class CallLogIds(BaseModel):
    ids: list[BodyRowId] = Field(min_length=1, max_length=MAX_DELETE, description="ids of the user's own calls")


def _item(row: CallLog) -> CallLogItem:
    answered = aware(row.answered_at) if row.answered_at else None
    ended = aware(row.ended_at) if row.ended_at else None
    return CallLogItem(
        id=row.id,
        kind=row.direction,  # written only through validated call records (store/call_logs.py)
        remote_number=row.remote_number,
        remote_name=row.remote_name,
        local_identity=row.local_identity,
        started_at=aware(row.started_at),
        answered_at=answered,
        ended_at=ended,
        duration_seconds=duration_seconds(answered, ended),
        outcome=row.outcome,
        whatsapp=is_dutch_mobile(row.remote_number),
    )


@router.get("", response_model=CallLogList)
async def list_calls(
    auth: CurrentUser,
    session: Session,
    kind: CallKind | None = Query(None, description="only placed, received or missed calls"),
) -> CallLogList:
    """The last 20 (RECENT_PER_KIND) received, placed and missed calls (each kind on its own), newest first."""
    rows = await call_logs.recent(session, auth.user.id, [kind] if kind else CALL_KINDS)
    return CallLogList(calls=[_item(row) for row in rows])


@router.post("/delete", status_code=204, response_class=Response)
async def delete_calls(body: CallLogIds, auth: CurrentUser, session: Session, state: State) -> Response:
    """Delete several calls at once (irreversible). Always 204: ids that are not the user's are ignored, and
    the answer does not tell whether they exist."""
    if await call_logs.delete_many(session, auth.user.id, body.ids):
        await commit(session, state)
    return Response(status_code=204)
