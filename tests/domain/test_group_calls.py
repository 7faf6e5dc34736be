"""Hunt-group policies and the call-center queue's choice of agent (domain/group_calls.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from hipper.domain.agent_state import AcdState, AgentState
from hipper.domain.group_calls import (
    Agent,
    GroupRules,
    HuntGroupInfo,
    HuntPlan,
    MemberTarget,
    Offer,
    Refuse,
    SkippedMember,
    Wait,
    hunt_order,
    member_target,
    next_agent,
    plan_hunt_group,
)
from hipper.domain.routing import RegisteredDevice, UserState
from hipper.domain.services import CallWaiting, DoNotDisturb, FixedMobile, ServiceSettings

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RULES = GroupRules(seconds_per_member=15, simultaneous_seconds=60, agent_ring_seconds=10)


def member(
    user_id: int,
    *,
    devices: int = 1,
    mobile: str | None = None,
    services: tuple[ServiceSettings, ...] = (),
    on_call: bool = False,
) -> UserState:
    numbers = {"mobile": mobile} if mobile else {}
    return UserState(
        user_id=user_id,
        extension=str(200 + user_id),
        numbers=numbers,
        licences=frozenset(),
        services={s.service: s for s in services},
        on_call=on_call,
        devices=tuple(RegisteredDevice(user_id * 10 + i, "desk") for i in range(devices)),
    )


# -- one member ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberCase:
    id: str
    state: UserState | None
    devices: tuple[int, ...] = ()
    mobile: str | None = None
    skipped: str | None = None
    waiting: bool = False


MEMBER_CASES = [
    MemberCase("registered phone rings", member(1), devices=(10,)),
    MemberCase("two phones ring", member(1, devices=2), devices=(10, 11)),
    MemberCase("nothing registered", member(1, devices=0), skipped="not-reachable"),
    MemberCase("no longer a user", None, skipped="not-a-user"),
    MemberCase("dnd", member(1, services=(DoNotDisturb(active=True),)), skipped="do-not-disturb"),
    MemberCase("dnd off", member(1, services=(DoNotDisturb(active=False),)), devices=(10,)),
    MemberCase("on a call without the call-waiting service", member(1, on_call=True), skipped="busy"),
    MemberCase(
        "on a call, call waiting off", member(1, on_call=True, services=(CallWaiting(active=False),)), skipped="busy"
    ),
    MemberCase(
        "on a call, call waiting on: a waiting call",
        member(1, on_call=True, services=(CallWaiting(active=True),)),
        devices=(10,),
        waiting=True,
    ),
    MemberCase(
        "group calls to mobile on",
        member(1, mobile="+31612340001", services=(FixedMobile(group_calls_to_mobile=True),)),
        devices=(10,),
        mobile="+31612340001",
    ),
    MemberCase(
        "group calls to mobile on, nothing registered: the mobile alone",
        member(1, devices=0, mobile="+31612340001", services=(FixedMobile(group_calls_to_mobile=True),)),
        mobile="+31612340001",
    ),
    MemberCase(
        "group calls to mobile off",
        member(1, mobile="+31612340001", services=(FixedMobile(group_calls_to_mobile=False),)),
        devices=(10,),
    ),
    MemberCase(
        "group calls to mobile on but no mobile number",
        member(1, devices=0, services=(FixedMobile(group_calls_to_mobile=True),)),
        skipped="not-reachable",
    ),
    # Without the fixed-mobile licence the snapshot has no fixed-mobile document: the mobile never rings.
    MemberCase("no fixed-mobile licence", member(1, mobile="+31612340001"), devices=(10,)),
]


@pytest.mark.parametrize("case", MEMBER_CASES, ids=lambda c: c.id)
def test_how_a_group_call_reaches_a_member(case: MemberCase) -> None:
    found = member_target(1, case.state)
    if case.skipped is not None:
        assert isinstance(found, SkippedMember) and found.cause == case.skipped and found.reason
        return
    assert isinstance(found, MemberTarget)
    assert (found.device_ids, found.mobile_number, found.waiting) == (case.devices, case.mobile, case.waiting)


def test_personal_forwarding_is_not_followed_by_group_calls() -> None:
    """A member's forward-always, voicemail or assistant do not change how the group reaches them."""
    from hipper.domain.services import CallForwardingAlways, PersonalAssistant, Voicemail

    state = member(
        1,
        services=(
            CallForwardingAlways(active=True, destination="+31687654321"),
            PersonalAssistant(active=True),
            Voicemail(active=True, all_calls_to_voicemail=True),
        ),
    )
    assert member_target(1, state) == member_target(1, member(1))


# -- hunt groups ---------------------------------------------------------------------------------------------


def group(policy: str, members: tuple[int, ...] = (1, 2, 3), last: int | None = None) -> HuntGroupInfo:
    return HuntGroupInfo("Reception", "+31201234500", policy, members, last)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "last", "expected"),
    [
        ("linear", None, (1, 2, 3)),
        ("linear", 2, (1, 2, 3)),  # linear always starts at the top
        ("circular", None, (1, 2, 3)),
        ("circular", 1, (2, 3, 1)),
        ("circular", 2, (3, 1, 2)),
        ("circular", 3, (1, 2, 3)),
        ("circular", 9, (1, 2, 3)),  # the last taker left the group: from the top
        ("simultaneous", 2, (1, 2, 3)),
    ],
)
def test_hunt_order(policy: str, last: int | None, expected: tuple[int, ...]) -> None:
    assert hunt_order(group(policy, last=last)) == expected


@dataclass(frozen=True)
class HuntCase:
    id: str
    policy: str
    states: dict[int, UserState | None]
    rounds: list[list[int]]
    timeouts: list[int | None] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    status: int = 480
    last: int | None = None
    max_forwards: int = 70


ALL = {1: member(1), 2: member(2), 3: member(3)}
BUSY = member(2, on_call=True)
DND = member(3, services=(DoNotDisturb(active=True),))

HUNT_CASES = [
    HuntCase("simultaneous: all at once", "simultaneous", ALL, [[1, 2, 3]], [60]),
    HuntCase("linear: one after the other", "linear", ALL, [[1], [2], [3]], [15, 15, 15]),
    HuntCase("circular: after the last taker", "circular", ALL, [[3], [1], [2]], [15, 15, 15], last=2),
    HuntCase(
        "simultaneous: busy and dnd skipped", "simultaneous", {**ALL, 2: BUSY, 3: DND}, [[1]], [60], skipped=[2, 3]
    ),
    HuntCase("linear: busy and dnd skipped", "linear", {**ALL, 2: BUSY, 3: DND}, [[1]], [15], skipped=[2, 3]),
    HuntCase(
        "everyone busy or dnd: 486",
        "linear",
        {1: member(1, on_call=True), 2: BUSY, 3: DND},
        [],
        skipped=[1, 2, 3],
        status=486,
    ),
    HuntCase(
        "nobody reachable: 480",
        "simultaneous",
        {1: member(1, devices=0), 2: BUSY, 3: None},
        [],
        skipped=[1, 2, 3],
        status=480,
    ),
    HuntCase("max-forwards 0: 483", "simultaneous", ALL, [], status=483, max_forwards=0),
]


@pytest.mark.parametrize("case", HUNT_CASES, ids=lambda c: c.id)
def test_hunt_group_plan(case: HuntCase) -> None:
    plan = plan_hunt_group(
        group(case.policy, last=case.last), case.states, "+31301234567", NOW, RULES, max_forwards=case.max_forwards
    )
    assert [[m.user_id for m in r.members] for r in plan.rounds] == case.rounds
    assert [r.timeout_seconds for r in plan.rounds] == case.timeouts
    assert sorted(s.user_id for s in plan.skipped) == case.skipped
    assert plan.status == case.status and plan.reason
    # The plan goes onto call-log rows as JSON and comes back unchanged.
    assert HuntPlan.model_validate(json.loads(plan.model_dump_json())) == plan
    assert plan.describe()[0].startswith("hunt group Reception")


def test_an_empty_group_is_480() -> None:
    plan = plan_hunt_group(group("linear", members=()), {}, None, NOW, RULES)
    assert (plan.rounds, plan.status, plan.reason) == ((), 480, "the group has no members")


# -- call centers --------------------------------------------------------------------------------------------


def agent(
    user_id: int,
    state: AcdState = AcdState.AVAILABLE,
    *,
    since: timedelta = timedelta(minutes=10),
    joined: bool = True,
    wrap_up_until: datetime | None = None,
    last_call: timedelta | None = None,
    snapshot: UserState | None = None,
) -> Agent:
    return Agent(
        user_id=user_id,
        joined=joined,
        acd=AgentState(state, since=NOW - since, wrap_up_until=wrap_up_until),
        state=snapshot if snapshot is not None else member(user_id),
        last_call_ended=None if last_call is None else NOW - last_call,
    )


@dataclass(frozen=True)
class QueueCase:
    id: str
    agents: list[Agent]
    expected: str  # "offer N", "wait", "refuse 480"
    skip: frozenset[int] = frozenset()


QUEUE_CASES = [
    QueueCase("the one available agent", [agent(1)], "offer 1"),
    QueueCase(
        "longest idle by the moment they became available",
        [agent(1, since=timedelta(minutes=1)), agent(2, since=timedelta(minutes=5))],
        "offer 2",
    ),
    QueueCase(
        "a recent call counts as not idle",
        [agent(1, since=timedelta(hours=1), last_call=timedelta(seconds=30)), agent(2, since=timedelta(minutes=5))],
        "offer 2",
    ),
    QueueCase("tie: the lower user id", [agent(2), agent(1)], "offer 1"),
    QueueCase("unavailable agent gets nothing", [agent(1, AcdState.UNAVAILABLE), agent(2)], "offer 2"),
    QueueCase("signed-out agent gets nothing", [agent(1, AcdState.SIGNED_OUT), agent(2)], "offer 2"),
    QueueCase("left the call center", [agent(1, joined=False), agent(2)], "offer 2"),
    QueueCase(
        "in wrap-up: not yet",
        [agent(1, AcdState.WRAP_UP, wrap_up_until=NOW + timedelta(seconds=5))],
        "wait",
    ),
    QueueCase(
        "wrap-up over: available again, idle since the wrap-up ended",
        [
            agent(1, AcdState.WRAP_UP, wrap_up_until=NOW - timedelta(seconds=5)),
            agent(2, since=timedelta(seconds=1)),
        ],
        "offer 1",
    ),
    QueueCase("on a call", [agent(1, snapshot=member(1, on_call=True)), agent(2)], "offer 2"),
    QueueCase(
        "on a call even with call waiting",
        [agent(1, snapshot=member(1, on_call=True, services=(CallWaiting(active=True),)))],
        "wait",
    ),
    QueueCase("dnd", [agent(1, snapshot=member(1, services=(DoNotDisturb(active=True),)))], "wait"),
    QueueCase("no phone registered", [agent(1, snapshot=member(1, devices=0))], "wait"),
    QueueCase("already rang in this pass", [agent(1), agent(2)], "offer 2", skip=frozenset({1})),
    QueueCase("everyone rang in this pass", [agent(1)], "wait", skip=frozenset({1})),
    QueueCase("signed in but unavailable: the call waits", [agent(1, AcdState.SIGNED_IN_UNAVAILABLE)], "wait"),
    QueueCase("nobody signed in: refused", [agent(1, AcdState.SIGNED_OUT), agent(2, joined=False)], "refuse 480"),
    QueueCase("no members: refused", [], "refuse 480"),
]


@pytest.mark.parametrize("case", QUEUE_CASES, ids=lambda c: c.id)
def test_next_agent(case: QueueCase) -> None:
    decision = next_agent(case.agents, NOW, RULES, skip=case.skip)
    if isinstance(decision, Offer):
        shown = f"offer {decision.target.user_id}"
        assert decision.timeout_seconds == RULES.agent_ring_seconds
    elif isinstance(decision, Refuse):
        shown = f"refuse {decision.status}"
    else:
        assert isinstance(decision, Wait)
        shown = "wait"
    assert shown == case.expected
    assert decision.reason


def test_an_agent_with_group_calls_to_mobile_is_offered_on_the_mobile_too() -> None:
    snapshot = member(1, mobile="+31612340001", services=(FixedMobile(group_calls_to_mobile=True),))
    decision = next_agent([agent(1, snapshot=snapshot)], NOW, RULES)
    assert isinstance(decision, Offer) and decision.target.mobile_number == "+31612340001"
