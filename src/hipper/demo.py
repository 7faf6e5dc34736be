"""Demo data: a company with users of different licence sets, so every screen has something to show."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.models import User

DEMO_PASSWORD = "hipper-demo-1"
DEMO_PIN_HINT = "set at first login"


@dataclass(frozen=True)
class DemoUser:
    username: str
    description: str


DEMO_USERS = (
    DemoUser("anna", "everything, fixed-mobile and call center included"),
    DemoUser("bram", "basic: forwarding, voicemail, do-not-disturb"),
    DemoUser("carla", "call-center agent"),
    DemoUser("admin", "the administrator"),
)


async def create_demo(session: AsyncSession, hasher: Hasher) -> bool:
    """Create the demo company once; return False when the data directory already has users."""
    if (await session.execute(select(func.count()).select_from(User))).scalar_one() > 0:
        return False
    company = await admin.create_company(session, "Hipper Demo BV", "+31201230000")
    sales = await admin.create_group(session, company, "Sales", "+31201230100")
    support = await admin.create_group(session, company, "Support", "+31201230200")
    await admin.create_user(
        session, hasher, username="anna", password=DEMO_PASSWORD, company=company, group=sales,
        first_name="Anna", last_name="de Vries", email="anna@example.com", extension="201",
        direct_number="+31201230201", mobile_number="+31612340201", licences=["full"],
    )
    await admin.create_user(
        session, hasher, username="bram", password=DEMO_PASSWORD, company=company, group=sales,
        first_name="Bram", last_name="Jansen", email="bram@example.com", extension="202",
        direct_number="+31201230202", licences=["basic"],
    )
    await admin.create_user(
        session, hasher, username="carla", password=DEMO_PASSWORD, company=company, group=support,
        first_name="Carla", last_name="Bakker", email="carla@example.com", extension="203",
        direct_number="+31201230203", licences=["agent"],
    )
    await admin.create_user(
        session, hasher, username="admin", password=DEMO_PASSWORD, company=company, role="admin",
        first_name="Beheer", last_name="", licences=[],
    )
    await session.commit()
    return True
