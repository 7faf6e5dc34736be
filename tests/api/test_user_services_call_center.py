"""The call-center agent through the API (J1–J3): the user's call centers from the database, join/leave stored
on the membership rows, calls to mobile shared with fixed-mobile, wrap-up after a call-center call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from hipper.store import call_centers
from hipper.store.models import CallCenter, CallCenterMember, User
from tests.conftest import LoggedIn, UserFactory


async def _call_center(app: FastAPI, user_id: int, name: str, number: str | None, wrap_up_seconds: int) -> int:
    """Create a call center with this user as member, as the administrator does."""
    async with app.state.hipper.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None and user.company_id is not None
        center = CallCenter(company_id=user.company_id, name=name, number=number, wrap_up_seconds=wrap_up_seconds)
        session.add(center)
        await session.flush()
        session.add(CallCenterMember(call_center_id=center.id, user_id=user_id, joined=True))
        await session.commit()
        return center.id


async def _joined(app: FastAPI, user_id: int) -> dict[int, bool]:
    async with app.state.hipper.sessions() as session:
        rows = await session.execute(
            select(CallCenterMember.call_center_id, CallCenterMember.joined).where(CallCenterMember.user_id == user_id)
        )
        return {center_id: joined for center_id, joined in rows.all()}


async def _agent(user: LoggedIn) -> dict[str, Any]:
    response = await user.get("/me/services/call-center-agent")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_agent_sees_their_call_centers_and_joins_or_leaves_them(app: FastAPI, make_user: UserFactory) -> None:
    agent = await make_user()
    other = await make_user()
    sales = await _call_center(app, agent.id, "Sales", "+31201234500", 20)
    support = await _call_center(app, agent.id, "Support", None, 45)
    theirs = await _call_center(app, other.id, "Billing", None, 10)
    shown = await _agent(agent)
    assert shown["call_centers"] == [
        {"id": sales, "name": "Sales", "number": "+31201234500", "joined": True},
        {"id": support, "name": "Support", "number": None, "joined": True},
    ]
    assert shown["wrap_up_seconds"] == 45
    assert shown["state"] == "signed_out"

    left = await agent.put(
        "/me/services/call-center-agent",
        json={"state": "available", "call_centers": [{"id": support, "joined": False}]},
    )
    assert left.status_code == 200, left.text
    assert [c["joined"] for c in left.json()["call_centers"]] == [True, False]
    assert left.json()["state"] == "available"
    assert await _joined(app, agent.id) == {sales: True, support: False}
    assert await _agent(agent) == left.json()

    # Another user's call center can neither be seen nor joined.
    refused = await agent.put(
        "/me/services/call-center-agent", json={"call_centers": [{"id": theirs, "joined": False}]}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "call_centers", "0", "id"]
    assert await _joined(app, other.id) == {theirs: True}
    assert [c["id"] for c in (await _agent(other))["call_centers"]] == [theirs]


async def test_calls_to_mobile_is_the_fixed_mobile_option(make_user: UserFactory) -> None:
    agent = await make_user()
    saved = await agent.put("/me/services/call-center-agent", json={"calls_to_mobile": True})
    assert saved.status_code == 200, saved.text
    assert (await agent.get("/me/services/fixed-mobile")).json()["group_calls_to_mobile"] is True
    assert (await agent.put("/me/services/fixed-mobile", json={"group_calls_to_mobile": False})).status_code == 200
    assert (await _agent(agent))["calls_to_mobile"] is False


async def test_wrap_up_after_a_call_center_call_then_available(app: FastAPI, make_user: UserFactory) -> None:
    agent = await make_user()
    sales = await _call_center(app, agent.id, "Sales", None, 600)
    assert (await agent.put("/me/services/call-center-agent", json={"state": "available"})).status_code == 200
    async with app.state.hipper.sessions() as session:
        assert await call_centers.available_agents(session, sales, datetime.now(UTC)) == [agent.id]
        ended = await call_centers.call_center_call_ended(session, agent.id, sales, datetime.now(UTC))
        await session.commit()
    assert ended is not None and ended.state == "wrap_up"
    shown = await _agent(agent)
    assert shown["state"] == "wrap_up"
    assert shown["wrap_up_until"] is not None
    async with app.state.hipper.sessions() as session:
        assert await call_centers.available_agents(session, sales, datetime.now(UTC)) == []
        later = datetime.now(UTC) + timedelta(seconds=601)
        assert await call_centers.available_agents(session, sales, later) == [agent.id]
    # Sending the document back during wrap-up is fine; choosing another state ends the wrap-up.
    assert (await agent.put("/me/services/call-center-agent", json=shown)).json()["state"] == "wrap_up"
    unavailable = await agent.put("/me/services/call-center-agent", json={"state": "unavailable"})
    assert unavailable.json()["state"] == "unavailable"
    assert unavailable.json()["wrap_up_until"] is None
    refused = await agent.put("/me/services/call-center-agent", json={"state": "wrap_up"})
    assert refused.status_code == 422
    assert "by itself" in refused.json()["detail"][0]["msg"]


async def test_a_finished_wrap_up_reads_as_available(app: FastAPI, make_user: UserFactory) -> None:
    agent = await make_user()
    sales = await _call_center(app, agent.id, "Sales", None, 30)
    assert (await agent.put("/me/services/call-center-agent", json={"state": "available"})).status_code == 200
    async with app.state.hipper.sessions() as session:
        a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
        await call_centers.call_center_call_ended(session, agent.id, sales, a_minute_ago)
        await session.commit()
    shown = await _agent(agent)
    assert shown["state"] == "available"
    assert shown["wrap_up_until"] is None
