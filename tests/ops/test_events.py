"""The live event stream over a real HTTP connection: delivery, resume, isolation between users, auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from hipper.store.models import Event
from tests.conftest import LoggedIn, UserFactory


@dataclass
class Sse:
    id: str | None = None
    event: str | None = None
    data: Any = None
    comments: list[str] = field(default_factory=list)


async def read_events(response: httpx.Response) -> AsyncIterator[Sse]:
    """Parse text/event-stream (WHATWG HTML §9.2.6) into events; comment-only blocks come as events too."""
    current = Sse()
    async for line in response.aiter_lines():
        if line == "":
            yield current
            current = Sse()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data = json.loads(value)


async def next_event(events: AsyncIterator[Sse], seconds: float = 5) -> Sse:
    """The next real event (skipping keepalive comments)."""
    async with asyncio.timeout(seconds):
        async for sse in events:
            if sse.event is not None:
                return sse
    raise AssertionError("the stream ended")


def auth(user: LoggedIn) -> dict[str, str]:
    return {"Authorization": f"Bearer {user.token}"}


async def set_dnd(http: httpx.AsyncClient, user: LoggedIn, active: bool) -> None:
    response = await http.put("/api/v1/me/services/do-not-disturb", json={"active": active}, headers=auth(user))
    assert response.status_code == 200, response.text


async def test_a_settings_change_arrives_on_the_stream(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    async with http.stream("GET", "/api/v1/events", headers=auth(alice)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
        first = await anext(events)
        assert "connected" in first.comments
        await set_dnd(http, alice, True)
        sse = await next_event(events)
        assert sse.event == "service.changed"
        assert sse.data["service"] == "do-not-disturb"
        assert sse.data["settings"]["active"] is True
        assert sse.id is not None and int(sse.id) > 0


async def test_idle_stream_sends_keepalive_comments(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    async with http.stream("GET", "/api/v1/events", headers=auth(alice)) as response:
        async with asyncio.timeout(5):
            async for sse in read_events(response):
                if "keepalive" in sse.comments:
                    break


async def test_resume_with_last_event_id_replays_only_missed_events(
    http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    alice = await make_user()
    async with http.stream("GET", "/api/v1/events", headers=auth(alice)) as response:
        events = read_events(response)
        await anext(events)
        await set_dnd(http, alice, True)
        seen = await next_event(events)
    # While disconnected: two more changes.
    await set_dnd(http, alice, False)
    await set_dnd(http, alice, True)
    headers = {**auth(alice), "Last-Event-ID": str(seen.id)}
    async with http.stream("GET", "/api/v1/events", headers=headers) as response:
        events = read_events(response)
        missed = [await next_event(events), await next_event(events)]
        assert [e.data["settings"]["active"] for e in missed] == [False, True]
        assert all(int(e.id or 0) > int(seen.id or 0) for e in missed)
        # Nothing else is replayed: the next thing is only a keepalive, not an old event.
        async with asyncio.timeout(5):
            async for sse in events:
                assert sse.event is None
                if "keepalive" in sse.comments:
                    break


async def test_without_last_event_id_old_events_are_not_replayed(
    http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    alice = await make_user()
    await set_dnd(http, alice, True)
    async with http.stream("GET", "/api/v1/events", headers=auth(alice)) as response:
        events = read_events(response)
        await anext(events)
        await set_dnd(http, alice, False)
        sse = await next_event(events)
        assert sse.data["settings"]["active"] is False


async def test_a_user_never_receives_another_users_events(
    app: FastAPI, http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    alice = await make_user()
    bob = await make_user()
    # From id 0: the whole outbox is replayed, yet only Bob's rows may come out.
    async with http.stream("GET", "/api/v1/events", headers={**auth(bob), "Last-Event-ID": "0"}) as response:
        events = read_events(response)
        await anext(events)
        await set_dnd(http, alice, True)
        await set_dnd(http, alice, False)
        await set_dnd(http, bob, True)
        received: list[Sse] = []
        async with asyncio.timeout(5):
            async for sse in events:
                if sse.event is not None:
                    received.append(sse)
                elif "keepalive" in sse.comments and any(e.event == "service.changed" for e in received):
                    break
    changes = [e.data["settings"]["active"] for e in received if e.event == "service.changed"]
    assert changes == [True]
    async with app.state.hipper.sessions() as session:
        ids = [int(e.id or 0) for e in received]
        owners = set((await session.execute(select(Event.user_id).where(Event.id.in_(ids)))).scalars())
    assert owners == {bob.id}


async def test_events_written_by_another_node_arrive_by_polling(
    app: FastAPI, http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    alice = await make_user()
    async with http.stream("GET", "/api/v1/events", headers=auth(alice)) as response:
        events = read_events(response)
        await anext(events)
        # Another node commits straight to the shared database: this node's EventHub is never told.
        async with app.state.hipper.sessions() as session:
            session.add(
                Event(
                    user_id=alice.id, type="call.missed", payload={"from": "+31201234999"}, created_at=datetime.now(UTC)
                )
            )
            await session.commit()
        sse = await next_event(events, seconds=5)
        assert sse.event == "call.missed"
        assert sse.data == {"from": "+31201234999"}


async def test_the_token_may_come_in_the_query_for_eventsource(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    async with http.stream("GET", "/api/v1/events", params={"token": alice.token}) as response:
        assert response.status_code == 200
        events = read_events(response)
        await anext(events)
        await set_dnd(http, alice, True)
        assert (await next_event(events)).event == "service.changed"


async def test_no_or_a_wrong_token_gets_401(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    assert (await http.get("/api/v1/events")).status_code == 401
    assert (await http.get("/api/v1/events", params={"token": "not-a-token"})).status_code == 401
    wrong = await http.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_a_logged_out_session_cannot_open_a_stream(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    assert (await http.post("/api/v1/auth/logout", headers=auth(alice))).status_code == 204
    assert (await http.get("/api/v1/events", headers=auth(alice))).status_code == 401


async def test_a_malformed_last_event_id_gets_422(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    response = await http.get("/api/v1/events", headers={**auth(alice), "Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_logging_out_ends_an_open_stream(http: httpx.AsyncClient, make_user: UserFactory) -> None:
    alice = await make_user()
    async with http.stream("GET", "/api/v1/events", headers=auth(alice)) as response:
        events = read_events(response)
        await anext(events)
        assert (await http.post("/api/v1/auth/logout", headers=auth(alice))).status_code == 204
        # The server closes the stream within a keepalive interval (0.5 s in these tests).
        async with asyncio.timeout(5):
            async for _ in events:
                pass
