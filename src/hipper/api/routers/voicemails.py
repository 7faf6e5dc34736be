"""/me/voicemails: the voicemail list, playing, heard/new and deleting (SPEC C2). Licence: `voicemail`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from hipper.api.deps import MAX_ROW_ID, Authenticated, CurrentUser, RowId, Session, State, commit
from hipper.domain.errors import NotLicensed
from hipper.domain.licences import licensed_services
from hipper.domain.moments import aware
from hipper.domain.numbers import is_dutch_mobile
from hipper.store import media_files, voicemails
from hipper.store.models import Voicemail

router = APIRouter(prefix="/me/voicemails", tags=["voicemail"])

LICENCE = "voicemail"
MAX_IDS = 500
NOT_FOUND = "no such voicemail message"


def require_voicemail(auth: Authenticated) -> None:
    if LICENCE not in licensed_services(frozenset(auth.user.licences or ())):
        raise NotLicensed(LICENCE)


BodyRowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class VoicemailItem(BaseModel):
    id: int
    caller_number: str
    caller_name: str
    received_at: datetime
    duration_ms: int
    heard: bool
    whatsapp: bool
    audio_url: str


class VoicemailList(BaseModel):
    new_count: int
    messages: list[VoicemailItem]


class VoicemailChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heard: bool


class VoicemailIds(BaseModel):
    ids: list[BodyRowId] = Field(min_length=1, max_length=MAX_IDS, description="ids of the user's own messages")


def _item(row: Voicemail) -> VoicemailItem:
    return VoicemailItem(
        id=row.id,
        caller_number=row.caller_number,
        caller_name=row.caller_name,
        received_at=aware(row.received_at),
        duration_ms=row.duration_ms,
        heard=row.heard,
        whatsapp=is_dutch_mobile(row.caller_number),
        audio_url=f"/api/v1/me/voicemails/{row.id}/audio",
    )


@router.get("", response_model=VoicemailList)
async def list_voicemails(
    auth: CurrentUser,
    session: Session,
    status: Literal["new", "heard"] | None = Query(None, description="only new or only heard messages"),
) -> VoicemailList:
    """The user's messages, newest first, and how many are new (the overview's banner, SPEC B1)."""
    require_voicemail(auth)
    heard = None if status is None else status == "heard"
    rows = await voicemails.list_for(session, auth.user.id, heard)
    return VoicemailList(
        new_count=await voicemails.count_new(session, auth.user.id), messages=[_item(row) for row in rows]
    )


@router.get(
    "/{voicemail_id}/audio",
    response_class=FileResponse,
    responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "the requested byte range"}},
)
async def voicemail_audio(voicemail_id: RowId, auth: CurrentUser, session: Session, state: State) -> FileResponse:
    """The message as 8 kHz mono WAV; supports Range requests (seeking in the app's player)."""
    require_voicemail(auth)
    row = await voicemails.get_for(session, auth.user.id, voicemail_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    path = media_files.resolve(state.settings.data_dir, row.media_path)
    if not path.is_file():
        raise HTTPException(404, "the message's audio is missing")
    stamp = aware(row.received_at).strftime("%Y%m%d-%H%M")
    return FileResponse(path, media_type="audio/wav", filename=f"voicemail-{stamp}-{row.id}.wav")


@router.patch("/{voicemail_id}", response_model=VoicemailItem)
async def change_voicemail(
    voicemail_id: RowId, body: VoicemailChange, auth: CurrentUser, session: Session, state: State
) -> VoicemailItem:
    """Mark a message heard or new again."""
    require_voicemail(auth)
    row = await voicemails.get_for(session, auth.user.id, voicemail_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    if row.heard != body.heard:
        await voicemails.mark(session, auth.user.id, [row.id], body.heard)
        await commit(session, state)
        await session.refresh(row)
    return _item(row)


@router.post("/delete", status_code=204, response_class=Response)
async def delete_voicemails(body: VoicemailIds, auth: CurrentUser, session: Session, state: State) -> Response:
    """Delete several messages and their audio (irreversible). Always 204: ids that are not the user's are
    ignored, and the answer does not tell whether they exist."""
    require_voicemail(auth)
    paths = await voicemails.delete_many(session, auth.user.id, body.ids)
    if paths:
        await commit(session, state)
        # Rows first, files after: a crash in between leaves an orphan file, never a row without its audio.
        await media_files.remove(state.settings.data_dir, paths)
    return Response(status_code=204)
