"""Recent calls (SPEC C1): 20 of each kind, newest first, deleting several, only ever the user's own."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hipper.domain.errors import InvalidSetting
from hipper.store.models import CallLog, Event
from tests.conftest import UserFactory
from tests.lists.conftest import Exchange


async def test_twenty_of_each_kind_newest_first(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    for i in range(22):
        await exchange.call(user.id, "placed", remote_name=f"placed {i}")
    for i in range(3):
        await exchange.call(user.id, "missed", remote_name=f"missed {i}")
    await exchange.call(user.id, "received", number="0201234567")
    calls = (await user.get("/me/call-logs")).json()["calls"]
    assert [c["kind"] for c in calls].count("placed") == 20
    assert [c["kind"] for c in calls].count("missed") == 3
    assert len(calls) == 24
    started = [c["started_at"] for c in calls]
    assert started == sorted(started, reverse=True)
    assert calls[0]["kind"] == "received" and calls[0]["remote_number"] == "0201234567"
    assert calls[0]["duration_seconds"] == 60 and calls[0]["whatsapp"] is False
    # The two oldest placed calls fall outside the 20.
    placed = [c["remote_name"] for c in calls if c["kind"] == "placed"]
    assert "placed 0" not in placed and "placed 1" not in placed and "placed 21" in placed
    missed = (await user.get("/me/call-logs", params={"kind": "missed"})).json()["calls"]
    assert [c["remote_name"] for c in missed] == ["missed 2", "missed 1", "missed 0"]
    assert missed[0]["whatsapp"] is True and missed[0]["duration_seconds"] == 0


async def test_unknown_kind_is_422_naming_the_field(make_user: UserFactory) -> None:
    user = await make_user()
    response = await user.get("/me/call-logs", params={"kind": "forwarded"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "kind"


async def test_delete_several(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    rows = [await exchange.call(user.id, "received") for _ in range(3)]
    response = await user.post("/me/call-logs/delete", json={"ids": [rows[0].id, rows[2].id]})
    assert response.status_code == 204
    calls = (await user.get("/me/call-logs")).json()["calls"]
    assert [c["id"] for c in calls] == [rows[1].id]


async def test_delete_validates_ids(make_user: UserFactory) -> None:
    user = await make_user()
    bodies: list[dict[str, object]] = [{"ids": []}, {"ids": ["x"]}, {}, {"ids": list(range(501))}]
    for body in bodies:
        response = await user.post("/me/call-logs/delete", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][:2] == ["body", "ids"]


async def test_other_users_calls_are_neither_shown_nor_deleted(make_user: UserFactory, exchange: Exchange) -> None:
    alice = await make_user()
    bob = await make_user()
    mine = await exchange.call(alice.id, "placed")
    assert (await bob.get("/me/call-logs")).json()["calls"] == []
    # Bob's delete of Alice's id and of a non-existent id answer the same, and delete nothing.
    other = await bob.post("/me/call-logs/delete", json={"ids": [mine.id]})
    missing = await bob.post("/me/call-logs/delete", json={"ids": [mine.id + 1000]})
    assert other.status_code == missing.status_code == 204
    assert other.content == missing.content == b""
    assert [c["id"] for c in (await alice.get("/me/call-logs")).json()["calls"]] == [mine.id]


async def test_record_call_validates_and_emits_events(make_user: UserFactory, exchange: Exchange) -> None:
    user = await make_user()
    with pytest.raises(InvalidSetting) as refused:
        await exchange.call(user.id, "rejected")
    assert refused.value.field == "kind"
    row = await exchange.call(user.id, "missed")
    async with exchange.state.sessions() as session:
        types = list((await session.execute(select(Event.type).where(Event.user_id == user.id))).scalars())
        assert types.count("call_log.added") == 1
        assert (await session.execute(select(func.count()).select_from(CallLog))).scalar_one() == 1
    await user.post("/me/call-logs/delete", json={"ids": [row.id]})
    async with exchange.state.sessions() as session:
        deleted = (await session.execute(select(Event.payload).where(Event.type == "call_log.deleted"))).scalar_one()
        assert deleted == {"ids": [row.id]}
