"""Who a device's call comes from (engine/b2bua.py `_caller_user`): read fresh for every call on the call path's
cheap reads, without an ORM session — and what it shows is what the user's row says."""

from __future__ import annotations

from sqlalchemy import update

from hipper.engine.directory import mobile_user, user_row
from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.models import Company, User
from tests.calls.conftest import Exchange
from tests.support.sql import statements_through_sqlalchemy


async def test_the_calling_user_is_read_without_sqlalchemy_and_shown_as_their_row_says(exchange: Exchange) -> None:
    people = [  # (username, first, last, extension, direct number)
        ("ann", "Ann", "Smith", "201", "+31201234201"),
        ("bo", "Bo", "", None, "+31201234202"),  # no extension: shown by the direct number
        ("cy", "", "", "203", None),  # no name: shown by the username
        ("di", "", "Dee", None, None),
        ("ed", "  ", "", "205", "+31201234205"),
    ]
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        ids = []
        for username, first, last, extension, direct in people:
            user = await admin.create_user(
                session, Hasher(1, 1024), username=username, password="correct horse 1", company=company,
                first_name=first, last_name=last, extension=extension, direct_number=direct,
            )  # fmt: skip
            ids.append(user.id)
        await session.commit()
    b2bua = exchange.b2bua
    for user_id in ids:
        row = await user_row(exchange.sessions, user_id)
        assert row is not None
        with statements_through_sqlalchemy(exchange.sessions.kw["bind"]) as statements:
            caller = await b2bua._caller_user(user_id)
        assert statements == []  # no ORM session, no pooled connection: the call path's own reads
        assert caller is not None
        # What `_identify` made of the ORM row before.
        name = f"{row.first_name} {row.last_name}".strip() or row.username
        assert (caller.id, caller.company_id, caller.number, caller.name) == (
            row.id, row.company_id, row.extension or row.direct_number, name,
        )  # fmt: skip
    assert await b2bua._caller_user(max(ids) + 1000) is None  # a device whose user is gone


async def test_a_renamed_caller_is_shown_by_their_new_name_on_the_next_call(exchange: Exchange) -> None:
    """Read fresh for each call, as before: nothing of the caller is cached between calls."""
    user_id = await exchange.add_user("alice", "201")
    first = await exchange.b2bua._caller_user(user_id)
    assert first is not None and (first.name, first.number) == ("Alice", "201")
    async with exchange.sessions() as session:
        await session.execute(update(User).where(User.id == user_id).values(first_name="Alicia", extension="209"))
        await session.commit()
    second = await exchange.b2bua._caller_user(user_id)
    assert second is not None and (second.name, second.number) == ("Alicia", "209")


async def test_a_handset_caller_is_read_like_a_device_caller(exchange: Exchange) -> None:
    """A call from a user's own mobile through the mobile network (SPEC G3): the user found by that number on the
    same cheap reads, shown by their extension, else by the mobile number itself."""
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        users = {}
        for username, extension, mobile in (("fay", "206", "+31612345606"), ("gus", None, "+31612345607")):
            user = await admin.create_user(
                session, Hasher(1, 1024), username=username, password="correct horse 1", company=company,
                first_name=username.title(), extension=extension, mobile_number=mobile,
            )  # fmt: skip
            users[username] = user.id
        await session.commit()
    reads = exchange.b2bua.snapshots.reads
    with statements_through_sqlalchemy(exchange.sessions.kw["bind"]) as statements:
        fay = await mobile_user(reads, "0612345606", "NL")  # as the mobile network may present it: national
        gus = await mobile_user(reads, "+31612345607", "NL")
        nobody = await mobile_user(reads, "+31612345699", "NL")
        garbage = await mobile_user(reads, "not a number", "NL")
    assert statements == []
    assert fay is not None and (fay.id, fay.number, fay.name) == (users["fay"], "206", "Fay")
    assert gus is not None and (gus.id, gus.number, gus.name) == (users["gus"], "+31612345607", "Gus")
    assert nobody is None and garbage is None
