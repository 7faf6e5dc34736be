"""Call log rules (SPEC C1, M5): what one row says about one call for one user, and what "recent" means.

Every call ends in exactly one row per involved user: `placed` (the user called), `received` (the user
answered) or `missed` (it rang the user and nobody answered there). The app shows the last 20 of each kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hipper.domain.services.base import first_error

CallKind = Literal["placed", "received", "missed"]
CALL_KINDS: tuple[CallKind, ...] = get_args(CallKind)
RECENT_PER_KIND = 20
# One delete request clears at most this many rows: the app's edit mode selects from 60 shown items.
MAX_DELETE = 500


class CallRecord(BaseModel):
    """What call processing hands to `store.call_logs.record_call`; validated before it is written."""

    model_config = ConfigDict(extra="forbid")

    kind: CallKind
    call_id: str = Field("", max_length=200)
    remote_number: str = Field("", max_length=64)
    remote_name: str = Field("", max_length=200)
    local_identity: str = Field("", max_length=64)
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str = Field("", max_length=40)
    plan: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CallRecord:
        if self.started_at.tzinfo is None:
            raise ValueError("started_at must carry a time zone")
        if self.kind == "missed" and self.answered_at is not None:
            raise ValueError("a missed call was not answered")
        if self.answered_at is not None and self.answered_at < self.started_at:
            raise ValueError("answered_at is before started_at")
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


def validate_record(**fields: Any) -> CallRecord:
    try:
        return CallRecord.model_validate(fields)
    except ValidationError as exc:
        raise first_error(exc) from exc


def duration_seconds(answered_at: datetime | None, ended_at: datetime | None) -> int:
    """Talk time: from the answer to the hang-up; a call nobody answered lasted 0 s."""
    if answered_at is None or ended_at is None:
        return 0
    return max(0, int((ended_at - answered_at).total_seconds()))
