"""The routing precedence of docs/call-routing.md, one case per line and per interaction.

Each case builds a user snapshot from the real service models and compares a compact picture of the plan:
`ring[targets] Ns | busy: … | no answer: … | not reachable: …`, targets marked `!` (answer confirmation) and
`~` (alerts as a waiting call).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hipper.domain.routing import (
    ForwardStep,
    HangupStep,
    IncomingCall,
    PersonalAssistantStep,
    RegisteredDevice,
    RejectStep,
    RingSplashStep,
    RingStep,
    RoutingPlan,
    RoutingRules,
    Step,
    UserState,
    VoicemailStep,
    plan_incoming,
)
from hipper.domain.routing.state import CalledNumber
from hipper.domain.services import SERVICES, ServiceSettings

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DIRECT = "+31201234101"
MOBILE = "+31612345601"
X = "+31687654321"  # a colleague's mobile, the usual forwarding target
Y = "+31201234888"  # reception
Z = "+31612340000"  # a home/hotel phone
CALLER = "+31301234567"
DESK_PHONE = RegisteredDevice(id=1, kind="desk", name="desk phone")
RULES = RoutingRules(seconds_per_ring=1)


def user_state(
    services: dict[str, dict[str, Any]] | None = None,
    *,
    on_call: bool = False,
    devices: tuple[RegisteredDevice, ...] = (DESK_PHONE,),
    unlicensed: tuple[str, ...] = (),
) -> UserState:
    """A fully licensed user whose documents are the defaults, changed by `services`."""
    documents: dict[str, ServiceSettings] = {}
    for name, settings_class in SERVICES.items():
        if name in unlicensed:
            continue
        documents[name] = settings_class.model_validate((services or {}).get(name, {}))
    return UserState(
        user_id=7,
        extension="201",
        numbers={"direct": DIRECT, "mobile": MOBILE, "company": "+31201234000"},
        licences=frozenset(documents),
        services=documents,
        on_call=on_call,
        devices=devices,
    )


def picture(steps: tuple[Step, ...]) -> str:
    return " ; ".join(_one(step) for step in steps)


def _one(step: Step) -> str:
    if isinstance(step, ForwardStep):
        assert step.diversion is not None
        return f"forward {step.destination} ({step.diversion.reason})"
    if isinstance(step, VoicemailStep):
        return f"voicemail ({step.cause})"
    if isinstance(step, RejectStep):
        return f"reject {step.status}"
    if isinstance(step, HangupStep):
        return "hangup"
    if isinstance(step, RingSplashStep):
        return "splash"
    if isinstance(step, PersonalAssistantStep):
        zero = step.on_zero.destination if step.on_zero else "-"
        return f"assistant(0: {zero}, then {_one(step.afterwards)})"
    assert isinstance(step, RingStep)
    targets = ",".join(
        t.kind
        + (f":{t.number}" if t.kind not in ("desk", "mobile") else "")
        + ("!" if t.answer_confirmation else "")
        + ("~" if t.waiting else "")
        for t in step.targets
    )
    timeout = f"{step.timeout_seconds}s" if step.timeout_seconds is not None else "until hang-up"
    return (
        f"ring[{targets}] {timeout} | busy: {picture(step.on_busy)} | no answer: {picture(step.on_no_answer) or '-'}"
        f" | not reachable: {picture(step.on_not_reachable)}"
    )


# The defaults: voicemail on (on no answer after 4 rings, not on busy), call waiting on, fixed-mobile both.
DEFAULT_RING = "busy: reject 486 | no answer: voicemail (no-answer) | not reachable: voicemail (unavailable)"


@dataclass
class Case:
    id: str
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: str = ""
    called: CalledNumber = "fixed"
    caller: str | None = CALLER
    on_call: bool = False
    devices: tuple[RegisteredDevice, ...] = (DESK_PHONE,)
    diversion_count: int = 0
    unlicensed: tuple[str, ...] = ()


VM_OFF = {"voicemail": {"active": False}}
FWD_BUSY = {"call-forwarding-busy": {"active": True, "destination": X}}
PA_ON = {
    "personal-assistant": {
        "active": True,
        "presence": "meeting",
        "until": (NOW + timedelta(hours=2)).isoformat(),
        "transfer_to": Y,
        "exceptions": [{"name": "Boss", "number": "030 123 4567"}],
    }
}

CASES = [
    Case("baseline: desk and mobile ring, voicemail on no answer", expected=f"ring[desk,mobile] 4s | {DEFAULT_RING}"),
    # 1
    Case(
        "1 forward always to a number",
        {"call-forwarding-always": {"active": True, "destination": X}},
        expected=f"forward {X} (unconditional)",
    ),
    Case(
        "1 forward always to voicemail, with ring splash",
        {"call-forwarding-always": {"active": True, "to_voicemail": True, "ring_splash": True}},
        expected="splash ; voicemail (unconditional)",
    ),
    Case(
        "1 forward always beats the Personal Assistant and DND",
        {"call-forwarding-always": {"active": True, "destination": X}, **PA_ON, "do-not-disturb": {"active": True}},
        expected=f"forward {X} (unconditional)",
    ),
    Case(
        "1 voicemail takes all calls",
        {"voicemail": {"all_calls_to_voicemail": True}},
        expected="voicemail (unconditional)",
    ),
    Case(
        "1 F2 forwards a call to the fixed number",
        {"call-forwarding-always-secondary": {"active": True, "destination": X}},
        expected=f"forward {X} (unconditional)",
    ),
    Case(
        "1 F2 leaves a call to the mobile number ringing",
        {"call-forwarding-always-secondary": {"active": True, "destination": X}},
        called="mobile",
        expected=f"ring[desk,mobile] 4s | {DEFAULT_RING}",
    ),
    Case(
        "1 night mode (administrator) forwards everything",
        {"night-forwarding": {"night_mode": True, "destination": Y}},
        expected=f"forward {Y} (unconditional)",
    ),
    # 2
    Case(
        "2 Personal Assistant answers: 0 transfers, then voicemail",
        PA_ON,
        caller=Z,
        expected=f"assistant(0: {Y}, then voicemail (unavailable))",
    ),
    Case(
        "2 Personal Assistant without voicemail ends the call; alert tone splashes the desk phone",
        {"personal-assistant": {"active": True, "alert_tone": True}, **VM_OFF},
        expected="splash ; assistant(0: -, then hangup)",
    ),
    Case(
        "2 expired Personal Assistant is ignored",
        {"personal-assistant": {"active": True, "until": (NOW - timedelta(minutes=1)).isoformat()}},
        expected=f"ring[desk,mobile] 4s | {DEFAULT_RING}",
    ),
    Case(
        "2 a caller in the exceptions rings through",
        PA_ON,
        caller="+31301234567",
        expected=f"ring[desk,mobile] 4s | {DEFAULT_RING}",
    ),
    Case(
        "2 an exception falls through to do not disturb",
        {**PA_ON, "do-not-disturb": {"active": True}},
        caller="0301234567",
        expected="reject 486",
    ),
    Case(
        "2 an anonymous caller is never an exception",
        PA_ON,
        caller=None,
        expected=f"assistant(0: {Y}, then voicemail (unavailable))",
    ),
    # 3 + 7
    Case(
        "3 do not disturb: busy, no forward, no voicemail on busy",
        {"do-not-disturb": {"active": True}},
        expected="reject 486",
    ),
    Case(
        "3 do not disturb follows forward on busy",
        {"do-not-disturb": {"active": True, "ring_splash": True}, **FWD_BUSY},
        expected=f"splash ; forward {X} (do-not-disturb)",
    ),
    Case(
        "3 do not disturb with voicemail on busy and call waiting off",
        {"do-not-disturb": {"active": True}, "voicemail": {"on_busy": True}, "call-waiting": {"active": False}},
        expected="voicemail (do-not-disturb)",
    ),
    # 4 + 5
    Case(
        "4 remote office replaces desk and mobile; simultaneous ring still rings",
        {
            "remote-office": {"active": True, "destination": Z},
            "simultaneous-ring": {"active": True, "targets": [{"number": Y, "answer_confirmation": True}]},
        },
        expected=f"ring[remote_office:{Z},simultaneous_ring:{Y}!] 4s | {DEFAULT_RING}",
    ),
    Case(
        "5 fixed-mobile: the fixed number rings the desk only",
        {"fixed-mobile": {"fixed_rings": "desk", "mobile_rings": "mobile"}},
        expected=f"ring[desk] 4s | {DEFAULT_RING}",
    ),
    Case(
        "5 fixed-mobile: the mobile number rings the mobile only",
        {"fixed-mobile": {"fixed_rings": "desk", "mobile_rings": "mobile"}},
        called="mobile",
        expected=f"ring[mobile] 4s | {DEFAULT_RING}",
    ),
    Case(
        "5 without fixed-mobile the fixed number rings the desk phone",
        unlicensed=("fixed-mobile", "call-forwarding-always-secondary"),
        expected=f"ring[desk] 4s | {DEFAULT_RING}",
    ),
    Case(
        "5 Anywhere: active locations ring, marked for confirmation; inactive ones do not",
        {
            "anywhere": {
                "locations": [
                    {"name": "work mobile", "number": Z, "answer_confirmation": True, "block_diversion": True},
                    {"name": "old phone", "number": X, "active": False},
                ]
            }
        },
        expected=f"ring[desk,mobile,anywhere:{Z}!] 4s | {DEFAULT_RING}",
    ),
    Case(
        "5 the mobile set as a simultaneous-ring target rings once",
        {"simultaneous-ring": {"active": True, "targets": [{"number": MOBILE}, {"number": Y}]}},
        expected=f"ring[desk,mobile,simultaneous_ring:{Y}] 4s | {DEFAULT_RING}",
    ),
    # 6
    Case(
        "6 on a call with call waiting off: busy treatment at once",
        {"call-waiting": {"active": False}, **FWD_BUSY},
        on_call=True,
        expected=f"forward {X} (user-busy)",
    ),
    Case(
        "6 on a call with call waiting on: a waiting call; simultaneous ring left out",
        {"simultaneous-ring": {"active": True, "targets": [{"number": Y}], "do_not_ring_when_busy": True}},
        on_call=True,
        expected=f"ring[desk~,mobile~] 4s | {DEFAULT_RING}",
    ),
    Case(
        "6 simultaneous ring rings while busy unless told not to",
        {"simultaneous-ring": {"active": True, "targets": [{"number": Y}]}},
        on_call=True,
        expected=f"ring[desk~,mobile~,simultaneous_ring:{Y}~] 4s | {DEFAULT_RING}",
    ),
    # 6: Anywhere call control (manual §7.2.10) and fixed-mobile call control mode (manual §7.7)
    Case(
        "6 on a call with call waiting on: an Anywhere location alerts the waiting call only with call control",
        {
            "anywhere": {
                "locations": [{"name": "car", "number": Z}, {"name": "boat", "number": Y, "call_control": True}]
            }
        },
        on_call=True,
        expected=f"ring[desk~,mobile~,anywhere:{Y}~] 4s | {DEFAULT_RING}",
    ),
    Case(
        "6 not on a call: Anywhere locations ring whatever their call control",
        {
            "anywhere": {
                "locations": [{"name": "car", "number": Z}, {"name": "boat", "number": Y, "call_control": True}]
            }
        },
        expected=f"ring[desk,mobile,anywhere:{Z},anywhere:{Y}] 4s | {DEFAULT_RING}",
    ),
    Case(
        "6 on a call, and the only phone that could ring is a location without call control: busy treatment",
        {
            "fixed-mobile": {"fixed_rings": "desk"},
            "anywhere": {"locations": [{"name": "car", "number": Z}]},
            **FWD_BUSY,
        },
        on_call=True,
        devices=(),
        expected=f"forward {X} (user-busy)",
    ),
    Case(
        "6 call control by the exchange: on a call with call waiting off, the mobile is busy too",
        {"fixed-mobile": {"call_control_mode": "exchange"}, "call-waiting": {"active": False}},
        on_call=True,
        expected="reject 486",
    ),
    Case(
        "6 call control by the mobile network: call waiting off still offers the mobile; its busy is the signal",
        {"fixed-mobile": {"call_control_mode": "mobile_network"}, "call-waiting": {"active": False}, **FWD_BUSY},
        on_call=True,
        expected=f"ring[mobile] 4s | busy: forward {X} (user-busy) | no answer: voicemail (no-answer)"
        f" | not reachable: forward {X} (user-busy)",
    ),
    Case(
        "6 call control by the mobile network, for a call to the mobile number",
        {"fixed-mobile": {"call_control_mode": "mobile_network"}, "call-waiting": {"active": False}},
        on_call=True,
        called="mobile",
        expected="ring[mobile] 4s | busy: reject 486 | no answer: voicemail (no-answer) | not reachable: reject 486",
    ),
    Case(
        "6 call control by the mobile network, but the fixed number rings the desk only: busy",
        {
            "fixed-mobile": {"call_control_mode": "mobile_network", "fixed_rings": "desk"},
            "call-waiting": {"active": False},
        },
        on_call=True,
        expected="reject 486",
    ),
    Case(
        "6 call control by the mobile network, remote office replaces the mobile: busy",
        {
            "fixed-mobile": {"call_control_mode": "mobile_network"},
            "call-waiting": {"active": False},
            "remote-office": {"active": True, "destination": Z},
        },
        on_call=True,
        expected="reject 486",
    ),
    Case(
        "6 call control by the mobile network with call waiting on: the mobile is offered plainly",
        {"fixed-mobile": {"call_control_mode": "mobile_network"}},
        on_call=True,
        expected=f"ring[desk~,mobile] 4s | {DEFAULT_RING}",
    ),
    # 7
    Case(
        "7 busy at runtime: forward on busy",
        FWD_BUSY,
        expected=f"ring[desk,mobile] 4s | busy: forward {X} (user-busy) | no answer: voicemail (no-answer)"
        " | not reachable: voicemail (unavailable)",
    ),
    Case(
        "7 voicemail on busy with call waiting off",
        {"voicemail": {"on_busy": True}, "call-waiting": {"active": False}},
        expected="ring[desk,mobile] 4s | busy: voicemail (user-busy) | no answer: voicemail (no-answer)"
        " | not reachable: voicemail (unavailable)",
    ),
    Case(
        "7 voicemail on busy still takes a really busy call with call waiting on (every phone refused busy)",
        {"voicemail": {"on_busy": True}, "call-waiting": {"active": True}},
        expected="ring[desk,mobile] 4s | busy: voicemail (user-busy) | no answer: voicemail (no-answer)"
        " | not reachable: voicemail (unavailable)",
    ),
    # 8
    Case(
        "8 forward on no answer wins over voicemail, with its own ring count",
        {"call-forwarding-no-answer": {"active": True, "destination": Y, "rings": 6}},
        expected=f"ring[desk,mobile] 6s | busy: reject 486 | no answer: forward {Y} (no-answer)"
        " | not reachable: voicemail (unavailable)",
    ),
    Case(
        "8 voicemail on no answer with its ring count",
        {"voicemail": {"rings": 3}},
        expected=f"ring[desk,mobile] 3s | {DEFAULT_RING}",
    ),
    Case(
        "8 nothing on no answer: keep ringing; 9 nothing when unreachable: 480",
        VM_OFF,
        expected="ring[desk,mobile] until hang-up | busy: reject 486 | no answer: - | not reachable: reject 480",
    ),
    # 9
    Case(
        "9 nothing registered and no mobile ringing: forward on not reachable",
        {"fixed-mobile": {"fixed_rings": "desk"}, "call-forwarding-not-reachable": {"active": True, "destination": X}},
        devices=(),
        expected=f"forward {X} (unavailable)",
    ),
    Case(
        "9 not reachable without forwarding: voicemail",
        {"fixed-mobile": {"fixed_rings": "desk"}},
        devices=(),
        expected="voicemail (unavailable)",
    ),
    Case(
        "9 not reachable, no voicemail: 480",
        {"fixed-mobile": {"fixed_rings": "desk"}, **VM_OFF},
        devices=(),
        expected="reject 480",
    ),
    # Loops
    Case(
        "loop: no forward beyond the diversion limit; voicemail takes it",
        {"call-forwarding-always": {"active": True, "destination": X}},
        diversion_count=5,
        expected="voicemail (unconditional)",
    ),
    Case(
        "loop: no forward beyond the diversion limit and no voicemail: 482",
        {"call-forwarding-always": {"active": True, "destination": X}, **VM_OFF},
        diversion_count=5,
        expected="reject 482",
    ),
    Case(
        "loop: below the limit the forward goes ahead",
        {"call-forwarding-always": {"active": True, "destination": X}},
        diversion_count=4,
        expected=f"forward {X} (unconditional)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_precedence(case: Case) -> None:
    state = user_state(case.services, on_call=case.on_call, devices=case.devices, unlicensed=case.unlicensed)
    call = IncomingCall(caller=case.caller, called=case.called, diversion_count=case.diversion_count)
    plan = plan_incoming(call, state, NOW, RULES)
    assert picture(plan.steps) == case.expected
    # Every step can tell a person why it is there.
    assert all(step.reason for step in _every_step(plan.steps))
    assert plan.describe()[0].startswith(plan.steps[0].action)


def _every_step(steps: tuple[Step, ...]) -> list[Step]:
    found: list[Step] = []
    for step in steps:
        found.append(step)
        if isinstance(step, RingStep):
            found += _every_step(step.on_busy + step.on_no_answer + step.on_not_reachable)
    return found


def test_one_ring_is_five_seconds_by_default() -> None:
    plan = plan_incoming(IncomingCall(caller=CALLER, called="fixed"), user_state(), NOW)
    ring = plan.steps[0]
    assert isinstance(ring, RingStep)
    assert ring.timeout_seconds == 20


def test_forwarded_leg_carries_history_info_and_counters() -> None:
    state = user_state({"call-forwarding-always": {"active": True, "destination": X}})
    call = IncomingCall(caller=CALLER, called="fixed", diversion_count=2, max_forwards=30)
    forward = plan_incoming(call, state, NOW, RULES).steps[0]
    assert isinstance(forward, ForwardStep)
    assert forward.diversion is not None
    assert forward.diversion.model_dump() == {
        "reason": "unconditional",
        "history_info_cause": 302,
        "diverted_by": DIRECT,
        "diversion_count": 3,
        "max_forwards": 29,
    }


@pytest.mark.parametrize(
    ("services", "cause"),
    [
        ({"call-forwarding-busy": {"active": True, "destination": X}, "call-waiting": {"active": False}}, 486),
        (
            {
                "call-forwarding-not-reachable": {"active": True, "destination": X},
                "fixed-mobile": {"fixed_rings": "desk"},
            },
            503,
        ),
    ],
)
def test_history_info_causes_follow_rfc_4458(services: dict[str, dict[str, Any]], cause: int) -> None:
    state = user_state(services, on_call=True, devices=())
    step = plan_incoming(IncomingCall(caller=CALLER, called="fixed"), state, NOW, RULES).steps[0]
    assert isinstance(step, ForwardStep)
    assert step.diversion is not None
    assert step.diversion.history_info_cause == cause


def test_max_forwards_zero_is_refused_with_483() -> None:
    plan = plan_incoming(IncomingCall(caller=CALLER, called="fixed", max_forwards=0), user_state(), NOW, RULES)
    assert picture(plan.steps) == "reject 483"


def test_last_hop_cannot_be_forwarded() -> None:
    state = user_state({"call-forwarding-always": {"active": True, "destination": X}, **VM_OFF})
    plan = plan_incoming(IncomingCall(caller=CALLER, called="fixed", max_forwards=1), state, NOW, RULES)
    assert picture(plan.steps) == "reject 482"
    assert "Max-Forwards" in plan.steps[0].reason


def test_target_flags_for_the_executor() -> None:
    state = user_state(
        {
            "anywhere": {
                "locations": [{"name": "car", "number": Z, "call_control": True, "block_diversion": True}],
            }
        }
    )
    fixed = plan_incoming(IncomingCall(caller=CALLER, called="fixed"), state, NOW, RULES).steps[0]
    mobile = plan_incoming(IncomingCall(caller=CALLER, called="mobile"), state, NOW, RULES).steps[0]
    assert isinstance(fixed, RingStep)
    assert isinstance(mobile, RingStep)
    assert fixed.targets[0].device_ids == (1,)
    assert fixed.targets[1].number == MOBILE
    car = fixed.targets[2]
    assert (car.call_control, car.block_diversion) == (True, True)
    # Blocking diversion protects calls to the fixed number only.
    assert mobile.targets[2].block_diversion is False


def test_notes_say_what_did_not_apply() -> None:
    expired = {"personal-assistant": {"active": True, "until": (NOW - timedelta(hours=1)).isoformat()}}
    plan = plan_incoming(IncomingCall(caller=CALLER, called="fixed"), user_state(expired), NOW, RULES)
    assert any("Personal Assistant ended" in note for note in plan.notes)
    exception = plan_incoming(IncomingCall(caller=CALLER, called="fixed"), user_state(PA_ON), NOW, RULES)
    assert any("Boss" in note for note in exception.notes)


def test_personal_assistant_announces_presence_and_return() -> None:
    plan = plan_incoming(IncomingCall(caller=Z, called="fixed"), user_state(PA_ON), NOW, RULES)
    step = plan.steps[0]
    assert isinstance(step, PersonalAssistantStep)
    assert step.presence == "meeting"
    assert step.until == NOW + timedelta(hours=2)
    assert "in a meeting until 2026-11-25T12:00:00+00:00" in step.reason
    assert step.on_zero is not None
    assert step.on_zero.diversion is not None
    assert step.on_zero.diversion.reason == "deflection"


def test_plan_round_trips_through_json() -> None:
    state = user_state(
        {
            **FWD_BUSY,
            "simultaneous-ring": {"active": True, "targets": [{"number": Y, "answer_confirmation": True}]},
            **PA_ON,
        }
    )
    for caller in (CALLER, Z):
        plan = plan_incoming(IncomingCall(caller=caller, called="fixed"), state, NOW, RULES)
        stored = json.dumps(plan.model_dump(mode="json"))
        assert RoutingPlan.model_validate(json.loads(stored)) == plan


def test_policy_is_pure() -> None:
    state = user_state(PA_ON)
    call = IncomingCall(caller=Z, called="fixed")
    assert plan_incoming(call, state, NOW, RULES) == plan_incoming(call, state, NOW, RULES)
    # Time only enters through `now`: two hours later the assistant has ended.
    later = plan_incoming(call, state, NOW + timedelta(hours=2), RULES)
    assert isinstance(later.steps[0], RingStep)


@pytest.mark.parametrize(
    ("services", "on_call", "expected"),
    [
        ({"call-forwarding-always": {"active": True, "destination": X}}, False, [(1, "call-forwarding-always")]),
        ({"voicemail": {"all_calls_to_voicemail": True}}, False, [(1, "voicemail")]),
        (
            {"personal-assistant": {"active": True, "alert_tone": True}},
            False,
            [(2, "personal-assistant"), (2, "personal-assistant")],
        ),
        ({"do-not-disturb": {"active": True, "ring_splash": True}}, False, [(3, "do-not-disturb"), (7, None)]),
        ({"call-waiting": {"active": False}, **FWD_BUSY}, True, [(7, "call-forwarding-busy")]),
        ({}, False, [(5, None)]),
    ],
)
def test_steps_name_their_line_and_service(
    services: dict[str, dict[str, Any]], on_call: bool, expected: list[tuple[int, str | None]]
) -> None:
    plan = plan_incoming(IncomingCall(caller=Z, called="fixed"), user_state(services, on_call=on_call), NOW, RULES)
    assert [(step.line, step.service) for step in plan.steps] == expected


def test_ring_branches_name_their_line_and_service() -> None:
    state = user_state({**FWD_BUSY, "fixed-mobile": {"fixed_rings": "mobile"}})
    ring = plan_incoming(IncomingCall(caller=Z, called="fixed"), state, NOW, RULES).steps[0]
    assert isinstance(ring, RingStep)
    assert [(s.line, s.service) for s in ring.on_busy] == [(7, "call-forwarding-busy")]
    assert [(s.line, s.service) for s in ring.on_no_answer] == [(8, "voicemail")]
    assert [(s.line, s.service) for s in ring.on_not_reachable] == [(9, "voicemail")]
