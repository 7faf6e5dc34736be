"""App settings (SPEC B3, E4, L): defaults, partial changes, quick settings limited to licensed services."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select

from hipper.api.state import AppState
from hipper.store import app_settings
from hipper.store.models import Event, User
from tests.conftest import UserFactory


async def test_defaults_when_never_saved(make_user: UserFactory) -> None:
    user = await make_user(["basic"])
    assert (await user.get("/me/app-settings")).json() == {
        "quick_settings": ["do-not-disturb", "call-forwarding-always", "voicemail"],
        "theme": "system",
        "push": {"missed_calls": True, "voicemail": True},
        "contacts": {"lists": ["group", "enterprise", "personal"], "sort": "first_name", "whatsapp_button": True},
        "privacy": {"analytics": True},
        "language": "nl",
    }
    only_dnd = await make_user(["do-not-disturb"])
    assert (await only_dnd.get("/me/app-settings")).json()["quick_settings"] == ["do-not-disturb"]


async def test_save_partially_and_read_back(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user()
    order = ["voicemail", "anonymous", "do-not-disturb"]
    saved = await user.put("/me/app-settings", json={"quick_settings": order, "theme": "dark"})
    assert saved.status_code == 200, saved.text
    # A nested change keeps the nested fields it does not name.
    saved = await user.put(
        "/me/app-settings", json={"push": {"voicemail": False}, "privacy": {"analytics": False}, "language": "en"}
    )
    body = (await user.get("/me/app-settings")).json()
    assert body == saved.json()
    assert body["quick_settings"] == order and body["theme"] == "dark" and body["language"] == "en"
    assert body["push"] == {"missed_calls": True, "voicemail": False}
    assert body["privacy"] == {"analytics": False}
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        events = list(
            (
                await session.execute(select(Event.type).where(Event.user_id == user.id, Event.type.like("app%")))
            ).scalars()
        )
    assert events == ["app_settings.changed", "app_settings.changed"]


async def test_invalid_input_names_the_field(make_user: UserFactory) -> None:
    user = await make_user()
    cases = [
        ({"theme": "pink"}, ["body", "theme"]),
        ({"language": "de"}, ["body", "language"]),
        ({"push": {"missed_calls": "often"}}, ["body", "push", "missed_calls"]),
        ({"contacts": {"sort": "age"}}, ["body", "contacts", "sort"]),
        ({"contacts": {"lists": ["group", "group"]}}, ["body", "contacts", "lists"]),
        ({"quick_settings": ["teleportation"]}, ["body", "quick_settings", "0"]),
        ({"quick_settings": ["voicemail", "voicemail"]}, ["body", "quick_settings", "1"]),
        ({"quick_settings": ["night-forwarding"]}, ["body", "quick_settings", "0"]),
        ({"colour": "red"}, ["body", "colour"]),
    ]
    for body, location in cases:
        response = await user.put("/me/app-settings", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == location, (body, response.json())
    not_object = await user.put("/me/app-settings", json=["dark"])
    assert not_object.status_code == 422


async def test_quick_settings_only_for_licensed_services(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user(["do-not-disturb", "voicemail"])
    refused = await user.put("/me/app-settings", json={"quick_settings": ["voicemail", "personal-assistant"]})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "quick_settings", "1"]
    assert (await user.put("/me/app-settings", json={"quick_settings": ["voicemail", "do-not-disturb"]})).is_success
    # The administrator takes the voicemail licence away: its toggle disappears from what the app sees.
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.licences = ["do-not-disturb"]
        await session.commit()
    assert (await user.get("/me/app-settings")).json()["quick_settings"] == ["do-not-disturb"]


async def test_settings_are_per_user(make_user: UserFactory) -> None:
    alice = await make_user()
    bob = await make_user()
    assert (await alice.put("/me/app-settings", json={"theme": "dark", "quick_settings": []})).is_success
    assert (await bob.get("/me/app-settings")).json()["theme"] == "system"
    assert (await alice.get("/me/app-settings")).json()["quick_settings"] == []


async def test_push_preferences_for_the_notifier(make_user: UserFactory, app: FastAPI) -> None:
    user = await make_user()
    state: AppState = app.state.hipper
    async with state.sessions() as session:
        assert await app_settings.push_enabled(session, user.id, "voicemail") is True
    await user.put("/me/app-settings", json={"push": {"voicemail": False}})
    async with state.sessions() as session:
        assert await app_settings.push_enabled(session, user.id, "voicemail") is False
        assert await app_settings.push_enabled(session, user.id, "missed_calls") is True


async def test_the_api_is_documented(client: object, app: FastAPI) -> None:
    schema = app.openapi()
    for path in (
        "/api/v1/me/app-settings",
        "/api/v1/me/contacts",
        "/api/v1/me/contacts/personal/import",
        "/api/v1/me/call-logs",
        "/api/v1/me/call-logs/delete",
        "/api/v1/me/voicemails/{voicemail_id}/audio",
        "/api/v1/me/greetings",
    ):
        assert path in schema["paths"], path
    assert "text/vcard" in schema["paths"]["/api/v1/me/contacts/personal/import"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in schema["paths"]["/api/v1/me/greetings"]["post"]["requestBody"]["content"]
