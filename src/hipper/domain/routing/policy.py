"""The routing policy: (incoming call, user state snapshot, now) -> RoutingPlan. Pure: no I/O, no clock.

Read `plan_incoming` top to bottom: it is the precedence of docs/call-routing.md, one numbered line at a time.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import TypeAdapter

from hipper.domain.moments import aware
from hipper.domain.numbers import same_number
from hipper.domain.routing.plan import (
    HISTORY_INFO_CAUSE,
    Diversion,
    DiversionReason,
    ForwardStep,
    HangupStep,
    PersonalAssistantStep,
    RejectStep,
    RingSplashStep,
    RingStep,
    RoutingPlan,
    Step,
    Target,
    VoicemailStep,
)
from hipper.domain.routing.state import IncomingCall, RoutingRules, UserState, service
from hipper.domain.services import (
    Anywhere,
    CallForwardingAlways,
    CallForwardingAlwaysSecondary,
    CallForwardingBusy,
    CallForwardingNoAnswer,
    CallForwardingNotReachable,
    CallWaiting,
    DoNotDisturb,
    FixedMobile,
    NightForwarding,
    PersonalAssistant,
    RemoteOffice,
    SimultaneousRing,
    Voicemail,
)

PRESENCE_WORDS: dict[str, str] = {
    "business_trip": "on a business trip",
    "gone_for_the_day": "gone for the day",
    "lunch": "at lunch",
    "meeting": "in a meeting",
    "out_of_office": "out of the office",
    "temporarily_out": "temporarily out",
    "training": "in a training",
    "unavailable": "unavailable",
    "vacation": "on vacation",
}


def plan_incoming(
    call: IncomingCall, state: UserState, now: datetime, rules: RoutingRules | None = None
) -> RoutingPlan:
    """Decide what happens to a call for this user, as a plan the executor runs and the user can read."""
    planner = _Planner(call, state, aware(now), rules or RoutingRules())
    steps = planner.plan()
    return RoutingPlan(
        user_id=state.user_id,
        called=call.called,
        caller=call.caller,
        at=planner.now,
        steps=tuple(steps),
        notes=tuple(planner.notes),
    )


# How many plans one snapshot keeps (kinds of call: which number was dialled, the counters a forwarded call
# carries, on a call or not, the registered devices); past it they are all dropped and made again.
PLANS_PER_SNAPSHOT = 32
# The plan's `at` as `RoutingPlan.model_dump(mode="json")` writes it (the same serialiser as the field's).
_MOMENT = TypeAdapter(datetime)


def plan_for_call(
    call: IncomingCall, state: UserState, now: datetime, rules: RoutingRules | None = None
) -> tuple[RoutingPlan, dict[str, object]]:
    """`plan_incoming` and the plan's `model_dump(mode="json")` (for the call-log row), for the call path.

    Without an active Personal Assistant a plan depends on the call only through which number was dialled, its
    counters, and the snapshot's live facts (devices, "on a call"): not on the caller nor the time, which only
    fill the plan's `caller` and `at`. So a snapshot (`UserState.plans`, shared by its per-call copies) keeps the
    steps and notes for each such kind of call, with their JSON, and the next call of that kind takes them: the
    steps are frozen models, the JSON lists are shared by the rows of those calls and only read (stored, shown)."""
    rules = rules or RoutingRules()
    pa = state.services.get(PersonalAssistant.service)
    if pa is not None and (pa.active if isinstance(pa, PersonalAssistant) else True):
        plan = plan_incoming(call, state, now, rules)
        return plan, plan.model_dump(mode="json")
    key = (
        call.called,
        call.diversion_count,
        call.max_forwards,
        state.on_call,
        tuple(state.devices),
        rules.seconds_per_ring,
        rules.diversion_limit,
        state.user_id,
        state.extension,
        id(state.services),
        id(state.numbers),
    )
    made = state.plans.get(key)
    if made is None:
        plan = plan_incoming(call, state, now, rules)
        dumped = plan.model_dump(mode="json")
        if len(state.plans) >= PLANS_PER_SNAPSHOT:
            state.plans.clear()
        # The snapshot parts the plan was made from are held with it, so that their ids in the key stay theirs.
        state.plans[key] = (plan.steps, plan.notes, dumped["steps"], dumped["notes"], state.services, state.numbers)
        return plan, dumped
    steps, notes, steps_json, notes_json, _, _ = made
    plan = RoutingPlan(
        user_id=state.user_id, called=call.called, caller=call.caller, at=aware(now), steps=steps, notes=notes
    )
    dumped = {
        "user_id": plan.user_id,
        "called": plan.called,
        "caller": plan.caller,
        "at": _MOMENT.dump_python(plan.at, mode="json"),
        "steps": steps_json,
        "notes": notes_json,
    }
    return plan, dumped


def plan_loop(call: IncomingCall, state: UserState, now: datetime, rules: RoutingRules | None = None) -> RoutingPlan:
    """The call came back through forwarding to a user already in its chain (a loop, docs/call-routing.md "Loops").

    It ends at that user, without running their plan again (it would only go round once more): their voicemail
    takes it when it is on — the caller wanted this user, so the message belongs in their mailbox, as BroadWorks
    ends a redirection loop at the user met again — otherwise 482 Loop Detected."""
    planner = _Planner(call, state, aware(now), rules or RoutingRules())
    why = "the call came back to you through forwarding (a loop)"
    vm = planner.voicemail
    step: Step
    if vm is not None and vm.active:
        step = planner.to_voicemail("no-answer", f"{why}: your voicemail takes it", line=0, service=vm.service)
    else:
        step = RejectStep(line=0, status=482, reason_phrase="Loop Detected", reason=f"{why}: the caller hears 482")
    return RoutingPlan(user_id=state.user_id, called=call.called, caller=call.caller, at=planner.now, steps=(step,))


class _Planner:
    def __init__(self, call: IncomingCall, state: UserState, now: datetime, rules: RoutingRules) -> None:
        self.call = call
        self.state = state
        self.now = now
        self.rules = rules
        self.notes: list[str] = []
        # Targets left out because they take no waiting call (Anywhere without call control).
        self.left_out_waiting = False
        self.voicemail = service(state, Voicemail)
        waiting = service(state, CallWaiting)
        # Without the call-waiting service a second call finds the user busy (the BroadWorks default).
        self.call_waiting = waiting is not None and waiting.active
        called_number = state.fixed_number if call.called == "fixed" else state.mobile_number
        # The number History-Info / Diversion name as the diverting user.
        self.called_number = called_number or state.extension or ""

    # -- the precedence, line by line (docs/call-routing.md) ------------------------------------------------

    def plan(self) -> list[Step]:
        # Loops: RFC 3261 §16.3 — a request that arrives with Max-Forwards 0 goes no further.
        if self.call.max_forwards <= 0:
            return [
                RejectStep(
                    line=0, status=483, reason_phrase="Too Many Hops", reason="the call arrived with Max-Forwards 0"
                )
            ]

        # 1. Unconditional forwarding: forward always, the fixed-number forward, all calls to voicemail.
        unconditional = self.forward_always()
        if unconditional:
            return unconditional

        # 2. Personal Assistant answers unless the caller is one of its exceptions.
        assistant = self.personal_assistant()
        if assistant:
            return assistant

        # 3. Do not disturb: the busy treatment (7) without ringing anything.
        dnd = service(self.state, DoNotDisturb)
        if dnd is not None and dnd.active:
            splash: list[Step] = []
            if dnd.ring_splash:
                splash = [
                    RingSplashStep(
                        line=3,
                        service="do-not-disturb",
                        reason="do not disturb is on with ring splash: your desk phone rings briefly",
                    )
                ]
            return splash + self.busy_treatment("do-not-disturb", "do not disturb is on")

        # 6. Busy now: already on a call and call waiting is off — unless fixed-mobile leaves call waiting on the
        # mobile to the mobile network, which then decides (its 486 is the busy signal).
        if self.state.on_call and not self.call_waiting:
            handset = self.mobile_network_decides()
            if handset is None:
                return self.busy_treatment("user-busy", "you are on a call and call waiting is off")
            return [self.ring_mobile_network_decides(handset)]

        # 4 + 5. Who alerts: remote office or your own devices, plus simultaneous ring and Anywhere.
        targets = self.alerting_targets()

        # 6. On a call with call waiting on, and every phone that could ring takes no waiting call: busy.
        if not targets and self.left_out_waiting:
            return self.busy_treatment("user-busy", "you are on a call and none of your phones takes a waiting call")

        # 9. Not reachable: nothing registered and no number to ring.
        if not targets:
            return self.not_reachable_treatment("none of your phones is registered and no number is set to ring")

        # 8. No answer within N rings; 6/7 and 9 again as runtime outcomes of the ringing.
        timeout, on_no_answer = self.no_answer_treatment()
        waiting = self.state.on_call and self.call_waiting
        return [
            RingStep(
                line=5,
                targets=tuple(targets),
                timeout_seconds=timeout,
                on_busy=tuple(self.busy_treatment("user-busy", "every phone that rang refused the call as busy")),
                on_no_answer=tuple(on_no_answer),
                on_not_reachable=tuple(self.not_reachable_treatment("none of the phones that rang could be reached")),
                reason=self.ring_reason(targets, timeout, waiting),
            )
        ]

    # -- 1 ---------------------------------------------------------------------------------------------------

    def forward_always(self) -> list[Step]:
        night = service(self.state, NightForwarding)
        if night is not None and night.night_mode and night.destination is not None:
            why = f"night mode is on: calls go to {night.destination}"
            return self.forward(night.destination, "unconditional", why, line=1, service=NightForwarding.service)
        always = service(self.state, CallForwardingAlways)
        if always is not None and always.active:
            splash: list[Step] = []
            if always.ring_splash:
                splash = [
                    RingSplashStep(
                        line=1,
                        service=always.service,
                        reason="forward always has ring splash on: your desk phone rings briefly",
                    )
                ]
            return splash + self.unconditional(always, "forward always is on")
        secondary = service(self.state, CallForwardingAlwaysSecondary)
        if secondary is not None and secondary.active:
            if self.call.called == "fixed":
                return self.unconditional(secondary, "forwarding of your fixed number is on")
            self.notes.append("forwarding of your fixed number is on, but this call is to your mobile number")
        vm = self.voicemail
        if vm is not None and vm.active and vm.all_calls_to_voicemail:
            return [self.to_voicemail("unconditional", "voicemail takes all calls", line=1, service=vm.service)]
        return []

    def unconditional(self, forwarding: CallForwardingAlways | CallForwardingAlwaysSecondary, why: str) -> list[Step]:
        if forwarding.to_voicemail or forwarding.destination is None:
            return [self.to_voicemail("unconditional", f"{why}, to your voicemail", line=1, service=forwarding.service)]
        why = f"{why}, to {forwarding.destination}"
        return self.forward(forwarding.destination, "unconditional", why, line=1, service=forwarding.service)

    # -- 2 ---------------------------------------------------------------------------------------------------

    def personal_assistant(self) -> list[Step]:
        pa = service(self.state, PersonalAssistant)
        if pa is None or not pa.active:
            return []
        if not pa.in_effect(self.now) and pa.until is not None:
            self.notes.append(f"the Personal Assistant ended at {aware(pa.until).isoformat()} and no longer answers")
            return []
        caller = self.call.caller
        if caller is not None:
            for exception in pa.exceptions:
                if same_number(caller, exception.number):
                    self.notes.append(
                        f"the Personal Assistant lets {exception.name or exception.number} through (an exception)"
                    )
                    return []
        presence = PRESENCE_WORDS.get(pa.presence, pa.presence)
        back = f" until {aware(pa.until).isoformat()}" if pa.until is not None else ""
        on_zero: ForwardStep | None = None
        if pa.transfer_to is not None:
            why = f"the caller pressed 0: transfer to {pa.transfer_to}"
            transfer = self.forward(pa.transfer_to, "deflection", why, line=2, service=pa.service)
            if isinstance(transfer[0], ForwardStep):
                on_zero = transfer[0]
            else:
                self.notes.append("pressing 0 would exceed the diversion limit, so it does nothing")
        afterwards: VoicemailStep | HangupStep
        if self.voicemail is not None and self.voicemail.active:
            why = "after the announcement the caller can leave a message"
            afterwards = self.to_voicemail("unavailable", why, line=2, service=pa.service)
        else:
            afterwards = HangupStep(
                line=2, service=pa.service, reason="after the announcement the call ends: your voicemail is off"
            )
        steps: list[Step] = []
        if pa.alert_tone:
            steps.append(
                RingSplashStep(
                    line=2,
                    service=pa.service,
                    reason="the Personal Assistant alert tone is on: your desk phone rings briefly",
                )
            )
        steps.append(
            PersonalAssistantStep(
                line=2,
                service=pa.service,
                presence=pa.presence,
                until=aware(pa.until) if pa.until is not None else None,
                on_zero=on_zero,
                afterwards=afterwards,
                reason=f"the Personal Assistant is on: callers hear that you are {presence}{back}",
            )
        )
        return steps

    # -- 4, 5 ------------------------------------------------------------------------------------------------

    def alerting_targets(self) -> list[Target]:
        targets: list[Target] = []
        remote = service(self.state, RemoteOffice)
        if remote is not None and remote.active and remote.destination is not None:
            targets.append(
                Target(
                    kind="remote_office",
                    number=remote.destination,
                    reason=f"remote office is on: {remote.destination} rings instead of your own phones",
                )
            )
        else:
            targets.extend(self.own_devices())
        targets.extend(self.simultaneous_ring_targets())
        targets.extend(self.anywhere_targets())
        if self.state.on_call and self.call_waiting:
            targets = self.waiting_targets(targets)
        return _one_branch_per_number(targets)

    def waiting_targets(self, targets: list[Target]) -> list[Target]:
        """The user is on a call and call waiting is on: which targets alert the second call, and how.

        An Anywhere location is offered the waiting call as a separate call only with its call control on
        (manual §7.2.10); otherwise it is left out, as a mobile network that shows no waiting calls needs. The
        mobile follows fixed-mobile's `call_control_mode` (manual §7.7): the exchange offers it as a waiting call
        ("exchange"), or offers it plainly and the mobile network's own call waiting presents it
        ("mobile_network")."""
        marked: list[Target] = []
        for target in targets:
            if target.kind == "anywhere" and not target.call_control:
                self.notes.append(
                    f"Anywhere location {target.number} is left out: you are on a call and its call control is off"
                )
                self.left_out_waiting = True
                continue
            if target.kind == "mobile" and self.call_control_mode() == "mobile_network":
                why = "; the mobile network's call waiting presents it (fixed-mobile call control)"
                marked.append(target.model_copy(update={"reason": target.reason + why}))
                continue
            marked.append(target.model_copy(update={"waiting": True}))
        return marked

    def call_control_mode(self) -> str:
        fmi = service(self.state, FixedMobile)
        return fmi.call_control_mode if fmi is not None else "exchange"

    def mobile_network_decides(self) -> Target | None:
        """Busy with call waiting off, but fixed-mobile's call control is the mobile network's: the handset that
        would ring for this call, offered through the mobile network (its own call waiting decides); else None."""
        if self.call_control_mode() != "mobile_network" or self.state.mobile_number is None:
            return None
        remote = service(self.state, RemoteOffice)
        if remote is not None and remote.active and remote.destination is not None:
            return None  # remote office replaces the user's own phones, the mobile too
        for target in self.own_devices():
            if target.kind == "mobile" and target.number is not None:
                # Only the number through the mobile network: the exchange's own mobile apps follow its rule.
                why = "you are on a call and call waiting is off, but fixed-mobile call control is the mobile network's"
                return Target(
                    kind="mobile", number=target.number, reason=f"{why}: it decides whether your mobile rings"
                )
        return None

    def ring_mobile_network_decides(self, handset: Target) -> RingStep:
        timeout, on_no_answer = self.no_answer_treatment()
        busy = self.busy_treatment(
            "user-busy", "your mobile refused the call as busy (the mobile network's call waiting)"
        )
        return RingStep(
            line=6,
            service=FixedMobile.service,
            targets=(handset,),
            timeout_seconds=timeout,
            on_busy=tuple(busy),
            on_no_answer=tuple(on_no_answer),
            # You are on a call, so not reaching the mobile is not "unreachable": the busy treatment applies.
            on_not_reachable=tuple(
                self.busy_treatment("user-busy", "you are on a call and your mobile could not be reached")
            ),
            reason=self.ring_reason([handset], timeout, False),
        )

    def own_devices(self) -> list[Target]:
        fmi = service(self.state, FixedMobile)
        if fmi is None:
            rings = "desk" if self.call.called == "fixed" else "mobile"
            why = "calls to your fixed number ring your desk phone"
            if self.call.called == "mobile":
                why = "calls to your mobile number ring your mobile"
        else:
            setting = "fixed_rings" if self.call.called == "fixed" else "mobile_rings"
            rings = fmi.fixed_rings if self.call.called == "fixed" else fmi.mobile_rings
            why = f"fixed-mobile {setting} is {rings}"
        targets: list[Target] = []
        if rings in ("desk", "both"):
            desks = tuple(d.id for d in self.state.devices if d.kind == "desk")
            if desks:
                targets.append(Target(kind="desk", device_ids=desks, reason=f"{why}: your desk phone rings"))
            else:
                self.notes.append("your desk phone is not registered, so it cannot ring")
        if rings in ("mobile", "both"):
            number = self.state.mobile_number
            apps = tuple(d.id for d in self.state.devices if d.kind == "mobile")
            if number is not None or apps:
                targets.append(
                    Target(kind="mobile", number=number, device_ids=apps, reason=f"{why}: your mobile rings")
                )
            else:
                self.notes.append("you have no mobile number, so your mobile cannot ring")
        return targets

    def simultaneous_ring_targets(self) -> list[Target]:
        simring = service(self.state, SimultaneousRing)
        if simring is None or not simring.active or not simring.targets:
            return []
        if self.state.on_call and simring.do_not_ring_when_busy:
            self.notes.append("simultaneous ring is left out: you are on a call and chose not to ring when busy")
            return []
        return [
            Target(
                kind="simultaneous_ring",
                number=target.number,
                answer_confirmation=target.answer_confirmation,
                reason="simultaneous ring is on"
                + (": answering needs a key press" if target.answer_confirmation else ""),
            )
            for target in simring.targets
        ]

    def anywhere_targets(self) -> list[Target]:
        anywhere = service(self.state, Anywhere)
        if anywhere is None:
            return []
        targets = []
        for location in anywhere.locations:
            if not location.active:
                continue
            # Blocking diversion matters for fixed-number calls: the mobile network's voicemail must not take them.
            block = location.block_diversion and self.call.called == "fixed"
            reason = f"Anywhere location '{location.name}' is active"
            if location.answer_confirmation:
                reason += ": answering needs a key press"
            targets.append(
                Target(
                    kind="anywhere",
                    number=location.number,
                    answer_confirmation=location.answer_confirmation,
                    call_control=location.call_control,
                    block_diversion=block,
                    reason=reason,
                )
            )
        return targets

    def ring_reason(self, targets: list[Target], timeout: int | None, waiting: bool) -> str:
        count = f"{len(targets)} phone" + ("s" if len(targets) != 1 else "")
        how = "as a waiting call (you are on a call, call waiting is on)" if waiting else "at the same time"
        until = f"for {timeout} seconds" if timeout is not None else "until the caller hangs up"
        return f"ring {count} {how}, {until}"

    # -- 7 ---------------------------------------------------------------------------------------------------

    def busy_treatment(self, cause: DiversionReason, why: str) -> list[Step]:
        busy = service(self.state, CallForwardingBusy)
        if busy is not None and busy.active and busy.destination is not None:
            why = f"{why}: forward on busy to {busy.destination}"
            return self.forward(busy.destination, cause, why, line=7, service=busy.service)
        vm = self.voicemail
        if vm is not None and vm.active and vm.on_busy:
            # Manual §7.4.1 ties "on busy" to call waiting off because with call waiting on a second call is not
            # busy: it alerts as a waiting call. Once the busy treatment is reached (do-not-disturb, every phone
            # refused busy) the user really is busy, and the voicemail takes the call either way.
            why = f"{why}: voicemail takes calls when you are busy"
            return [self.to_voicemail(cause, why, line=7, service=vm.service)]
        return [RejectStep(line=7, status=486, reason_phrase="Busy Here", reason=f"{why}: the caller hears busy")]

    # -- 8 ---------------------------------------------------------------------------------------------------

    def no_answer_treatment(self) -> tuple[int | None, list[Step]]:
        seconds = self.rules.seconds_per_ring
        no_answer = service(self.state, CallForwardingNoAnswer)
        if no_answer is not None and no_answer.active and no_answer.destination is not None:
            why = f"no answer after {no_answer.rings} rings: forward to {no_answer.destination}"
            forward = self.forward(no_answer.destination, "no-answer", why, line=8, service=no_answer.service)
            return no_answer.rings * seconds, forward
        vm = self.voicemail
        if vm is not None and vm.active and vm.on_no_answer:
            why = f"no answer after {vm.rings} rings: voicemail"
            return vm.rings * seconds, [self.to_voicemail("no-answer", why, line=8, service=vm.service)]
        return None, []

    # -- 9 ---------------------------------------------------------------------------------------------------

    def not_reachable_treatment(self, why: str) -> list[Step]:
        unreachable = service(self.state, CallForwardingNotReachable)
        if unreachable is not None and unreachable.active and unreachable.destination is not None:
            dest = unreachable.destination
            why = f"{why}: forward when not reachable to {dest}"
            return self.forward(dest, "unavailable", why, line=9, service=unreachable.service)
        if self.voicemail is not None and self.voicemail.active:
            return [self.to_voicemail("unavailable", f"{why}: voicemail", line=9, service=self.voicemail.service)]
        return [
            RejectStep(
                line=9, status=480, reason_phrase="Temporarily Unavailable", reason=f"{why}: you cannot be reached"
            )
        ]

    # -- forwarding and loops ---------------------------------------------------------------------------------

    def diversion(self, reason: DiversionReason) -> Diversion:
        return Diversion(
            reason=reason,
            history_info_cause=HISTORY_INFO_CAUSE[reason],
            diverted_by=self.called_number,
            diversion_count=self.call.diversion_count + 1,
            max_forwards=self.call.max_forwards - 1,
        )

    def forward(self, destination: str, reason: DiversionReason, why: str, *, line: int, service: str) -> list[Step]:
        """A forward to another number, unless this call has been diverted too often already."""
        too_many = self.call.diversion_count >= self.rules.diversion_limit
        if too_many or self.call.max_forwards <= 1:
            limit = (
                f"the call was already diverted {self.call.diversion_count} times"
                if too_many
                else "Max-Forwards is exhausted"
            )
            refused = f"{why} — refused: {limit}"
            if self.voicemail is not None and self.voicemail.active:
                why = f"{refused}; voicemail takes the call instead"
                return [self.to_voicemail(reason, why, line=line, service=self.voicemail.service)]
            return [RejectStep(line=0, status=482, reason_phrase="Loop Detected", reason=refused)]
        diversion = self.diversion(reason)
        return [ForwardStep(line=line, service=service, destination=destination, diversion=diversion, reason=why)]

    def to_voicemail(self, cause: DiversionReason, why: str, *, line: int, service: str) -> VoicemailStep:
        # VoicemailStep is our own application: it ends the chain, so the diversion limit does not stop it.
        return VoicemailStep(line=line, service=service, cause=cause, diversion=self.diversion(cause), reason=why)


def _one_branch_per_number(targets: list[Target]) -> list[Target]:
    """RingStep a number once even when it is set in several places (your mobile as a simultaneous-ring target)."""
    seen: set[str] = set()
    unique = []
    for target in targets:
        if target.number is not None:
            if target.number in seen:
                continue
            seen.add(target.number)
        unique.append(target)
    return unique
