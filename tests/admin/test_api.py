"""The admin API: every endpoint's happy path, 403 for non-administrators, 409/422 with a reason naming the field."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from hipper.api.state import AppState
from hipper.store.models import AuthSession, Event, SipDevice, User
from tests.conftest import LoggedIn, UserFactory


@pytest.fixture
async def administrator(make_user: UserFactory, app: FastAPI) -> LoggedIn:
    """A platform administrator (no company of their own); the factory's company Acme (id 1) exists."""
    made = await make_user([], role="admin", extension=None, direct_number=None, mobile_number=None)
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        user = await session.get(User, made.id)
        assert user is not None
        user.company_id = None
        await session.commit()
    return made


async def patch(user: LoggedIn, path: str, body: Any) -> httpx.Response:
    return await user.client.patch(f"/api/v1{path}", json=body, headers=user.headers)


def field_of(response: httpx.Response) -> str:
    return str(response.json()["detail"][0]["loc"][-1])


async def new_company(administrator: LoggedIn, name: str = "Beta BV", number: str = "020 555 0000") -> int:
    response = await administrator.post("/admin/companies", json={"name": name, "number": number})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def new_user(administrator: LoggedIn, company_id: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"username": "dirk", "password": "long enough 1", "company_id": company_id}
    body.update(fields)
    response = await administrator.post("/admin/users", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_normal_user_gets_403_everywhere(make_user: UserFactory) -> None:
    user = await make_user()
    for method, path in [
        ("get", "/admin/companies"),
        ("post", "/admin/companies"),
        ("get", "/admin/users"),
        ("post", "/admin/users"),
        ("get", f"/admin/users/{user.id}"),
        ("patch", f"/admin/users/{user.id}"),
        ("delete", f"/admin/users/{user.id}"),
        ("post", f"/admin/users/{user.id}/password"),
        ("post", f"/admin/users/{user.id}/devices"),
        ("put", "/admin/call-centers/1/members/1"),
        ("post", "/admin/companies/1/hunt-groups"),
        ("post", "/admin/companies/1/directory"),
        ("put", f"/admin/users/{user.id}/services/night-forwarding"),
    ]:
        response = await user.client.request(method, f"/api/v1{path}", headers=user.headers, json={})
        assert response.status_code == 403, (method, path, response.text)
    assert (await user.client.get("/api/v1/admin/companies")).status_code == 401
    # The refused delete really did nothing.
    assert (await user.get("/me")).status_code != 401


async def test_companies(administrator: LoggedIn) -> None:
    company_id = await new_company(administrator)
    assert (await administrator.get(f"/admin/companies/{company_id}")).json()["number"] == "+31205550000"
    assert "Beta BV" in [c["name"] for c in (await administrator.get("/admin/companies")).json()]
    patched = await patch(
        administrator,
        f"/admin/companies/{company_id}",
        {"number": "0031 20 555 0001", "day_destination": "201", "night_destination": "06 12345678"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["number"] == "+31205550001"
    assert patched.json()["day_destination"] == "201"
    assert patched.json()["night_destination"] == "+31612345678"
    night = await administrator.put(f"/admin/companies/{company_id}/night-mode", json={"night_mode": True})
    assert night.status_code == 200
    assert (await administrator.get(f"/admin/companies/{company_id}")).json()["night_mode"] is True
    off = await patch(administrator, f"/admin/companies/{company_id}", {"night_mode": False})
    assert off.json()["night_mode"] is False


async def test_company_conflicts_and_bad_numbers(administrator: LoggedIn) -> None:
    await new_company(administrator)
    same_name = await administrator.post("/admin/companies", json={"name": "Beta BV"})
    assert same_name.status_code == 409
    assert field_of(same_name) == "name"
    # The fixture's company Acme has +31201234000; the same number typed differently is the same number.
    same_number = await administrator.post("/admin/companies", json={"name": "Gamma", "number": "020 123 4000"})
    assert same_number.status_code == 409
    # Which company has it is not said: it may be another tenant's (issue 11); what kind of owner is.
    assert same_number.json()["detail"][0]["msg"] == "+31201234000 is already the number of a company"
    bad = await administrator.post("/admin/companies", json={"name": "Delta", "number": "hello"})
    assert bad.status_code == 422
    assert field_of(bad) == "number"
    extension = await administrator.post("/admin/companies", json={"name": "Delta", "number": "201"})
    assert extension.status_code == 422
    assert "extension" in extension.json()["detail"][0]["msg"]
    null_name = await patch(administrator, "/admin/companies/1", {"name": None})
    assert null_name.status_code == 422
    assert (await administrator.get("/admin/companies/999999")).status_code == 404


async def test_groups(administrator: LoggedIn) -> None:
    company_id = await new_company(administrator)
    created = await administrator.post(
        f"/admin/companies/{company_id}/groups",
        json={"name": "Sales", "number": "020 555 0100", "night_destination": "0612345678"},
    )
    assert created.status_code == 201, created.text
    group = created.json()
    assert group["number"] == "+31205550100"
    assert group["night_destination"] == "+31612345678"
    duplicate = await administrator.post(f"/admin/companies/{company_id}/groups", json={"name": "Sales"})
    assert duplicate.status_code == 409
    taken = await administrator.post(
        f"/admin/companies/{company_id}/groups", json={"name": "Support", "number": "+31205550000"}
    )
    assert taken.status_code == 409
    assert field_of(taken) == "number"
    listed = await administrator.get(f"/admin/companies/{company_id}/groups")
    assert [g["name"] for g in listed.json()] == ["Sales"]
    patched = await patch(administrator, f"/admin/groups/{group['id']}", {"day_destination": "301"})
    assert patched.json()["day_destination"] == "301"
    assert (await administrator.get(f"/admin/groups/{group['id']}")).json()["day_destination"] == "301"
    assert (await administrator.delete(f"/admin/groups/{group['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/groups/{group['id']}")).status_code == 404


async def test_user_lifecycle(administrator: LoggedIn, client: httpx.AsyncClient) -> None:
    company_id = await new_company(administrator)
    group = (await administrator.post(f"/admin/companies/{company_id}/groups", json={"name": "Sales"})).json()
    user = await new_user(
        administrator,
        company_id,
        group_id=group["id"],
        first_name="Dirk",
        last_name="Visser",
        email="Dirk@Example.com",
        extension="301",
        direct_number="020 555 0301",
        mobile_number="06 1234 0301",
        licences=["basic", "call-recording"],
    )
    assert user["direct_number"] == "+31205550301"
    assert user["mobile_number"] == "+31612340301"
    assert "voicemail" in user["licences"] and "call-recording" in user["licences"]
    assert user["email"] == "Dirk@example.com"
    assert "password" not in user and "password_hash" not in user
    assert [u["username"] for u in (await administrator.get(f"/admin/users?company_id={company_id}")).json()] == [
        "dirk"
    ]
    assert (await administrator.get(f"/admin/users/{user['id']}")).json()["extension"] == "301"

    login = await client.post("/api/v1/auth/login", json={"username": "dirk", "password": "long enough 1"})
    assert login.status_code == 200, login.text
    token = login.json()["token"]

    changed = await patch(administrator, f"/admin/users/{user['id']}", {"extension": "302", "mobile_number": None})
    assert changed.status_code == 200, changed.text
    assert changed.json()["extension"] == "302"
    assert changed.json()["mobile_number"] is None

    reset = await administrator.post(f"/admin/users/{user['id']}/password", json={"password": "brand new pass"})
    assert reset.status_code == 204
    # The old session ended with the old password.
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    old = await client.post("/api/v1/auth/login", json={"username": "dirk", "password": "long enough 1"})
    assert old.status_code == 401
    new = await client.post("/api/v1/auth/login", json={"username": "dirk", "password": "brand new pass"})
    assert new.status_code == 200

    short = await administrator.post(f"/admin/users/{user['id']}/password", json={"password": "short"})
    assert short.status_code == 422
    assert field_of(short) == "password"

    assert (await administrator.delete(f"/admin/users/{user['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/users/{user['id']}")).status_code == 404


async def test_unlock_after_too_many_wrong_passwords(administrator: LoggedIn, client: httpx.AsyncClient) -> None:
    company_id = await new_company(administrator)
    user = await new_user(administrator, company_id)
    for _ in range(5):
        await client.post("/api/v1/auth/login", json={"username": "dirk", "password": "wrong password"})
    locked = await client.post("/api/v1/auth/login", json={"username": "dirk", "password": "long enough 1"})
    assert locked.status_code == 429
    assert (await administrator.get(f"/admin/users/{user['id']}")).json()["locked_until"] is not None
    unlocked = await administrator.post(f"/admin/users/{user['id']}/unlock")
    assert unlocked.status_code == 200
    assert unlocked.json()["locked_until"] is None
    again = await client.post("/api/v1/auth/login", json={"username": "dirk", "password": "long enough 1"})
    assert again.status_code == 200


async def test_user_conflicts_and_validation(administrator: LoggedIn, make_user: UserFactory) -> None:
    existing = await make_user(username="erik", extension="250", direct_number="+31201234250")
    company_id = 1  # the fixture's company (Acme)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"username": "erik"}, 409, "username"),
        ({"extension": "250"}, 409, "extension"),
        ({"direct_number": "020 123 4250"}, 409, "direct_number"),
        ({"mobile_number": "+31201234250"}, 409, "mobile_number"),
        ({"direct_number": "020 123 4000"}, 409, "direct_number"),  # the company number
        ({"extension": "0123"}, 422, "extension"),
        ({"direct_number": "12ab"}, 422, "direct_number"),
        ({"licences": ["gold"]}, 422, "licences"),
        ({"username": "x y"}, 422, "username"),
        ({"password": "short"}, 422, "password"),
        ({"email": "not-an-address"}, 422, "email"),
        ({"group_id": 999999}, 404, ""),
        ({"company_id": 999999}, 404, ""),
    ]
    for fields, status, field in cases:
        body: dict[str, Any] = {"username": "frank", "password": "long enough 1", "company_id": company_id}
        body.update(fields)
        response = await administrator.post("/admin/users", json=body)
        assert response.status_code == status, (fields, response.text)
        if field:
            assert field_of(response) == field, (fields, response.text)
    # The same extension in another company is fine: extensions are per company.
    other = await new_company(administrator)
    await new_user(administrator, other, extension="250")
    taken = await patch(administrator, f"/admin/users/{existing.id}", {"mobile_number": "+31201234250"})
    assert taken.status_code == 409
    unknown = await patch(administrator, f"/admin/users/{existing.id}", {"password_hash": "x"})
    assert unknown.status_code == 422


async def test_licences_assign_and_remove(administrator: LoggedIn, make_user: UserFactory) -> None:
    user = await make_user(["do-not-disturb"])
    added = await administrator.post(f"/admin/users/{user.id}/licences", json={"licences": ["agent"]})
    assert added.status_code == 200, added.text
    assert {"do-not-disturb", "call-center-agent"} <= set(added.json()["licences"])
    removed = await administrator.delete(f"/admin/users/{user.id}/licences/do-not-disturb")
    assert "do-not-disturb" not in removed.json()["licences"]
    assert "call-center-agent" in removed.json()["licences"]
    # What the user sees follows at once (SPEC A5 "restart app re-reads licences").
    assert "do-not-disturb" not in (await user.get("/me/services")).json()["services"]
    replaced = await administrator.put(f"/admin/users/{user.id}/licences", json={"licences": ["voicemail"]})
    assert replaced.json()["licences"] == ["voicemail"]
    package = await administrator.post(f"/admin/users/{user.id}/licences", json={"licences": ["basic"]})
    assert "call-forwarding-busy" in package.json()["licences"]
    gone = await administrator.delete(f"/admin/users/{user.id}/licences/basic")
    assert gone.json()["licences"] == []
    bad = await administrator.post(f"/admin/users/{user.id}/licences", json={"licences": ["platinum"]})
    assert bad.status_code == 422
    assert "platinum" in bad.json()["detail"][0]["msg"]


async def test_sip_devices_store_only_digest_hashes(
    administrator: LoggedIn, make_user: UserFactory, app: FastAPI
) -> None:
    user = await make_user()
    state: AppState = app.state.hipper
    realm = state.settings.sip_realm
    created = await administrator.post(
        f"/admin/users/{user.id}/devices",
        json={"auth_username": "desk201", "password": "sip secret 1", "kind": "desk", "name": "Desk phone"},
    )
    assert created.status_code == 201, created.text
    device = created.json()
    assert device["password"] == "sip secret 1"
    assert device["realm"] == realm
    async with state.sessions() as session:
        row = (await session.execute(select(SipDevice).where(SipDevice.id == device["id"]))).scalar_one()
        assert row.ha1_md5 == hashlib.md5(f"desk201:{realm}:sip secret 1".encode()).hexdigest()
        assert row.ha1_sha256 == hashlib.sha256(f"desk201:{realm}:sip secret 1".encode()).hexdigest()
        stored = " ".join(str(getattr(row, column.key)) for column in SipDevice.__table__.columns)
        assert "sip secret 1" not in stored

    duplicate = await administrator.post(
        f"/admin/users/{user.id}/devices", json={"auth_username": "desk201", "password": "another one"}
    )
    assert duplicate.status_code == 409
    assert field_of(duplicate) == "auth_username"
    weak = await administrator.post(
        f"/admin/users/{user.id}/devices", json={"auth_username": "soft201", "password": "x"}
    )
    assert weak.status_code == 422
    assert field_of(weak) == "password"
    bad_name = await administrator.post(f"/admin/users/{user.id}/devices", json={"auth_username": "a b"})
    assert bad_name.status_code == 422

    generated = await administrator.post(
        f"/admin/users/{user.id}/devices", json={"auth_username": "soft201", "kind": "softphone"}
    )
    assert generated.status_code == 201
    assert len(generated.json()["password"]) >= 12
    listed = await administrator.get(f"/admin/users/{user.id}/devices")
    assert [d["auth_username"] for d in listed.json()] == ["desk201", "soft201"]
    assert all("password" not in d and "ha1_md5" not in d for d in listed.json())
    assert (await administrator.get(f"/admin/devices/{device['id']}")).json()["name"] == "Desk phone"

    reset = await administrator.post(f"/admin/devices/{device['id']}/password", json={"password": "new sip pass"})
    assert reset.status_code == 200
    async with state.sessions() as session:
        row = (await session.execute(select(SipDevice).where(SipDevice.id == device["id"]))).scalar_one()
        assert row.ha1_md5 == hashlib.md5(f"desk201:{realm}:new sip pass".encode()).hexdigest()

    assert (await administrator.delete(f"/admin/devices/{device['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/devices/{device['id']}")).status_code == 404


async def test_call_centers_and_members(administrator: LoggedIn, make_user: UserFactory) -> None:
    agent = await make_user(["agent"], extension="211")
    basic = await make_user(["basic"])
    created = await administrator.post(
        "/admin/companies/1/call-centers",
        json={"name": "Helpdesk", "number": "020 123 4900", "extension": "900", "wrap_up_seconds": 20},
    )
    assert created.status_code == 201, created.text
    call_center = created.json()
    assert call_center["number"] == "+31201234900"
    member = await administrator.put(f"/admin/call-centers/{call_center['id']}/members/{agent.id}")
    assert member.status_code == 200, member.text
    assert member.json()["members"] == [{"user_id": agent.id, "joined": True}]
    twice = await administrator.put(f"/admin/call-centers/{call_center['id']}/members/{agent.id}")
    assert twice.status_code == 409
    unlicensed = await administrator.put(f"/admin/call-centers/{call_center['id']}/members/{basic.id}")
    assert unlicensed.status_code == 422
    assert "call-center-agent" in unlicensed.json()["detail"][0]["msg"]
    # The member now has the call center number among their numbers (SPEC A4).
    me = await agent.get("/me")
    assert "+31201234900" in me.text
    numbers = (await administrator.get(f"/admin/users/{agent.id}")).json()["numbers"]
    assert numbers["call_center"] == "+31201234900" and numbers["company"] == "+31201234000"

    patched = await patch(administrator, f"/admin/call-centers/{call_center['id']}", {"wrap_up_seconds": 45})
    assert patched.json()["wrap_up_seconds"] == 45
    bad_wrap_up = await patch(administrator, f"/admin/call-centers/{call_center['id']}", {"wrap_up_seconds": -1})
    assert bad_wrap_up.status_code == 422
    assert field_of(bad_wrap_up) == "wrap_up_seconds"
    clash = await administrator.post("/admin/companies/1/call-centers", json={"name": "Sales", "extension": "900"})
    assert clash.status_code == 409
    user_clash = await administrator.post("/admin/companies/1/call-centers", json={"name": "Sales", "extension": "211"})
    assert user_clash.status_code == 409
    assert "user" in user_clash.json()["detail"][0]["msg"]
    listed = await administrator.get("/admin/companies/1/call-centers")
    assert [c["name"] for c in listed.json()] == ["Helpdesk"]

    left = await administrator.delete(f"/admin/call-centers/{call_center['id']}/members/{agent.id}")
    assert left.json()["members"] == []
    not_member = await administrator.delete(f"/admin/call-centers/{call_center['id']}/members/{agent.id}")
    assert not_member.status_code == 404
    assert (await administrator.delete(f"/admin/call-centers/{call_center['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/call-centers/{call_center['id']}")).status_code == 404


async def test_hunt_groups(administrator: LoggedIn, make_user: UserFactory) -> None:
    first = await make_user()
    second = await make_user()
    created = await administrator.post(
        "/admin/companies/1/hunt-groups",
        json={"name": "Reception", "extension": "500", "policy": "linear", "member_user_ids": [second.id, first.id]},
    )
    assert created.status_code == 201, created.text
    hunt_group = created.json()
    assert hunt_group["member_user_ids"] == [second.id, first.id]
    stranger_company = await new_company(administrator)
    stranger = await new_user(administrator, stranger_company)
    foreign = await patch(
        administrator, f"/admin/hunt-groups/{hunt_group['id']}", {"member_user_ids": [stranger["id"]]}
    )
    assert foreign.status_code == 422
    assert field_of(foreign) == "0"
    twice = await patch(
        administrator, f"/admin/hunt-groups/{hunt_group['id']}", {"member_user_ids": [first.id, first.id]}
    )
    assert twice.status_code == 422
    bad_policy = await patch(administrator, f"/admin/hunt-groups/{hunt_group['id']}", {"policy": "random"})
    assert bad_policy.status_code == 422
    changed = await patch(administrator, f"/admin/hunt-groups/{hunt_group['id']}", {"policy": "circular"})
    assert changed.json()["policy"] == "circular"
    assert len((await administrator.get("/admin/companies/1/hunt-groups")).json()) == 1
    # Deleting a member takes them out of the hunt group (the member list has no foreign key).
    assert (await administrator.delete(f"/admin/users/{second.id}")).status_code == 204
    assert (await administrator.get(f"/admin/hunt-groups/{hunt_group['id']}")).json()["member_user_ids"] == [first.id]
    assert (await administrator.delete(f"/admin/hunt-groups/{hunt_group['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/hunt-groups/{hunt_group['id']}")).status_code == 404


async def test_enterprise_directory(administrator: LoggedIn) -> None:
    created = await administrator.post(
        "/admin/companies/1/directory",
        json={"first_name": "Piet", "last_name": "Loodgieter", "company_name": "Piet BV", "number": "06-11112222"},
    )
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["number"] == "+31611112222"
    no_number = await administrator.post("/admin/companies/1/directory", json={"last_name": "X", "number": "abc"})
    assert no_number.status_code == 422
    assert field_of(no_number) == "number"
    no_name = await administrator.post("/admin/companies/1/directory", json={"number": "0611112222"})
    assert no_name.status_code == 422
    changed = await patch(administrator, f"/admin/directory/{entry['id']}", {"email": "piet@example.com"})
    assert changed.json()["email"] == "piet@example.com"
    assert [e["last_name"] for e in (await administrator.get("/admin/companies/1/directory")).json()] == ["Loodgieter"]
    assert (await administrator.get(f"/admin/directory/{entry['id']}")).status_code == 200
    assert (await administrator.delete(f"/admin/directory/{entry['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/directory/{entry['id']}")).status_code == 404


async def test_administrator_only_service_values(administrator: LoggedIn, make_user: UserFactory, app: FastAPI) -> None:

    user = await make_user()
    outside = await administrator.put(f"/admin/users/{user.id}/services/do-not-disturb", json={"active": True})
    assert outside.status_code == 422
    assert field_of(outside) == "service"
    saved = await administrator.put(
        f"/admin/users/{user.id}/services/night-forwarding", json={"night_mode": True, "destination": "0612345678"}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["destination"] == "+31612345678"
    mine = await user.get("/me/services/night-forwarding")
    assert mine.json()["night_mode"] is True
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        events = (await session.execute(select(Event).where(Event.user_id == user.id))).scalars().all()
        assert any(e.type == "service.changed" for e in events)


async def test_changes_write_outbox_events(administrator: LoggedIn, make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user()
    await patch(administrator, f"/admin/users/{user.id}", {"first_name": "Changed"})
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        types = (await session.execute(select(Event.type).where(Event.user_id == user.id))).scalars().all()
        assert "user.changed" in types
        sessions = (await session.execute(select(AuthSession).where(AuthSession.user_id == user.id))).all()
        assert sessions  # a profile change does not log the user out


async def test_a_company_administrator_manages_only_their_company(
    administrator: LoggedIn, make_user: UserFactory
) -> None:
    acme_admin = await make_user([], role="admin", username="acme-admin")
    acme_user = await make_user(["agent"])
    beta = await new_company(administrator)
    stranger = await new_user(administrator, beta, extension="301")
    device = (
        await administrator.post(f"/admin/users/{stranger['id']}/devices", json={"auth_username": "beta301"})
    ).json()
    call_center = (await administrator.post(f"/admin/companies/{beta}/call-centers", json={"name": "Beta CC"})).json()
    hunt_group = (await administrator.post(f"/admin/companies/{beta}/hunt-groups", json={"name": "Beta HG"})).json()
    entry = (
        await administrator.post(f"/admin/companies/{beta}/directory", json={"last_name": "X", "number": "0611112222"})
    ).json()

    assert [c["name"] for c in (await acme_admin.get("/admin/companies")).json()] == ["Acme"]
    assert (await acme_admin.post("/admin/companies", json={"name": "Mine"})).status_code == 403
    usernames = {u["username"] for u in (await acme_admin.get("/admin/users")).json()}
    assert "dirk" not in usernames and acme_user.username in usernames
    assert administrator.username not in usernames  # the platform administrator is nobody's company's
    # Everything of another company answers like a missing id.
    name = {"name": "x"}
    for method, path, body in [
        ("get", f"/admin/companies/{beta}", None),
        ("patch", f"/admin/companies/{beta}", name),
        ("put", f"/admin/companies/{beta}/night-mode", {"night_mode": True}),
        ("get", f"/admin/users?company_id={beta}", None),
        ("get", f"/admin/users/{stranger['id']}", None),
        ("patch", f"/admin/users/{stranger['id']}", {"first_name": "x"}),
        ("delete", f"/admin/users/{stranger['id']}", None),
        ("post", f"/admin/users/{stranger['id']}/password", {"password": "long enough 9"}),
        ("get", f"/admin/users/{stranger['id']}/devices", None),
        ("get", f"/admin/devices/{device['id']}", None),
        ("delete", f"/admin/devices/{device['id']}", None),
        ("get", f"/admin/call-centers/{call_center['id']}", None),
        ("put", f"/admin/call-centers/{call_center['id']}/members/{acme_user.id}", None),
        ("get", f"/admin/hunt-groups/{hunt_group['id']}", None),
        ("get", f"/admin/directory/{entry['id']}", None),
        ("post", f"/admin/companies/{beta}/call-centers", name),
        ("get", f"/admin/users/{stranger['id']}/services/night-forwarding", None),
    ]:
        response = await acme_admin.client.request(method, f"/api/v1{path}", headers=acme_admin.headers, json=body)
        assert response.status_code == 404, (method, path, response.text)
    into_beta = await acme_admin.post(
        "/admin/users", json={"username": "sneaky", "password": "long enough 1", "company_id": beta}
    )
    assert into_beta.status_code == 404
    # Without a company_id a company's administrator creates the user in their own company.
    own = await acme_admin.post("/admin/users", json={"username": "newbie", "password": "long enough 1"})
    assert own.status_code == 201
    assert own.json()["company_id"] == 1
    # A member from another company is refused by the store's own rule too.
    acme_cc = (await acme_admin.post("/admin/companies/1/call-centers", json={"name": "Acme CC"})).json()
    foreign = await administrator.put(f"/admin/call-centers/{acme_cc['id']}/members/{stranger['id']}")
    assert foreign.status_code == 422
    assert (await administrator.get(f"/admin/users/{stranger['id']}")).status_code == 200  # untouched
    self_delete = await acme_admin.delete(f"/admin/users/{acme_admin.id}")
    assert self_delete.status_code == 422


NASTY = ["\x00", "a\x00b", "x" * 5000, "😀", "   ", "-", "+", "00", "0", "+999999999999999999999", "٢٠١", "\u202e201"]


async def test_odd_input_is_refused_with_a_reason_never_a_500(administrator: LoggedIn, make_user: UserFactory) -> None:
    target = await make_user()
    accepted = 0
    for value in NASTY:
        for field in ("username", "first_name", "last_name", "email", "extension", "direct_number", "mobile_number"):
            fields: dict[str, object] = {"username": f"u{accepted}", "password": "long enough 1", "company_id": 1}
            fields[field] = value
            response = await administrator.post("/admin/users", json=fields)
            assert response.status_code in (201, 409, 422), (field, value, response.text)
            accepted += response.status_code == 201
            if response.status_code == 422:
                assert response.json()["detail"][0]["loc"][-1] == field, (field, value, response.text)
            changed = await patch(
                administrator, f"/admin/users/{target.id}", {field: value} if field != "username" else {}
            )
            assert changed.status_code in (200, 409, 422), (field, value, changed.text)
        requests: list[tuple[str, object]] = [
            ("/admin/companies", {"name": value, "number": value}),
            ("/admin/companies/1/groups", {"name": value}),
            ("/admin/companies/1/call-centers", {"name": "cc", "number": value, "extension": value}),
            ("/admin/companies/1/hunt-groups", {"name": value}),
            ("/admin/companies/1/directory", {"last_name": value, "number": "0612345678"}),
            ("/admin/companies/1/directory", {"last_name": "x", "number": value}),
            (f"/admin/users/{target.id}/devices", {"auth_username": value}),
            (f"/admin/users/{target.id}/devices", {"auth_username": f"dev{accepted}", "password": value}),
            (f"/admin/users/{target.id}/devices", {"auth_username": f"dev{accepted}x", "name": value}),
            (f"/admin/users/{target.id}/licences", {"licences": [value]}),
            (f"/admin/users/{target.id}/password", {"password": value}),
        ]
        for path, body in requests:
            response = await administrator.post(path, json=body)
            assert response.status_code in (200, 201, 204, 409, 422), (path, value, response.text)
            accepted += 1


async def test_a_race_for_the_same_username_ends_in_409_not_500(administrator: LoggedIn) -> None:
    # Both requests may pass the uniqueness check before either commits; the database's constraint decides then.
    body = {"username": "twin", "password": "long enough 1", "company_id": 1}
    first, second = await asyncio.gather(
        administrator.post("/admin/users", json=body), administrator.post("/admin/users", json=body)
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)


async def test_recording_mode_and_fixed_mobile_mode_are_the_administrators(
    administrator: LoggedIn, make_user: UserFactory
) -> None:
    user = await make_user()
    recording = await administrator.put(
        f"/admin/users/{user.id}/services/call-recording", json={"mode": "always_pause_resume"}
    )
    assert recording.status_code == 200, recording.text
    assert recording.json()["pause_resume_allowed"] is True
    seen = (await user.get("/me/services/call-recording")).json()
    assert seen["mode"] == "always_pause_resume"
    read_back = await administrator.get(f"/admin/users/{user.id}/services/call-recording")
    assert read_back.json()["mode"] == "always_pause_resume"
    bad = await administrator.put(f"/admin/users/{user.id}/services/call-recording", json={"mode": "sometimes"})
    assert bad.status_code == 422
    assert field_of(bad) == "mode"

    control = await administrator.put(
        f"/admin/users/{user.id}/services/fixed-mobile", json={"call_control_mode": "mobile_network"}
    )
    assert control.status_code == 200, control.text
    assert (await user.get("/me/services/fixed-mobile")).json()["call_control_mode"] == "mobile_network"

    basic = await make_user(["basic"])
    unlicensed = await administrator.put(f"/admin/users/{basic.id}/services/call-recording", json={"mode": "always"})
    assert unlicensed.status_code == 422
    assert "no licence" in unlicensed.json()["detail"][0]["msg"]
    unknown = await administrator.get(f"/admin/users/{user.id}/services/teleportation")
    assert unknown.status_code == 422


async def test_deleting_things_that_others_point_at(administrator: LoggedIn, make_user: UserFactory) -> None:
    agent = await make_user(["agent"])
    other = await make_user(["agent"])
    group = (await administrator.post("/admin/companies/1/groups", json={"name": "Sales"})).json()
    assert (await patch(administrator, f"/admin/users/{agent.id}", {"group_id": group["id"]})).status_code == 200
    first = (await administrator.post("/admin/companies/1/call-centers", json={"name": "One"})).json()
    second = (await administrator.post("/admin/companies/1/call-centers", json={"name": "Two"})).json()
    for call_center in (first, second):
        for member in (agent, other):
            await administrator.put(f"/admin/call-centers/{call_center['id']}/members/{member.id}")
    # A call center with agents, a user in a call center, a group with users: all go cleanly.
    assert (await administrator.delete(f"/admin/call-centers/{first['id']}")).status_code == 204
    assert (await administrator.delete(f"/admin/users/{other.id}")).status_code == 204
    remaining = (await administrator.get(f"/admin/call-centers/{second['id']}")).json()["members"]
    assert remaining == [{"user_id": agent.id, "joined": True}]
    assert (await administrator.delete(f"/admin/groups/{group['id']}")).status_code == 204
    assert (await administrator.get(f"/admin/users/{agent.id}")).json()["group_id"] is None
