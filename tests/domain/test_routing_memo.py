"""`plan_for_call` (the call path's plan, kept per snapshot) gives the plan and JSON `plan_incoming` gives.

For every generated combination of settings, live facts and call, a snapshot is planned for two calls of the same
kind in turn — the first makes the plan, the second (another caller, another moment) takes the kept one — and both
are compared with `plan_incoming` and `model_dump(mode="json")` made afresh for that call: the JSON byte for byte,
the sentences, the models and their repr.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hipper.domain.routing import (
    IncomingCall,
    RegisteredDevice,
    RoutingPlan,
    RoutingRules,
    UserState,
    plan_for_call,
    plan_incoming,
)
from hipper.domain.services import SERVICES
from tests.domain.test_routing import CASES, NOW, X, Y, Z, user_state
from tests.domain.test_routing_properties import services

RULES = RoutingRules(seconds_per_ring=1)
CALLERS = ["+31301234567", "+31201234888", None, "0301234567"]
MOMENTS = [
    NOW,
    NOW + timedelta(hours=3, microseconds=123456),
    datetime(2026, 11, 25, 11, 0, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 7, 1, 9, 30, 15, tzinfo=ZoneInfo("Europe/Amsterdam")),
    datetime(2026, 11, 25, 10, 0),  # naive: taken as UTC
]
DEVICES = [
    (),
    (RegisteredDevice(id=1, kind="desk"),),
    (RegisteredDevice(id=1, kind="desk"), RegisteredDevice(id=2, kind="mobile", name="app")),
    (RegisteredDevice(id=3, kind="mobile"),),
]

# Beyond the property test's settings: Anywhere, night forwarding, fixed-mobile call control, PA exceptions.
more = st.fixed_dictionaries(
    {},
    optional={
        "anywhere": st.fixed_dictionaries(
            {
                "locations": st.lists(
                    st.fixed_dictionaries(
                        {
                            "active": st.booleans(),
                            "name": st.sampled_from(["home", "car"]),
                            "number": st.sampled_from([X, Z, "+31612345601"]),
                            "call_control": st.booleans(),
                            "block_diversion": st.booleans(),
                            "answer_confirmation": st.booleans(),
                        }
                    ),
                    max_size=3,
                    unique_by=lambda location: location["number"],
                )
            }
        ),
        "night-forwarding": st.fixed_dictionaries({"night_mode": st.booleans(), "destination": st.just(Y)}),
        "fixed-mobile-mode": st.sampled_from(["exchange", "mobile_network"]),
        "pa-exception": st.booleans(),
    },
)


def same(
    made: tuple[RoutingPlan, dict[str, object]],
    call: IncomingCall,
    state: UserState,
    now: datetime,
    rules: RoutingRules = RULES,
) -> None:
    plan, dumped = made
    fresh = plan_incoming(call, state, now, rules)
    assert json.dumps(dumped) == json.dumps(fresh.model_dump(mode="json"))
    assert json.dumps(plan.model_dump(mode="json")) == json.dumps(fresh.model_dump(mode="json"))
    assert plan.describe() == fresh.describe()
    assert plan == fresh
    assert repr(plan) == repr(fresh)
    assert plan.model_dump_json() == fresh.model_dump_json()


def two_calls(snapshot: UserState, call: IncomingCall, on_call: bool, devices: tuple[RegisteredDevice, ...]) -> None:
    """Two calls of one kind on per-call copies of one snapshot (as engine/snapshots.py hands them out)."""
    for n, (caller, now) in enumerate([(call.caller, MOMENTS[0]), (CALLERS[2], MOMENTS[3]), (CALLERS[1], MOMENTS[4])]):
        state = dataclasses.replace(snapshot, devices=devices, on_call=on_call)
        this = dataclasses.replace(call, caller=caller)
        same(plan_for_call(this, state, now, RULES), this, state, now)
        assert state.plans is snapshot.plans
        if n == 0:
            assert snapshot.plans or snapshot.services["personal-assistant"].active  # type: ignore[attr-defined]


def with_more(documents: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    documents = dict(documents)
    if "anywhere" in extra:
        documents["anywhere"] = extra["anywhere"]
    if "night-forwarding" in extra:
        documents["night-forwarding"] = extra["night-forwarding"]
    if "fixed-mobile-mode" in extra:
        mode = extra["fixed-mobile-mode"]
        documents["fixed-mobile"] = {**documents.get("fixed-mobile", {}), "call_control_mode": mode}
    if extra.get("pa-exception") and "personal-assistant" in documents:
        documents["personal-assistant"] = {
            **documents["personal-assistant"],
            "exceptions": [{"name": "Boss", "number": "030 123 4567"}],
        }
    return documents


@settings(max_examples=400, deadline=None)
@given(
    documents=services,
    extra=more,
    on_call=st.booleans(),
    devices=st.sampled_from(DEVICES),
    called=st.sampled_from(["fixed", "mobile"]),
    caller=st.sampled_from(CALLERS),
    diversion_count=st.integers(0, 7),
    max_forwards=st.integers(0, 70),
)
def test_kept_plans_are_the_plans_made_afresh(
    documents: dict[str, Any],
    extra: dict[str, Any],
    on_call: bool,
    devices: tuple[RegisteredDevice, ...],
    called: str,
    caller: str | None,
    diversion_count: int,
    max_forwards: int,
) -> None:
    snapshot = user_state(with_more(documents, extra), devices=())
    call = IncomingCall(
        caller=caller,
        called="mobile" if called == "mobile" else "fixed",
        diversion_count=diversion_count,
        max_forwards=max_forwards,
    )
    two_calls(snapshot, call, on_call, devices)
    # Other live facts and other kinds of call on the same snapshot afterwards: each gets its own plan.
    for other_devices in DEVICES:
        for other_on_call in (False, True):
            state = dataclasses.replace(snapshot, devices=other_devices, on_call=other_on_call)
            same(plan_for_call(call, state, NOW, RULES), call, state, NOW)
    for other in (
        dataclasses.replace(call, called="fixed" if call.called == "mobile" else "mobile"),
        dataclasses.replace(call, diversion_count=diversion_count + 1),
        dataclasses.replace(call, max_forwards=max(max_forwards - 1, 0)),
    ):
        state = dataclasses.replace(snapshot, devices=devices, on_call=on_call)
        same(plan_for_call(other, state, NOW, RULES), other, state, NOW)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_routing_case(case: Any) -> None:
    snapshot = user_state(case.services, unlicensed=case.unlicensed, devices=())
    call = IncomingCall(caller=case.caller, called=case.called, diversion_count=case.diversion_count)
    two_calls(snapshot, call, case.on_call, case.devices)


def test_other_rules_and_another_snapshot_get_their_own_plans() -> None:
    snapshot = user_state({"call-forwarding-no-answer": {"active": True, "destination": X, "rings": 3}})
    call = IncomingCall(caller=CALLERS[0], called="fixed")
    for rules in (RULES, RoutingRules(), RoutingRules(seconds_per_ring=1, diversion_limit=0)):
        for _ in range(2):
            same(plan_for_call(call, snapshot, NOW, rules), call, snapshot, NOW, rules)
    # A copy with other documents or numbers shares the dict of plans but none of its plans.
    for changed in (
        dataclasses.replace(snapshot, services=user_state({"do-not-disturb": {"active": True}}).services),
        dataclasses.replace(snapshot, numbers={"direct": "+31201234102"}),
        dataclasses.replace(snapshot, extension="202", numbers={}),
        dataclasses.replace(snapshot, user_id=8),
    ):
        assert changed.plans is snapshot.plans
        same(plan_for_call(call, changed, NOW, RULES), call, changed, NOW)


def test_a_snapshot_keeps_a_bounded_number_of_plans() -> None:
    snapshot = user_state()
    for count in range(100):
        call = IncomingCall(caller=CALLERS[0], called="fixed", max_forwards=count + 2)
        same(plan_for_call(call, snapshot, NOW, RULES), call, snapshot, NOW)
        assert 1 <= len(snapshot.plans) <= 32


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_document_cannot_be_changed_in_place(service: str) -> None:
    # Kept plans are only right while the documents they were made from stay as they were: a change is a new
    # document (and an outbox event that drops the snapshot), never an assignment to a kept one.
    document = SERVICES[service]()
    field = next(iter(type(document).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(document, field, getattr(document, field))
