"""The two kinds of call legs of the B2BUA: the caller's side (UAS) and each callee branch (UAC).

A leg is one SIP dialog plus the media endpoint that anchors its RTP. Legs know the protocol duties the
transaction layer leaves to its user (the layer alone retransmits our 2xx until the ACK, §13.3.1.4; §13.2.2.4: ACK
every 2xx, also retransmitted ones; §9.1: CANCEL only after a provisional response — the client transaction
defers it — and a 2xx that still arrives after CANCEL is ACKed and then ended with BYE). They never decide what
happens to the call: they report to a listener (the call) and do what it asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

from hipper.config import Settings
from hipper.engine.diversion_guard import diverting, refused_answer
from hipper.media.engine import MediaEngine, MediaError, MediaEvent, SessionUpdated, SetRemoteSdp
from hipper.sip.dialog import Dialog, new_call_id, new_tag
from hipper.sip.message import (
    URI,
    Headers,
    Message,
    NameAddr,
    ParseError,
    Request,
    RequestText,
    Response,
    request_from_text,
    request_text,
)
from hipper.sip.session_timer import (
    MAX_INTERVAL,
    Session,
    SessionTimerPolicy,
    answer,
    answer_headers,
    from_answer,
    min_se,
    offer_headers,
    refresh_headers,
)
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ClientTransaction, ServerTransaction
from hipper.sip.transport import Peer

log = logging.getLogger(__name__)


class LegHost(Protocol):
    """The node's side of a leg: the media engine, in-dialog routing, and tasks that outlive the owner."""

    media: MediaEngine

    def add_leg(self, leg: Leg) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...


class LegOwner(Protocol):
    """What a leg reports to: a call (engine/call.py; a callback from the app is one too). The leg module knows no
    owner by name, so the engine's imports point one way (legs below calls, calls below features)."""

    settings: Settings

    @property
    def b2bua(self) -> LegHost: ...

    def in_dialog(self, leg: Leg, tx: ServerTransaction) -> None: ...

    def leg_gone(self, leg: Leg) -> None: ...

    def media_event(self, event: MediaEvent) -> None: ...

    def rtp_timeout(self, endpoint_id: str) -> None: ...


SDP = "application/sdp"
BYE_WAIT_SECONDS = 4.0


def contact_header(stack: SipStack, transport: str = "udp") -> str:
    host = stack.transports.host
    port = stack.transports.local_port(transport)
    suffix = "" if transport == "udp" else f";transport={transport}"
    return f"<sip:hipper@{host}:{port}{suffix}>"


# What a dialog with us may carry (RFC 3261 §20.5): phones show their transfer key only when REFER is allowed
# (RFC 3515), and hold by UPDATE or re-INVITE; live call control handles both (apps/phone_control.py).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY"


class LegState(enum.Enum):
    """Where one leg's INVITE dialog is (RFC 3261 §12, §13), the one state the engine branches on.

    trying → early → confirmed → terminated, never backwards (except a leg retrying its INVITE after a 422,
    RFC 4028 §7.1, which starts a new transaction: trying again). A leg may skip states: an INVITE refused at
    once goes from trying to terminated.
    """

    TRYING = 0  # INVITE sent (a callee leg) or received (the caller's), no response yet
    EARLY = 1  # a provisional response: ringing, early media (an early dialog, when it had a To tag)
    CONFIRMED = 2  # a 2xx: the dialog is confirmed, media flows
    TERMINATED = 3  # a final failure, BYE sent or received


class Leg:
    """What both kinds share: the dialog, where in-dialog requests go, the media endpoint, the owning call."""

    side: Literal["caller", "callee"]

    def __init__(self, stack: SipStack, call: LegOwner, peer: Peer) -> None:
        self.stack = stack
        self.call = call
        self.peer = peer  # in-dialog requests go here: where the device really is (NAT), not its Contact
        self.dialog: Dialog | None = None
        self.endpoint_id: str | None = None
        self.state = LegState.TRYING
        self.was_confirmed = False  # it reached CONFIRMED once (a terminated leg may have been answered or not)
        # RFC 4028 (engine/leg.py): the running timer, how a refresh can reach the peer, what it repeats.
        self.session_timer: SessionTimer | None = None
        self.session_expired = False
        self.peer_allows_update = False
        self.local_sdp = ""
        # Our own re-INVITE (a session refresh with an offer) awaits its answer: an offer of the peer's that
        # crosses it gets 491 (RFC 3261 §14.2, RFC 3311 §5.2), one offer at a time in a dialog.
        self.offering = False
        # The peer put the call on hold with its last offer (sendonly / inactive / c=0.0.0.0): its owner plays
        # music on hold to the other party meanwhile (apps/phone_control.py).
        self.held_by_peer = False
        # Who owns the phone this leg reaches: the user whose registered device (or own handset) it is — not
        # necessarily the user the call is for (a colleague's desk rung by simultaneous ring). None: an outside
        # party, the trunk, the exchange itself. A phone's own requests (REFER, Replaces) act for this user only
        # (apps/phone_control.py, docs/security.md "Toll fraud").
        self.device_user_id: int | None = None
        self._ended: asyncio.Event | None = None  # made by the first `wait_ended`: most legs are never awaited

    @property
    def local_tag(self) -> str:
        raise NotImplementedError

    def enter(self, state: LegState) -> None:
        """Move on to `state`; a state already passed is ignored (a late 180 after the 200, a BYE on a leg
        already ended)."""
        if state.value <= self.state.value:
            return
        self.state = state
        if state is LegState.CONFIRMED:
            self.was_confirmed = True
        elif state is LegState.TERMINATED and self._ended is not None:
            self._ended.set()

    @property
    def ended(self) -> bool:
        """BYE sent or received, or the INVITE failed."""
        return self.state is LegState.TERMINATED

    def terminate(self) -> None:
        self.enter(LegState.TERMINATED)

    async def wait_ended(self) -> None:
        """Until the leg has ended (at once when it has)."""
        if self.ended:
            return
        if self._ended is None:
            self._ended = asyncio.Event()
        await self._ended.wait()

    def start_session(self, session: Session | None, *, we_refresh: bool) -> None:
        if session is not None and self.session_timer is None:
            self.session_timer = SessionTimer(self, session, we_refresh=we_refresh)
            self.session_timer.start()

    def ack_refresh(self, response: Response) -> None:
        """ACK a 2xx to a re-INVITE of ours (a session refresh), also a retransmitted one (§13.2.2.4)."""
        if self.dialog is None:
            return
        ack = self.dialog.create_request("ACK")
        ack.headers.set("CSeq", f"{response.cseq[0]} ACK")
        self.stack.send_ack(ack, self.peer)

    def stop_session(self) -> None:
        if self.session_timer is not None:
            self.session_timer.stop()

    async def bye(self) -> None:
        """End a confirmed dialog; waits briefly for the answer (a dead phone must not hold up the call's end)."""
        self.stop_session()
        if self.ended or self.dialog is None or self.dialog.early:
            self.terminate()
            return
        self.terminate()
        request = self.dialog.create_request("BYE")
        request.headers.add("Contact", contact_header(self.stack, self.peer.transport))
        tx = self.stack.send_request(request, self.peer)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(BYE_WAIT_SECONDS):
                await asyncio.shield(tx.final)


class CallerLeg(Leg):
    """The incoming INVITE's side: we answer it (180, 200 with the anchored SDP, or a final failure)."""

    side = "caller"

    def __init__(self, stack: SipStack, call: LegOwner, tx: ServerTransaction) -> None:
        super().__init__(stack, call, tx.peer)
        self.tx = tx
        self.request = tx.request
        self.ringing_sent = False
        self.late_offer = False  # the INVITE had no SDP: our 200 offers, the ACK answers
        self.early_sent = False
        self.ack_seen = False
        self.on_no_ack: Callable[[], None] | None = None
        # The session timer our 2xx will set (the INVITE's Session-Expires was checked by the B2BUA: 422 / 400).
        self.session: Session | None = None
        with contextlib.suppress(ParseError):
            self.session = answer(self.request, policy_of(call.settings))
        self.peer_allows_update = allows_update(self.request)

    @property
    def local_tag(self) -> str:
        return self.tx.to_tag

    @property
    def answered(self) -> bool:
        """Our 200 went out (also when the call ended since)."""
        return self.was_confirmed

    @property
    def finished(self) -> bool:
        """A final response went out: we can no longer reject or answer."""
        return self.state in (LegState.CONFIRMED, LegState.TERMINATED)

    def _with_contact(self, response: Response) -> Response:
        response.headers.add("Contact", contact_header(self.stack, self.peer.transport))
        return response

    def ringing(self) -> None:
        if self.ringing_sent or self.finished:
            return
        self.ringing_sent = True
        self.enter(LegState.EARLY)
        response = self._with_contact(self.tx.response(180))
        if self.dialog is None:
            with contextlib.suppress(ParseError):
                self.dialog = Dialog.as_uas(self.request, response)
        self.tx.respond(response)

    def early_media(self, sdp: str) -> None:
        """183 Session Progress with our SDP: the caller hears what the callee side plays before answering."""
        if self.finished or self.early_sent:
            return
        self.early_sent = True
        self.enter(LegState.EARLY)
        response = self._with_contact(self.tx.response(183, body=sdp.encode()))
        response.headers.add("Content-Type", SDP)
        if self.dialog is None:
            with contextlib.suppress(ParseError):
                self.dialog = Dialog.as_uas(self.request, response)
        self.tx.respond(response)

    def answer(self, sdp: str) -> None:
        """200 OK with our SDP; the server transaction retransmits it until the ACK comes (§13.3.1.4)."""
        if self.finished:
            return
        self.enter(LegState.CONFIRMED)
        response = self._with_contact(self.tx.response(200, body=sdp.encode()))
        response.headers.add("Content-Type", SDP)
        if self.session is not None:
            for name, value in answer_headers(self.session):
                response.headers.add(name, value)
        response.headers.add("Supported", "replaces")
        response.headers.add("Allow", ALLOW)
        self.local_sdp = sdp
        if self.dialog is None:
            self.dialog = Dialog.as_uas(self.request, response)
        else:
            self.dialog.early = False
        self.tx.respond(response)
        # We are the INVITE's UAS: we refresh when our 2xx said refresher=uas.
        self.start_session(self.session, we_refresh=self.session is not None and self.session.refresher == "uas")
        # §13.3.1.4: the transaction layer retransmits the 2xx until the ACK (on its clock) and resolves `acked`
        # False when Timer L runs out without one; the session is then over.
        self.tx.acked.add_done_callback(self._no_ack)

    def _no_ack(self, acked: asyncio.Future[bool]) -> None:
        if not acked.cancelled() and acked.result() is False and self.answered:
            log.info("call.no_ack", extra={"call_id": self.request.call_id})
            if self.on_no_ack is not None:
                self.on_no_ack()

    @property
    def acked(self) -> asyncio.Future[bool]:
        """Resolves True when the ACK of our 2xx came, False when it never did (the transaction's Timer L)."""
        return self.tx.acked

    def ack_received(self) -> bool:
        """An ACK for our 2xx reached the call; True for the first one (a late offer's answer rides on it)."""
        first = not self.ack_seen
        self.ack_seen = True
        return first

    def reject(self, status: int, reason: str = "", headers: list[tuple[str, str]] | None = None) -> None:
        if self.finished:
            return
        self.terminate()
        response = self.tx.response(status, reason)
        for name, value in headers or []:
            response.headers.add(name, value)
        self.tx.respond(response)

    def stop_timers(self) -> None:
        self.stop_session()


BranchListener = Callable[["CalleeLeg", Response], None]


class CalleeLeg(Leg):
    """One outgoing INVITE (a fork branch, a forward, a trunk call): we are its UAC."""

    side = "callee"

    def __init__(
        self,
        stack: SipStack,
        call: LegOwner,
        *,
        peer: Peer,
        uri: URI,
        from_: NameAddr,
        to: NameAddr,
        label: str,
        confirm: bool = False,
        block_diversion: bool = False,
    ) -> None:
        super().__init__(stack, call, peer)
        self.uri = uri
        self.from_ = NameAddr(from_.uri, from_.display_name, {"tag": new_tag()})
        self.to = to
        self.label = label  # which plan target this branch is, for logs and tests
        self.user_id: int | None = None  # whose phone this branch rings (an answer makes them busy)
        self.confirm = confirm  # answer confirmation: its 200 is not an answer until the key press
        # Anywhere's block diversion: an answer from the network's voicemail is refused (engine/diversion_guard.py).
        self.block_diversion = block_diversion
        self.min_answer_seconds = 0.0
        self.refused: str | None = None  # why the guard refused this branch's answer
        self.declined = False  # the user refused the call from the app: its end counts as 603 Decline (`decline`)
        # Offer RFC 4028 session timers in the INVITE (the executor's call branches; not ring splashes).
        self.session_policy: SessionTimerPolicy | None = None
        self.answer_response: Response | None = None
        self._retried_422 = False
        self._provisional_timeout: float | None = None
        self._sent_at = 0.0
        self.request: Request | None = None
        self.status: int | None = None  # final status once it came
        self.cancelled = False  # we asked it to stop ringing (CANCEL now or after its first 1xx)
        self.answered = False  # the call chose this branch's answer and connected it
        self.listener: BranchListener | None = None
        # What every later 2xx gets once this branch's own was ACKed (a retransmission: our ACK was lost or late;
        # another fork's): made with that ACK, once per branch, not once per 2xx.
        self._acked: _AckedBranch | None = None
        self.tx: ClientTransaction | None = None

    @property
    def local_tag(self) -> str:
        return str(self.from_.tag)

    def start(
        self,
        sdp: str | None,
        headers: list[tuple[str, str]],
        *,
        max_forwards: int = 70,
        provisional_timeout: float | None = None,
    ) -> None:
        host = self.stack.transports.host
        message = Headers()
        message.add("From", self.from_)
        message.add("To", self.to)
        message.add("Call-ID", new_call_id(host))
        message.add("CSeq", "1 INVITE")
        message.add("Max-Forwards", str(max(0, max_forwards)))
        message.add("Contact", contact_header(self.stack, self.peer.transport))
        for name, value in headers:
            message.add(name, value)
        body = b""
        if sdp is not None:
            message.add("Content-Type", SDP)
            body = sdp.encode()
            self.local_sdp = sdp
        supported: list[str] = []
        if self.session_policy is not None:
            for name, value in offer_headers(self.session_policy):
                if name == "Supported":
                    supported.append(value)
                else:
                    message.add(name, value)
        if self.block_diversion:
            # RFC 7044 §5: ask for History-Info in responses, the guard reads diversions from it.
            supported.append("histinfo")
        supported.append("replaces")  # RFC 3891: a phone offers attended transfer and pickup only when it sees it
        message.add("Supported", ", ".join(supported))
        message.add("Allow", ALLOW)
        self.request = Request("INVITE", self.uri, message, body)
        self._sent_at = asyncio.get_running_loop().time()
        self._provisional_timeout = provisional_timeout
        self.tx = self.stack.send_request(
            self.request, self.peer, self._on_response, provisional_timeout=provisional_timeout
        )

    def cancel(self) -> None:
        """Stop ringing this branch: CANCEL now if it sent a 1xx, else as soon as one comes (§9.1)."""
        if self.cancelled or self.status is not None or self.tx is None:
            return
        self.cancelled = True
        self.tx.cancel()

    def decline(self) -> None:
        """The user refused the call from the app while this branch rang: stop it like `cancel`, but what the
        branch came to is the user's 603 Decline, not a caller's cancel — their busy treatment follows (RFC 3261
        §21.6.2; a phone's own Decline button does the same)."""
        if self.cancelled or self.status is not None or self.tx is None:
            return
        self.declined = True
        self.cancel()

    @property
    def outcome_status(self) -> int | None:
        """The final status as the call's ring counts it: a branch the user declined ended in 603 whatever its
        CANCEL brought back (487, or 408 from a phone that never rang)."""
        if self.declined and self.status is not None and self.status >= 300:
            return 603
        return self.status

    def _on_response(self, response: Response) -> None:
        assert self.request is not None
        status = response.status
        if status < 200:
            self.enter(LegState.EARLY)
            if self.block_diversion and self.refused is None:
                why = diverting(response)
                if why is not None:
                    self._refuse(why)
                    self.cancel()  # its 487 ends the branch for the call, like any failed branch
                    return
            if response.to.tag is not None and self.dialog is None:
                with contextlib.suppress(ParseError):
                    self.dialog = Dialog.as_uac(self.request, response)
            self._tell(response)
            return
        if status < 300:
            self._on_success(response)
            return
        if status == 422 and self._retry_with_larger_interval(response):
            return
        if self.status is None:
            self.status = status
            self.terminate()
            self._tell(response)

    def _retry_with_larger_interval(self, response: Response) -> bool:
        """RFC 4028 §7.1: a 422 names the callee's Min-SE; the INVITE goes again, once, asking for that much."""
        if self.session_policy is None or self._retried_422 or self.cancelled or self.request is None:
            return False
        try:
            wanted = min_se(response)
        except ParseError:
            return False
        if wanted is None or wanted > MAX_INTERVAL:
            return False
        self._retried_422 = True
        headers = Headers()
        for name, value in self.request.headers:
            if name == "Via":
                continue  # the new transaction adds its own
            if name == "CSeq":
                value = f"{self.request.cseq[0] + 1} INVITE"  # §8.1.3.5: same Call-ID and From tag, next CSeq
            elif name in ("Session-Expires", "Min-SE"):
                value = str(wanted)
            headers.add(name, value)
        self.request = Request("INVITE", self.uri, headers, self.request.body)
        self.dialog = None
        self.state = LegState.TRYING  # a new INVITE transaction (see LegState)
        self.tx = self.stack.send_request(
            self.request, self.peer, self._on_response, provisional_timeout=self._provisional_timeout
        )
        log.info("call.session_interval_raised", extra={"branch": self.label, "min_se": wanted})
        return True

    def _on_success(self, response: Response) -> None:
        """A 2xx (also a retransmission the transaction no longer matches): ACK it, once per dialog."""
        assert self.request is not None
        remote_tag = response.to.tag or ""
        if self._acked is not None:
            self._acked(response)
            return
        if self.dialog is None or self.dialog.remote_tag != remote_tag:
            self.dialog = Dialog.as_uac(self.request, response)
        else:
            self.dialog.update_from_response(response)
        self.dialog.early = False
        self.status = response.status
        self.enter(LegState.CONFIRMED)
        self.answer_response = response
        self.peer_allows_update = allows_update(response)
        ack = send_ack(self.stack, self.peer, self.dialog)
        self._acked = _AckedBranch(self.stack, self.peer, self.request, self.dialog.remote_tag, ack)
        self.call.b2bua.add_leg(self)
        if self.cancelled:
            # §9.1 race: the callee answered while our CANCEL was under way. ACK, then BYE (DESIGN trap).
            asyncio.get_running_loop().create_task(self.bye())
            return
        if self.block_diversion and self.refused is None:
            elapsed = asyncio.get_running_loop().time() - self._sent_at
            why = refused_answer(self.request, response, elapsed, self.min_answer_seconds)
            if why is not None:
                # The mobile network's voicemail answered, not the person: end it, and to the call this branch
                # simply went away (as after a BYE), so the others keep ringing.
                self._refuse(why)
                asyncio.get_running_loop().create_task(self.bye())
                self.call.leg_gone(self)
                return
        self._tell(response)

    def start_session_timer(self) -> None:
        """The call connected this branch: run the session timer its 2xx agreed (we are the INVITE's UAC)."""
        if self.answer_response is None or self.session_policy is None or not self.session_policy.enabled:
            return
        session = from_answer(self.answer_response, offered=True)
        self.start_session(session, we_refresh=session is not None and session.refresher == "uac")

    def _refuse(self, why: str) -> None:
        self.refused = why
        log.info("call.diverted_branch_refused", extra={"branch": self.label, "why": why})

    def terminate(self) -> None:
        super().terminate()
        if self.tx is not None and self._acked is not None:
            # The INVITE transaction lives on for 32 s (RFC 6026 Timer M) and passes every 2xx it still gets to
            # its callback. All an answered, ended branch does with one is `_AckedBranch`'s; handing it that
            # instead of this leg lets the leg — and through it the whole call — go as soon as the call ends,
            # not 32 s later (40 calls/s kept ≈ 1,300 ended calls' objects alive for the garbage collector).
            self.tx.on_response = self._acked

    def _tell(self, response: Response) -> None:
        if self.listener is not None:
            self.listener(self, response)


class _AckedBranch:
    """A 2xx for a branch whose own 2xx was ACKed (§13.2.2.4): the same dialog's again is ACKed again; another
    fork's (a second dialog behind this branch) is accepted only to be ended at once.

    It lives as long as the branch's INVITE transaction lingers (Timer M, 32 s after the call), so it keeps the
    INVITE as text, not parsed (sip/transaction.py keeps its own the same way): a second dialog is rare, and the
    request is rebuilt for it then."""

    __slots__ = ("ack", "invite", "peer", "remote_tag", "stack")

    def __init__(self, stack: SipStack, peer: Peer, request: Request, remote_tag: str, ack: bytes) -> None:
        self.stack = stack
        self.peer = peer
        self.invite: RequestText = request_text(request)
        self.remote_tag = remote_tag
        self.ack = ack

    def __call__(self, response: Response) -> None:
        if (response.to.tag or "") == self.remote_tag:
            self.stack.transactions.send(self.ack, self.peer)  # a retransmitted 2xx: ACK it again
            return
        stray = Dialog.as_uac(request_from_text(self.invite), response)
        send_ack(self.stack, self.peer, stray)
        asyncio.get_running_loop().create_task(_bye_dialog(self.stack, self.peer, stray))


def send_ack(stack: SipStack, peer: Peer, dialog: Dialog) -> bytes:
    """ACK the dialog's 2xx; the ACK's bytes, to send again for a retransmitted 2xx."""
    ack = dialog.create_request("ACK")
    ack.headers.prepend("Via", stack.transactions.via_for(peer.transport))
    data = ack.serialize()
    stack.transactions.send(data, peer)
    return data


async def _bye_dialog(stack: SipStack, peer: Peer, dialog: Dialog) -> None:
    request = dialog.create_request("BYE")
    tx = stack.send_request(request, peer)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(BYE_WAIT_SECONDS):
            await asyncio.shield(tx.final)


async def answer_in_dialog_offer(
    leg: Leg, tx: ServerTransaction, media: MediaEngine, policy: SessionTimerPolicy
) -> bool | None:
    """A re-INVITE / UPDATE from the leg's peer — a session refresh (RFC 4028), hold, resume, a phone that moved
    network: its SDP is applied to the leg's own anchored endpoint, so RTP goes to the new address (and stops
    while held) from now on, and answered from that endpoint; the session timer restarts. The other leg is not
    involved in the signalling: the anchor keeps sending it the one continuous stream.

    Returns the peer's new hold state when this offer changed it (True: it holds now, False: it took the call
    back), else None; the owner then gives the other party music on hold, or the peer back (apps/phone_control.py)."""
    request = tx.request
    body = request.body.decode(errors="replace")
    if leg.offering and (request.method == "INVITE" or body.strip()):
        # Glare with our own refresh offer (RFC 3261 §14.2, RFC 3311 §5.2 for an UPDATE with an offer): the peer
        # retries after a random wait. A body-less UPDATE only refreshes, and is answered.
        tx.respond(tx.response(491))
        return None
    timer_headers = refresh_received(leg, request, policy)
    changed = False
    if not body.strip() and request.method == "UPDATE":
        # RFC 3311 §5.2: an UPDATE without an offer only refreshes the session.
        response = tx.response(200)
    elif not body.strip() or leg.endpoint_id is None:
        tx.respond(tx.response(488, "Offer Required"))
        return None
    else:
        try:
            updated = await media.execute(SetRemoteSdp(leg.endpoint_id, body))
        except MediaError:
            tx.respond(tx.response(488))
            return None
        assert isinstance(updated, SessionUpdated)
        if updated.session is not None:
            held, leg.held_by_peer = leg.held_by_peer, updated.session.held_by_peer
            changed = held != leg.held_by_peer
        leg.local_sdp = updated.local_sdp or leg.local_sdp  # what a session refresh of ours offers again
        response = tx.response(200, body=(updated.local_sdp or "").encode())
        if updated.local_sdp:
            response.headers.add("Content-Type", SDP)
    response.headers.add("Contact", contact_header(leg.stack, leg.peer.transport))
    for name, value in timer_headers:
        response.headers.add(name, value)
    tx.respond(response)
    return leg.held_by_peer if changed else None


def allows_update(message: Message) -> bool:
    """RFC 3311 §5.1: the peer lists UPDATE in Allow (then a body-less UPDATE refreshes a session)."""
    methods = (method.strip().upper() for value in message.headers.get_all("Allow") for method in value.split(","))
    return "UPDATE" in methods


# -- RFC 4028 session timers at run time ----------------------------------------------------------------------
# RFC 4028 session timers at run time: one `SessionTimer` per answered leg (negotiation: sip/session_timer.py).
#
# When we are the refresher we send a refresh at half the interval — UPDATE without a body when the peer allows
# UPDATE (RFC 3311: no offer, no ACK), else a re-INVITE offering our last SDP again, whose answer is applied to the
# leg's media endpoint (a phone that moved answers with its new address); when the peer is the refresher we wait
# for its re-INVITE / UPDATE and, when none comes by `interval - min(32, interval/3)` (§10), end the session: the
# leg gets a BYE and its owner is told — a call or a callback then ends its other legs, a conference drops the added
# party. A failed refresh of ours ends it as well (the peer is gone, §10 / RFC 3261 §12.2.1.2).
#
# Every leg the exchange answers or originates runs one: a call's caller and connected callee, a callback's two
# legs (apps/click_to_dial.py) and an added conference party (apps/conference.py).


def glare_retry_seconds(we_own_the_call_id: bool) -> float:
    """How long a refresh that met the peer's own offer (491 Request Pending) waits before it is sent again
    (RFC 3261 §14.1): the side that chose the dialog's Call-ID waits 2.1–4 s, the other 0–2 s, in units of 10 ms,
    so the two do not cross again."""
    low, high = (210, 400) if we_own_the_call_id else (0, 200)
    return random.randint(low, high) / 100


REFRESH_WAIT_SECONDS = 32.0


def policy_of(settings: Settings) -> SessionTimerPolicy:
    """The session-timer policy the settings say (asked ≈ 3 times a call): one frozen policy per distinct value,
    not a new one each time — read from the settings every time, so a changed setting applies at once."""
    key = (settings.session_timers, settings.session_expires_seconds, settings.session_min_se_seconds)
    policy = _POLICIES.get(key)
    if policy is None:
        if len(_POLICIES) >= 64:  # settings that keep changing (tests): never a growing table
            _POLICIES.clear()
        policy = _POLICIES[key] = SessionTimerPolicy(enabled=key[0], expires=key[1], min_se=key[2])
    return policy


_POLICIES: dict[tuple[bool, int, int], SessionTimerPolicy] = {}


class SessionTimer:
    """RFC 4028 on one leg: refresh before the interval ends (we are the refresher) or end the session when the
    peer's refresh does not come. The wait is a timer handle on the loop's clock, not a task; only a refresh
    running (a re-INVITE or UPDATE and its answer) is one."""

    def __init__(self, leg: Leg, session: Session, *, we_refresh: bool) -> None:
        self.leg = leg
        self.session = session
        self.we_refresh = we_refresh
        self.refreshes_sent = 0
        self.refreshes_received = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        if self._timer is None and self._refreshing is None and not self._stopped:
            self._arm()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        refreshing, self._refreshing = self._refreshing, None
        if refreshing is not None and refreshing is not asyncio.current_task():
            refreshing.cancel()

    def renegotiated(self, session: Session, *, we_refresh: bool) -> None:
        """A refresh transaction completed (either side sent it): the interval starts again."""
        self.session = session
        self.we_refresh = we_refresh
        if self._timer is not None:
            self._timer.cancel()
            self._arm()
        # While a refresh of ours runs, the interval starts again when it ends.

    def _arm(self) -> None:
        wait = self.session.refresh_after if self.we_refresh else self.session.expire_after
        self._timer = asyncio.get_running_loop().call_later(wait, self._due)

    def _due(self) -> None:
        self._timer = None
        if self.leg.ended or self._stopped:
            return
        if not self.we_refresh:
            self._expire("the peer did not refresh the session")
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_in_time())

    async def _refresh_in_time(self) -> None:
        refreshed = await self._refresh()
        self._refreshing = None
        if self.leg.ended or self._stopped:
            return
        if not refreshed:
            self._expire("the session refresh failed")
            return
        self._arm()

    async def _refresh(self) -> bool:
        leg = self.leg
        for _attempt in range(3):
            request = self._refresh_request()
            if request is None:
                return False
            offering = request.method == "INVITE"
            leg.offering = offering
            tx = leg.stack.send_request(request, leg.peer)
            try:
                async with asyncio.timeout(REFRESH_WAIT_SECONDS):
                    response: Response = await asyncio.shield(tx.final)
            except TimeoutError:
                return False
            finally:
                leg.offering = False
            if offering and 200 <= response.status < 300:
                leg.ack_refresh(response)  # §13.2.2.4: outside the transaction
                await self._take_answer(response, request.body.decode(errors="replace"))
            if response.status == 491:
                # The exchange chose the Call-ID of the legs it called out on (the callee side).
                await asyncio.sleep(glare_retry_seconds(we_own_the_call_id=leg.side == "callee"))
                continue
            if not 200 <= response.status < 300:
                log.info("call.session_refresh_refused", extra={"status": response.status})
                return False
            self.refreshes_sent += 1
            session = from_answer(response, offered=True)
            if session is None:
                self.stop()  # the peer no longer wants a session timer (§7.2): nothing more to do
                return True
            self.session = session
            self.we_refresh = session.refresher == "uac"
            return True
        return False

    async def _take_answer(self, response: Response, offer: str) -> None:
        """The answer to the SDP our refresh offered again: a phone that moved meanwhile answers with its new
        address, and the anchor sends there from now on. An answer without SDP or with unusable SDP (not valid
        for an offer, but seen) leaves the media as it was: a refresh quirk is no reason to end the call."""
        leg = self.leg
        answer_sdp = response.body.decode(errors="replace")
        if not answer_sdp.strip() or leg.endpoint_id is None:
            return
        try:
            await leg.call.b2bua.media.execute(SetRemoteSdp(leg.endpoint_id, answer_sdp, answers=offer))
        except MediaError as error:
            log.info("call.refresh_answer_unusable", extra={"error": str(error)})

    def _refresh_request(self) -> Request | None:
        leg = self.leg
        if leg.dialog is None:
            return None
        if leg.peer_allows_update:
            request = leg.dialog.create_request("UPDATE")
        else:
            request = leg.dialog.create_request("INVITE", body=leg.local_sdp.encode(), content_type=SDP)
        request.headers.add("Contact", contact_header(leg.stack, leg.peer.transport))
        for name, value in refresh_headers(self.session):
            request.headers.add(name, value)
        return request

    def _expire(self, why: str) -> None:
        """§10: the session is over: BYE to this leg, then its owner learns that the leg is gone (a call ends; an
        added conference party drops out). The BYE task is queued first, so it has ended the leg (no second BYE)
        by the time the owner's teardown looks."""
        log.info("call.session_expired", extra={"why": why, "interval": self.session.interval})
        leg = self.leg
        leg.session_expired = True
        leg.call.b2bua.spawn(leg.bye())
        leg.call.leg_gone(leg)


def refresh_received(leg: Leg, request: Request, policy: SessionTimerPolicy) -> list[tuple[str, str]]:
    """A re-INVITE / UPDATE from the peer: the session-timer headers of our 2xx, and the leg's timer restarted."""
    with contextlib.suppress(ValueError):
        session = answer(request, policy)
        if session is None:
            return []
        we_refresh = session.refresher == "uas"
        if leg.session_timer is None:
            leg.session_timer = SessionTimer(leg, session, we_refresh=we_refresh)
            leg.session_timer.start()
        else:
            leg.session_timer.refreshes_received += 1
            leg.session_timer.renegotiated(session, we_refresh=we_refresh)
        return answer_headers(session)
    return []
