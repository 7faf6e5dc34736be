"""Properties of every plan, over random combinations of settings (Hypothesis)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hipper.domain.routing import (
    ForwardStep,
    IncomingCall,
    PersonalAssistantStep,
    RegisteredDevice,
    RejectStep,
    RingSplashStep,
    RingStep,
    RoutingPlan,
    RoutingRules,
    Step,
    VoicemailStep,
    plan_incoming,
)
from tests.domain.test_routing import NOW, X, Y, Z, user_state

RULES = RoutingRules(seconds_per_ring=1)
TERMINAL = (ForwardStep, VoicemailStep, RejectStep, PersonalAssistantStep, RingStep)

forwarding = st.fixed_dictionaries({"active": st.booleans(), "destination": st.sampled_from([X, Y, Z])})
services = st.fixed_dictionaries(
    {},
    optional={
        "call-forwarding-always": st.fixed_dictionaries(
            {"active": st.booleans(), "to_voicemail": st.booleans(), "destination": st.just(X)}
        ),
        "call-forwarding-always-secondary": st.fixed_dictionaries({"active": st.booleans(), "destination": st.just(Y)}),
        "call-forwarding-busy": forwarding,
        "call-forwarding-no-answer": st.fixed_dictionaries(
            {"active": st.booleans(), "destination": st.just(Y), "rings": st.integers(1, 20)}
        ),
        "call-forwarding-not-reachable": forwarding,
        "remote-office": st.fixed_dictionaries({"active": st.booleans(), "destination": st.just(Z)}),
        "personal-assistant": st.fixed_dictionaries(
            {
                "active": st.booleans(),
                "until": st.one_of(st.none(), st.integers(-5, 5).map(lambda h: (NOW + timedelta(hours=h)).isoformat())),
                "transfer_to": st.one_of(st.none(), st.just(Y)),
                "alert_tone": st.booleans(),
            }
        ),
        "simultaneous-ring": st.fixed_dictionaries(
            {
                "active": st.booleans(),
                "targets": st.lists(
                    st.fixed_dictionaries({"number": st.sampled_from([X, Y]), "answer_confirmation": st.booleans()}),
                    max_size=2,
                    unique_by=lambda t: t["number"],
                ),
                "do_not_ring_when_busy": st.booleans(),
            }
        ),
        "do-not-disturb": st.fixed_dictionaries({"active": st.booleans(), "ring_splash": st.booleans()}),
        "call-waiting": st.fixed_dictionaries({"active": st.booleans()}),
        "fixed-mobile": st.fixed_dictionaries(
            {
                "fixed_rings": st.sampled_from(["desk", "mobile", "both"]),
                "mobile_rings": st.sampled_from(["desk", "mobile", "both"]),
            }
        ),
        "voicemail": st.fixed_dictionaries(
            {
                "active": st.booleans(),
                "all_calls_to_voicemail": st.booleans(),
                "on_busy": st.booleans(),
                "on_no_answer": st.booleans(),
                "rings": st.integers(1, 20),
            }
        ),
    },
)


def walk(steps: tuple[Step, ...]) -> list[Step]:
    found: list[Step] = []
    for step in steps:
        found.append(step)
        if isinstance(step, RingStep):
            found += walk(step.on_busy) + walk(step.on_no_answer) + walk(step.on_not_reachable)
        if isinstance(step, PersonalAssistantStep):
            found += [step.afterwards] + ([step.on_zero] if step.on_zero else [])
    return found


@settings(max_examples=300, deadline=None)
@given(
    documents=services,
    on_call=st.booleans(),
    desk_registered=st.booleans(),
    called=st.sampled_from(["fixed", "mobile"]),
    diversion_count=st.integers(0, 7),
    max_forwards=st.integers(0, 70),
)
def test_every_plan_is_sound(
    documents: dict[str, Any],
    on_call: bool,
    desk_registered: bool,
    called: str,
    diversion_count: int,
    max_forwards: int,
) -> None:
    devices = (RegisteredDevice(id=1, kind="desk"),) if desk_registered else ()
    state = user_state(documents, on_call=on_call, devices=devices)
    call = IncomingCall(
        caller="+31301234567",
        called="mobile" if called == "mobile" else "fixed",
        diversion_count=diversion_count,
        max_forwards=max_forwards,
    )
    plan = plan_incoming(call, state, NOW, RULES)

    # Stored on the call-log row and read back unchanged.
    assert RoutingPlan.model_validate(json.loads(json.dumps(plan.model_dump(mode="json")))) == plan
    # The main path is splashes followed by exactly one step that decides the call.
    *splashes, decisive = plan.steps
    assert all(isinstance(step, RingSplashStep) for step in splashes)
    assert isinstance(decisive, TERMINAL)
    for step in walk(plan.steps):
        assert step.reason
        if isinstance(step, ForwardStep):
            # Never forwarded beyond the loop limits.
            assert diversion_count < RULES.diversion_limit
            assert max_forwards > 1
            assert step.diversion is not None
            assert step.diversion.diversion_count == diversion_count + 1
        if isinstance(step, RingStep):
            assert step.targets
            # Branches never ring again: they decide.
            for branch in (step.on_busy, step.on_not_reachable):
                assert len(branch) == 1
                assert not isinstance(branch[0], RingStep)
            assert len(step.on_no_answer) <= 1
            assert (step.timeout_seconds is None) == (not step.on_no_answer)
            if on_call and documents.get("simultaneous-ring", {}).get("do_not_ring_when_busy"):
                assert all(t.kind != "simultaneous_ring" for t in step.targets)
