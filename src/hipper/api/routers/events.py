"""GET /events: the user's live events as Server-Sent Events, read from the outbox (`events` table).

Every committed change writes its event row in the same transaction; this stream sends the rows of the
authenticated user in id order. The row id is the SSE id, so a client that reconnects with Last-Event-ID
(browsers do this by themselves) gets exactly the rows it missed — or, when those were already deleted by the
retention, an `events.reset` event telling it to reload. The stream holds no database connection
while it waits: it opens a session only to read new rows, so open streams do not starve the pool.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import func, select

from hipper import metrics
from hipper.api.deps import State, bearer, lookup, not_logged_in
from hipper.api.state import AppState
from hipper.domain.moments import aware
from hipper.store.events import purged_through
from hipper.store.models import AuthSession, Event

router = APIRouter(prefix="/events", tags=["events"])
log = logging.getLogger(__name__)

# Rows sent per read: a client that was away long catches up in pages rather than one huge query.
PAGE = 200
# Browsers wait this long before reconnecting a dropped stream (SSE `retry:` field, milliseconds).
RETRY_MS = 3000
# Sent first to a resuming client whose missed events were deleted by the retention: reload, then follow.
RESET = "events.reset"


@dataclass(frozen=True)
class StreamUser:
    user_id: int
    token_hash: str


async def stream_user(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    token: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The session token, for browsers' EventSource, which cannot send an Authorization header. "
            "Prefer the header: a URL can end up in proxy logs and browser history.",
        ),
    ] = None,
) -> StreamUser:
    """The authenticated user, from a short-lived session: the stream itself must not pin a connection."""
    presented = credentials.credentials if credentials is not None else token
    if not presented:
        raise not_logged_in("log in first: no session token")
    async with state.sessions() as session:
        auth = await lookup(session, presented)
    if auth is None:
        raise not_logged_in("the session has ended: log in again")
    request.state.user_id = auth.user.id
    return StreamUser(auth.user.id, auth.auth_session.token_hash)


async def _still_logged_in(state: AppState, token_hash: str) -> bool:
    async with state.sessions() as session:
        expires = (
            await session.execute(select(AuthSession.expires_at).where(AuthSession.token_hash == token_hash))
        ).scalar_one_or_none()
    return expires is not None and aware(expires) > datetime.now(UTC)


async def stream_slot(request: Request, state: State, user: Annotated[StreamUser, Depends(stream_user)]) -> None:
    """A 429 before the stream starts when the user has `events_max_streams_per_user` open (one token opened
    2,000 and lagged the loop that SIP and RTP share, issue 11). The generator checks again once it counts
    itself, so streams opened at the same moment cannot all slip past this."""
    if state.events.streams[user.user_id] >= state.settings.events_max_streams_per_user:
        log.warning("events.stream_refused", extra={"user_id": user.user_id})
        metrics.HTTP_REFUSALS.labels("event_streams").inc()
        raise HTTPException(
            429, "too many live-event streams are open for this user: close one", headers={"Retry-After": "30"}
        )


async def resume_point(
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=19,
            description="Resume after this event id: the events the client missed are sent first.",
        ),
    ] = None,
) -> int | None:
    """A dependency, so a bad header is refused before the stream (and its 200) starts (a coroutine function, as
    every dependency: a plain one would run in FastAPI's thread pool)."""
    if last_event_id is None or last_event_id == "":
        return None
    if not last_event_id.isascii() or not last_event_id.isdigit():
        raise HTTPException(
            422,
            [{"loc": ["header", "Last-Event-ID"], "msg": "must be an event id we sent", "type": "value_error"}],
        )
    return int(last_event_id)


async def _newest_id(state: AppState, user_id: int) -> int:
    async with state.sessions() as session:
        newest = (await session.execute(select(func.max(Event.id)).where(Event.user_id == user_id))).scalar_one()
    return int(newest or 0)


async def _resume(state: AppState, resume: int) -> tuple[int, ServerSentEvent | None]:
    """Where a resuming stream starts, and the `events.reset` to send first when events it missed are gone.

    The outbox keeps events for `events_retention_days` (store/events.py `purge`): a client that was away
    longer asks for rows that no longer exist. Rather than carry on as if it had missed nothing, it gets one
    `events.reset` event — reload everything, then follow the stream — whose id is the newest event now, so
    its next reconnect resumes from there (and is not reset again).
    """
    async with state.sessions() as session:
        gone = await purged_through(session)
        if resume >= gone:
            return resume, None
        newest = int((await session.execute(select(func.max(Event.id)))).scalar_one() or 0)
    last = max(newest, resume)
    data = {"reason": "expired", "resume_from": resume, "purged_through": gone}
    return last, ServerSentEvent(id=str(last), event=RESET, data=data)


async def _rows_after(state: AppState, user_id: int, after: int) -> list[tuple[int, str, Any]]:
    async with state.sessions() as session:
        result = await session.execute(
            select(Event.id, Event.type, Event.payload)
            .where(Event.user_id == user_id, Event.id > after)
            .order_by(Event.id)
            .limit(PAGE)
        )
        return [(row.id, row.type, row.payload) for row in result]


@router.get(
    "",
    response_class=EventSourceResponse,
    summary="Live events of the logged-in user",
    responses={401: {"description": "no or an ended session token"}},
)
async def live_events(
    request: Request,
    state: State,
    user: Annotated[StreamUser, Depends(stream_user)],
    resume: Annotated[int | None, Depends(resume_point)],
    _slot: Annotated[None, Depends(stream_slot)],
) -> AsyncIterator[ServerSentEvent]:
    """A `text/event-stream` of this user's events (`service.changed`, `profile.changed`, …).

    Each event's `id` is its outbox row id, its `event` the type and its `data` the JSON payload. Without
    Last-Event-ID the stream starts with events that happen from now on. A Last-Event-ID older than the events
    still kept (`events_retention_days`) gets an `events.reset` event first: reload your data, then follow.
    Comments (`: keepalive`) are sent while nothing happens, so proxies keep the connection open. A user may
    keep `events_max_streams_per_user` streams open (429 beyond); streams end when the exchange shuts down.
    """
    hub = state.events
    user_id, token_hash = user.user_id, user.token_hash
    hub.streams[user_id] += 1  # counted before the first await: parallel openers see each other
    try:
        if hub.closed or hub.streams[user_id] > state.settings.events_max_streams_per_user:
            return  # slipped past `stream_slot` together with others, or the node is shutting down: end at once
        async with contextlib.aclosing(_follow(state, user_id, token_hash, resume)) as events:
            async for event in events:
                yield event
    finally:
        hub.streams[user_id] -= 1
        if hub.streams[user_id] <= 0:
            del hub.streams[user_id]


async def _follow(
    state: AppState, user_id: int, token_hash: str, resume: int | None
) -> AsyncGenerator[ServerSentEvent]:
    hub = state.events
    reset: ServerSentEvent | None = None
    if resume is None:
        last = await _newest_id(state, user_id)
    else:
        last, reset = await _resume(state, resume)
    waiter = hub.subscribe(state.sessions)
    metrics.SSE_STREAMS.inc()
    try:
        yield ServerSentEvent(comment="connected", retry=RETRY_MS)
        if reset is not None:
            yield reset
        last_sent = time.monotonic()
        # No disconnect check here: the response cancels this generator when the client goes away.
        while not hub.closed:
            # Clear before reading: a commit that lands during the read sets it again, so no wake-up is lost.
            waiter.clear()
            rows = await _rows_after(state, user_id, last)
            for event_id, type_, payload in rows:
                yield ServerSentEvent(id=str(event_id), event=type_, data=payload)
                last = event_id
                last_sent = time.monotonic()
            if len(rows) == PAGE:
                continue
            if await hub.wait(waiter, hub.keepalive_seconds):
                continue
            if time.monotonic() - last_sent >= hub.keepalive_seconds:
                # A logout (or expiry) ends open streams too, within one keepalive interval; the browser's
                # reconnect then gets 401 and EventSource gives up.
                if not await _still_logged_in(state, token_hash):
                    return
                yield ServerSentEvent(comment="keepalive")
                last_sent = time.monotonic()
    finally:
        metrics.SSE_STREAMS.dec()
        hub.unsubscribe(waiter)
