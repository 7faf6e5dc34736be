"""Call barring classes and concurrent-call limits (domain/barring.py): table-driven."""

from __future__ import annotations

import pytest

from hipper.domain.barring import (
    BarringClass,
    Limits,
    OutboundGate,
    Policy,
    PolicyError,
    barred,
    classes_of,
    parse_classes,
    parse_prefixes,
)

P, INTL, H = BarringClass.PREMIUM, BarringClass.INTERNATIONAL, BarringClass.HIGH_COST


@pytest.mark.parametrize(
    ("number", "classes"),
    [
        ("+31201234567", set()),  # Amsterdam landline
        ("+31612345678", set()),  # Dutch mobile
        ("+318001234", set()),  # Dutch freephone
        ("+319001234567", {P}),  # 0900 premium rate
        ("+31906123456", {P}),  # 0906 premium rate (adult)
        ("+31909123456", {P}),  # 0909 premium rate (entertainment)
        ("+4930123456", {INTL}),  # Berlin
        ("+449012345678", {P, INTL}),  # UK 09 premium rate
        ("+499001234567", {P, INTL}),  # German 0900
        ("+881631234567", {INTL, H}),  # Iridium satellite
        ("+870773111632", {INTL, H}),  # Inmarsat
        ("+979123456789", {P, INTL, H}),  # international premium rate
        ("+25261234567", {INTL, H}),  # Somalia (the fraud in issue 11)
    ],
)
def test_classes_of_a_number(number: str, classes: set[BarringClass]) -> None:
    assert classes_of(number, "NL") == classes


def test_home_region_decides_what_is_international() -> None:
    assert classes_of("+4930123456", "DE") == set()
    assert classes_of("+31201234567", "DE") == {INTL}


@pytest.mark.parametrize(
    ("number", "company", "user", "reason"),
    [
        ("+319001234567", Policy(frozenset({P})), Policy(), "Premium-Rate Numbers Barred"),
        ("+319001234567", Policy(), Policy(frozenset({P})), "Premium-Rate Numbers Barred"),  # the user adds
        ("+319001234567", Policy(), Policy(), None),
        ("+4930123456", Policy(frozenset({P, H})), Policy(), None),  # international allowed by default
        ("+4930123456", Policy(frozenset({INTL})), Policy(), "International Calls Barred"),
        ("+881631234567", Policy(frozenset({H})), Policy(), "High-Cost Destination Barred"),
        ("+25261234567", Policy(frozenset({P, H})), Policy(), "High-Cost Destination Barred"),
        ("+31201234567", Policy(prefixes=("+3120",)), Policy(), "Destination Barred"),
        ("+31201234567", Policy(), Policy(prefixes=("+31",)), "Destination Barred"),
        ("+31301234567", Policy(prefixes=("+3120",)), Policy(), None),
    ],
)
def test_barred(number: str, company: Policy, user: Policy, reason: str | None) -> None:
    refusal = barred(number, "NL", [company, user])
    assert (refusal.reason if refusal else None) == reason
    if refusal is not None:
        assert refusal.status == 403


def test_policy_values_are_checked() -> None:
    assert parse_classes(["premium", "high_cost"]) == {P, H}
    assert parse_prefixes(["+3190", "+252", "+3190"]) == ("+252", "+3190")
    for bad in (["0900"], ["+"], ["+31 90"], ["+1234567890123456"]):
        with pytest.raises(PolicyError):
            parse_prefixes(bad)
    with pytest.raises(PolicyError):
        parse_classes(["satellite"])


@pytest.mark.parametrize(
    ("limits", "user_own", "company_own", "admitted", "status", "reason"),
    [
        (Limits(per_user=2), None, None, 2, 403, "Too Many Calls for This User"),
        (Limits(per_user=2), 3, None, 3, 403, "Too Many Calls for This User"),  # the user's own limit replaces
        (Limits(per_user=2, status=503), 1, None, 1, 503, "Too Many Calls for This User"),
        (Limits(per_company=3), None, None, 3, 403, "Too Many Calls for This Company"),
        (Limits(), None, 2, 2, 403, "Too Many Calls for This Company"),
        (Limits(per_trunk=2), None, None, 2, 503, "Trunk Busy"),
    ],
)
def test_limits(
    limits: Limits, user_own: int | None, company_own: int | None, admitted: int, status: int, reason: str
) -> None:
    gate = OutboundGate(limits)
    company, user = Policy(max_calls=company_own), Policy(max_calls=user_own)
    for index in range(admitted):
        # Company limits count every user of the company; the trunk every call.
        user_id = 1 if limits.per_user or user_own else index + 1
        assert gate.admit(f"call-{index}", "+31201234567", user_id, 7, "NL", company, user) is None
    user_id = 1 if limits.per_user or user_own else 99
    refusal = gate.admit("one-more", "+31201234567", user_id, 7, "NL", company, user)
    assert refusal is not None and (refusal.status, refusal.reason) == (status, reason)
    gate.release("call-0")
    assert gate.admit("after-release", "+31201234567", 1, 7, "NL", company, user) is None  # call-0's user


def test_release_is_idempotent_and_forgets_nothing_else() -> None:
    gate = OutboundGate(Limits(per_user=1))
    assert gate.admit("a", "+31201234567", 1, None, "NL", Policy(), Policy()) is None
    gate.release("a")
    gate.release("a")
    gate.release("never-admitted")
    assert gate.trunk == 0 and not gate.users
    assert gate.admit("b", "+31201234567", 1, None, "NL", Policy(), Policy()) is None


def test_a_call_admitted_again_counts_once() -> None:
    gate = OutboundGate(Limits(per_user=1))
    assert gate.admit("a", "+31201234567", 1, 7, "NL", Policy(), Policy()) is None
    assert gate.admit("a", "+31301234567", 1, 7, "NL", Policy(), Policy()) is None  # forwarded out again
    gate.release("a")
    assert gate.trunk == 0 and not gate.users and not gate.companies


def test_a_barred_call_does_not_count() -> None:
    gate = OutboundGate(Limits(per_user=1))
    assert gate.admit("a", "+319001234567", 1, 7, "NL", Policy(frozenset({P})), Policy()) is not None
    assert gate.trunk == 0
    assert gate.admit("b", "+31201234567", 1, 7, "NL", Policy(frozenset({P})), Policy()) is None
