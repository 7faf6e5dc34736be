"""The settings fast path (api/settings_fast_path.py) answers exactly as the routes it stands in front of.

A request with a query string is always handed on to FastAPI's route (which ignores unknown query parameters),
so each case is sent twice — once plain, once with `?via=route` — and the two answers must be the same bytes
(the request id aside). The fast path must answer the plain cases itself and hand every refusal on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from hipper.api.routers.services import OWN_ROUTES
from hipper.api.settings_fast_path import SettingsFastPath
from hipper.domain.services import SERVICES
from hipper.store.models import Event
from tests.conftest import LoggedIn, UserFactory

USER_SERVICES = [name for name in SERVICES if name not in OWN_ROUTES]


def fast_path(app: FastAPI) -> SettingsFastPath:
    found = SettingsFastPath.of(app)
    assert found is not None
    return found


def same_answer(fast: httpx.Response, route: httpx.Response) -> None:
    assert fast.status_code == route.status_code, (fast.text, route.text)
    assert fast.content == route.content
    headers = [(k, v) for k, v in fast.headers.multi_items() if k != "x-request-id"]
    assert headers == [(k, v) for k, v in route.headers.multi_items() if k != "x-request-id"]


async def events_of(app: FastAPI, user_id: int) -> int:
    async with app.state.hipper.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Event).where(Event.user_id == user_id))
    return int(count or 0)


async def both(
    user: LoggedIn, method: str, service: str, body: Any = None, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    """The same request twice: plain (the fast path's) and with a query string (handed on to the route)."""
    url = f"/api/v1/me/services/{service}"
    sent = user.headers if headers is None else headers
    extra: dict[str, Any] = {} if method == "GET" else {"json": body}
    return [
        await user.client.request(method, url, headers=sent, params=params, **extra)
        for params in ({}, {"via": "route"})
    ]


async def test_every_service_reads_and_writes_the_same_through_both(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["full"])
    await user.get("/me/services/do-not-disturb")  # builds the middleware stack
    path = fast_path(app)
    administrator_only = [name for name in USER_SERVICES if SERVICES[name].administrator_only]
    for service in USER_SERVICES:
        before = path.answered
        fast, route = await both(user, "GET", service)
        same_answer(fast, route)
        assert fast.status_code == 200
        assert path.answered == before + 1, service
        # The document as it is: read-only fields unchanged, no new number, so every user service takes it.
        events = await events_of(app, user.id)
        fast, route = await both(user, "PUT", service, fast.json())
        same_answer(fast, route)
        if service in administrator_only:
            assert fast.status_code == 403
            assert path.answered == before + 1, service
            assert await events_of(app, user.id) == events
        else:
            assert fast.status_code == 200, fast.text
            assert path.answered == before + 2, service
            assert await events_of(app, user.id) == events + 2  # one outbox event per change, either way


async def test_concurrent_changes_of_a_service_with_related_documents_do_not_jam_the_pool(
    make_user: UserFactory, app: FastAPI
) -> None:
    """Voicemail's rules read a related document (call waiting). On PostgreSQL the fast path once held its pooled
    connection while that read waited for a second one: 40 PUTs at once took the whole pool (20 + 20) and waited
    on each other until the pool's 30 s timeout."""
    user = await make_user(["full"])
    document = (await user.get("/me/services/voicemail")).json()
    async with asyncio.timeout(20):  # a ceiling: unjammed, the PUTs take a second or two
        answers = await asyncio.gather(*(user.put("/me/services/voicemail", json=document) for _ in range(60)))
    assert [answer.status_code for answer in answers] == [200] * 60


async def test_a_change_is_stored_and_published_with_its_event(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["full"])
    other = await make_user(["full"])
    response = await user.put("/me/services/do-not-disturb", json={"active": True})
    assert response.status_code == 200
    assert fast_path(app).answered == 1
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is True
    assert (await other.get("/me/services/do-not-disturb")).json()["active"] is False  # per user
    async with app.state.hipper.sessions() as session:
        event = (
            await session.execute(select(Event).where(Event.user_id == user.id).order_by(Event.id.desc()).limit(1))
        ).scalar_one()
    assert event.type == "service.changed"
    assert event.payload == {"service": "do-not-disturb", "settings": response.json()}


async def test_the_request_is_counted_and_logged_under_its_route(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["full"])
    labels = {"method": "PUT", "route": "/api/v1/me/services/call-waiting", "status": "200"}
    before = REGISTRY.get_sample_value("hipper_http_requests_total", labels) or 0
    assert (await user.put("/me/services/call-waiting", json={"active": False})).status_code == 200
    assert fast_path(app).answered == 1
    assert REGISTRY.get_sample_value("hipper_http_requests_total", labels) == before + 1


@pytest.mark.parametrize(
    ("case", "licences", "headers", "body"),
    [
        ("no token", ["full"], {"Authorization": ""}, {"active": True}),
        ("another scheme", ["full"], {"Authorization": "Basic dXNlcjpwYXNz"}, {"active": True}),
        ("unknown token", ["full"], {"Authorization": "Bearer not-a-session"}, {"active": True}),
        ("not licensed", [], None, {"active": True}),
        ("invalid value", ["full"], None, {"active": "maybe"}),
        ("unknown field", ["full"], None, {"active": True, "colour": "blue"}),
        ("not an object", ["full"], None, [True]),
        ("empty body", ["full"], None, None),
    ],
)
async def test_refusals_are_the_routes(
    make_user: UserFactory,
    app: FastAPI,
    case: str,
    licences: list[str],
    headers: dict[str, str] | None,
    body: Any,
) -> None:
    user = await make_user(licences)
    await user.client.get("/api/v1/health")  # builds the middleware stack
    events = await events_of(app, user.id)
    path = fast_path(app)
    for method in ("GET", "PUT"):
        if method == "GET" and case not in ("no token", "another scheme", "unknown token", "not licensed"):
            continue
        fast, route = await both(user, method, "do-not-disturb", body, headers)
        same_answer(fast, route)
        assert 400 <= fast.status_code < 500, (case, fast.text)
    assert path.answered == 0, case
    assert await events_of(app, user.id) == events


async def test_a_logged_out_session_reads_and_writes_nothing(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["full"])
    assert (await user.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await user.post("/auth/logout")).status_code == 204
    for method in ("GET", "PUT"):
        fast, route = await both(user, method, "do-not-disturb", {"active": False})
        same_answer(fast, route)
        assert fast.status_code == 401
    assert fast_path(app).answered == 1


async def test_a_new_number_still_needs_a_step_up(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["full"])
    body = {"active": True, "destination": "+31612349999"}
    events = await events_of(app, user.id)
    fast, route = await both(user, "PUT", "call-forwarding-always", body)
    same_answer(fast, route)
    assert fast.status_code == 403
    assert fast.json()["code"] == "step_up_required"
    assert fast_path(app).answered == 0
    assert await events_of(app, user.id) == events


async def test_the_body_guard_still_stands_in_front(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["full"])
    raw = {"Authorization": f"Bearer {user.token}", "Content-Type": "application/json"}
    for body in (b'{"active": NaN}', b'{"active": tru', b"[" * 40 + b"]" * 40):
        answers = [
            await user.client.put("/api/v1/me/services/do-not-disturb", content=body, headers=raw, params=params)
            for params in ({}, {"via": "route"})
        ]
        same_answer(*answers)
        assert answers[0].status_code == 422
    assert fast_path(app).answered == 0
