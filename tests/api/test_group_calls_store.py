"""What call processing reads for hunt-group and call-center calls (store/group_calls.py), on SQLite and PostgreSQL:
finding a group by number or extension, the circular rotation, the queue's members with state and idle time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from hipper.domain.agent_state import AcdState
from hipper.engine.directory import resolve
from hipper.store import admin, call_centers, call_logs, group_calls
from hipper.store.models import Company, User
from tests.conftest import LoggedIn, UserFactory

NOW = datetime.now(UTC).replace(microsecond=0)


async def _setup(app: FastAPI, make_user: UserFactory) -> tuple[LoggedIn, LoggedIn, int, int]:
    anna = await make_user()
    bram = await make_user()
    async with app.state.hipper.sessions() as session:
        company = await session.get(Company, make_user.company_id)
        assert company is not None
        group = await admin.create_hunt_group(
            session, company, "Reception", number="+31201234500", extension="500", policy="circular",
            member_user_ids=[anna.id, bram.id],
        )  # fmt: skip
        center = await admin.create_call_center(
            session, company, "Helpdesk", number="+31201234600", extension="600", wrap_up_seconds=20
        )
        for user_id in (anna.id, bram.id):
            user = await session.get(User, user_id)
            assert user is not None
            await admin.add_call_center_member(session, center, user)
        await session.commit()
        return anna, bram, group.id, center.id


async def test_groups_are_found_by_number_and_by_extension_inside_their_company(
    app: FastAPI, make_user: UserFactory
) -> None:
    _anna, _bram, group_id, center_id = await _setup(app, make_user)
    async with app.state.hipper.sessions() as session:
        company_id = make_user.company_id
        assert company_id is not None
        by_number = await resolve(session, "020 123 4500", None, "NL")
        assert (by_number.kind, by_number.queue and by_number.queue.id) == ("hunt_group", group_id)
        by_extension = await resolve(session, "600", company_id, "NL")
        assert (by_extension.kind, by_extension.queue and by_extension.queue.id) == ("call_center", center_id)
        assert by_extension.company_id == company_id
        assert (await resolve(session, "600", company_id + 1, "NL")).kind == "unknown"  # another company's 600
        assert (await resolve(session, str(200 + 1), company_id, "NL")).kind == "user"  # users come first
        assert await group_calls.find_by_number(session, "+31201234999") is None


async def test_the_circular_rotation_is_remembered(app: FastAPI, make_user: UserFactory) -> None:
    anna, bram, group_id, _center_id = await _setup(app, make_user)
    async with app.state.hipper.sessions() as session:
        found = await group_calls.hunt_group(session, group_id)
        assert found is not None and found[1] is None
        await group_calls.took_call(session, group_id, bram.id)
        await session.commit()
    async with app.state.hipper.sessions() as session:
        found = await group_calls.hunt_group(session, group_id)
        assert found is not None and found[1] == bram.id
        await group_calls.took_call(session, group_id, anna.id)
        await session.commit()
        found = await group_calls.hunt_group(session, group_id)
        assert found is not None and found[1] == anna.id
        assert await group_calls.hunt_group(session, group_id + 100) is None


async def test_queue_members_carry_joined_state_and_the_end_of_their_last_answered_call(
    app: FastAPI, make_user: UserFactory
) -> None:
    anna, bram, _group_id, center_id = await _setup(app, make_user)
    async with app.state.hipper.sessions() as session:
        await call_centers.call_center_call_ended(session, anna.id, center_id, NOW)  # not available: no wrap-up
        await call_logs.record_call(
            session, bram.id, kind="received", started_at=NOW - timedelta(minutes=9),
            answered_at=NOW - timedelta(minutes=9), ended_at=NOW - timedelta(minutes=8),
        )  # fmt: skip
        await call_logs.record_call(
            session, bram.id, kind="received", started_at=NOW - timedelta(minutes=3),
            answered_at=NOW - timedelta(minutes=3), ended_at=NOW - timedelta(minutes=2),
        )  # fmt: skip
        await call_logs.record_call(  # missed: not answered, so not the end of a call bram took
            session, bram.id, kind="missed", started_at=NOW - timedelta(minutes=1), ended_at=NOW,
        )  # fmt: skip
        await session.commit()
    response = await bram.put("/me/services/call-center-agent", json={"state": "available"})
    assert response.status_code == 200, response.text
    response = await anna.put(
        "/me/services/call-center-agent", json={"call_centers": [{"id": center_id, "joined": False}]}
    )
    assert response.status_code == 200, response.text
    async with app.state.hipper.sessions() as session:
        members = {m.user_id: m for m in await group_calls.queue_members(session, center_id)}
    assert members[anna.id].joined is False and members[anna.id].acd.state is AcdState.SIGNED_OUT
    assert members[anna.id].last_call_ended is None
    assert members[bram.id].joined is True and members[bram.id].acd.state is AcdState.AVAILABLE
    assert members[bram.id].last_call_ended == NOW - timedelta(minutes=2)
