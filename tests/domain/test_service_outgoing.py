"""Outgoing-call services (G1–G4), voicemail (H1) and the recording mode (I): choices that depend on the
user's numbers, licences and other services."""

from __future__ import annotations

from typing import Any

import pytest

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting, NotLicensed, ReadOnlySetting
from hipper.domain.licences import ALL_LICENCES
from hipper.domain.services import SERVICES, CallWaiting, ServiceSettings, change

CTX = UserContext(
    user_id=1,
    extension="201",
    numbers={"direct": "+31201234101", "mobile": "+31612345601", "company": "+31201234000"},
    licences=ALL_LICENCES,
)
NO_FIXED_MOBILE = UserContext(1, "201", dict(CTX.numbers), ALL_LICENCES - {"fixed-mobile"})
NO_PREMIUM = UserContext(
    1, "201", {**CTX.numbers, "call_center": "+31201234500"}, ALL_LICENCES - {"call-center-premium"}
)
ONLY_EXTENSION = UserContext(1, "201", {}, ALL_LICENCES)


def _change(
    service: str,
    proposed: dict[str, Any],
    *,
    ctx: UserContext = CTX,
    current: ServiceSettings | None = None,
    related: dict[str, ServiceSettings] | None = None,
) -> dict[str, Any]:
    cls = SERVICES[service]
    # Stepped up: these are the documents' own rules; the step-up for a new e-mail address is tested in the API's.
    return change(cls, current or cls(), proposed, ctx, stepped_up=True, related=related).model_dump(mode="json")


VALID: list[tuple[str, dict[str, Any], UserContext, dict[str, Any]]] = [
    ("anonymous", {"desk": True, "mobile": True}, CTX, {"desk": True, "mobile": True}),
    ("anonymous", {"desk": True}, NO_FIXED_MOBILE, {"desk": True, "mobile": False}),
    ("outgoing-identity", {"fixed": "company", "ask_each_call": False}, CTX, {"fixed": "company"}),
    ("outgoing-identity", {"mobile": "mobile"}, CTX, {"mobile": "mobile"}),
    (
        "outgoing-identity",
        {"fixed": "call_center"},
        UserContext(1, "201", {"call_center": "+31201234500"}, ALL_LICENCES),
        {"fixed": "call_center"},
    ),
    ("call-method", {"method": "callback", "callback_device": "mobile"}, CTX, {"callback_device": "mobile"}),
    ("call-method", {"method": "via_mobile"}, CTX, {"method": "via_mobile"}),
    ("call-method", {"method": "ask", "callback_device": "remote_office"}, CTX, {"method": "ask"}),
    (
        "voicemail",
        {"on_no_answer": True, "rings": 6, "email_notification": True, "email_address": "jan@example.nl"},
        CTX,
        {"rings": 6, "email_address": "jan@example.nl"},
    ),
    ("voicemail", {"active": False, "all_calls_to_voicemail": True}, CTX, {"active": False}),
    ("call-recording", {"mode": "never", "pause_resume_allowed": True}, CTX, {"pause_resume_allowed": False}),
]


@pytest.mark.parametrize(("service", "proposed", "ctx", "expected"), VALID)
def test_valid_documents_are_accepted(
    service: str, proposed: dict[str, Any], ctx: UserContext, expected: dict[str, Any]
) -> None:
    saved = _change(service, proposed, ctx=ctx)
    assert {key: saved[key] for key in expected} == expected


INVALID: list[tuple[str, dict[str, Any], UserContext, str]] = [
    ("anonymous", {"desk": "yes please"}, CTX, "desk"),
    ("outgoing-identity", {"fixed": "home"}, CTX, "fixed"),
    ("outgoing-identity", {"fixed": "department"}, CTX, "fixed"),  # this user has no department number
    ("outgoing-identity", {"fixed": "company"}, ONLY_EXTENSION, "fixed"),
    ("outgoing-identity", {"mobile": "mobile"}, ONLY_EXTENSION, "mobile"),
    ("outgoing-identity", {"mobile": "desk"}, CTX, "mobile"),
    ("call-method", {"method": "pigeon"}, CTX, "method"),
    ("call-method", {"method": "via_mobile"}, ONLY_EXTENSION, "method"),
    ("call-method", {"callback_device": "mobile"}, ONLY_EXTENSION, "callback_device"),
    ("voicemail", {"rings": 0}, CTX, "rings"),
    ("voicemail", {"rings": 21}, CTX, "rings"),
    ("voicemail", {"email_notification": True}, CTX, "email_address"),
    ("voicemail", {"email_address": "not an address"}, CTX, "email_address"),
]


@pytest.mark.parametrize(("service", "proposed", "ctx", "field"), INVALID)
def test_invalid_documents_name_the_field(service: str, proposed: dict[str, Any], ctx: UserContext, field: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        _change(service, proposed, ctx=ctx)
    assert info.value.field == field


UNLICENSED_OPTIONS: list[tuple[str, dict[str, Any], UserContext, str]] = [
    ("anonymous", {"mobile": True}, NO_FIXED_MOBILE, "mobile"),
    ("outgoing-identity", {"mobile": "mobile"}, NO_FIXED_MOBILE, "mobile"),
    ("outgoing-identity", {"fixed": "call_center"}, NO_PREMIUM, "fixed"),
    (
        "call-method",
        {"callback_device": "remote_office"},
        UserContext(1, "201", {}, ALL_LICENCES - {"remote-office"}),
        "callback_device",
    ),
]


@pytest.mark.parametrize(("service", "proposed", "ctx", "field"), UNLICENSED_OPTIONS)
def test_options_behind_another_licence_are_refused_as_unlicensed(
    service: str, proposed: dict[str, Any], ctx: UserContext, field: str
) -> None:
    with pytest.raises(NotLicensed) as info:
        _change(service, proposed, ctx=ctx)
    assert str(info.value).startswith(f"{field}: ")


def test_a_choice_made_earlier_does_not_block_other_changes() -> None:
    # The administrator removed the department number after the user chose it: changing "ask" still works.
    cls = SERVICES["outgoing-identity"]
    current = cls.model_validate({"fixed": "department"})
    saved = _change("outgoing-identity", {"fixed": "department", "ask_each_call": False}, current=current)
    assert saved["ask_each_call"] is False


def test_voicemail_on_busy_needs_call_waiting_off() -> None:
    with pytest.raises(InvalidSetting) as info:
        _change("voicemail", {"on_busy": True}, related={"call-waiting": CallWaiting(active=True)})
    assert info.value.field == "on_busy"
    assert "call waiting off" in info.value.reason
    assert _change("voicemail", {"on_busy": True}, related={"call-waiting": CallWaiting(active=False)})["on_busy"]
    # Without a call-waiting licence there is no call waiting: the user is simply busy.
    assert _change("voicemail", {"on_busy": True}, related={})["on_busy"]
    # Already on (call waiting switched on later): other changes are not blocked.
    current = SERVICES["voicemail"].model_validate({"on_busy": True})
    saved = _change(
        "voicemail", {"on_busy": True, "rings": 3}, current=current, related={"call-waiting": CallWaiting()}
    )
    assert saved["rings"] == 3


@pytest.mark.parametrize(
    ("mode", "pause_resume"),
    [
        ("always", False),
        ("always_pause_resume", True),
        ("on_demand", True),
        ("on_demand_user_start", True),
        ("never", False),
    ],
)
def test_recording_mode_is_the_users_choice_among_the_allowed_and_pause_resume_follows(
    mode: str, pause_resume: bool
) -> None:
    cls = SERVICES["call-recording"]
    new = change(cls, cls(), {"mode": mode}, CTX, stepped_up=False, by_administrator=True)
    assert new.model_dump()["pause_resume_allowed"] is pause_resume
    # The user chooses the mode (SPEC I) …
    assert _change("call-recording", {"mode": mode})["mode"] == mode
    # … among the modes the administrator allows; the allowed modes are the administrator's.
    narrowed = change(cls, cls(), {"allowed_modes": ["never"]}, CTX, stepped_up=False, by_administrator=True)
    if mode != "never":
        with pytest.raises(InvalidSetting):
            _change("call-recording", {"mode": mode, "allowed_modes": ["never"]}, current=narrowed)
        with pytest.raises(ReadOnlySetting):
            _change("call-recording", {"allowed_modes": [mode]}, current=narrowed)
    with pytest.raises(InvalidSetting):
        change(cls, cls(), {"mode": "sometimes"}, CTX, stepped_up=False, by_administrator=True)
    # Sending the document back unchanged is fine.
    assert _change("call-recording", new.model_dump(mode="json"), current=new)["mode"] == mode
