"""/me/greetings: the voicemail greetings (SPEC H2). Licence: `voicemail`.

A user chooses one greeting for callers when they do not answer (`active`, the field's name from before there
were two, kept for existing clients) and one for when they are busy (`active_busy`; without one busy callers
hear the `active` one). With neither, callers hear the system greeting naming the number (docs/voicemail.md).

An upload (a file, or a recording the app made) is decoded off the event loop and stored as 8 kHz mono
16-bit WAV, the format callers hear; see `hipper.media.audio_files`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile

from hipper.api.deps import CurrentUser, RowId, Session, State, commit
from hipper.api.errors import invalid
from hipper.api.limits import max_body
from hipper.api.routers.voicemails import require_voicemail
from hipper.domain.greetings import GreetingCase
from hipper.domain.moments import aware
from hipper.media.audio_files import MAX_SECONDS, MAX_UPLOAD_BYTES, READABLE, AudioRejected, decode_upload
from hipper.offload import run_cpu
from hipper.store import greetings, media_files
from hipper.store.models import Greeting

router = APIRouter(prefix="/me/greetings", tags=["voicemail"])

NOT_FOUND = "no such greeting"
GreetingName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class GreetingItem(BaseModel):
    id: int
    name: str
    duration_ms: int
    active: bool = Field(
        description="callers hear it when you do not answer, and whenever voicemail takes a call for another "
        "reason than busy (all calls, not reachable, after the Personal Assistant)"
    )
    active_busy: bool = Field(
        description="callers hear it when you are busy (or on do not disturb); without one, the `active` greeting"
    )
    created_at: datetime
    audio_url: str


class GreetingList(BaseModel):
    greetings: list[GreetingItem]


class GreetingChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: GreetingName | None = None
    active: bool | None = Field(
        None, description="true makes this the one no-answer greeting; false: none (the system greeting)"
    )
    active_busy: bool | None = Field(
        None, description="true makes this the one busy greeting; false: none (busy callers hear the `active` one)"
    )


def _item(row: Greeting) -> GreetingItem:
    return GreetingItem(
        id=row.id,
        name=row.name,
        duration_ms=row.duration_ms,
        active=row.active,
        active_busy=row.active_busy,
        created_at=aware(row.created_at),
        audio_url=f"/api/v1/me/greetings/{row.id}/audio",
    )


@router.get("", response_model=GreetingList)
async def list_greetings(auth: CurrentUser, session: Session) -> GreetingList:
    require_voicemail(auth)
    return GreetingList(greetings=[_item(row) for row in await greetings.list_for(session, auth.user.id)])


# Multipart overhead allowed on top of the file itself (boundaries, part headers, the name field).
_FORM_OVERHEAD = 64 * 1024
_UPLOAD_SCHEMA = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": f"{READABLE}; at most {MAX_SECONDS // 60} minutes and "
                        f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB",
                    },
                    "name": {"type": "string", "maxLength": 100, "description": "defaults to the file's name"},
                },
            }
        }
    },
}


@router.post(
    "",
    response_model=GreetingItem,
    status_code=201,
    responses={413: {"description": "file larger than 10 MB"}, 422: {"description": "not audio, or too long"}},
    openapi_extra={"requestBody": _UPLOAD_SCHEMA},
)
@max_body(MAX_UPLOAD_BYTES + _FORM_OVERHEAD)
async def upload_greeting(request: Request, auth: CurrentUser, session: Session, state: State) -> Any:
    """Add a greeting from an audio file or an in-app recording; it starts inactive.

    The form is parsed here rather than by FastAPI so an oversized upload is refused from its Content-Length
    before anything is read or spooled to disk; a chunked one is cut off once it passes the limit (`max_body`).
    """
    require_voicemail(auth)
    too_large = f"file: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + _FORM_OVERHEAD:
        raise HTTPException(413, too_large)
    if await greetings.count_for(session, auth.user.id) >= greetings.MAX_GREETINGS:
        return invalid("file", f"you can keep at most {greetings.MAX_GREETINGS} greetings: delete one first")
    try:
        async with request.form(max_files=1, max_fields=2) as form:
            upload = form.get("file")
            name = form.get("name")
            if not isinstance(upload, UploadFile):
                return invalid("file", "a file is required")
            if name is not None and (not isinstance(name, str) or len(name.strip()) > 100):
                return invalid("name", "at most 100 characters")
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
            filename = upload.filename or ""
    except (AssertionError, ValueError) as exc:
        # Starlette's parser refuses a body that is no multipart form, or has more parts than allowed.
        return invalid("file", f"send the greeting as multipart/form-data with one file ({exc})")
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, too_large)
    try:
        audio = await run_cpu(decode_upload, data, MAX_SECONDS)
    except AudioRejected as exc:
        return invalid("file", exc.reason)
    title = (name or "").strip() or PurePath(filename).stem.strip() or "Greeting"
    row = await greetings.add(
        session,
        state.settings.data_dir,
        auth.user.id,
        title[:100],
        audio.wav,
        audio.duration_ms,
        published=state.events.published,
    )
    return JSONResponse(status_code=201, content=_item(row).model_dump(mode="json"))


@router.get("/{greeting_id}/audio", response_class=FileResponse, responses={200: {"content": {"audio/wav": {}}}})
async def greeting_audio(greeting_id: RowId, auth: CurrentUser, session: Session, state: State) -> FileResponse:
    """The greeting as 8 kHz mono WAV; supports Range requests."""
    require_voicemail(auth)
    row = await greetings.get_for(session, auth.user.id, greeting_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    path = media_files.resolve(state.settings.data_dir, row.media_path)
    if not path.is_file():
        raise HTTPException(404, "the greeting's audio is missing")
    return FileResponse(path, media_type="audio/wav", filename=f"greeting-{row.id}.wav")


@router.patch("/{greeting_id}", response_model=GreetingItem)
async def change_greeting(
    greeting_id: RowId, body: GreetingChange, auth: CurrentUser, session: Session, state: State
) -> GreetingItem:
    """Rename a greeting, or choose it as the no-answer and/or the busy greeting (at most one of each)."""
    require_voicemail(auth)
    row = await greetings.get_for(session, auth.user.id, greeting_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    if body.name is not None and body.name != row.name:
        await greetings.rename(session, row, body.name)
    choices: tuple[tuple[GreetingCase, bool | None], ...] = (("no_answer", body.active), ("busy", body.active_busy))
    for case, active in choices:
        if active is not None and active != greetings.is_active(row, case):
            await greetings.set_active(session, row, active, case)
    try:
        await commit(session, state)
    except IntegrityError as exc:
        # Only the one-active-greeting indexes can refuse this; another device chose at the very same moment.
        raise HTTPException(409, "active: another device changed your greetings just now; try again") from exc
    return _item(row)


@router.delete("/{greeting_id}", status_code=204, response_class=Response)
async def delete_greeting(greeting_id: RowId, auth: CurrentUser, session: Session, state: State) -> Response:
    """Delete a greeting and its audio; callers who heard it hear the fallback again (the no-answer greeting
    instead of a deleted busy one, the system greeting instead of a deleted no-answer one)."""
    require_voicemail(auth)
    row = await greetings.get_for(session, auth.user.id, greeting_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    path = await greetings.delete_one(session, row)
    await commit(session, state)
    await media_files.remove(state.settings.data_dir, [path])
    return Response(status_code=204)
