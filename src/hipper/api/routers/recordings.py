"""/me/recordings: the user's call recordings (SPEC I) — list, play, delete. Strictly the owner's own: another
user's recording answers 404, the same as one that does not exist."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from hipper.api.deps import CurrentUser, RowId, Session, State, commit
from hipper.domain.errors import NotLicensed
from hipper.domain.licences import licensed_services
from hipper.domain.moments import aware
from hipper.store import media_files, recordings
from hipper.store.models import Recording

LICENCE = "call-recording"


async def _licensed(auth: CurrentUser) -> None:
    # Recordings belong to the call-recording service: without its licence the list is not there at all.
    if LICENCE not in licensed_services(frozenset(auth.user.licences or ())):
        raise NotLicensed(LICENCE)


router = APIRouter(prefix="/me/recordings", tags=["recordings"], dependencies=[Depends(_licensed)])

NOT_FOUND = "no such recording"


class RecordingItem(BaseModel):
    id: int
    remote_number: str
    started_at: datetime
    duration_ms: int
    audio_url: str


class RecordingList(BaseModel):
    recordings: list[RecordingItem]


def _item(row: Recording) -> RecordingItem:
    return RecordingItem(
        id=row.id,
        remote_number=row.remote_number,
        started_at=aware(row.started_at),
        duration_ms=row.duration_ms,
        audio_url=f"/api/v1/me/recordings/{row.id}/audio",
    )


@router.get("", response_model=RecordingList)
async def list_recordings(auth: CurrentUser, session: Session) -> RecordingList:
    """The user's recordings, newest first."""
    rows = await recordings.list_for(session, auth.user.id)
    return RecordingList(recordings=[_item(row) for row in rows])


@router.get(
    "/{recording_id}/audio",
    response_class=FileResponse,
    responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "the requested byte range"}},
)
async def recording_audio(recording_id: RowId, auth: CurrentUser, session: Session, state: State) -> FileResponse:
    """The recording as 8 kHz mono WAV; supports Range requests."""
    row = await recordings.get_for(session, auth.user.id, recording_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    path = media_files.resolve(state.settings.data_dir, row.media_path)
    if not path.is_file():
        raise HTTPException(404, "the recording's audio is missing")
    stamp = aware(row.started_at).strftime("%Y%m%d-%H%M")
    return FileResponse(path, media_type="audio/wav", filename=f"recording-{stamp}-{row.id}.wav")


@router.delete("/{recording_id}", status_code=204, response_class=Response)
async def delete_recording(recording_id: RowId, auth: CurrentUser, session: Session, state: State) -> Response:
    """Delete a recording and its audio (irreversible)."""
    row = await recordings.get_for(session, auth.user.id, recording_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    path = await recordings.delete_one(session, row)
    await commit(session, state)
    # Row first, file after: a crash in between leaves an orphan file, never a row without its audio.
    await media_files.remove(state.settings.data_dir, [path])
    return Response(status_code=204)
