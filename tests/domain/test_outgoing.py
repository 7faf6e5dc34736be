"""Outgoing identity and anonymity for a placed call (SPEC D2, G1–G3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from hipper.domain.errors import InvalidSetting
from hipper.domain.outgoing import IdentityKind, PlacedCall, callback_legs, outgoing_identity
from hipper.domain.routing import UserState
from hipper.domain.services import SERVICES, ServiceSettings

NUMBERS = {
    "company": "+31201234000",
    "direct": "+31201234101",
    "department": "+31201234500",
    "mobile": "+31612345601",
    "call_center": "+31201234900",
}
EXTERNAL = "+31301234567"


def state(
    services: dict[str, dict[str, Any]] | None = None,
    *,
    licences: frozenset[str] = frozenset({"outgoing-identity", "anonymous", "fixed-mobile", "call-center-premium"}),
    numbers: dict[str, str] | None = None,
) -> UserState:
    documents: dict[str, ServiceSettings] = {
        name: SERVICES[name].model_validate((services or {}).get(name, {}))
        for name in ("outgoing-identity", "anonymous")
        if name in licences
    }
    return UserState(
        user_id=7,
        extension="201",
        numbers=NUMBERS if numbers is None else numbers,
        licences=licences,
        services=documents,
    )


@dataclass
class Case:
    id: str
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "desk"
    choice: IdentityKind | None = None
    internal: bool = False
    expected_kind: str = "direct"
    anonymous: bool = False


CASES = [
    Case("default: the direct number"),
    Case("fixed setting: company", {"outgoing-identity": {"fixed": "company"}}, expected_kind="company"),
    Case("fixed setting: department", {"outgoing-identity": {"fixed": "department"}}, expected_kind="department"),
    Case("fixed setting: call center", {"outgoing-identity": {"fixed": "call_center"}}, expected_kind="call_center"),
    Case(
        "per-call choice wins over the setting",
        {"outgoing-identity": {"fixed": "company"}},
        choice="department",
        expected_kind="department",
    ),
    Case(
        "mobile: same as fixed",
        {"outgoing-identity": {"fixed": "company"}},
        device="mobile",
        expected_kind="company",
    ),
    Case(
        "mobile: always the mobile number",
        {"outgoing-identity": {"fixed": "company", "mobile": "mobile"}},
        device="mobile",
        expected_kind="mobile",
    ),
    Case(
        "the mobile setting does not touch desk calls",
        {"outgoing-identity": {"mobile": "mobile"}},
        device="desk",
        expected_kind="direct",
    ),
    Case("anonymous on the desk phone", {"anonymous": {"desk": True}}, anonymous=True),
    Case("anonymous on the desk only: mobile calls show the number", {"anonymous": {"desk": True}}, device="mobile"),
    Case("anonymous on the mobile", {"anonymous": {"mobile": True}}, device="mobile", anonymous=True),
    Case("colleagues see the extension", internal=True, expected_kind="extension"),
    Case(
        "colleagues see the extension even when anonymous",
        {"anonymous": {"desk": True}},
        internal=True,
        expected_kind="extension",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_identity(case: Case) -> None:
    call = PlacedCall(
        dialled="202" if case.internal else EXTERNAL,
        device="mobile" if case.device == "mobile" else "desk",
        internal=case.internal,
        choice=case.choice,
    )
    identity = outgoing_identity(call, state(case.services))
    assert identity.kind == case.expected_kind
    expected_number = "201" if case.internal else NUMBERS[case.expected_kind]
    assert identity.number == expected_number
    assert identity.asserted_identity == expected_number
    assert identity.anonymous is case.anonymous
    assert identity.reason


def test_anonymous_hides_from_but_asserts_to_the_trunk() -> None:
    identity = outgoing_identity(PlacedCall(dialled=EXTERNAL, device="desk"), state({"anonymous": {"desk": True}}))
    assert (identity.from_user, identity.from_host, identity.from_display) == (
        "anonymous",
        "anonymous.invalid",
        "Anonymous",
    )
    assert identity.privacy == "id"
    assert identity.asserted_identity == NUMBERS["direct"]


def test_shown_number_has_no_privacy() -> None:
    identity = outgoing_identity(PlacedCall(dialled=EXTERNAL, device="desk"), state())
    assert (identity.from_user, identity.privacy) == (NUMBERS["direct"], None)


def test_removed_number_falls_back_to_direct() -> None:
    numbers = {k: v for k, v in NUMBERS.items() if k != "department"}
    identity = outgoing_identity(
        PlacedCall(dialled=EXTERNAL, device="desk"),
        state({"outgoing-identity": {"fixed": "department"}}, numbers=numbers),
    )
    assert identity.kind == "direct"
    assert "department number is not set" in identity.reason


def test_call_center_identity_needs_the_premium_licence() -> None:
    licences = frozenset({"outgoing-identity"})
    call_center = state({"outgoing-identity": {"fixed": "call_center"}}, licences=licences)
    assert outgoing_identity(PlacedCall(dialled=EXTERNAL, device="desk"), call_center).kind == "direct"
    with pytest.raises(InvalidSetting) as refused:
        outgoing_identity(PlacedCall(dialled=EXTERNAL, device="desk", choice="call_center"), call_center)
    assert refused.value.field == "identity"


@pytest.mark.parametrize(
    ("choice", "licences", "numbers", "message"),
    [
        ("mobile", frozenset({"outgoing-identity"}), NUMBERS, "fixed-mobile"),
        ("department", frozenset({"outgoing-identity"}), {"direct": NUMBERS["direct"]}, "no department number"),
    ],
)
def test_impossible_choice_names_the_field(
    choice: IdentityKind, licences: frozenset[str], numbers: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSetting) as refused:
        outgoing_identity(
            PlacedCall(dialled=EXTERNAL, device="desk", choice=choice), state(licences=licences, numbers=numbers)
        )
    assert refused.value.field == "identity"
    assert message in refused.value.reason


def test_without_the_services_the_direct_number_shows() -> None:
    identity = outgoing_identity(PlacedCall(dialled=EXTERNAL, device="desk"), state(licences=frozenset()))
    assert (identity.kind, identity.anonymous) == ("direct", False)


# -- what a callback rings first (SPEC D9) ------------------------------------------------------------------------

CAR, HOME = "+31612340011", "+31301230022"


def callback_state(services: dict[str, dict[str, Any]], mobile: bool = True) -> UserState:
    numbers = dict(NUMBERS) if mobile else {k: v for k, v in NUMBERS.items() if k != "mobile"}
    return UserState(
        user_id=7,
        extension="201",
        numbers=numbers,
        licences=frozenset(services),
        services={name: SERVICES[name].model_validate(document) for name, document in services.items()},
    )


LOCATIONS = {"locations": [{"name": "car", "number": CAR}, {"name": "home", "number": HOME, "active": False}]}
RINGS_LOCATIONS = {"anywhere": {**LOCATIONS, "click_to_dial_rings_locations": True}}
TO_MOBILE = {"fixed-mobile": {"click_to_dial_to_mobile": True}}
MOBILE = NUMBERS["mobile"]
DESK = NUMBERS["direct"]


@pytest.mark.parametrize(
    ("device", "services", "mobile", "expected"),
    [
        ("desk", {}, True, [("desk", DESK)]),
        ("desk", TO_MOBILE, True, [("desk", DESK), ("mobile", MOBILE)]),
        ("desk", TO_MOBILE, False, [("desk", DESK)]),
        ("desk", RINGS_LOCATIONS, True, [("desk", DESK), ("anywhere", CAR)]),
        ("desk", {"anywhere": LOCATIONS}, True, [("desk", DESK)]),
        ("mobile", RINGS_LOCATIONS, True, [("mobile", MOBILE)]),
        ("mobile", {}, False, []),
        ("remote_office", {"remote-office": {"destination": HOME}}, True, [("remote_office", HOME)]),
        ("remote_office", {}, True, []),
    ],
    ids=["desk", "desk+mobile", "desk, no mobile number", "desk+active location", "locations not asked",
         "mobile only", "no mobile number", "remote office", "no remote office"],
)  # fmt: skip
def test_a_callback_rings_the_chosen_device_and_what_the_user_added(
    device: str, services: dict[str, dict[str, Any]], mobile: bool, expected: list[tuple[str, str | None]]
) -> None:
    legs = callback_legs(callback_state(services, mobile), device)
    assert [(leg.device, leg.number) for leg in legs] == expected
