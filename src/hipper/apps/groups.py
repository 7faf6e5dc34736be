"""Calls to hunt groups and call centers: the group plan (domain/group_calls.py) carried out with the call's legs.

- **Hunt group**: `plan_hunt_group` gives rounds of members; each round forks to the members' registered phones
  (and their mobile through the mobile network with J2) for its time, the first answer wins; a round nobody
  answered goes on to the next. Who answered is remembered for the circular policy
  (`store.group_calls.took_call`).
- **Call center**: one queue per call center shared by every node (`call_center_calls` rows, in arrival order),
  first come first served. `next_agent` picks the free agent idle the longest, whichever node reaches their
  phone; the queue row claims them (the database refuses a second claim, so two nodes never offer one agent two
  calls); they ring for `queue_agent_rings`; no answer → the next one. While nobody is free the caller is
  answered, hears the queue announcement with their place among the callers waiting on every node, and a hold
  tone; the queue looks again every `queue_poll_seconds` (or at once when a queued call on this node lets an
  agent go). After `queue_max_wait_seconds` the caller hears that nobody can be reached and the call ends. The
  agent who answered wraps up when the call ends (`store.call_centers.call_center_call_ended`); the row holds
  them until that is stored. A node that dies loses its queued callers; a surviving node writes them off
  (`store.group_calls.lose_queued_calls`).

Call logs: the member who answered gets a `received` row; when nobody answered, every member who was alerted gets
a `missed` row; members who rang while a colleague took the call get none (docs/call-routing.md).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hipper.domain.agent_state import receives_call_center_calls
from hipper.domain.group_calls import (
    Agent,
    GroupRules,
    HuntGroupInfo,
    HuntPolicy,
    MemberTarget,
    Offer,
    Refuse,
    Wait,
    next_agent,
    plan_hunt_group,
)
from hipper.domain.routing import IncomingCall, UserState
from hipper.engine.call import Party
from hipper.engine.fork import Branch
from hipper.media.prompts import say_number, sentence, tone_path
from hipper.sip.message import NameAddr
from hipper.store import call_centers, group_calls

if TYPE_CHECKING:
    from hipper.engine.call import Call, CallHost
    from hipper.engine.directory import Resolved

log = logging.getLogger(__name__)

POLICIES: tuple[HuntPolicy, ...] = ("simultaneous", "linear", "circular")


def rules_of(call: Call) -> GroupRules:
    settings = call.settings
    per_ring = settings.seconds_per_ring
    return GroupRules(
        seconds_per_member=max(1, settings.hunt_member_rings * per_ring),
        simultaneous_seconds=settings.hunt_group_rings * per_ring if settings.hunt_group_rings > 0 else None,
        agent_ring_seconds=max(1, settings.queue_agent_rings * per_ring),
    )


async def route(call: Call, resolved: Resolved, incoming: IncomingCall) -> None:
    """A call to a hunt group's or call center's number or extension (from the trunk, a phone or a forward)."""
    if resolved.queue is None:
        call.fail(404, "Not Found")
    elif resolved.queue.kind == "hunt_group":
        await _hunt(call, resolved.queue.id, resolved.number, incoming)
    else:
        await _queue(call, resolved.queue.id, resolved.queue.name, resolved.number, incoming)


# -- shared --------------------------------------------------------------------------------------------------


async def _snapshot(call: Call, user_id: int, now: datetime) -> UserState | None:
    return await call.b2bua.snapshots.state(user_id, now)


async def _branches(call: Call, target: MemberTarget, to: NameAddr) -> list[Branch]:
    """The member's registered phones, and their handset through the mobile network when J2 says so."""
    branches: list[Branch] = []
    if target.device_ids:
        bindings = await call.bindings(target.user_id, target.device_ids)
        branches += call.device_branches(bindings, "desk", target.user_id, to)
    if target.mobile_number is not None:
        where = call.b2bua.peers.handset_uri(target.mobile_number)
        if where is not None:
            owner = call.b2bua.peers.handset_owner(where[1], target.user_id)
            branches.append(Branch(where[0], where[1], to, "mobile", user_id=target.user_id, device_user_id=owner))
    return branches


def _party(call: Call, user_id: int, number: str, plan: dict[str, object]) -> Party:
    return Party(
        user_id, "missed", call.caller.number or "", remote_name=call.caller.display, local_identity=number, plan=plan
    )


def _answered(call: Call, party: Party) -> None:
    party.kind = "received"
    party.outcome.append("answered")
    party.answered_at = call.answered_at
    call.parties.append(party)


def _from(call: Call, group_name: str) -> NameAddr:
    """The caller as members see them, with the group's name first ("Reception: Jan"): they know it is a group
    call before answering. The number (the From URI) stays the caller's."""
    caller = call.caller_address()
    display = f"{group_name}: {caller.display_name}" if caller.display_name else group_name
    return NameAddr(caller.uri, display[:100])


def _max_forwards(incoming: IncomingCall) -> int:
    return max(1, incoming.max_forwards - 1)


# -- hunt groups ---------------------------------------------------------------------------------------------


async def _hunt(call: Call, hunt_group_id: int, number: str, incoming: IncomingCall) -> None:
    now = datetime.now(UTC)
    async with call.b2bua.sessions() as session:
        found = await group_calls.hunt_group(session, hunt_group_id)
    if found is None:
        call.fail(404, "Not Found")
        return
    group, last_user_id = found
    policy: HuntPolicy = next((p for p in POLICIES if p == group.policy), "simultaneous")
    # A member calling their own group is not rung by it.
    listed = group.member_user_ids if isinstance(group.member_user_ids, list) else []
    members = tuple(m for m in listed if isinstance(m, int) and not isinstance(m, bool) and m != call.caller.user_id)
    info = HuntGroupInfo(group.name, number, policy, members, last_user_id)
    states = {user_id: await _snapshot(call, user_id, now) for user_id in members}
    plan = plan_hunt_group(info, states, incoming.caller, now, rules_of(call), max_forwards=incoming.max_forwards)
    log.info("call.hunt_group", extra={"call_id": call.call_id, "plan": plan.describe()})
    plan_json = plan.model_dump(mode="json")
    to = call.b2bua.peers.address(number)
    alerted: dict[int, Party] = {}
    outcomes: list[str] = []
    for round_ in plan.rounds:
        if call.over.is_set():
            break
        branches: list[Branch] = []
        for target in round_.members:
            branches += await _branches(call, target, to)
        if not branches:
            continue  # registered a moment ago, gone now: as if it had not been reached
        for target in round_.members:
            alerted.setdefault(target.user_id, _party(call, target.user_id, number, plan_json))
        rung = tuple(dict.fromkeys(b.user_id for b in branches if b.user_id is not None))  # whose phones ring
        result = await call.ring(
            branches, round_.timeout_seconds, _max_forwards(incoming), (), _from(call, group.name), ringing=rung
        )
        if result.outcome == "answered" and call.connected is not None:
            winner = call.connected.user_id
            if winner is not None and winner in alerted:
                _answered(call, alerted[winner])
                try:
                    async with call.b2bua.sessions() as session:
                        await group_calls.took_call(session, hunt_group_id, winner)
                        await session.commit()
                except Exception:
                    # The rotation is a nicety: a database hiccup must not end a call that was just answered.
                    log.exception("call.hunt_rotation_failed", extra={"call_id": call.call_id})
            return
        outcome = "cancelled" if result.outcome == "gone" else result.outcome
        outcomes.append(outcome)
        for target in round_.members:
            alerted[target.user_id].outcome.append(outcome)
        if result.outcome == "gone":
            break
    call.parties.extend(alerted.values())
    if call.over.is_set():
        return
    if outcomes and all(outcome == "busy" for outcome in outcomes):
        call.fail(486, "Busy Here")
    elif not outcomes and plan.status != 480:
        call.fail(plan.status, {486: "Busy Here", 483: "Too Many Hops"}.get(plan.status, ""))
    else:
        call.fail(480, "Temporarily Unavailable")


# -- call centers: the queue ---------------------------------------------------------------------------------


@dataclass
class Queues:
    """This node's queued call-center calls, to wake them at once when something on this node lets an agent go.

    The queue itself is shared by every node (`call_center_calls`, store/group_calls.py): the order, the
    positions, and which agent a queue call holds (offered, or connected until the wrap-up is stored). Changes on
    another node are seen at the next look, `queue_poll_seconds` later (docs/scale-out.md)."""

    entries: list[asyncio.Event] = field(default_factory=list)  # one per queued call: set to look again at once

    def wake(self) -> None:
        for entry in self.entries:
            entry.set()


_QUEUES: weakref.WeakKeyDictionary[CallHost, Queues] = weakref.WeakKeyDictionary()


def queues(b2bua: CallHost) -> Queues:
    found = _QUEUES.get(b2bua)
    if found is None:
        found = _QUEUES[b2bua] = Queues()
    return found


def _node_id(call: Call) -> str:
    """The node id the queue rows are tagged with: the one whose lease says whether this node is alive."""
    presence = call.b2bua.snapshots.presence
    return presence.node_id if presence is not None else call.settings.node_id


async def _look(call: Call, entry_id: int, call_center_id: int, node_id: str, now: datetime
                ) -> tuple[group_calls.QueueView, list[group_calls.QueueMember]]:  # fmt: skip
    """One poll's read, in one session: the caller's place in line and, when they are first, the members who might
    take the call (none otherwise: the call waits)."""
    async with call.b2bua.sessions() as session:
        view = await group_calls.queue_view(session, entry_id, call_center_id, node_id, now)
        members = await group_calls.queue_members(session, call_center_id) if view.first_in_line else []
    return view, members


async def _agents(call: Call, members: list[group_calls.QueueMember], now: datetime) -> list[Agent]:
    agents = []
    for member in members:
        if member.user_id == call.caller.user_id:
            continue  # an agent calling their own call center is not offered the call
        state = None
        if member.joined and receives_call_center_calls(member.acd, now):
            state = await _snapshot(call, member.user_id, now)  # only who could get the call needs the snapshot
        agents.append(Agent(member.user_id, member.joined, member.acd, state, member.last_call_ended))
    return agents


async def _hold(call: Call, position: int, *, first: bool) -> None:
    """A caller who has to wait: answered, the queue announcement (`first`) and their place in line (counted over
    every node), then a hold tone until an agent is offered the call or it is time to tell the place again."""
    await call.answer_caller()
    endpoint = call.a.endpoint_id
    if endpoint is None or call.over.is_set():
        return
    language = call.settings.prompt_language
    words = ["queue_wait"] if first else []
    await call.play_to_end(endpoint, sentence(language, [*words, "queue_position", *say_number(language, position)]))
    if call.connected is None and not call.over.is_set():
        await call.play(endpoint, (tone_path("ringback"),), loop=True)


async def _enter(call: Call, call_center_id: int, node_id: str) -> int:
    caller = (call.caller.number or "", call.caller.display)
    async with call.b2bua.sessions() as session:
        entry_id = await group_calls.enter_queue(
            session, call_center_id, node_id, call.call_id, caller, datetime.now(UTC)
        )
        await session.commit()
    return entry_id


async def _claim(call: Call, entry_id: int, user_id: int) -> bool:
    async with call.b2bua.sessions() as session:
        claimed = await group_calls.claim_agent(session, entry_id, user_id)
        await session.commit()
        if not claimed and await group_calls.rejoin_queue(session, entry_id, _node_id(call)):
            # Written off as lost while this node's lease lapsed, yet the caller is here: back in line, and on.
            await session.commit()
            log.warning("call_center.caller_back", extra={"call_id": call.call_id, "entry_id": entry_id})
            claimed = await group_calls.claim_agent(session, entry_id, user_id)
            await session.commit()
    return claimed


async def _move(call: Call, entry_id: int, state: group_calls.QueueState) -> None:
    try:
        async with call.b2bua.sessions() as session:
            await group_calls.queue_state(session, entry_id, state)
            await session.commit()
    except Exception:
        # Another node may keep an agent free for a moment longer (or offer them one more call): not worth the call.
        log.exception("call.queue_state_failed", extra={"call_id": call.call_id, "state": state})


async def _queue(call: Call, call_center_id: int, name: str, number: str, incoming: IncomingCall) -> None:
    settings = call.settings
    if incoming.max_forwards <= 0:
        call.fail(483, "Too Many Hops")
        return
    rules = rules_of(call)
    registry = queues(call.b2bua)
    node_id = _node_id(call)
    entry_id = await _enter(call, call_center_id, node_id)
    entry = asyncio.Event()
    registry.entries.append(entry)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.queue_max_wait_seconds
    passed: set[int] = set()  # agents who let this call ring out in this pass
    retry_at: float | None = None
    offers: list[dict[str, object]] = []
    plan: dict[str, object] = {"kind": "call_center", "name": name, "number": number, "offers": offers}
    offered: dict[int, Party] = {}
    to = call.b2bua.peers.address(number)
    holding: asyncio.Future[None] | None = None
    announce_every = settings.queue_announce_seconds
    announced_at = loop.time()
    connected = False
    outcome: group_calls.QueueOutcome | None = None
    try:
        while not call.over.is_set() and loop.time() < deadline:
            now = datetime.now(UTC)
            if retry_at is not None and loop.time() >= retry_at:
                passed.clear()  # every free agent had their turn: offer the call to them again
                retry_at = None
                await _move(call, entry_id, "waiting")
            view, members = await _look(call, entry_id, call_center_id, node_id, now)
            decision: Offer | Wait | Refuse
            if view.first_in_line:
                agents = await _agents(call, members, now)
                decision = next_agent(agents, now, rules, skip=frozenset(passed) | view.held)
            else:
                decision = Wait(reason="an earlier caller is first in line")
            if isinstance(decision, Refuse):
                plan["refused"] = decision.reason
                outcome = "refused"
                if not call.a.answered:
                    call.fail(decision.status, "Temporarily Unavailable")
                    return
                break  # everybody signed out while the caller waited: they hear so, and the call ends
            branches: list[Branch] = []
            if isinstance(decision, Offer):
                branches = await _branches(call, decision.target, to)
                if not branches:
                    passed.add(decision.target.user_id)
                    continue
                if not await _claim(call, entry_id, decision.target.user_id):
                    # A queue call of another node took the agent a moment ago (or a surviving node wrote this
                    # call off while this node's lease had lapsed): look again at the next round, not at once.
                    decision = Wait(reason="another queue call took the agent first")
            if isinstance(decision, Offer):
                user_id = decision.target.user_id
                offered.setdefault(user_id, _party(call, user_id, number, plan))
                result = None
                try:
                    if holding is not None:
                        holding.cancel()  # the ring step plays its own ringback to an answered caller
                    result = await call.ring(
                        branches, decision.timeout_seconds, _max_forwards(incoming), (), _from(call, name),
                        ringing=(user_id,),
                    )  # fmt: skip
                finally:
                    # Answered: the row holds the agent until the wrap-up is stored; else they are free again.
                    connected = result is not None and result.outcome == "answered" and call.connected is not None
                    await _move(call, entry_id, "connected" if connected else "waiting")
                    registry.wake()
                offers.append({"user_id": user_id, "reason": decision.reason, "outcome": result.outcome})
                if connected:
                    _answered(call, offered.pop(user_id))
                    offered.clear()  # agents who let it ring before someone took it get no row
                    call.b2bua.spawn(_wrap_up_after(call, registry, call_center_id, user_id, entry_id))
                    return
                if result.outcome == "gone":
                    break
                offered[user_id].outcome.append(result.outcome)
                passed.add(user_id)
                continue
            # Nobody can take the call now: it waits in the queue.
            if passed and retry_at is None:
                retry_at = loop.time() + settings.queue_retry_seconds
                await _move(call, entry_id, "exhausted")
            if not call.a.answered and (holding is None or holding.done()):
                log.info("call.queued", extra={"call_id": call.call_id, "reason": decision.reason})
                plan["position"] = view.position
                holding = asyncio.ensure_future(_hold(call, view.position, first=True))
                announced_at = loop.time()
            elif (
                announce_every > 0
                and (holding is None or holding.done())  # not in the middle of the last announcement
                and loop.time() - announced_at >= announce_every
            ):
                holding = asyncio.ensure_future(_hold(call, view.position, first=False))
                announced_at = loop.time()
            entry.clear()
            pause = min(settings.queue_poll_seconds, max(0.0, deadline - loop.time()))
            if retry_at is not None:
                pause = min(pause, max(0.0, retry_at - loop.time()))
            await call.race(entry.wait(), pause)
    finally:
        registry.entries.remove(entry)
        if holding is not None:
            holding.cancel()
        for party in offered.values():
            call.parties.append(party)
        if not connected:
            gone: group_calls.QueueOutcome = "abandoned" if call.over.is_set() else "gave_up"
            await _leave(call, entry_id, outcome or gone)
        registry.wake()
    if call.over.is_set():
        return
    # The longest wait has passed (or nobody is signed in any more): the caller hears so, then the call ends.
    if "refused" not in plan:
        plan["gave_up"] = f"nobody took the call within {settings.queue_max_wait_seconds:g} s"
    if call.a.answered and call.a.endpoint_id is not None:
        await call.play_to_end(call.a.endpoint_id, sentence(settings.prompt_language, ["not_reachable", "goodbye"]))
        call.over.set()
    else:
        call.fail(480, "Temporarily Unavailable")


async def _leave(call: Call, entry_id: int, outcome: group_calls.QueueOutcome) -> None:
    """The call leaves the queue with `outcome` (kept as statistics; other nodes stop counting it). When the
    database refuses, it is tried again in the background: a row left waiting would stand in the way of every
    later caller of the call center, on every node, for as long as this node lives."""
    if not await _left(call, entry_id, outcome):
        call.b2bua.spawn(_leave_later(call, entry_id, outcome))


async def _left(call: Call, entry_id: int, outcome: group_calls.QueueOutcome) -> bool:
    try:
        async with call.b2bua.sessions() as session:
            await group_calls.leave_queue(session, entry_id, outcome, datetime.now(UTC))
            await session.commit()
    except Exception:
        log.exception("call.queue_leave_failed", extra={"call_id": call.call_id, "outcome": outcome})
        return False
    return True


async def _leave_later(call: Call, entry_id: int, outcome: group_calls.QueueOutcome) -> None:
    while True:
        await asyncio.sleep(max(1.0, call.settings.queue_poll_seconds))
        if await _left(call, entry_id, outcome):
            return


async def _wrap_up_after(call: Call, registry: Queues, call_center_id: int, user_id: int, entry_id: int) -> None:
    """When the answered call-center call ends, the agent wraps up (J1): stored, with the end of the queue row
    that held them, in one transaction — no node offers them another queue call in between."""
    try:
        await call.over.wait()
        now = datetime.now(UTC)
        async with call.b2bua.sessions() as session:
            await call_centers.call_center_call_ended(session, user_id, call_center_id, now)
            await group_calls.leave_queue(session, entry_id, "answered", now)
            await session.commit()
    except Exception:
        log.exception("call.wrap_up_failed", extra={"call_id": call.call_id, "user_id": user_id})
        # Without its wrap-up the agent is still free to take calls: the row must not hold them for ever.
        await _leave(call, entry_id, "answered")
    finally:
        registry.wake()
