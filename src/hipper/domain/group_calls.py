"""Hunt groups and call centers: which members a call to the group alerts, in which order, and how. Pure.

A hunt group alerts its members by its policy:

- `simultaneous`: every member at once, for `GroupRules.simultaneous_seconds`;
- `linear`: one member at a time in the list's order, each for `seconds_per_member`;
- `circular`: like linear, but starting after the member who took the group's last call (a rotation).

A call center (ACD queue) offers a call to one agent at a time: only members who joined it (J3) and whose ACD state
at `now` is available (J1), the one idle longest first, each for `agent_ring_seconds`. While nobody can take it the
call waits in the queue; `next_agent` says so, the executor (apps/groups.py) asks again when something changed.

Group calls ring the member's own registered phones, and their mobile when the member has fixed-mobile with
`group_calls_to_mobile` (J2, K). They do not follow the member's personal forwarding, voicemail or Personal
Assistant: those are for calls to the member; a group call that finds a member away simply goes to the next one
(docs/call-routing.md "Hunt groups and call centers").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hipper.domain import agent_state
from hipper.domain.agent_state import AcdState, AgentState
from hipper.domain.routing.state import UserState, service
from hipper.domain.services import CallWaiting, DoNotDisturb, FixedMobile

HuntPolicy = Literal["simultaneous", "linear", "circular"]
SkipCause = Literal["busy", "do-not-disturb", "not-reachable", "not-a-user"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class GroupRules:
    """How long things ring; from the exchange's settings (tests shorten them)."""

    seconds_per_member: int = 15  # linear, circular
    simultaneous_seconds: int | None = 60  # None: until the caller hangs up
    agent_ring_seconds: int = 15


class MemberTarget(_Data):
    """One member alerted for a group call: their registered phones and, with J2, their mobile."""

    user_id: int
    device_ids: tuple[int, ...] = ()
    mobile_number: str | None = None
    waiting: bool = False  # on a call with call waiting on: alerted as a waiting call
    reason: str


class SkippedMember(_Data):
    user_id: int
    cause: SkipCause
    reason: str


def member_target(user_id: int, state: UserState | None) -> MemberTarget | SkippedMember:
    """How a group call reaches this member now, or why it does not."""
    if state is None:
        return SkippedMember(user_id=user_id, cause="not-a-user", reason="no longer a user of the exchange")
    dnd = service(state, DoNotDisturb)
    if dnd is not None and dnd.active:
        return SkippedMember(user_id=user_id, cause="do-not-disturb", reason="do not disturb is on")
    waiting_service = service(state, CallWaiting)
    call_waiting = waiting_service is not None and waiting_service.active
    if state.on_call and not call_waiting:
        return SkippedMember(user_id=user_id, cause="busy", reason="on a call and call waiting is off")
    devices = tuple(device.id for device in state.devices)
    fixed_mobile = service(state, FixedMobile)
    mobile = None
    if fixed_mobile is not None and fixed_mobile.group_calls_to_mobile:
        mobile = state.mobile_number
    if not devices and mobile is None:
        return SkippedMember(
            user_id=user_id, cause="not-reachable", reason="no phone registered and group calls to the mobile off"
        )
    where = []
    if devices:
        where.append(f"{len(devices)} registered phone{'s' if len(devices) != 1 else ''}")
    if mobile is not None:
        where.append(f"the mobile {mobile} (group calls to the mobile is on)")
    waiting = state.on_call and call_waiting
    reason = " and ".join(where) + (" as a waiting call" if waiting else "")
    return MemberTarget(user_id=user_id, device_ids=devices, mobile_number=mobile, waiting=waiting, reason=reason)


# -- hunt groups -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HuntGroupInfo:
    name: str
    number: str  # what the caller dialled: the group's number or extension
    policy: HuntPolicy
    member_user_ids: tuple[int, ...]
    last_user_id: int | None = None  # who took the group's last call (circular)


class HuntRound(_Data):
    """Members alerted together; the next round starts when nobody answered within `timeout_seconds`."""

    members: tuple[MemberTarget, ...]
    timeout_seconds: int | None


class HuntPlan(_Data):
    kind: Literal["hunt_group"] = "hunt_group"
    name: str
    number: str
    policy: HuntPolicy
    caller: str | None
    at: datetime
    rounds: tuple[HuntRound, ...]
    skipped: tuple[SkippedMember, ...]
    # When no round is left (or there was none): the final answer to the caller.
    status: int
    reason: str

    def describe(self) -> list[str]:
        lines = [f"hunt group {self.name} ({self.policy}): {self.reason}"]
        for index, round_ in enumerate(self.rounds, 1):
            seconds = "until the caller hangs up" if round_.timeout_seconds is None else f"{round_.timeout_seconds} s"
            members = ", ".join(f"user {m.user_id} ({m.reason})" for m in round_.members)
            lines.append(f"  {index}. {seconds}: {members}")
        lines.extend(f"  skipped user {s.user_id}: {s.reason}" for s in self.skipped)
        return lines


def hunt_order(group: HuntGroupInfo) -> tuple[int, ...]:
    """The members in the order they are tried: the list, or (circular) the list rotated past the last taker."""
    members = group.member_user_ids
    if group.policy == "circular" and group.last_user_id in members:
        start = members.index(group.last_user_id) + 1
        return members[start:] + members[:start]
    return members


def plan_hunt_group(
    group: HuntGroupInfo,
    states: Mapping[int, UserState | None],
    caller: str | None,
    now: datetime,
    rules: GroupRules,
    *,
    max_forwards: int = 70,
) -> HuntPlan:
    """`states`: each member's snapshot (with `on_call`), None for a member who is no longer a user."""

    def plan(rounds: list[HuntRound], skipped: list[SkippedMember], status: int, reason: str) -> HuntPlan:
        return HuntPlan(
            name=group.name, number=group.number, policy=group.policy, caller=caller, at=now,
            rounds=tuple(rounds), skipped=tuple(skipped), status=status, reason=reason,
        )  # fmt: skip

    if max_forwards <= 0:
        return plan([], [], 483, "the call arrived with Max-Forwards 0")
    targets: list[MemberTarget] = []
    skipped: list[SkippedMember] = []
    for user_id in hunt_order(group):
        found = member_target(user_id, states.get(user_id))
        (targets if isinstance(found, MemberTarget) else skipped).append(found)  # type: ignore[arg-type]
    if not targets:
        if skipped and all(s.cause in ("busy", "do-not-disturb") for s in skipped):
            return plan([], skipped, 486, "every member is busy or does not want to be disturbed")
        return plan([], skipped, 480, "no member can be reached" if skipped else "the group has no members")
    if group.policy == "simultaneous":
        rounds = [HuntRound(members=tuple(targets), timeout_seconds=rules.simultaneous_seconds)]
        reason = f"{len(targets)} member{'s' if len(targets) != 1 else ''} ring at the same time"
    else:
        rounds = [HuntRound(members=(t,), timeout_seconds=rules.seconds_per_member) for t in targets]
        reason = f"one member after the other, {rules.seconds_per_member} s each"
        if group.policy == "circular":
            reason += ", starting after the member who took the last call"
    return plan(rounds, skipped, 480, reason)


# -- call centers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    """A member of the call center as the queue sees them now."""

    user_id: int
    joined: bool
    acd: AgentState
    state: UserState | None  # the routing snapshot with `on_call` (None: no longer a user)
    last_call_ended: datetime | None = None


class Offer(_Data):
    action: Literal["offer"] = "offer"
    target: MemberTarget
    timeout_seconds: int
    reason: str


class Wait(_Data):
    action: Literal["wait"] = "wait"
    reason: str


class Refuse(_Data):
    action: Literal["refuse"] = "refuse"
    status: int
    reason: str


def idle_since(agent: Agent, now: datetime) -> datetime:
    """Since when the agent has been free: becoming available (also the end of a wrap-up) or their last call."""
    since = agent_state.at(agent.acd, now).since or _EPOCH
    if agent.last_call_ended is not None and agent.last_call_ended > since:
        since = agent.last_call_ended
    return since


def next_agent(
    agents: Sequence[Agent],
    now: datetime,
    rules: GroupRules,
    *,
    skip: frozenset[int] = frozenset(),
) -> Offer | Wait | Refuse:
    """Whom to offer a queued call to now. `skip`: agents this call already rang in this pass, and agents
    another queued call is ringing right now."""
    joined = [a for a in agents if a.joined]
    signed_in = [a for a in joined if agent_state.at(a.acd, now).state is not AcdState.SIGNED_OUT]
    if not signed_in:
        return Refuse(status=480, reason="no agent has joined the call center and signed in")
    candidates: list[tuple[datetime, int, MemberTarget]] = []
    for agent in signed_in:
        if agent.user_id in skip or not agent_state.receives_call_center_calls(agent.acd, now):
            continue
        state = agent.state
        if state is not None and state.on_call:
            continue  # an agent on any call is not offered a queue call (not even as a waiting call)
        target = member_target(agent.user_id, state)
        if isinstance(target, MemberTarget):
            candidates.append((idle_since(agent, now), agent.user_id, target))
    if not candidates:
        return Wait(reason=f"none of the {len(signed_in)} signed-in agents is free: the call waits in the queue")
    since, _user_id, target = min(candidates, key=lambda c: (c[0], c[1]))
    idle = "" if since == _EPOCH else f" (free since {since.isoformat(timespec='seconds')})"
    return Offer(
        target=target,
        timeout_seconds=rules.agent_ring_seconds,
        reason=f"the available agent idle the longest{idle}",
    )
