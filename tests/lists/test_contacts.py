"""Contacts (SPEC E1, E2, E4): colleagues, enterprise and personal lists; search, sort, WhatsApp, vCard import."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from hipper.api.state import AppState
from hipper.store import admin
from hipper.store.models import Company, DirectoryEntry, Event
from tests.conftest import LoggedIn, UserFactory

VCARDS = (
    "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Jansen;Piet;;;\r\nFN:Piet Jansen\r\nORG:Bakkerij Jansen;Verkoop\r\n"
    "TEL;TYPE=CELL:06 12345678\r\nTEL;TYPE=WORK,VOICE:020-7654321\r\nEMAIL:piet@example.nl\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Émile Zola\r\nTEL;VALUE=uri;TYPE=cell:tel:+33-6-12-34-56-78\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Nummerloos;Nina;;;\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Fout;Frits;;;\r\nTEL:not a number\r\nEMAIL:no-at-sign\r\n"
    "TEL:+31 20 555 0101\r\nEND:VCARD\r\n"
)


async def patch(user: LoggedIn, entry_id: int, body: Any) -> Any:
    return await user.client.patch(f"/api/v1/me/contacts/personal/{entry_id}", json=body, headers=user.headers)


async def import_vcards(user: LoggedIn, text: str, content_type: str = "text/vcard") -> Any:
    return await user.client.post(
        "/api/v1/me/contacts/personal/import",
        content=text.encode(),
        headers={**user.headers, "Content-Type": content_type},
    )


async def enterprise_entry(app: FastAPI, company_id: int, **values: str) -> None:
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        company = await session.get(Company, company_id)
        assert company is not None
        await admin.create_directory_entry(session, company, values)
        await session.commit()


async def test_three_lists(make_user: UserFactory, app: FastAPI) -> None:
    me = await make_user(first_name="Mia", last_name="Mens")
    await make_user(first_name="Anna", last_name="Zwart", extension="301", mobile_number="0687654321")
    await make_user(first_name="Bert", last_name="Appel", extension="302", mobile_number=None)
    assert make_user.company_id is not None
    await enterprise_entry(app, make_user.company_id, first_name="Huis", last_name="Arts", number="0201110000")

    group = (await me.get("/me/contacts", params={"list": "group"})).json()["contacts"]
    assert [c["display_name"] for c in group] == ["Anna Zwart", "Bert Appel"]  # without me, by first name
    anna = group[0]
    assert anna["extension"] == "301" and anna["list"] == "group" and anna["whatsapp"] is True
    assert {(n["kind"], n["number"], n["whatsapp"]) for n in anna["numbers"]} >= {
        ("extension", "301", False),
        ("mobile", "+31687654321", True),
    }
    assert group[1]["whatsapp"] is False
    by_last = (await me.get("/me/contacts", params={"list": "group", "sort": "last_name"})).json()["contacts"]
    assert [c["last_name"] for c in by_last] == ["Appel", "Zwart"]

    enterprise = (await me.get("/me/contacts", params={"list": "enterprise"})).json()["contacts"]
    assert [(c["display_name"], c["numbers"][0]["number"]) for c in enterprise] == [("Huis Arts", "+31201110000")]

    added = await me.post("/me/contacts/personal", json={"first_name": "Kees", "number": "06-11122233"})
    assert added.status_code == 201, added.text  # a contact number needs no step-up
    assert added.json()["numbers"] == [{"kind": "other", "number": "+31611122233", "whatsapp": True}]
    personal = (await me.get("/me/contacts", params={"list": "personal"})).json()["contacts"]
    assert [c["first_name"] for c in personal] == ["Kees"]

    everything = (await me.get("/me/contacts")).json()["contacts"]
    assert {c["list"] for c in everything} == {"group", "enterprise", "personal"}


async def test_search_by_name_accent_and_number(make_user: UserFactory) -> None:
    me = await make_user()
    for body in (
        {"first_name": "José", "last_name": "Smit", "number": "0612345678"},
        {"last_name": "Groot", "company_name": "Garage Groot", "number": "+31 20 555 0101"},
    ):
        assert (await me.post("/me/contacts/personal", json=body)).status_code == 201

    async def find(q: str) -> list[str]:
        found = await me.get("/me/contacts", params={"list": "personal", "q": q})
        return [c["last_name"] for c in found.json()["contacts"]]

    assert await find("jose") == ["Smit"]
    assert await find("garage") == ["Groot"]
    assert await find("0612345") == ["Smit"]
    assert await find("+3120555") == ["Groot"]
    assert await find("jose groot") == []
    assert await find("nobody") == []


async def test_change_and_delete_personal_entry(make_user: UserFactory, app: FastAPI) -> None:
    me = await make_user()
    entry = (await me.post("/me/contacts/personal", json={"last_name": "Oud", "number": "0201234567"})).json()
    changed = await patch(me, entry["id"], {"last_name": "Nieuw", "email": "nieuw@example.nl"})
    assert changed.status_code == 200
    assert changed.json()["last_name"] == "Nieuw" and changed.json()["numbers"][0]["number"] == "+31201234567"
    assert (await me.delete(f"/me/contacts/personal/{entry['id']}")).status_code == 204
    assert (await me.get("/me/contacts", params={"list": "personal"})).json()["contacts"] == []
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        types = list((await session.execute(select(Event.type).where(Event.user_id == me.id))).scalars())
    assert [t for t in types if t.startswith("contacts.")] == [
        "contacts.personal.added",
        "contacts.personal.changed",
        "contacts.personal.deleted",
    ]


async def test_invalid_input_names_the_field(make_user: UserFactory) -> None:
    me = await make_user()
    cases = [
        ({"first_name": "X", "number": "abc"}, "number"),
        ({"first_name": "X"}, "number"),
        ({"number": "0612345678"}, "first_name"),
        ({"first_name": "X", "number": "0612345678", "email": "nope"}, "email"),
        ({"first_name": "X" * 101, "number": "0612345678"}, "first_name"),
        ({"first_name": "X", "number": "0612345678", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = await me.post("/me/contacts/personal", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"][-1] == field, (body, response.json())
    entry = (await me.post("/me/contacts/personal", json={"first_name": "X", "number": "0612345678"})).json()
    bad = await patch(me, entry["id"], {"number": "abc"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "number"]
    for params, field in (({"list": "friends"}, "list"), ({"sort": "age"}, "sort")):
        response = await me.get("/me/contacts", params=params)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == field


async def test_vcard_import(make_user: UserFactory) -> None:
    me = await make_user()
    result = await import_vcards(me, VCARDS)
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["imported"] == 4 and body["already_present"] == 0
    assert [(s["card"], s["reason"]) for s in body["skipped"]] == [
        (3, "the card has no phone number"),
        (4, "'not a number' is not a phone number"),
    ]
    contacts = (await me.get("/me/contacts", params={"list": "personal", "sort": "last_name"})).json()["contacts"]
    rows = [(c["first_name"], c["last_name"], c["numbers"][0]["number"], c["email"]) for c in contacts]
    assert rows == [
        ("Frits", "Fout", "+31205550101", None),  # the bad e-mail address is dropped, the number kept
        ("Piet", "Jansen", "+31612345678", "piet@example.nl"),
        ("Piet", "Jansen", "+31207654321", "piet@example.nl"),
        ("Émile", "Zola", "+33612345678", None),
    ]
    assert [c["company_name"] for c in contacts][1] == "Bakkerij Jansen"
    assert [c["whatsapp"] for c in contacts] == [False, True, False, False]
    again = (await import_vcards(me, VCARDS)).json()
    assert (again["imported"], again["already_present"]) == (0, 4)


async def test_bad_vcard_uploads(make_user: UserFactory) -> None:
    me = await make_user()
    wrong_type = await import_vcards(me, VCARDS, content_type="application/json")
    assert wrong_type.status_code == 415
    garbage = await import_vcards(me, "hello, this is no address book")
    assert garbage.status_code == 422 and garbage.json()["detail"][0]["loc"] == ["body"]
    empty = await import_vcards(me, "")
    assert empty.status_code == 422
    huge = await import_vcards(me, "BEGIN:VCARD\r\n" + "NOTE:" + "x" * 1_100_000 + "\r\nEND:VCARD\r\n")
    assert huge.status_code == 413
    assert (await me.get("/me/contacts", params={"list": "personal"})).json()["contacts"] == []


async def test_isolation_between_users_and_companies(make_user: UserFactory, app: FastAPI) -> None:
    alice = await make_user()
    bob = await make_user()
    entry = (await alice.post("/me/contacts/personal", json={"first_name": "Geheim", "number": "0612345678"})).json()
    assert (await bob.get("/me/contacts", params={"list": "personal"})).json()["contacts"] == []
    assert (await bob.get("/me/contacts", params={"q": "Geheim"})).json()["contacts"] == []
    for target in (entry["id"], entry["id"] + 1000):
        change = await patch(bob, target, {"first_name": "Bob"})
        remove = await bob.delete(f"/me/contacts/personal/{target}")
        for response in (change, remove):
            assert (response.status_code, response.json()["detail"]) == (
                404,
                "no such entry in your personal phone list",
            )
    [kept] = (await alice.get("/me/contacts", params={"list": "personal"})).json()["contacts"]
    assert kept["first_name"] == "Geheim"

    # Another company's people and phone list stay invisible.
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        other = await admin.create_company(session, "Other BV", "+31301234000")
        await admin.create_user(
            session,
            state.hasher,
            username="outsider",
            password="correct horse 1",
            company=other,
            first_name="Olga",
            extension="201",
            licences=["basic"],
        )
        await admin.create_directory_entry(session, other, {"last_name": "Extern", "number": "0301112222"})
        await session.commit()
        other_id = other.id
    # Alice sees her one colleague Bob (no first name: shown by username) and her own entry, nothing of Other BV.
    seen = [(c["list"], c["display_name"]) for c in (await alice.get("/me/contacts")).json()["contacts"]]
    assert seen == [("personal", "Geheim"), ("group", bob.username)]
    async with state.sessions() as session:
        foreign = (await session.execute(select(DirectoryEntry).where(DirectoryEntry.company_id == other_id))).scalars()
        assert [e.last_name for e in foreign] == ["Extern"]


async def test_contact_lists_follow_the_app_settings(make_user: UserFactory) -> None:
    me = await make_user()
    await make_user(first_name="Zora", last_name="Aalders")
    await me.post("/me/contacts/personal", json={"first_name": "Adam", "last_name": "Zee", "number": "0612345678"})
    assert [c["first_name"] for c in (await me.get("/me/contacts")).json()["contacts"]] == ["Adam", "Zora"]
    saved = await me.put("/me/app-settings", json={"contacts": {"lists": ["group", "personal"], "sort": "last_name"}})
    assert saved.status_code == 200
    assert [c["first_name"] for c in (await me.get("/me/contacts")).json()["contacts"]] == ["Zora", "Adam"]
    await me.put("/me/app-settings", json={"contacts": {"lists": ["personal"]}})
    assert [c["first_name"] for c in (await me.get("/me/contacts")).json()["contacts"]] == ["Adam"]


async def test_unchanged_lists_answer_304(make_user: UserFactory) -> None:
    me = await make_user()
    first = await me.get("/me/contacts")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    again = await me.client.get("/api/v1/me/contacts", headers={**me.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    await me.post("/me/contacts/personal", json={"first_name": "Nieuw", "number": "0612345678"})
    changed = await me.client.get("/api/v1/me/contacts", headers={**me.headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert [c["first_name"] for c in changed.json()["contacts"]] == ["Nieuw"]
