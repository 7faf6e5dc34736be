"""Incoming-call services (F3, F6, F7, F9, F10, K): valid documents, each invalid case, loops, step-up."""

from __future__ import annotations

from typing import Any

import pytest

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting, ReadOnlySetting, StepUpRequired
from hipper.domain.licences import ALL_LICENCES
from hipper.domain.services import SERVICES, ServiceSettings, change

CTX = UserContext(
    user_id=1,
    extension="201",
    numbers={"direct": "+31201234101", "mobile": "+31612345601", "company": "+31201234000"},
    licences=ALL_LICENCES,
)
OTHER = "+31687654321"
OTHER2 = "+31687654322"


def _change(
    service: str,
    proposed: dict[str, Any],
    *,
    stepped_up: bool = True,
    current: ServiceSettings | None = None,
    ctx: UserContext = CTX,
) -> dict[str, Any]:
    cls = SERVICES[service]
    new = change(cls, current or cls(), proposed, ctx, stepped_up=stepped_up)
    return new.model_dump(mode="json")


VALID: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("remote-office", {"active": True, "destination": "020 1234999"}, {"destination": "+31201234999"}),
    # One's own mobile as the remote office is legitimate.
    ("remote-office", {"active": True, "destination": "06 12345601"}, {"destination": "+31612345601"}),
    (
        "personal-assistant",
        {
            "active": True,
            "presence": "lunch",
            "until": "2026-11-25T13:00:00+01:00",
            "transfer_to": "205",
            "alert_tone": True,
            "exceptions": [{"name": "Manager", "number": "06 87654321"}],
        },
        {"presence": "lunch", "transfer_to": "205", "exceptions": [{"name": "Manager", "number": OTHER}]},
    ),
    # Without fixed-mobile the own mobile is an ordinary phone: transferring there leaves the assistant.
    ("personal-assistant", {"active": True, "until": None}, {"until": None, "presence": "unavailable"}),
    (
        "simultaneous-ring",
        {
            "active": True,
            "targets": [{"number": "0687654321", "answer_confirmation": True}, {"number": "0612345601"}],
            "do_not_ring_when_busy": True,
        },
        {
            "targets": [
                {"number": OTHER, "answer_confirmation": True},
                {"number": "+31612345601", "answer_confirmation": False},
            ]
        },
    ),
    ("call-waiting", {"active": False}, {"active": False}),
    (
        "anywhere",
        {
            "click_to_dial_rings_locations": True,
            "locations": [
                {"name": "Work mobile", "number": "0687654321", "answer_confirmation": True},
                {"id": 7, "active": False, "name": "Private", "number": "0687654322", "block_diversion": True},
            ],
        },
        {
            "locations": [
                {
                    "id": 8,
                    "active": True,
                    "name": "Work mobile",
                    "number": OTHER,
                    "call_control": False,
                    "block_diversion": False,
                    "answer_confirmation": True,
                },
                {
                    "id": 7,
                    "active": False,
                    "name": "Private",
                    "number": OTHER2,
                    "call_control": False,
                    "block_diversion": True,
                    "answer_confirmation": False,
                },
            ]
        },
    ),
    (
        "fixed-mobile",
        {"fixed_rings": "desk", "mobile_rings": "mobile", "group_calls_to_mobile": True},
        {"enabled": True, "call_control_mode": "exchange", "fixed_rings": "desk", "mobile_rings": "mobile"},
    ),
]


@pytest.mark.parametrize(("service", "proposed", "expected"), VALID)
def test_valid_documents_are_accepted_and_normalised(
    service: str, proposed: dict[str, Any], expected: dict[str, Any]
) -> None:
    saved = _change(service, proposed)
    assert {key: saved[key] for key in expected} == expected


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("call-forwarding-always", {"active": True}, "destination"),
    ("call-forwarding-always-secondary", {"active": True, "to_voicemail": False}, "destination"),
    ("call-forwarding-no-answer", {"active": True}, "destination"),
    ("remote-office", {"active": True}, "destination"),
    ("remote-office", {"active": True, "destination": "abc"}, "destination"),
    ("remote-office", {"active": True, "destination": "201"}, "destination"),  # own extension: loop
    ("remote-office", {"active": True, "destination": "+31201234101"}, "destination"),  # own direct number
    ("personal-assistant", {"presence": "sleeping"}, "presence"),
    ("personal-assistant", {"until": "2026-11-25T13:00:00"}, "until"),  # no time zone: ambiguous
    ("personal-assistant", {"transfer_to": "201"}, "transfer_to"),
    ("personal-assistant", {"exceptions": [{"name": "", "number": OTHER}]}, "exceptions.0.name"),
    ("personal-assistant", {"exceptions": [{"name": "A", "number": "x"}]}, "exceptions.0.number"),
    ("personal-assistant", {"exceptions": [{"name": "  ", "number": OTHER}]}, "exceptions.0.name"),
    ("personal-assistant", {"exceptions": [{"name": "a\u0000b", "number": OTHER}]}, "exceptions.0.name"),
    ("anywhere", {"locations": [{"name": "evil\u202eexe", "number": OTHER}]}, "locations.0.name"),
    ("anywhere", {"locations": [{"name": "x" * 101, "number": OTHER}]}, "locations.0.name"),
    (
        "personal-assistant",
        {"exceptions": [{"name": "A", "number": OTHER}, {"name": "B", "number": "0687654321"}]},
        "exceptions.1.number",
    ),
    (
        "personal-assistant",
        {"exceptions": [{"name": f"n{i}", "number": f"+316876543{i:02d}"} for i in range(21)]},
        "exceptions",
    ),
    ("simultaneous-ring", {"targets": [{"number": OTHER}, {"number": "201"}]}, "targets.1.number"),
    ("simultaneous-ring", {"targets": [{"number": "+31201234101"}]}, "targets.0.number"),
    ("simultaneous-ring", {"targets": [{"number": OTHER}, {"number": "0687654321"}]}, "targets.1.number"),
    ("simultaneous-ring", {"targets": [{"number": f"+316876543{i:02d}"} for i in range(11)]}, "targets"),
    ("simultaneous-ring", {"targets": [{"number": OTHER, "confirm": True}]}, "targets.0.confirm"),
    ("call-waiting", {"active": "sometimes"}, "active"),
    ("anywhere", {"locations": [{"name": "desk", "number": "201"}]}, "locations.0.number"),
    ("anywhere", {"locations": [{"number": OTHER}, {"number": OTHER}]}, "locations.1.number"),
    ("anywhere", {"locations": [{"id": 1, "number": OTHER}, {"id": 1, "number": OTHER2}]}, "locations.1.id"),
    ("anywhere", {"locations": [{"name": "no number"}]}, "locations.0.number"),
    ("fixed-mobile", {"fixed_rings": "tablet"}, "fixed_rings"),
    ("fixed-mobile", {"mobile_rings": None}, "mobile_rings"),
]


@pytest.mark.parametrize(("service", "proposed", "field"), INVALID)
def test_invalid_documents_name_the_field(service: str, proposed: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        _change(service, proposed)
    assert info.value.field == field


def test_pa_transfer_to_own_mobile_is_a_loop_only_with_fixed_mobile() -> None:
    without = UserContext(1, "201", dict(CTX.numbers), ALL_LICENCES - {"fixed-mobile"})
    assert _change("personal-assistant", {"transfer_to": "0612345601"}, ctx=without)["transfer_to"] == "+31612345601"
    with pytest.raises(InvalidSetting) as info:
        _change("personal-assistant", {"transfer_to": "0612345601"})
    assert info.value.field == "transfer_to"


def test_pa_in_effect_until_the_chosen_moment() -> None:
    from datetime import UTC, datetime

    pa = SERVICES["personal-assistant"].model_validate({"active": True, "until": "2026-11-25T13:00:00+00:00"})
    assert pa.in_effect(datetime(2026, 11, 25, 12, 59, tzinfo=UTC))  # type: ignore[attr-defined]
    assert not pa.in_effect(datetime(2026, 11, 25, 13, 0, tzinfo=UTC))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("service", "field", "value"),
    [("fixed-mobile", "enabled", False), ("fixed-mobile", "call_control_mode", "mobile_network")],
)
def test_administrator_fields_are_read_only(service: str, field: str, value: Any) -> None:
    with pytest.raises(ReadOnlySetting) as info:
        _change(service, {field: value})
    assert info.value.field == field


def test_administrator_sets_read_only_fields_but_not_an_off_master_switch() -> None:
    cls = SERVICES["fixed-mobile"]
    new = change(cls, cls(), {"call_control_mode": "mobile_network"}, CTX, stepped_up=False, by_administrator=True)
    assert new.model_dump()["call_control_mode"] == "mobile_network"
    with pytest.raises(InvalidSetting):
        change(cls, cls(), {"enabled": False}, CTX, stepped_up=False, by_administrator=True)


def test_night_forwarding_is_the_administrators_whole_document() -> None:
    cls = SERVICES["night-forwarding"]
    with pytest.raises(ReadOnlySetting):
        _change("night-forwarding", {})
    new = change(
        cls, cls(), {"night_mode": True, "destination": "0201234999"}, CTX, stepped_up=False, by_administrator=True
    )
    assert new.model_dump() == {"night_mode": True, "destination": "+31201234999"}
    with pytest.raises(InvalidSetting) as info:
        change(cls, cls(), {"night_mode": True}, CTX, stepped_up=False, by_administrator=True)
    assert info.value.field == "destination"
    with pytest.raises(InvalidSetting):
        change(cls, cls(), {"night_mode": True, "destination": "201"}, CTX, stepped_up=False, by_administrator=True)


# (service, a document with numbers, the same numbers toggled/reduced, a document with one new number)
STEP_UP: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "remote-office",
        {"active": True, "destination": OTHER},
        {"active": False, "destination": OTHER},
        {"active": True, "destination": OTHER2},
    ),
    (
        "personal-assistant",
        {"transfer_to": OTHER, "exceptions": [{"name": "A", "number": OTHER2}]},
        {"active": True, "transfer_to": OTHER, "exceptions": []},
        {"transfer_to": OTHER, "exceptions": [{"name": "A", "number": OTHER2}, {"name": "B", "number": "205"}]},
    ),
    (
        "simultaneous-ring",
        {"targets": [{"number": OTHER}, {"number": OTHER2}]},
        {"active": True, "targets": [{"number": OTHER2, "answer_confirmation": True}]},
        {"targets": [{"number": OTHER}, {"number": "205"}]},
    ),
    (
        "anywhere",
        {"locations": [{"id": 1, "number": OTHER}, {"id": 2, "number": OTHER2}]},
        {"locations": [{"id": 1, "number": OTHER, "active": False}]},
        {"locations": [{"id": 1, "number": "+31687654323"}]},
    ),
]


@pytest.mark.parametrize(("service", "start", "same_numbers", "new_number"), STEP_UP)
def test_step_up_is_needed_only_for_a_new_number(
    service: str, start: dict[str, Any], same_numbers: dict[str, Any], new_number: dict[str, Any]
) -> None:
    cls = SERVICES[service]
    with pytest.raises(StepUpRequired):
        _change(service, start, stepped_up=False)
    current = cls.model_validate(start)
    _change(service, same_numbers, stepped_up=False, current=current)  # toggling or removing: no step-up
    with pytest.raises(StepUpRequired):
        _change(service, new_number, stepped_up=False, current=current)
    _change(service, new_number, stepped_up=True, current=current)


@pytest.mark.parametrize("service", ["call-waiting", "fixed-mobile"])
def test_services_without_numbers_never_need_a_step_up(service: str) -> None:
    _change(service, {}, stepped_up=False)


def test_pa_until_a_moment_already_past_is_refused_when_set() -> None:
    from datetime import UTC, datetime

    cls = SERVICES["personal-assistant"]
    now = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    past = {"active": True, "until": "2026-11-25T13:00:00+00:00"}
    with pytest.raises(InvalidSetting) as info:
        change(cls, cls(), past, CTX, stepped_up=False, now=now)
    assert info.value.field == "until"
    # It ran out by itself: sending the document back (e.g. to change the alert tone) is still fine.
    ran_out = cls.model_validate(past)
    change(cls, ran_out, {**past, "alert_tone": True}, CTX, stepped_up=False, now=now)
    assert change(cls, cls(), {**past, "until": "2026-11-25T15:00:00+00:00"}, CTX, stepped_up=False, now=now)


def test_new_anywhere_locations_get_unused_ids_within_range() -> None:
    top = 2**31 - 1
    saved = _change("anywhere", {"locations": [{"id": top, "number": OTHER}, {"number": OTHER2}]})
    assert [location["id"] for location in saved["locations"]] == [top, 1]
    with pytest.raises(InvalidSetting) as info:
        _change("anywhere", {"locations": [{"id": top + 1, "number": OTHER}]})
    assert info.value.field == "locations.0.id"
