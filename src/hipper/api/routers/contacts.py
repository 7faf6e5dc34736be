"""/me/contacts: colleagues, the enterprise and the personal phone list (SPEC E1, E2, E4).

Contacts need no licence: every user has a phone list. Adding a personal entry needs no step-up either —
its number is only something to call, never a routing target (SPEC A2 is about numbers that ring you).
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from pydantic import BaseModel

from hipper.api.deps import CurrentUser, RowId, Session, State, commit
from hipper.api.limits import max_body
from hipper.domain.contacts import (
    CONTACT_LISTS,
    MAX_PERSONAL_ENTRIES,
    MAX_VCARD_BYTES,
    Contact,
    ContactList,
    PersonalEntry,
    Skipped,
    SortKey,
    change_entry,
    matches,
    parse_vcards,
    sort_contacts,
)
from hipper.domain.errors import InvalidSetting
from hipper.domain.licences import licensed_services
from hipper.offload import run_cpu
from hipper.store import app_settings, directories
from hipper.store.models import User

router = APIRouter(prefix="/me/contacts", tags=["contacts"])

NOT_FOUND = "no such entry in your personal phone list"
VCARD_TYPES = ("text/vcard", "text/x-vcard", "text/directory")


class ContactPage(BaseModel):
    contacts: list[Contact]


class ImportResult(BaseModel):
    imported: int
    # Numbers already in the personal list are not added twice, so importing the same file again is harmless.
    already_present: int
    skipped: list[Skipped]


def _company_of(user: User) -> int:
    if user.company_id is None:
        raise HTTPException(409, "you belong to no company, so you have no company phone lists")
    return user.company_id


@router.get("", response_model=ContactPage, responses={304: {"description": "unchanged since the given ETag"}})
async def list_contacts(
    request: Request,
    auth: CurrentUser,
    session: Session,
    list_: ContactList | None = Query(
        None, alias="list", description="one list; without it, the lists chosen in the app settings"
    ),
    q: str | None = Query(None, max_length=100, description="words to find in names, company or numbers"),
    sort: SortKey | None = Query(None, description="without it, the order chosen in the app settings"),
) -> Response:
    """The contacts, with an ETag: the app refreshes weekly and on pull-to-refresh (SPEC E3), and sending
    If-None-Match makes an unchanged list a bodiless 304."""
    display, _saved = await app_settings.load(
        session, auth.user.id, licensed_services(frozenset(auth.user.licences or ()))
    )
    lists = [list_] if list_ is not None else [name for name in CONTACT_LISTS if name in display.contacts.lists]
    found = await directories.contacts(session, auth.user, lists)
    if q and q.strip():
        found = [contact for contact in found if matches(contact, q)]
    body = ContactPage(contacts=sort_contacts(found, sort or display.contacts.sort)).model_dump_json().encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    # private: the list is the user's own; no-cache: always revalidate, which costs one 304 when unchanged.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


@router.post("/personal", response_model=Contact, status_code=201)
async def add_personal(body: PersonalEntry, auth: CurrentUser, session: Session, state: State) -> Contact:
    """Add an entry to the personal phone list (also the dialpad's "add number", SPEC D1)."""
    company_id = _company_of(auth.user)
    if await directories.count_personal(session, auth.user.id) >= MAX_PERSONAL_ENTRIES:
        raise InvalidSetting("", f"your personal phone list is full ({MAX_PERSONAL_ENTRIES} entries)", "list_full")
    [row] = await directories.add_personal(session, auth.user, company_id, [body])
    await commit(session, state)
    return directories.entry_contact("personal", row)


@router.patch("/personal/{entry_id}", response_model=Contact)
async def change_personal(
    entry_id: RowId,
    auth: CurrentUser,
    session: Session,
    state: State,
    body: dict[str, Any] = Body(
        ..., description="any of first_name, last_name, company_name, number, email; others keep their value"
    ),
) -> Contact:
    row = await directories.get_personal(session, auth.user.id, entry_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    entry = change_entry(directories.entry_of(row), body)
    directories.update_personal(session, row, entry)
    await commit(session, state)
    return directories.entry_contact("personal", row)


@router.delete("/personal/{entry_id}", status_code=204, response_class=Response)
async def delete_personal(entry_id: RowId, auth: CurrentUser, session: Session, state: State) -> Response:
    row = await directories.get_personal(session, auth.user.id, entry_id)
    if row is None:
        raise HTTPException(404, NOT_FOUND)
    await directories.delete_personal(session, row)
    await commit(session, state)
    return Response(status_code=204)


@router.post(
    "/personal/import",
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/vcard": {"schema": {"type": "string"}}}},
    },
)
@max_body(MAX_VCARD_BYTES)
async def import_vcards(request: Request, auth: CurrentUser, session: Session, state: State) -> ImportResult:
    """Import a vCard file (the device's contacts where the Contact Picker API is missing, SPEC E2).

    Every phone number of a card becomes one personal entry; cards or numbers that cannot be used are listed
    in `skipped` with the reason, the rest is imported.
    """
    company_id = _company_of(auth.user)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in VCARD_TYPES:
        raise HTTPException(415, f"send the vCard file as {VCARD_TYPES[0]} (got '{content_type or 'nothing'}')")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_VCARD_BYTES:
            raise HTTPException(413, f"body: a vCard file of at most {MAX_VCARD_BYTES // 1_000_000} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # vCard 2.1 exports of older phones are often Latin-1; every byte decodes there.
        text = raw.decode("latin-1")
    # Parsing is pure Python and takes about a second per 150 kB: keep it off the event loop, where SIP timers run.
    entries, skipped = await run_cpu(parse_vcards, text)
    existing = {row.number for row in await directories.personal_entries(session, auth.user.id)}
    new: list[PersonalEntry] = []
    for entry in entries:
        if entry.number not in existing:
            existing.add(entry.number)
            new.append(entry)
    room = MAX_PERSONAL_ENTRIES - await directories.count_personal(session, auth.user.id)
    if len(new) > room:
        raise InvalidSetting("", f"your personal phone list would exceed {MAX_PERSONAL_ENTRIES} entries", "list_full")
    await directories.add_personal(session, auth.user, company_id, new)
    await commit(session, state)
    return ImportResult(imported=len(new), already_present=len(entries) - len(new), skipped=skipped)
