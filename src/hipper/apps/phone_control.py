"""Live call control from a desk phone's own keys (manual 5.2; docs/call-control.md "Phones"): the SIP side of
the operations in apps/call_control.py, which does the work — this module only reads what a phone asks for, checks
that it may, and reports back in SIP.

- **Hold** — a re-INVITE offering `sendonly`/`inactive` (or the old `c=0.0.0.0`) from either party is answered
  `recvonly`/`inactive` from the leg's anchored endpoint (RFC 3264 §8.4, engine/leg.py) and the *other* party hears
  music on hold until a `sendrecv` offer takes the call back (RFC 6337 §5.3: the music is the holding side's job).
- **Blind transfer** — REFER (RFC 3515) in an answered call's dialog, `Refer-To: <sip:number@…>`: 202, then the
  implicit subscription's NOTIFYs (`Event: refer`, `message/sipfrag` per RFC 3420): `100 Trying`, and the final
  status (`200 OK` when the target answers, the failure otherwise) with `Subscription-State: terminated`; none with
  `Refer-Sub: false` (RFC 4488). The target is rung through the exchange itself, so its routing applies.
- **Attended transfer** — REFER whose Refer-To carries `?Replaces=` (RFC 3891) naming the phone's other call: the two
  other parties are connected, both of the phone's legs released.
- **Call pull** — an INVITE with `Replaces` from another of the same user's devices takes over the user's side of
  the named call; the old leg gets BYE.

Only the user's own phone may do any of it: the phone's registered owner (`Leg.device_user_id`) must be the user
whose call control is used. A request on the leg of an outside party (the trunk), from a colleague's phone that was
rung for the user (simultaneous ring, remote office), or naming another user's call or phone is refused. A
transfer out through the trunk is a call the exchange pays for: the transferring user's call barring applies exactly
as to their own calls out (docs/security.md "Toll fraud").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from urllib.parse import unquote

from hipper.apps.call_control import (
    TRANSFER_RING_SECONDS,
    CallControl,
    CallControlError,
    Conversation,
    answered_side,
    conversation_id,
)
from hipper.domain.numbers import NumberError, normalise
from hipper.engine.call import Call
from hipper.engine.directory import user_row
from hipper.engine.leg import Leg, LegOwner, contact_header
from hipper.engine.waiting import race_until
from hipper.media.engine import MediaError
from hipper.sip.message import REASONS, NameAddr, ParseError, Request
from hipper.sip.transaction import ServerTransaction

log = logging.getLogger(__name__)

SIPFRAG = "message/sipfrag;version=2.0"
# How long the implicit subscription may last (RFC 3515 §2.4.4 leaves it to the REFER's recipient): a transfer
# target rings at most apps/call_control.TRANSFER_RING_SECONDS; the final NOTIFY ends it earlier.
SUBSCRIPTION_SECONDS = 180
# A NOTIFY's answer is waited for this long at most (a phone that forgot the dialog must not stall the transfer).
NOTIFY_WAIT_SECONDS = 4.0


class PhoneRequestError(Exception):
    """A phone's request the exchange refuses, with the SIP status and reason to answer (or NOTIFY) it with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Replaces:
    """A Replaces value (RFC 3891 §6.1): the dialog to replace, with its tags as the *recipient* knows them —
    `to_tag` is the exchange's own tag of that dialog, `from_tag` the phone's."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def parse(cls, text: str) -> Replaces:
        call_id, *params = [part.strip() for part in text.split(";")]
        tags: dict[str, list[str]] = {"to-tag": [], "from-tag": []}
        early_only = False
        for param in params:
            name, _, value = param.partition("=")
            name = name.strip().lower()
            if name in tags:
                tags[name].append(value.strip())
            elif name == "early-only":
                early_only = True
        # §6.1: exactly one Call-ID, one to-tag and one from-tag.
        if not call_id or any(len(values) != 1 or not values[0] for values in tags.values()):
            raise ParseError("Replaces needs a Call-ID, one to-tag and one from-tag")
        return cls(call_id, tags["to-tag"][0], tags["from-tag"][0], early_only)


@dataclass(frozen=True)
class ReferTarget:
    """What a REFER asks for: a number to transfer to (blind), or the phone's other call (attended)."""

    dialled: str
    replaces: Replaces | None


def refer_target(request: Request) -> ReferTarget:
    """The REFER's Refer-To (RFC 3515 §2.1, exactly one), as a SIP URI naming a number, maybe with an embedded
    Replaces (RFC 3891 §4: `?Replaces=<escaped value>`). Anything else is refused with its 4xx."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        # §2.4.2: zero or more than one Refer-To is a 400.
        raise PhoneRequestError(400, "Exactly one Refer-To is needed")
    try:
        target = NameAddr.parse(values[0])
    except ParseError as error:
        raise PhoneRequestError(400, f"Bad Refer-To: {error.reason}") from error
    uri = target.uri
    if uri.scheme not in ("sip", "sips"):
        raise PhoneRequestError(416, "Refer-To must be a SIP URI")
    method = uri.params.get("method")
    if method is not None and method.upper() != "INVITE":
        raise PhoneRequestError(400, "Only calls (INVITE) are transferred")
    replaces = None
    for field in uri.headers.split("&") if uri.headers else []:
        name, _, value = field.partition("=")
        if name.strip().lower() == "replaces":
            try:
                replaces = Replaces.parse(unquote(value))
            except ParseError as error:
                raise PhoneRequestError(400, error.reason) from error
    dialled = unquote(uri.user or "")
    if (not dialled and replaces is None) or not dialled.isprintable():
        raise PhoneRequestError(400, "Refer-To names no number")
    return ReferTarget(dialled, replaces)


def wants_subscription(request: Request) -> bool:
    """RFC 4488 §4: `Refer-Sub: false` asks for no implicit subscription (no NOTIFYs)."""
    return (request.headers.get("Refer-Sub") or "true").strip().lower() != "false"


def sip_status(error: CallControlError) -> tuple[int, str]:
    """A refused call-control operation in SIP words (the API's codes: apps/call_control.py)."""
    if error.code == "unknown_number":
        return 404, "Not Found"  # the transfer target, not the call
    if error.status == 404:
        return 481, "Call/Transaction Does Not Exist"
    if error.code == "operation_pending":
        return 491, "Request Pending"
    return 403, error.reason


class ReferSubscription:
    """The implicit subscription of one REFER (RFC 3515 §2.4.4): NOTIFYs on the REFER's dialog, each carrying the
    transfer's progress as a SIP status line (message/sipfrag, RFC 3420), the last one terminating it."""

    def __init__(self, leg: Leg, refer_cseq: int, *, wanted: bool) -> None:
        self.leg = leg
        self.refer_cseq = refer_cseq
        self.wanted = wanted
        self.terminated = not wanted

    async def notify(self, status: int, reason: str = "", *, final: bool = False) -> None:
        leg = self.leg
        if self.terminated or leg.dialog is None:
            return
        self.terminated = final
        fragment = f"SIP/2.0 {status} {reason or REASONS.get(status, '')}\r\n".encode()
        request = leg.dialog.create_request("NOTIFY", body=fragment, content_type=SIPFRAG)
        # §2.4.6: the id names the REFER (its CSeq), so a phone with more than one REFER tells them apart.
        request.headers.add("Event", f"refer;id={self.refer_cseq}")
        state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_SECONDS}"
        request.headers.add("Subscription-State", state)
        request.headers.add("Contact", contact_header(leg.stack, leg.peer.transport))
        tx = leg.stack.send_request(request, leg.peer)
        # A phone that already ended the call may answer 481 (the subscription outlives the INVITE usage only
        # where the phone keeps it, RFC 5057 §5): nothing to do about it, the transfer stands.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NOTIFY_WAIT_SECONDS):
                await asyncio.shield(tx.final)


class PhoneControl:
    """The desk phones' call control of one node (on `apps.node.Applications`), on top of its `CallControl`."""

    def __init__(self, control: CallControl) -> None:
        self.control = control
        self.b2bua = control.b2bua
        self.transferring: set[Conversation] = set()  # conversations with a REFER under way: one at a time

    # -- whose phone --------------------------------------------------------------------------------------------

    def owner_user(self, conversation: Conversation, leg: Leg) -> int | None:
        """The user whose own phone is on `leg` and who is on the answered `conversation` through it, or None.

        Whose phone it is, is the phone's registered owner (`Leg.device_user_id`) — never the user the call is
        for: a colleague's desk phone rung for the user (simultaneous ring, remote office to a colleague's number)
        answers the call, but its REFER must not transfer on the user's account and barring (toll fraud,
        docs/security.md). An outside party's leg (the trunk, also on an Anywhere branch) has no owner."""
        user_id = leg.device_user_id
        if user_id is None:
            return None
        side = answered_side(conversation, user_id)
        return user_id if side is not None and side[0] is leg else None

    def user_side(self, owner: LegOwner, leg: Leg) -> tuple[Conversation, int] | None:
        """The conversation in which `leg` is a user's own side, and that user: where call control moved the user to
        `leg` (a pull: the new device's INVITE is a call of its own), or the user whose phone it is in `owner`.
        Either way the phone on `leg` must be that user's own."""
        for controls in self.control.controls.values():
            if controls.own is leg and not controls.gone and not controls.conversation.over.is_set():
                if leg.device_user_id != controls.user_id:
                    return None
                return controls.conversation, controls.user_id
        if not isinstance(owner, Call):
            return None
        user_id = self.owner_user(owner, leg)
        return None if user_id is None else (owner, user_id)

    # -- hold ----------------------------------------------------------------------------------------------------

    async def hold(self, owner: LegOwner, leg: Leg, held: bool) -> None:
        """A phone's re-INVITE put the call on hold or took it back (already answered, engine/leg.py): the other
        party hears music on hold, or the phone again. The user's own phone holds as the app's key does (the call
        is listed held, `call.updated` tells the apps); an outside party's hold only gets the music."""
        if not isinstance(owner, Call) or owner.over.is_set():
            return
        side = self.user_side(owner, leg)
        conversation = side[0] if side is not None else owner
        key = conversation_id(conversation)
        if any(controls.merged for (call_id, _), controls in self.control.controls.items() if call_id == key):
            return  # a three-way call: the mixer goes on for the other two (music would replace it)
        try:
            if side is None:
                await self.control.remote_hold(owner, leg, held)
                return
            controls = self.control.controls_of(side[1], key)
            if held and not controls.held:
                await self.control.hold(controls)
            elif not held and controls.held:
                await self.control.resume(controls)
        except (CallControlError, MediaError) as error:
            log.info("phone_control.hold_failed", extra={"held": held, "error": str(error)})

    # -- REFER ---------------------------------------------------------------------------------------------------

    def refer(self, owner: LegOwner, leg: Leg, tx: ServerTransaction) -> None:
        """A REFER in a call's dialog: checked here and answered (202, or the 4xx that leaves the call as it was);
        the transfer itself runs in its own task and reports through the subscription's NOTIFYs."""
        request = tx.request
        try:
            side = self.user_side(owner, leg)
            if side is None:
                raise PhoneRequestError(403, "Only the user's own phone transfers an answered call")
            conversation, user_id = side
            if conversation in self.transferring:
                raise PhoneRequestError(491, "A transfer of this call is under way")
            target = refer_target(request)
            number = None
            if target.replaces is None:
                try:
                    number = normalise(target.dialled, self.b2bua.settings.default_region)
                except NumberError as error:
                    # The phone's text is not echoed in the reason phrase (it may hold anything, escaped).
                    raise PhoneRequestError(400, "Refer-To names no number") from error
        except PhoneRequestError as error:
            tx.respond(tx.response(error.status, error.reason))
            return
        subscription = ReferSubscription(leg, request.cseq[0], wanted=wants_subscription(request))
        response = tx.response(202)
        response.headers.add("Contact", contact_header(leg.stack, leg.peer.transport))
        if not subscription.wanted:
            response.headers.add("Refer-Sub", "false")  # RFC 4488 §4: honoured, no NOTIFYs follow
        tx.respond(response)
        self.transferring.add(conversation)
        log.info(
            "phone_control.refer",
            extra={"user_id": user_id, "attended": target.replaces is not None, "subscription": subscription.wanted},
        )
        conversation.spawn(self._transfer(conversation, leg, user_id, target.replaces, number, subscription))

    async def _transfer(
        self,
        conversation: Conversation,
        leg: Leg,
        user_id: int,
        replaces: Replaces | None,
        number: str | None,
        subscription: ReferSubscription,
    ) -> None:
        status, reason = 500, "Server Internal Error"
        try:
            await subscription.notify(100)
            if replaces is not None:
                status, reason = await self._attended(conversation, user_id, replaces)
            else:
                assert number is not None
                status, reason = await self._blind(conversation, user_id, number)
        except CallControlError as error:
            status, reason = sip_status(error)
        except PhoneRequestError as error:
            status, reason = error.status, error.reason
        except Exception:
            log.exception("phone_control.transfer_failed", extra={"user_id": user_id})
        finally:
            self.transferring.discard(conversation)
        log.info("phone_control.transfer_done", extra={"user_id": user_id, "status": status})
        await subscription.notify(status, reason, final=True)

    async def _blind(self, conversation: Conversation, user_id: int, number: str) -> tuple[int, str]:
        user = await user_row(self.b2bua.sessions, user_id)
        target = await self.control.target(number, user_id, user.company_id if user is not None else None)
        controls = self.control.controls_of(user_id, conversation_id(conversation))
        answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def rung(winner: bool) -> None:
            if not answered.done():
                answered.set_result(winner)

        await self.control.transfer_blind(controls, target, answered=rung)
        # The target's answer (or its routing's: voicemail) ends the subscription with 200; nobody, with 480; the
        # transferred party hanging up meanwhile, with 487.
        outcome = await race_until(asyncio.shield(answered), conversation.over, TRANSFER_RING_SECONDS + 5)
        if outcome is None:
            return 487, "Request Terminated"
        return (200, "OK") if outcome else (480, "Temporarily Unavailable")

    async def _attended(self, conversation: Conversation, user_id: int, replaces: Replaces) -> tuple[int, str]:
        other = self._replaced(replaces, user_id)
        if other is conversation:
            raise PhoneRequestError(403, "A call is not transferred to itself")
        first = self.control.controls_of(user_id, conversation_id(conversation))
        second = self.control.controls_of(user_id, conversation_id(other))
        await self.control.transfer_attended(first, second)
        return 200, "OK"

    def _replaced(self, replaces: Replaces, user_id: int) -> Conversation:
        """The user's answered call a Replaces names (RFC 3891 §3): the exchange's own tag is its `to_tag` and the
        phone's its `from_tag`. No such dialog: 481; a dialog that is not the user's own leg: 403."""
        leg = self.b2bua.legs.get((replaces.call_id, replaces.to_tag))
        if leg is None or leg.dialog is None or leg.dialog.remote_tag != replaces.from_tag:
            raise PhoneRequestError(481, "No such call to replace")
        owner = leg.call
        if not isinstance(owner, Call) or owner.over.is_set() or leg.ended:
            raise PhoneRequestError(603, "That call has ended")  # §3: a terminated dialog is declined
        if leg.dialog.early:
            raise PhoneRequestError(481, "That call is not answered")  # §3: an early dialog we did not start
        if replaces.early_only:
            raise PhoneRequestError(486, "That call is answered already")  # §3: early-only, and it is confirmed
        side = self.user_side(owner, leg)
        if side is None or side[1] != user_id:
            raise PhoneRequestError(403, "Not your call")
        return side[0]

    # -- INVITE with Replaces ------------------------------------------------------------------------------------

    async def take_over(self, call: Call) -> bool:
        """An INVITE with Replaces (RFC 3891): from another of the same user's devices, it takes over the user's
        side of the named call (call pull); anything else is refused and the named call stays as it was. False:
        no Replaces, an ordinary call."""
        values = call.a.request.headers.get_all("Replaces")
        if not values:
            return False
        caller = call.caller
        try:
            if len(values) != 1:
                raise PhoneRequestError(400, "More than one Replaces")
            try:
                replaces = Replaces.parse(values[0])
            except ParseError as error:
                raise PhoneRequestError(400, error.reason) from error
            if caller.origin != "device" or caller.user_id is None or caller.for_callback:
                raise PhoneRequestError(403, "Only the user's own devices take over a call")
            owner = self._replaced(replaces, caller.user_id)
            controls = self.control.controls_of(caller.user_id, conversation_id(owner))
            if controls.busy:
                raise PhoneRequestError(491, "Another operation on that call is under way")
            # This INVITE only carries the taken-over call: that call lists the user (one call in the app), writes
            # their one call-log row and counts them on a call — as for a callback's far leg.
            call.caller = replace(caller, for_callback=True)
            # The new device's media: our answer (its offer was applied when the call began), then the other party.
            await call.send_answer()
            await self.control.take_over(controls, call.a, call)
        except PhoneRequestError as error:
            call.fail(error.status, error.reason)
        except CallControlError as error:
            call.fail(*sip_status(error))
        else:
            log.info("phone_control.taken_over", extra={"user_id": caller.user_id, "call_id": call.call_id})
        return True
