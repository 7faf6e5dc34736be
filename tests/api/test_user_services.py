"""Every user service through the API, on SQLite and PostgreSQL: round trip, invalid input naming the field,
licence gate, one user never seeing or changing another's settings, and the step-up for new numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

from hipper.domain.licences import ALL_LICENCES, USER_SERVICES
from hipper.domain.services import SERVICES, change
from hipper.store import service_settings
from hipper.store.models import ServiceSetting, User
from hipper.store.users import context_of
from tests.conftest import LoggedIn, UserFactory, sqlite_only

# The user under test always has this extension, so that loops can be written into the table.
OWN_EXTENSION = "301"


@dataclass(frozen=True)
class Case:
    valid: dict[str, Any]
    # The part of the answer the valid document must produce (numbers normalised).
    expected: dict[str, Any]
    invalid: dict[str, Any]
    invalid_field: str
    # Whether `valid` sets a phone number or the voicemail e-mail address (and so needs a step-up).
    sets_number: bool = False
    notes: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {
    "call-forwarding-always": Case(
        {"active": True, "destination": "06 87654321"},
        {"destination": "+31687654321"},
        {"active": True, "destination": "abc"},
        "destination",
        sets_number=True,
    ),
    "call-forwarding-always-secondary": Case(
        {"active": True, "destination": "0687654321"},
        {"destination": "+31687654321"},
        {"active": True, "destination": OWN_EXTENSION},
        "destination",
        sets_number=True,
    ),
    "call-forwarding-busy": Case(
        {"active": True, "destination": "0687654321"},
        {"active": True},
        {"active": True, "destination": OWN_EXTENSION},
        "destination",
        sets_number=True,
    ),
    "call-forwarding-no-answer": Case(
        {"active": True, "destination": "0687654321", "rings": 3},
        {"rings": 3},
        {"rings": 0},
        "rings",
        sets_number=True,
    ),
    "call-forwarding-not-reachable": Case(
        {"active": True, "destination": "0687654321"},
        {"destination": "+31687654321"},
        {"active": "often"},
        "active",
        sets_number=True,
    ),
    "remote-office": Case(
        {"active": True, "destination": "020 1234999"},
        {"destination": "+31201234999"},
        {"active": True, "destination": OWN_EXTENSION},
        "destination",
        sets_number=True,
    ),
    "personal-assistant": Case(
        {
            "active": True,
            "presence": "meeting",
            "until": "2099-11-25T17:00:00+01:00",
            "transfer_to": "0201234999",
            "alert_tone": True,
            "exceptions": [{"name": "Manager", "number": "06 87654321"}],
        },
        {"presence": "meeting", "exceptions": [{"name": "Manager", "number": "+31687654321"}]},
        {"exceptions": [{"name": "A", "number": "0687654321"}, {"name": "B", "number": "+31687654321"}]},
        "exceptions.1.number",
        sets_number=True,
    ),
    "simultaneous-ring": Case(
        {"active": True, "targets": [{"number": "0687654321", "answer_confirmation": True}]},
        {"targets": [{"number": "+31687654321", "answer_confirmation": True}]},
        {"active": True, "targets": [{"number": "0687654321"}, {"number": OWN_EXTENSION}]},
        "targets.1.number",
        sets_number=True,
    ),
    "do-not-disturb": Case({"active": True, "ring_splash": True}, {"active": True}, {"active": "maybe"}, "active"),
    "call-waiting": Case({"active": False}, {"active": False}, {"active": [1]}, "active"),
    "anywhere": Case(
        {
            "click_to_dial_rings_locations": True,
            "locations": [{"name": "Work mobile", "number": "0687654321", "block_diversion": True}],
        },
        {
            "locations": [
                {
                    "id": 1,
                    "active": True,
                    "name": "Work mobile",
                    "number": "+31687654321",
                    "call_control": False,
                    "block_diversion": True,
                    "answer_confirmation": False,
                }
            ]
        },
        {"locations": [{"name": "desk", "number": OWN_EXTENSION}]},
        "locations.0.number",
        sets_number=True,
    ),
    "fixed-mobile": Case(
        {"fixed_rings": "desk", "mobile_rings": "both", "click_to_dial_to_mobile": True},
        {"enabled": True, "fixed_rings": "desk", "click_to_dial_to_mobile": True},
        {"mobile_rings": "tablet"},
        "mobile_rings",
    ),
    "anonymous": Case({"desk": True, "mobile": True}, {"desk": True, "mobile": True}, {"desk": "x"}, "desk"),
    "outgoing-identity": Case(
        {"fixed": "company", "mobile": "mobile", "ask_each_call": False},
        {"fixed": "company", "mobile": "mobile"},
        {"fixed": "department"},  # this user has no department number
        "fixed",
    ),
    "call-method": Case(
        {"method": "callback", "callback_device": "mobile"},
        {"method": "callback"},
        {"method": "pigeon"},
        "method",
    ),
    "voicemail": Case(
        {"rings": 6, "email_notification": True, "email_address": "jan@example.nl"},
        {"rings": 6, "email_address": "jan@example.nl"},
        {"email_notification": True},
        "email_address",
        sets_number=True,  # where messages go is guarded like a forwarding number (docs/security.md)
    ),
    # The user chooses the mode (SPEC I) among those the administrator allows (by default all of them).
    "call-recording": Case(
        {"mode": "on_demand", "pause_resume_allowed": False},
        {
            "mode": "on_demand",
            "pause_resume_allowed": True,
            "allowed_modes": ["always", "always_pause_resume", "on_demand", "on_demand_user_start", "never"],
        },
        {"mode": "sometimes"},
        "mode",
    ),
    "call-center-agent": Case({"state": "available"}, {"state": "available"}, {"state": "wrap_up"}, "state"),
}
# Night forwarding is the administrator's whole document: tested on its own below.
USER_WRITABLE = [service for service in USER_SERVICES if service != "night-forwarding"]


def test_the_table_covers_every_service() -> None:
    assert set(CASES) | {"night-forwarding"} == set(SERVICES) == set(USER_SERVICES)


def _field(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"][1:])


async def _user(make_user: UserFactory, licences: list[str] | None = None) -> LoggedIn:
    return await make_user(licences, extension=OWN_EXTENSION)


@pytest.mark.parametrize("service", USER_WRITABLE)
async def test_round_trip(make_user: UserFactory, service: str) -> None:
    case = CASES[service]
    user = await _user(make_user)
    before = await user.get(f"/me/services/{service}")
    assert before.status_code == 200, before.text
    if case.sets_number:
        await user.step_up()
    saved = await user.put(f"/me/services/{service}", json=case.valid)
    assert saved.status_code == 200, saved.text
    assert {key: saved.json()[key] for key in case.expected} == case.expected
    again = await user.get(f"/me/services/{service}")
    assert again.json() == saved.json()
    # Sending back what GET returned changes nothing and needs nothing.
    echoed = await user.put(f"/me/services/{service}", json=again.json())
    assert echoed.status_code == 200, echoed.text
    assert echoed.json() == again.json()


@sqlite_only
@pytest.mark.parametrize("service", USER_WRITABLE)
async def test_invalid_input_names_the_field(make_user: UserFactory, service: str) -> None:
    case = CASES[service]
    user = await _user(make_user)
    await user.step_up()
    before = (await user.get(f"/me/services/{service}")).json()
    response = await user.put(f"/me/services/{service}", json=case.invalid)
    assert response.status_code == 422, response.text
    assert _field(response.json()["detail"][0]) == case.invalid_field
    assert response.json()["detail"][0]["msg"]
    # Nothing was stored.
    assert (await user.get(f"/me/services/{service}")).json() == before


@sqlite_only
@pytest.mark.parametrize("service", USER_SERVICES)
async def test_unlicensed_user_gets_403_not_licensed(make_user: UserFactory, service: str) -> None:
    user = await _user(make_user, sorted(ALL_LICENCES - {service}))
    for response in (
        await user.get(f"/me/services/{service}"),
        await user.put(f"/me/services/{service}", json=CASES.get(service, CASES["call-waiting"]).valid),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "not_licensed"
    assert service not in (await user.get("/me/services")).json()["services"]


@pytest.mark.parametrize("service", USER_WRITABLE)
async def test_another_user_never_sees_or_changes_this_users_settings(make_user: UserFactory, service: str) -> None:
    case = CASES[service]
    alice = await _user(make_user)
    bob = await make_user()
    default = (await bob.get(f"/me/services/{service}")).json()
    await alice.step_up()
    await bob.step_up()
    assert (await alice.put(f"/me/services/{service}", json=case.valid)).status_code == 200
    alices = (await alice.get(f"/me/services/{service}")).json()
    # Bob still sees his own (default) document, and writing his own leaves Alice's alone.
    assert (await bob.get(f"/me/services/{service}")).json() == default
    assert (await bob.put(f"/me/services/{service}", json=default)).status_code == 200
    assert (await alice.get(f"/me/services/{service}")).json() == alices


@pytest.mark.parametrize("service", [s for s in USER_WRITABLE if CASES[s].sets_number])
async def test_a_new_number_needs_a_step_up(make_user: UserFactory, service: str) -> None:
    user = await _user(make_user)
    refused = await user.put(f"/me/services/{service}", json=CASES[service].valid)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "step_up_required"
    await user.step_up()
    saved = await user.put(f"/me/services/{service}", json=CASES[service].valid)
    assert saved.status_code == 200, saved.text


@pytest.mark.parametrize("service", [s for s in USER_WRITABLE if not CASES[s].sets_number])
async def test_no_step_up_without_numbers(make_user: UserFactory, service: str) -> None:
    user = await _user(make_user)
    saved = await user.put(f"/me/services/{service}", json=CASES[service].valid)
    assert saved.status_code == 200, saved.text


async def test_switching_off_or_removing_a_number_needs_no_step_up(make_user: UserFactory) -> None:
    user = await _user(make_user)
    await user.step_up()
    body = {"active": True, "targets": [{"number": "0687654321"}, {"number": "0687654322"}]}
    assert (await user.put("/me/services/simultaneous-ring", json=body)).status_code == 200
    # A new session (no step-up): switching off and removing one target are fine, adding one is not.
    relogged = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    fresh = LoggedIn(user.id, user.username, user.password, relogged.json()["token"], user.client)
    off = {"active": False, "targets": [{"number": "+31687654322"}]}
    assert (await fresh.put("/me/services/simultaneous-ring", json=off)).status_code == 200
    more = {"active": False, "targets": [{"number": "+31687654322"}, {"number": "0687654323"}]}
    refused = await fresh.put("/me/services/simultaneous-ring", json=more)
    assert refused.json()["code"] == "step_up_required"


async def _as_administrator(app: FastAPI, user_id: int, service: str, values: dict[str, Any]) -> None:
    """Set a document as the administrator does (the admin API is another area; its rules are these)."""
    async with app.state.hipper.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        cls = SERVICES[service]
        current = await service_settings.load(session, user_id, cls)
        new = change(cls, current, values, await context_of(session, user), stepped_up=False, by_administrator=True)
        await service_settings.save(session, user_id, new)
        await session.commit()


async def test_night_forwarding_is_read_only_to_the_user(app: FastAPI, make_user: UserFactory) -> None:
    user = await _user(make_user)
    assert (await user.get("/me/services/night-forwarding")).json() == {"night_mode": False, "destination": None}
    await _as_administrator(app, user.id, "night-forwarding", {"night_mode": True, "destination": "0201234999"})
    shown = await user.get("/me/services/night-forwarding")
    assert shown.json() == {"night_mode": True, "destination": "+31201234999"}
    await user.step_up()
    for body in (shown.json(), {"night_mode": False}, {"destination": "garbage"}, {}):
        refused = await user.put("/me/services/night-forwarding", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "read_only"
    assert (await user.get("/me/services/night-forwarding")).json() == shown.json()


@pytest.mark.parametrize(
    ("service", "body", "field"),
    [
        ("fixed-mobile", {"enabled": False}, "enabled"),
        ("fixed-mobile", {"call_control_mode": "mobile_network"}, "call_control_mode"),
        ("call-recording", {"allowed_modes": ["never"]}, "allowed_modes"),
        ("call-center-agent", {"wrap_up_seconds": 5}, "wrap_up_seconds"),
    ],
)
async def test_administrator_fields_answer_read_only(
    make_user: UserFactory, service: str, body: dict[str, Any], field: str
) -> None:
    user = await _user(make_user)
    refused = await user.put(f"/me/services/{service}", json=body)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "read_only"
    assert field in refused.json()["detail"]


async def test_recording_mode_set_by_the_administrator_shows_what_it_allows(
    app: FastAPI, make_user: UserFactory
) -> None:
    user = await _user(make_user)
    await _as_administrator(app, user.id, "call-recording", {"mode": "on_demand_user_start"})
    shown = (await user.get("/me/services/call-recording")).json()
    assert shown == {
        "mode": "on_demand_user_start",
        "pause_resume_allowed": True,
        "allowed_modes": ["always", "always_pause_resume", "on_demand", "on_demand_user_start", "never"],
    }


async def test_the_user_chooses_the_recording_mode_among_those_the_administrator_allows(
    app: FastAPI, make_user: UserFactory
) -> None:
    user = await _user(make_user)
    await _as_administrator(
        app, user.id, "call-recording", {"mode": "always", "allowed_modes": ["always", "on_demand"]}
    )
    chosen = await user.put("/me/services/call-recording", json={"mode": "on_demand"})
    assert chosen.status_code == 200, chosen.text
    refused = await user.put("/me/services/call-recording", json={"mode": "never"})
    assert refused.status_code == 422
    assert [(item["field"], item["code"]) for item in refused.json()["detail"]] == [("mode", "not_allowed")]
    assert (await user.get("/me/services/call-recording")).json()["mode"] == "on_demand"


async def test_voicemail_on_busy_needs_call_waiting_off(make_user: UserFactory) -> None:
    user = await _user(make_user)
    refused = await user.put("/me/services/voicemail", json={"on_busy": True})
    assert refused.status_code == 422
    assert _field(refused.json()["detail"][0]) == "on_busy"
    assert "call waiting off" in refused.json()["detail"][0]["msg"]
    assert (await user.put("/me/services/call-waiting", json={"active": False})).status_code == 200
    saved = await user.put("/me/services/voicemail", json={"on_busy": True})
    assert saved.status_code == 200, saved.text
    assert saved.json()["on_busy"] is True


async def test_option_behind_another_licence_answers_not_licensed(make_user: UserFactory) -> None:
    user = await _user(make_user, sorted(ALL_LICENCES - {"call-center-premium", "fixed-mobile"}))
    for service, body, field_name in (
        ("outgoing-identity", {"fixed": "call_center"}, "fixed"),
        ("outgoing-identity", {"mobile": "mobile"}, "mobile"),
        ("anonymous", {"mobile": True}, "mobile"),
        ("call-center-agent", {"calls_to_mobile": True}, "calls_to_mobile"),
    ):
        refused = await user.put(f"/me/services/{service}", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "not_licensed"
        assert refused.json()["detail"].startswith(f"{field_name}: ")


@sqlite_only
async def test_openapi_documents_each_service_with_its_own_schema(make_user: UserFactory) -> None:
    user = await _user(make_user)
    spec = (await user.client.get("/api/v1/openapi.json")).json()
    for service in USER_SERVICES:
        path = spec["paths"][f"/api/v1/me/services/{service}"]
        response_schema = path["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        # FastAPI qualifies a name that another model shares (the routing plan has a PersonalAssistant step).
        schema_name = response_schema["$ref"].split("/")[-1].split("__")[-1]
        assert schema_name.startswith(SERVICES[service].__name__)
        assert spec["components"]["schemas"][response_schema["$ref"].split("/")[-1]]["properties"]
        assert "put" in path


async def test_a_stored_document_that_no_longer_validates_keeps_what_fits(app: FastAPI, make_user: UserFactory) -> None:
    user = await _user(make_user)
    async with app.state.hipper.sessions() as session:
        stale = {"active": True, "destination": "+31687654321", "rings": 99, "retired_field": 1}
        session.add(
            ServiceSetting(
                user_id=user.id, service="call-forwarding-no-answer", data=stale, updated_at=datetime.now(UTC)
            )
        )
        await session.commit()
    shown = await user.get("/me/services/call-forwarding-no-answer")
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"active": True, "destination": "+31687654321", "rings": 4}


async def test_administrator_values_through_the_admin_api(make_user: UserFactory) -> None:
    """The admin area's route sets what this area shows read-only (the contract between the two)."""
    user = await _user(make_user)
    admin = await make_user(role="admin")
    night = await admin.put(
        f"/admin/users/{user.id}/services/night-forwarding", json={"night_mode": True, "destination": "0201234999"}
    )
    assert night.status_code == 200, night.text
    assert (await user.get("/me/services/night-forwarding")).json() == {
        "night_mode": True,
        "destination": "+31201234999",
    }
    recording = await admin.put(
        f"/admin/users/{user.id}/services/call-recording", json={"mode": "always", "allowed_modes": ["always"]}
    )
    assert recording.status_code == 200, recording.text
    shown = (await user.get("/me/services/call-recording")).json()
    assert shown == {"mode": "always", "pause_resume_allowed": False, "allowed_modes": ["always"]}
    refused = await user.put("/me/services/call-recording", json={"mode": "never", "allowed_modes": ["never"]})
    assert refused.json()["code"] == "read_only"
