"""The routing snapshot and group numbers read from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from hipper.domain.group_routing import plan_group_call
from hipper.domain.routing import ForwardStep
from hipper.domain.services import DoNotDisturb
from hipper.store import admin, service_settings
from hipper.store.models import User
from hipper.store.user_state import group_number_of, load_user_state
from tests.conftest import UserFactory


async def test_company_and_department_numbers_by_day_and_night(app: FastAPI) -> None:
    async with app.state.hipper.sessions() as session:
        company = await admin.create_company(
            session, "Night BV", "020 555 1000", day_destination="200", night_destination="020 555 1999"
        )
        await admin.create_group(session, company, "Sales", "020 555 1100", day_destination="210")
        await session.commit()

        day = await group_number_of(session, "+31205551000")
        assert day is not None
        assert (day.kind, day.night_mode) == ("company", False)
        step = plan_group_call(day, None, datetime.now(UTC)).step
        assert isinstance(step, ForwardStep)
        assert step.destination == "200"

        await admin.set_night_mode(session, company, True)
        await session.commit()
        night = await group_number_of(session, "+31205551000")
        assert night is not None
        step = plan_group_call(night, None, datetime.now(UTC)).step
        assert isinstance(step, ForwardStep)
        assert step.destination == "+31205551999"

        # Sales follows the company's night mode; without a night destination it keeps its day destination.
        sales = await group_number_of(session, "+31205551100")
        assert sales is not None
        assert (sales.kind, sales.night_mode, sales.name) == ("department", True, "Sales")
        plan = plan_group_call(sales, None, datetime.now(UTC))
        assert plan.mode == "night"
        assert isinstance(plan.step, ForwardStep)
        assert plan.step.destination == "210"

        assert await group_number_of(session, "+31205559999") is None


async def test_snapshot_holds_only_licensed_services_with_stored_values(app: FastAPI, make_user: UserFactory) -> None:
    user = await make_user(["basic"])
    async with app.state.hipper.sessions() as session:
        await service_settings.save(session, user.id, DoNotDisturb(active=True))
        await session.commit()
        row = await session.get(User, user.id)
        assert row is not None
        state = await load_user_state(session, row, datetime.now(UTC), on_call=True)
    assert "personal-assistant" not in state.services
    assert "do-not-disturb" in state.services
    dnd = state.services["do-not-disturb"]
    assert isinstance(dnd, DoNotDisturb)
    assert dnd.active is True
    assert state.on_call is True
    assert state.devices == ()
    assert state.numbers["direct"] == "+31201234101"
    assert state.extension == "201"
