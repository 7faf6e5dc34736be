"""Live call control (manual 5.2, SPEC D): hold and resume, blind and attended transfer, consultation, merge into a
three-way call, recording on demand, call pull — one user's side of an answered call, driven by the API
(api/routers/calls.py) and by the phones' own requests (REFER, re-INVITE hold).

Media is always anchored (each leg has its own media-engine endpoint), so an operation is media commands plus,
where a new party comes in, a new leg rung with the engine's `Fork`. The party who stays is never re-INVITEd:
their endpoint simply hears someone else from then on (music on hold, the transfer target, the mixer).

A *conversation* is an answered engine `Call` — one an INVITE started, or a callback (apps/click_to_dial.py, a
call whose first step rang the user's phone, then the number). It owns its legs and knows two extra sets for this
module: legs it `released` (the user who transferred away: their BYE ends
nothing) and legs it `joined` (a transfer's target, a pulled call's new device: their BYE ends the call). Two
conversations whose other parties were connected (an attended transfer, a merge) are *linked*: whichever ends,
the other ends too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hipper.apps.click_to_dial import AppCalls, Callback, publish
from hipper.apps.conference import Merged
from hipper.apps.recording import CallRecorder, recorders_of, user_part_over
from hipper.domain.services.call_recording import PAUSE_RESUME_MODES
from hipper.engine.call import Call
from hipper.engine.fork import Branch, Fork
from hipper.engine.leg import CalleeLeg, Leg
from hipper.media.engine import (
    Connect,
    CreateMixer,
    MediaError,
    Play,
    RecordAlso,
)
from hipper.media.prompts import tone_path
from hipper.media.wavfile import read_wav
from hipper.sip.message import URI, NameAddr

log = logging.getLogger(__name__)

Conversation = Call
RecordingAction = Literal["start", "pause", "resume", "stop", "keep"]
RecordingState = Literal["off", "on", "paused"]
# A transfer target or a pulled call rings at most this long (the target's own plan decides within it: its
# voicemail answers, or its busy/not-reachable answer comes back).
TRANSFER_RING_SECONDS = 120.0
PULL_RING_SECONDS = 30.0
# A blind transfer that found nobody: the transferred party hears the busy tone this long, then the call ends.
FAILED_TRANSFER_TONE_SECONDS = 3.0


class CallControlError(Exception):
    """An operation the call's state (or the user's rights) does not allow; the call is left as it was."""

    def __init__(self, code: str, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status


def conversation_id(conversation: Conversation) -> str:
    return conversation.key


def answered_side(conversation: Conversation, user_id: int) -> tuple[Leg, Leg] | None:
    """The user's own leg and the other party's leg of an answered conversation, or None."""
    call = conversation
    connected, first = call.connected, call.first_leg
    if call.answered_at is None or connected is None or first is None:
        return None
    if call.caller.user_id == user_id and not call.caller.for_callback:
        return _now_talking_to(call, first, connected)
    if connected.user_id == user_id:
        return _now_talking_to(call, connected, first)
    return None


def _now_talking_to(call: Call, own: Leg, other: Leg) -> tuple[Leg, Leg] | None:
    """`own` and whom it talks to: `other`, or — `other` having transferred the call away — the target that joined
    in its place (the one joined leg not released)."""
    if other in call.released:
        joined = [leg for leg in call.joined if leg not in call.released]
        if len(joined) != 1:
            return None
        other = joined[0]
    return own, other


def in_mix(conversation: Conversation) -> bool:
    """Whether the conversation is a three-way call in the media engine's mixer (`Merged`, either merge's; down to
    two parties it is a plain call again)."""
    left = conversation.left
    return isinstance(left, Merged) and left.mixing


def _logged(conversation: Conversation, user_id: int) -> bool:
    """Whether the call writes a call-log row of the user's when it ends (its `call.ended` goes with it)."""
    placed = conversation.placed
    if placed is not None and placed.user_id == user_id:
        return True
    return any(party.user_id == user_id for party in conversation.parties)


@dataclass
class UserControls:
    """One user's side of one answered conversation, and what call control did to it so far."""

    conversation: Conversation
    user_id: int
    own: Leg
    other: Leg
    held: bool = False
    gone: bool = False  # transferred away: the conversation goes on without this user
    consultation_of: str | None = None
    busy: bool = False  # an operation is under way (one at a time)

    @property
    def id(self) -> str:
        return conversation_id(self.conversation)

    @property
    def merged(self) -> bool:
        """A three-way call, whichever merge made it: the app's, or a phone's *8 (the call's leave hook)."""
        return in_mix(self.conversation)

    @property
    def recorder(self) -> CallRecorder | None:
        return recorders_of(self.conversation).get(self.user_id)

    def recording_state(self) -> RecordingState | None:
        return recording_state(self.recorder)


def recording_state(recorder: CallRecorder | None) -> RecordingState | None:
    """What the user's recording of a call is to them; None: no recording control on this call."""
    if recorder is None:
        return None
    if recorder.recording_id is None:
        return "off"
    if recorder.mode == "on_demand" and not recorder.keep:
        return "off"  # running, but only kept when asked: to the user it is not recording yet
    return "paused" if recorder.paused else "on"


class CallControl:
    """The live call control of one node's calls (one per B2BUA, on `apps.node.Applications`)."""

    def __init__(self, app_calls: AppCalls) -> None:
        self.app_calls = app_calls
        self.b2bua = app_calls.b2bua
        self.controls: dict[tuple[str, int], UserControls] = {}
        self.consultations: dict[str, str] = {}  # a consultation's id → the id of the call it consults for
        path = self.b2bua.settings.music_on_hold_file
        if path is not None:
            read_wav(Path(path))  # a bad file fails the start (WavFormatError / OSError), not the first hold
        self.music_on_hold = Path(path) if path is not None else tone_path("music_on_hold")

    # -- finding a user's call ---------------------------------------------------------------------------------

    def conversations(self) -> list[Conversation]:
        return list(self.b2bua.calls)  # callbacks included: calls whose first step rang the user

    def find(self, call_id: str) -> Conversation | None:
        """The live call (or callback) with this id, whoever's it is: `answered_side` says whether it is theirs."""
        for conversation in self.conversations():
            if conversation_id(conversation) == call_id and not conversation.over.is_set():
                return conversation
        return None

    def controls_of(self, user_id: int, call_id: str) -> UserControls:
        """The user's controls of their answered call `call_id`; 404 when it is not theirs (or gone), 409 while it
        is not answered yet."""
        key = (call_id, user_id)
        controls = self.controls.get(key)
        if controls is not None and not controls.gone and not controls.conversation.over.is_set():
            return controls
        conversation = self.find(call_id)
        if conversation is None or (controls is not None and controls.gone):
            raise CallControlError("no_such_call", "no such call", 404)
        side = answered_side(conversation, user_id)
        if side is None:
            if any(c.id == call_id for c in self.app_calls.live(user_id)):
                raise CallControlError("not_answered", "the call is not answered yet")
            raise CallControlError("no_such_call", "no such call", 404)
        controls = UserControls(conversation, user_id, *side, consultation_of=self.consultations.get(call_id))
        self.controls[key] = controls
        self.b2bua.spawn(self._forget_when_over(key, controls))
        return controls

    async def _forget_when_over(self, key: tuple[str, int], controls: UserControls) -> None:
        await controls.conversation.over.wait()
        if self.controls.get(key) is controls:
            del self.controls[key]
        self.consultations.pop(key[0], None)
        if not controls.gone and not _logged(controls.conversation, controls.user_id):
            # The call's end is its `call.ended`, written with the user's call-log row (engine/call.py): told once.
            await self._publish(controls, ended=True)

    def state_of(self, user_id: int, call_id: str) -> UserControls | None:
        """What call control knows of a listed call (None: nothing done to it yet)."""
        return self.controls.get((call_id, user_id))

    def listed(self, user_id: int, call_id: str, answered: bool) -> dict[str, object]:
        """The call-control part of a call as `GET /me/calls` lists it — read only: a GET makes no controls (they
        would outlive it, and end the call with an event of their own). A call nothing was done to yet is plain:
        not held, not merged, its recording as the recording module has it (`answered`: the user's call is
        answered, so it may have one)."""
        controls = self.controls.get((call_id, user_id))
        if controls is not None:
            return self.describe(controls)
        recording, merged = None, False
        conversation = self.find(call_id) if answered else None
        if conversation is not None and answered_side(conversation, user_id) is not None:
            recording = recording_state(recorders_of(conversation).get(user_id))
            merged = in_mix(conversation)  # a phone's *8
        return {"held": False, "merged": merged, "consultation_of": self.consultations.get(call_id),
                "recording": recording}  # fmt: skip

    def hidden(self, user_id: int, call_id: str) -> bool:
        """A call the user transferred away goes on, but is no longer theirs to list."""
        controls = self.controls.get((call_id, user_id))
        return controls is not None and controls.gone

    # -- hold and resume ---------------------------------------------------------------------------------------

    async def hold(self, controls: UserControls) -> None:
        if controls.held:
            raise CallControlError("already_held", "the call is on hold already")
        self._claim(controls)
        try:
            await self._music_to(controls.other)
        finally:
            controls.busy = False
        controls.held = True
        log.info("call_control.held", extra={"call": controls.id, "user_id": controls.user_id})
        await self._publish(controls)

    async def resume(self, controls: UserControls) -> None:
        """Back to the held party; another call of the user's that is active goes on hold (swap)."""
        if not controls.held:
            raise CallControlError("not_held", "the call is not on hold")
        self._claim(controls)
        try:
            for other in self._active_calls_of(controls.user_id):
                if other is not controls and not other.held and not other.merged:
                    await self.hold(other)
            await self._connect(controls.own, controls.other)
        finally:
            controls.busy = False
        controls.held = False
        log.info("call_control.resumed", extra={"call": controls.id, "user_id": controls.user_id})
        await self._publish(controls)

    def _active_calls_of(self, user_id: int) -> list[UserControls]:
        """The user's answered calls on this node, each with its controls — made here for a call nothing was done
        to yet (a consultation just answered, a second call taken on a phone): a swap holds every other call of
        theirs, not only those an earlier operation happened to touch."""
        found = []
        for call in self.app_calls.live(user_id):
            if call.state == "active":
                with contextlib.suppress(CallControlError):  # transferred away meanwhile, or just ended
                    found.append(self.controls_of(user_id, call.id))
        return found

    async def remote_hold(self, conversation: Conversation, leg: Leg, held: bool) -> None:
        """A phone put its own call on hold (re-INVITE sendonly/inactive) or took it back (sendrecv): the other
        party hears music on hold meanwhile (RFC 6337 §5.3 leaves the music to the holding side's exchange)."""
        controls = next((c for c in self.controls.values() if c.conversation is conversation and not c.gone), None)
        if in_mix(conversation) or (controls is not None and (controls.merged or controls.busy)):
            return  # a three-way call's mixer, or an operation under way, owns the media now
        other = self._other_of(conversation, leg)
        if other is None or other.endpoint_id is None:
            return
        if held:
            await self._music_to(other)
        else:
            await self._connect(leg, other)
        if controls is not None and leg is controls.own and controls.held != held:
            controls.held = held
            await self._publish(controls)

    def _other_of(self, conversation: Conversation, leg: Leg) -> Leg | None:
        """Whom `leg` talks to now: the other side of a user's controls (also after a pull moved the user to a
        new leg), else the one leg of the conversation still in it besides `leg` (after a transfer: the target)."""
        for (call_id, _), controls in self.controls.items():
            if call_id != conversation_id(conversation) or controls.gone:
                continue
            if controls.other is leg:
                return controls.own
            if controls.own is leg:
                return controls.other
        first: list[Leg | None] = [conversation.first_leg, conversation.connected]
        others = [
            each for each in (*first, *conversation.joined)
            if each is not None and each is not leg and each not in conversation.released
        ]  # fmt: skip
        return others[0] if len(others) == 1 else None

    # -- transfer ----------------------------------------------------------------------------------------------

    async def target(self, number: str, user_id: int, company_id: int | None) -> str:
        """Where the user's transfer or consultation to `number` (normalised) goes, as the exchange dials it — the
        same answer for the app's keys (api/routers/calls.py) and the phone's REFER (apps/phone_control.py). A
        number that is nobody's (an unknown extension) is refused here, before the user lets go of the call; one
        that leaves through the trunk is the user's own call, and their call barring applies (`AppCalls.barring`).
        """
        resolved, refusal = await self.app_calls.barring(number, user_id, company_id)
        if resolved.kind == "unknown":
            raise CallControlError("unknown_number", "no such number or extension", 422)
        if refusal is not None:
            raise CallControlError("barred", refusal.reason, 403)
        return resolved.number

    async def transfer_blind(
        self, controls: UserControls, to: str, answered: Callable[[bool], None] | None = None
    ) -> None:
        """The other party is connected to `to`, rung through this exchange itself so the target's own plan
        applies (forwarding, voicemail); the user's leg is released at once. The target sees the transferred
        party (for a colleague; out through the trunk the transferring user's outgoing identity applies).
        `answered` learns how the ring ended (a phone's REFER reports it, apps/phone_control.py)."""
        self._claim(controls)
        conversation, other = controls.conversation, controls.other
        try:
            shown = self._identity_of(conversation, other)
            target, header = self.app_calls.loopback_target(to, controls.user_id, shown)
            await self._tone_to(other, "ringback")
            await self._release(controls, "transferred")
        finally:
            controls.busy = False
        log.info("call_control.blind_transfer", extra={"call": controls.id, "user_id": controls.user_id})
        conversation.spawn(self._ring_into(conversation, other, controls.own, target, header, shown, answered))

    async def _ring_into(
        self, conversation: Conversation, other: Leg, gone: Leg, target: Branch, header: tuple[str, str],
        shown: tuple[str | None, str], answered: Callable[[bool], None] | None = None,
    ) -> None:  # fmt: skip
        realm = self.b2bua.settings.sip_realm
        from_ = NameAddr(URI("sip", realm, user=shown[0] or None), shown[1])
        try:
            winner = await self._ring(conversation, [target], from_, (header,), TRANSFER_RING_SECONDS)
        except Exception:  # e.g. no media ports: the transferred party hears why, and the transfer reports failure
            log.exception("call_control.transfer_ring_failed", extra={"call": conversation_id(conversation)})
            winner = None
        if answered is not None:
            answered(winner is not None)
        if winner is None:
            if not conversation.over.is_set():
                await self._tone_to(other, "busy_tone")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conversation.over.wait(), FAILED_TRANSFER_TONE_SECONDS)
                conversation.over.set()
            return
        await self._connect(other, winner)
        self._stand_in(conversation, gone, winner)

    async def transfer_attended(self, controls: UserControls, consultation: UserControls) -> None:
        """The two other parties are connected; both of the user's legs are released."""
        if consultation is controls:
            raise CallControlError("no_consultation", "transfer a call to another of your calls")
        self._claim(controls, consultation)
        try:
            await self._connect(controls.other, consultation.other)
            # Each other party now talks to the other one: a user among them controls their call on that leg.
            self._stand_in(controls.conversation, controls.own, consultation.other)
            self._stand_in(consultation.conversation, consultation.own, controls.other)
            await self._release(controls, "transferred")
            await self._release(consultation, "transferred")
            self._link(controls.conversation, consultation.conversation)
        finally:
            controls.busy = consultation.busy = False
        log.info("call_control.attended_transfer", extra={"call": controls.id, "user_id": controls.user_id})

    async def merge(self, controls: UserControls, second: UserControls) -> None:
        """A three-way call: the user (on this call's leg) and both other parties in the media engine's mixer;
        the second call's leg of the user is released. A running recording of this call follows into the mix."""
        if second is controls:
            raise CallControlError("no_consultation", "merge a call with another of your calls")
        if controls.merged or second.merged:
            raise CallControlError("merged", "already a three-way call")
        if any(isinstance(each.conversation.left, Merged) for each in (controls, second)):
            # A merge down to two keeps its hook (its calls are linked through it): a second merge's hook would
            # leave the first's to end the calls when its last other party leaves.
            raise CallControlError("merged", "this call was a three-way call: add a party from the phone (*7, *8)")
        self._claim(controls, second)
        try:
            parties = (controls.own, controls.other, second.other)
            endpoints = tuple(leg.endpoint_id for leg in parties if leg.endpoint_id is not None)
            if len(endpoints) != 3:
                raise CallControlError("not_answered", "a party of these calls has no media")
            await self.b2bua.media.execute(CreateMixer(endpoints))
            await self._release(second, "merged")
            self._link(controls.conversation, second.conversation)

            def gone(leg: Leg) -> bool:
                if leg is controls.own:
                    self._user_left(controls, "left")  # bookkept like a transfer's leaving
                    return True
                if leg is controls.other:
                    # The user talks on with the one party left in the mix (the second call's, or one a phone's *8
                    # joined since): their controls act on that leg from now on.
                    left_in_mix = [party for party in conference.parties if party not in (leg, controls.own)]
                    if len(left_in_mix) == 1:
                        self._stand_in(controls.conversation, leg, left_in_mix[0])
                if isinstance(owner := leg.call, Call) and (user_id := owner.user_of(leg)) is not None:
                    owner.user_left(user_id, "left")  # a colleague hanging up: their row ends now, they are free
                return True  # any party hanging up leaves the other two talking

            conversations = (controls.conversation, second.conversation)
            conference = Merged(list(parties), conversations, gone, user_part_over, by_app=True)
            controls.conversation.left = second.conversation.left = conference  # the calls' one leave hook
        finally:
            controls.busy = second.busy = False
        controls.held = False
        log.info("call_control.merged", extra={"call": controls.id, "user_id": controls.user_id})
        await self._publish(controls)

    def may_consult(self, controls: UserControls) -> None:
        """Whether a consultation may start for this call (checked before anything rings)."""
        if controls.busy:
            raise CallControlError("operation_pending", "another operation on this call is under way")
        if controls.merged:
            raise CallControlError("merged", "already a three-way call")

    async def consulting(self, controls: UserControls, consultation: Callback) -> None:
        """A consultation call (a callback to the user, then the target) was started for this call: it waits on
        hold meanwhile, and the new call is listed as its consultation."""
        self.consultations[consultation.id] = controls.id

        async def forget() -> None:
            await consultation.over.wait()
            self.consultations.pop(consultation.id, None)

        self.b2bua.spawn(forget())
        if not controls.held:
            await self.hold(controls)

    async def leave(self, controls: UserControls) -> None:
        """The user hangs up their side of a three-way call: the other two talk on."""
        leg = controls.own
        await leg.bye()
        controls.conversation.leg_gone(leg)

    # -- call pull -----------------------------------------------------------------------------------------------

    async def pull(self, controls: UserControls, targets: list[Branch]) -> None:
        """The user's side moves to a new leg on `targets` (their chosen device): when it answers, the other party
        hears the user there and the old leg gets BYE. Not answered: nothing changes."""
        self._claim(controls)
        conversation = controls.conversation
        try:
            realm = self.b2bua.settings.sip_realm
            number, display = self._identity_of(conversation, controls.other)
            from_ = NameAddr(URI("sip", realm, user=number or None), display)
            winner = await self._ring(conversation, targets, from_, (), PULL_RING_SECONDS)
            if winner is None:
                raise CallControlError("not_answered", "the device did not answer; the call stays where it was")
            await self._move(controls, winner)
        finally:
            controls.busy = False
        log.info("call_control.pulled", extra={"call": controls.id, "user_id": controls.user_id})
        await self._publish(controls)

    async def take_over(self, controls: UserControls, leg: Leg, conversation: Conversation) -> None:
        """Call pull from the device's side (a phone's INVITE with Replaces, apps/phone_control.py): the user's
        side moves to `leg`, answered already in a `conversation` of its own; the two end together from now on."""
        self._claim(controls)
        try:
            await self._move(controls, leg)
            self._link(controls.conversation, conversation)
        finally:
            controls.busy = False
        log.info("call_control.taken_over", extra={"call": controls.id, "user_id": controls.user_id})
        await self._publish(controls)

    async def _move(self, controls: UserControls, leg: Leg) -> None:
        """The user's side of the call is `leg` from now on (it hears the other party unless held); the old leg
        gets BYE."""
        if not controls.held:
            await self._connect(leg, controls.other)
        recorder = controls.recorder
        if recorder is not None and recorder.recording_id is not None and leg.endpoint_id is not None:
            # The user's voice comes from the new leg now: the recording goes on with it (one file, one timeline).
            await self.b2bua.media.execute(RecordAlso(recorder.recording_id, leg.endpoint_id))
        await self._release(controls, None)
        self._stand_in(controls.conversation, controls.own, leg)
        controls.own = leg

    # -- recording on demand -------------------------------------------------------------------------------------

    async def recording(self, controls: UserControls, action: RecordingAction) -> None:
        recorder = controls.recorder
        if recorder is None:
            raise CallControlError("recording_not_allowed", "call recording is off for you (or for this call)")
        self._claim(controls, merged_too=True)
        try:
            await self._record(recorder, action)
        finally:
            controls.busy = False
        log.info("call_control.recording", extra={"call": controls.id, "user_id": controls.user_id, "action": action})
        await self._publish(controls)

    async def _record(self, recorder: CallRecorder, action: RecordingAction) -> None:
        mode = recorder.mode
        running = recorder.recording_id is not None
        if action == "start":
            if mode not in ("on_demand", "on_demand_user_start") or (mode == "on_demand" and not running):
                raise CallControlError("recording_not_allowed", f"recording cannot be started in mode {mode}")
            if running and (mode == "on_demand_user_start" or recorder.keep):
                raise CallControlError("recording_running", "the call is being recorded already")
            recorder.keep = True  # on demand: recorded since the answer already, and from now on kept
            if not running:
                await recorder.start()
        elif action == "keep":
            if mode != "on_demand" or recorder.recording_id is None:
                raise CallControlError("recording_not_allowed", f"there is no recording to keep in mode {mode}")
            recorder.keep = True
        elif action in ("pause", "resume"):
            if mode not in PAUSE_RESUME_MODES or recorder.recording_id is None:
                raise CallControlError("recording_not_allowed", f"a recording cannot be paused in mode {mode}")
            pause = action == "pause"
            if pause == recorder.paused:
                raise CallControlError("recording_paused" if pause else "recording_running", f"already {action}d")
            await recorder.set_paused(pause)
        else:  # stop
            if mode in ("always", "always_pause_resume") or recorder.recording_id is None:
                raise CallControlError("recording_not_allowed", f"the recording cannot be stopped in mode {mode}")
            await recorder.finish()

    # -- the parts ---------------------------------------------------------------------------------------------

    @staticmethod
    def _claim(*controls: UserControls, merged_too: bool = False) -> None:
        """One operation at a time per call; a three-way call only records (or is hung up by the user)."""
        for each in controls:
            if each.busy:
                raise CallControlError("operation_pending", "another operation on this call is under way")
            if each.merged and not merged_too:
                raise CallControlError("merged", "not on a three-way call: hang up (you leave, the others talk on)")
        for each in controls:
            each.busy = True

    async def _ring(
        self, conversation: Conversation, branches: list[Branch], from_: NameAddr,
        headers: tuple[tuple[str, str], ...], ring_seconds: float,
    ) -> CalleeLeg | None:  # fmt: skip
        """Fork to `branches` for the conversation (which owns the legs: its end hangs them up); the winner is
        joined to it."""
        fork = Fork(
            conversation, self.b2bua.settings, from_=from_, headers=headers, ring_seconds=ring_seconds,
            track=conversation.branches.append,
        )  # fmt: skip
        result = await fork.run(branches)
        if result.winner is None:
            return None
        result.winner.start_session_timer()
        conversation.joined.append(result.winner)
        return result.winner

    async def _release(self, controls: UserControls, why: str | None) -> None:
        """The user's leg leaves the conversation (BYE) without ending it; its endpoint is released. `why` the
        user left the call (their call-log row ends saying it); None: they only moved to another leg (a pull)."""
        leg, conversation = controls.own, controls.conversation
        conversation.released.add(leg)
        if why is not None:
            self._user_left(controls, why)
            # Their recording ends with their part in the call (kept per their mode), as in a three-way call's leaving.
            await user_part_over(conversation, controls.user_id)
        await leg.bye()
        await conversation.release(leg.endpoint_id)

    def _stand_in(self, conversation: Conversation, gone: Leg, by: Leg) -> None:
        """`by` talks from now on to whoever talked to `gone`, a user's leg that left the conversation (transferred
        away, or moved to another device): the controls of that party's own side — a user of the exchange too — act
        on `by` from now on (a hold's music, a transfer, a merge), not on the leg that went; controls made later
        find it as well (`answered_side`: the one joined leg not released). A leg of another, linked conversation
        (an attended transfer's) joins too: its end ends that conversation, and with it this one."""
        if by not in conversation.joined:
            conversation.joined.append(by)
        for each in self.controls.values():
            if each.conversation is conversation and each.other is gone and not each.gone:
                each.other = by

    def _user_left(self, controls: UserControls, why: str) -> None:
        """The user is no longer on this call (transferred, or left a three-way call): not listed any more, a new
        call finds them free (their other calls count still), and their call-log row ends now, saying `why` (its
        duration is their part of the call)."""
        if controls.gone:
            return
        controls.gone = True
        controls.conversation.user_left(controls.user_id, why)
        self.b2bua.spawn(self._publish(controls, ended=True))

    def _link(self, first: Conversation, second: Conversation) -> None:
        """Two conversations whose parties now talk to each other end together."""

        async def together() -> None:
            waits = [asyncio.ensure_future(c.over.wait()) for c in (first, second)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            first.over.set()
            second.over.set()

        self.b2bua.spawn(together())

    async def _music_to(self, leg: Leg) -> None:
        if leg.endpoint_id is None:
            raise CallControlError("not_answered", "the other party has no media")
        await self.b2bua.media.execute(Play(leg.endpoint_id, (self.music_on_hold,), loop=True))

    async def _tone_to(self, leg: Leg, name: str) -> None:
        if leg.endpoint_id is not None:
            with contextlib.suppress(MediaError):
                await self.b2bua.media.execute(Play(leg.endpoint_id, (tone_path(name),), loop=True))

    async def _connect(self, first: Leg, second: Leg) -> None:
        if first.endpoint_id is None or second.endpoint_id is None:
            raise CallControlError("not_answered", "a party of this call has no media")
        await self.b2bua.media.execute(Connect(first.endpoint_id, second.endpoint_id))

    @staticmethod
    def _identity_of(conversation: Conversation, other: Leg) -> tuple[str | None, str]:
        """Who the other party is (number, name), as a transfer target is to see them."""
        callback = conversation.first
        if isinstance(callback, Callback) and other is conversation.connected:
            return callback.to, callback.remote_name  # the number the user had called back, its name
        if other is conversation.first_leg:
            return conversation.caller.number, conversation.caller.display
        number = other.to.uri.user if isinstance(other, CalleeLeg) else None
        return number, ""

    async def _publish(self, controls: UserControls, *, ended: bool = False) -> None:
        payload: dict[str, object] = self.describe(controls)
        if ended:
            payload["state"] = "ended"
        await publish(self.b2bua, [controls.user_id], "call.updated", payload)

    def describe(self, controls: UserControls) -> dict[str, object]:
        """The call-control part of a listed call (api/routers/calls.py `LiveCallOut`)."""
        return {
            "id": controls.id,
            "state": "held" if controls.held else "active",
            "held": controls.held,
            "merged": controls.merged,
            "consultation_of": controls.consultation_of,
            "recording": controls.recording_state(),
        }
