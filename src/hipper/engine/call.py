"""One call: the caller's leg, the plan(s) the routing policy made, and the legs and media that carry them out.

The executor never decides: `plan_incoming` (domain/routing) and `plan_group_call` say what happens; this module
turns steps into SIP legs and media commands (docs/architecture.md "How a call flows through apps/"):

- `RingStep`: fork to every target at once (each branch its own anchored RTP endpoint), relay 180, the first
  2xx wins — except branches with answer confirmation, whose 200 is ACKed and prompted ("press 1") while the
  caller keeps ringing; the other branches are cancelled (CANCEL only after their 1xx). Its outcome (busy, no
  answer in time, not reachable) runs the matching branch of the plan.
- `ForwardStep`: a colleague's number re-enters routing for that user with the diversion count; any other number
  leaves through the trunk with History-Info and Diversion.
- `VoicemailStep`: the voicemail application (apps/voicemail.py): greeting, tone, the message.
- `PersonalAssistantStep`: answer, play the announcement; 0 transfers, otherwise what the plan says afterwards.
- `RingSplashStep`: a short alert (Alert-Info) on the desk phones; the call goes on meanwhile.

Every call ends with one call-log row per involved user (placed / received / missed), the executed plan on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper import logs
from hipper.config import Settings
from hipper.domain.call_logs import CallKind
from hipper.domain.errors import DomainError
from hipper.domain.group_routing import GroupNumber, plan_group_call
from hipper.domain.numbers import NumberError, normalise
from hipper.domain.outgoing import (
    ANONYMOUS_DISPLAY,
    ANONYMOUS_HOST,
    ANONYMOUS_USER,
    CallerIdentity,
    PlacedCall,
    outgoing_identity,
)
from hipper.domain.routing import (
    AnswerConfirmation,
    CallHistory,
    ForwardStep,
    HangupStep,
    IncomingCall,
    PersonalAssistantStep,
    RejectStep,
    RingSplashStep,
    RingStep,
    RoutingRules,
    Step,
    Target,
    UserState,
    VoicemailStep,
    plan_for_call,
    plan_loop,
    public_number,
)
from hipper.domain.routing.plan import DiversionReason
from hipper.engine.directory import Callee, Resolved, resolve
from hipper.engine.fork import Branch, Fork, ForkResult
from hipper.engine.leg import CalleeLeg, CallerLeg, Leg, LegOwner, answer_in_dialog_offer, policy_of
from hipper.engine.outbound import OutboundGuard
from hipper.engine.peers import (
    Peers,
    asserted_identity,
    diversions_so_far,
    history_headers,
    identity_headers,
    received_history,
)
from hipper.engine.snapshots import SnapshotCache
from hipper.engine.waiting import Ending, race_until
from hipper.media.engine import (
    Connect,
    CreateEndpoint,
    DtmfReceived,
    EndpointCreated,
    MediaEngine,
    MediaError,
    MediaEvent,
    Play,
    PlaybackFinished,
    PortsExhausted,
    RecordingFinished,
    Release,
    SetRemoteSdp,
    Started,
    StartSending,
)
from hipper.media.prompts import PRESENCE_REASONS, personal_assistant_announcement, sentence, tone_path
from hipper.sip.message import URI, NameAddr, ParseError, Response
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ServerTransaction
from hipper.sip.transport import Peer
from hipper.store.call_logs import CallRecord
from hipper.store.registrations import Binding
from hipper.store.writer import BatchWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
# After the Personal Assistant's announcement the caller still has this long to press 0.
ASSISTANT_GRACE_SECONDS = 5.0
# A prompt that never reports its end (a stuck engine) must not hold the call forever.
PROMPT_LIMIT_SECONDS = 60.0
RING_SPLASH_SECONDS = 1.5
LOCAL_ZONE = ZoneInfo("Europe/Amsterdam")


def call_key(call_id: str) -> str:
    """A URL-safe id for a B2BUA call (the SIP Call-ID may hold '@' and is the callers' to choose)."""
    return hashlib.sha256(call_id.encode()).hexdigest()[:16]


async def _closed(closing: Callable[[], Awaitable[None]], call_id: str) -> None:
    try:
        await closing()
    except Exception:  # one feature's failure must not keep the others from closing, nor the call from its end
        log.exception("call.at_end_failed", extra={"call_id": call_id})


class CallApplications(Protocol):
    """The features a call hands over to (apps/): the engine names none of them, they plug in here.

    `take` may claim a dialled number before routing (voicemail by phone, the app's access number); the others are
    the plan's steps and moments that belong to a feature."""

    async def take(self, call: Call, dialled: str) -> bool: ...

    async def route_group(self, call: Call, resolved: Resolved, incoming: IncomingCall) -> None: ...

    async def leave_message(self, call: Call, user_id: int, called_number: str, cause: DiversionReason) -> None: ...

    async def in_call(self, call: Call, leg: CalleeLeg) -> None:
        """The call is answered by `leg`: set up what its users have during the call (keypad codes, a recording) as
        plain state — no task of its own: their media events come through the call's inbox (`Call.listen`), what
        must end with them is closed by the call (`Call.at_end`)."""

    def call_started(self, call: Call) -> None: ...

    def caller_answered_here(self, call: Call) -> None:
        """The exchange answered the caller itself (a voicemail, a queue, the personal assistant, the voicemail
        menu): for the caller the call rings no more."""

    def call_ringing(self, call: Call, user_id: int, ringing: bool) -> None: ...

    async def phone_hold(self, owner: LegOwner, leg: Leg, held: bool) -> None: ...

    def phone_refer(self, owner: LegOwner, leg: Leg, tx: ServerTransaction) -> None: ...


class CallHost(Protocol):
    """What a call uses of the node that hosts it (engine/b2bua.py)."""

    settings: Settings
    stack: SipStack
    sessions: async_sessionmaker[AsyncSession]
    media: MediaEngine
    peers: Peers
    rules: RoutingRules
    snapshots: SnapshotCache
    writer: BatchWriter
    outbound: OutboundGuard

    @property
    def applications(self) -> CallApplications: ...

    def add_leg(self, leg: Leg) -> None: ...

    def watch(self, endpoint_id: str, owner: LegOwner) -> None: ...

    def unwatch(self, endpoint_id: str) -> None: ...

    def on_call(self, user_id: int) -> bool: ...

    def on_call_started(self, user_id: int, call_id: str) -> None: ...

    def on_call_ended(self, user_id: int, call_id: str) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...


@dataclass(frozen=True)
class CallerInfo:
    """Who is calling, as the exchange knows it."""

    origin: Literal["device", "trunk", "mobile"]
    number: str | None  # what callees see: the extension of a colleague, E.164 from outside; None = anonymous
    display: str = ""
    user_id: int | None = None  # a device's user
    company_id: int | None = None
    device_kind: Literal["desk", "mobile"] = "desk"
    # The far leg of the user's own callback (apps/click_to_dial.py), come back to the exchange: the callback's
    # own call writes the user's call-log row and counts them as on a call, so this one must not do either again.
    for_callback: bool = False
    # A call the user transferred (engine/b2bua.py LoopbackCaller.shown): it is theirs for barring and identity,
    # but they are not on it — nothing of theirs (a recording, keypad codes) runs on it.
    user_present: bool = True


@dataclass
class Party:
    """One involved user's side of the call: becomes their call-log row."""

    user_id: int
    kind: CallKind
    remote_number: str
    remote_name: str = ""
    local_identity: str = ""
    plan: dict[str, object] | None = None
    outcome: list[str] = field(default_factory=list)
    answered_at: datetime | None = None
    left_at: datetime | None = None  # the user left a call that went on (a transfer): their row ends here

    def leave(self, why: str) -> None:
        """The user is off the call from now on (transferred it, left a three-way call) while it goes on: their
        row's duration is their own part of the call, and the row says why it ended for them."""
        if self.left_at is None:
            self.left_at = datetime.now(UTC)
            self.outcome.append(why)

    def handed_on(self, why: str) -> Party:
        """The rest of the user's call out through the trunk after they left it (`leave`): the others talk on over
        a leg still placed on their account, so it is a row of theirs from then on and its cost stays visible."""
        return Party(
            self.user_id, "placed", self.remote_number, self.remote_name, self.local_identity,
            outcome=["transfer" if why == "transferred" else why, "answered"], answered_at=self.left_at,
        )  # fmt: skip

    def record(
        self, call_id: str, started_at: datetime, ended_at: datetime, outcome: str,
        events: tuple[tuple[str, dict[str, Any]], ...],
    ) -> CallRecord:  # fmt: skip
        """This side's call-log row (what calls and callbacks hand the batch writer, store/writer.py): ended when
        the user left the call, else at `ended_at`."""
        return CallRecord(
            self.user_id,
            self.kind,
            started_at,
            call_id=call_id[:200],
            remote_number=self.remote_number[:64],
            remote_name=self.remote_name[:200],
            local_identity=self.local_identity[:64],
            answered_at=self.answered_at,
            ended_at=self.left_at or ended_at,
            outcome=outcome[:40],
            plan=self.plan,
            events=events,
        )


@dataclass
class CallSummary:
    """What tests and metrics read about a finished call."""

    call_id: str
    outcome: str
    answered: bool
    branches: list[tuple[str, int | None]]
    media: dict[str, int]
    parties: list[tuple[int, str, str]]


class FirstStep(Protocol):
    """How a call that no INVITE started begins: a callback from the app (apps/click_to_dial.py) rings the user's
    own phone(s) first and, answered, the number, then bridges the two. Only this first step is its own: the legs
    it rings are the call's (`Call.branches`, `first_leg`, `connected`), and everything after — in-dialog requests,
    media events, call control, teardown, the call-log rows and the one INFO line — is the call's."""

    @property
    def key(self) -> str: ...  # the call's id as the app knows it (the API lists and ends it by this)

    outcome: str  # what the call came to, for its summary and its log line

    async def run(self, call: Call) -> None: ...

    async def ending(self, call: Call) -> None: ...  # the call is over, its legs still up (a recording stops)

    async def ended(self, call: Call) -> None: ...  # torn down and logged


@dataclass
class Routing:
    """The user whose plan runs, and the call's forwarding history up to them (what forwarded legs carry)."""

    party: Party
    callee: Callee
    incoming: IncomingCall
    called_number: str
    history: CallHistory = field(default_factory=CallHistory)


class Call:
    """One call, from its first leg to its call-log rows. It starts from an INVITE (`tx`: the caller's leg `a`, then
    routing by the plan) or from a `FirstStep` the node runs itself (a callback from the app: no INVITE, no `a`)."""

    def __init__(
        self, b2bua: CallHost, tx: ServerTransaction | None, caller: CallerInfo, first: FirstStep | None = None
    ) -> None:
        self.b2bua = b2bua
        self.media = b2bua.media
        self.settings = b2bua.settings
        self.caller = caller
        self.tx = tx
        self.first = first
        self._a: CallerLeg | None = None
        # The first party's leg: the caller's, or the user's own phone a callback rang first (once it answered).
        self.first_leg: Leg | None = None
        if tx is not None:
            self._a = self.first_leg = CallerLeg(b2bua.stack, self, tx)
            if not caller.for_callback:  # a loopback leg (callback, transfer) is the exchange itself, nobody's phone
                self._a.device_user_id = caller.user_id  # the authenticated device's user, or the user's own handset
            self.call_id = tx.request.call_id
            self.key = call_key(self.call_id)  # the Call-ID is the caller's to choose: hashed to a URL-safe id
        else:
            assert first is not None, "a call starts from an INVITE or from a first step"
            self.call_id = self.key = first.key
        self.a_sdp = ""
        self.started_at = datetime.now(UTC)
        self.answered_at: datetime | None = None
        self.over = Ending()
        self.connected: CalleeLeg | None = None
        self.branches: list[CalleeLeg] = []
        self.parties: list[Party] = []
        self.placed: Party | None = None
        self.final_status: int | None = None
        # Each endpoint's media events: queued for the step that waits for them (a prompt, a menu, a confirmation),
        # or, once a feature listens to the endpoint (`listen`), handed to it through the inbox.
        self.events: dict[str, asyncio.Queue[MediaEvent]] = {}
        self._listeners: dict[str, Callable[[MediaEvent], Awaitable[None]]] = {}
        self._at_end: list[Callable[[], Awaitable[None]]] | None = []  # None: the call's end ran them already
        self._fork: Fork | None = None  # the ring under way, told when one of its branches hangs up
        self._tasks: set[asyncio.Task[None]] = set()
        self.summary: CallSummary | None = None
        self.on_call_users: list[int] = []
        # Live call control (apps/call_control.py): legs it released (a transferred user's: their BYE ends
        # nothing) and legs it joined to the call (a transfer's target, a pulled call's new device: their BYE ends
        # the call like the first two legs').
        self.released: set[Leg] = set()
        self.joined: list[Leg] = []
        # A party of a three-way call leaving it (call control's conference decides whether the call goes on).
        self.left: Callable[[Leg], bool] | None = None
        self.rtp_timed_out = False
        # The call's inbox (`post`): in-dialog offers, a late offer's answer, the media events features listen to,
        # handled in arrival order by one task.
        self._inbox: deque[Callable[[], Awaitable[None]]] = deque()
        self._inbox_worker: asyncio.Task[None] | None = None
        self._serving = False
        self._posted = asyncio.Event()
        self.ended_details: dict[str, object] = {}  # more for the apps' `call.ended` (a callback: the number)
        if self._a is not None:
            self._a.on_no_ack = self.over.set

    @property
    def a(self) -> CallerLeg:
        """The caller's leg (an INVITE's call): what routing, the plan's steps and the applications that answer
        the caller use. A call placed by a first step has none; what every call has is `first_leg`."""
        assert self._a is not None, "a call placed from the app has no caller's INVITE"
        return self._a

    # -- life cycle -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.first is not None:
                await self.first.run(self)
            else:
                await self._answer_invite()
        except PortsExhausted as error:
            # RFC 3261 §21.5.4: an overload the caller may retry, not a fault of ours (500) or of its offer (488).
            if self._a is not None:
                self._a.reject(503, "No Media Ports Free", [("Retry-After", str(error.retry_after_seconds))])
            self.fail(503)
        except Exception:
            log.exception("call.failed", extra={"call_id": self.call_id})
            self.fail(500, "Server Internal Error")
        finally:
            self.over.set()
            if self.first is not None:
                try:
                    await self.first.ending(self)
                except Exception:
                    log.exception("call.first_step_ending_failed", extra={"call_id": self.call_id})
            await self._run_at_end()
            try:
                await self.teardown()
            except Exception:
                # Whatever went wrong ending the legs, the call is still logged and forgotten (no leaked state).
                log.exception("call.teardown_failed", extra={"call_id": self.call_id})
            await self.write_logs()
            if self.first is not None:
                try:
                    await self.first.ended(self)
                except Exception:
                    log.exception("call.first_step_ended_failed", extra={"call_id": self.call_id})

    async def _answer_invite(self) -> None:
        """The first step of an INVITE's call: the caller's media endpoint from its offer, then routing."""
        offer = self.a.request.body.decode(errors="replace")
        try:
            # The SIP's source host: behind NAT only it may latch the media (media/engine.py).
            host = self.a.peer.host
            if offer.strip():
                created = await self.media.execute(CreateEndpoint(remote_sdp=offer, signalling_host=host))
            else:
                # Late offer: we offer in our 200 and the caller answers in its ACK.
                self.a.late_offer = True
                created = await self.media.execute(CreateEndpoint(signalling_host=host))
        except PortsExhausted:
            raise  # an overload, not a bad offer: 503 (`run`)
        except MediaError:
            self.fail(488, "Not Acceptable Here")  # the SDP was refused (media/sdp.py says why in the log)
            return
        assert isinstance(created, EndpointCreated)
        self.a.endpoint_id = created.endpoint_id
        self.a_sdp = created.local_sdp
        self.watch(created.endpoint_id)
        await self.route()
        if not self.a.finished:
            self.fail(480, "Temporarily Unavailable")
        if self.a.answered:
            await self.serve()

    def at_end(self, closing: Callable[[], Awaitable[None]]) -> None:
        """`closing` runs when the call is over, in the call's own task before its legs are torn down (a feature's
        recording stops from the live endpoints, then is stored) — whatever ended the call, its node's shutdown too.
        Registered after that moment (the call long over), it runs at once in a task of the node's."""
        if self._at_end is None:
            self.b2bua.spawn(_closed(closing, self.call_id))
        else:
            self._at_end.append(closing)

    async def _run_at_end(self) -> None:
        closings, self._at_end = self._at_end or [], None
        for closing in closings:
            await _closed(closing, self.call_id)

    def fail(self, status: int, reason: str = "") -> None:
        """The call cannot be completed: a final error to the caller, or (already answered) hang up."""
        if self.final_status is None:
            self.final_status = status
        if self._a is not None and not self._a.finished:
            self._a.reject(status, reason)
        self.over.set()

    async def teardown(self) -> None:
        a = self._a
        if a is not None:
            a.stop_timers()
        for task in list(self._tasks):
            task.cancel()
        media = self._media_stats()
        endings: list[Awaitable[None]] = []
        if a is not None and a.answered and not a.ended:
            endings.append(a.bye())
        for leg in self.branches:
            leg.stop_session()  # also when the far end's BYE ended it first
            if leg.status is None:
                leg.cancel()
            elif 200 <= leg.status < 300 and not leg.ended:
                endings.append(leg.bye())
        if len(endings) == 1:  # the usual end (the other side hung up): awaited here, no task of its own
            with contextlib.suppress(Exception):
                await endings[0]
        elif endings:
            await asyncio.gather(*endings, return_exceptions=True)
        for endpoint_id in list(self.events):
            with contextlib.suppress(MediaError):
                await self.media.execute(Release(endpoint_id))
            self.b2bua.unwatch(endpoint_id)
        self.events.clear()
        self._listeners.clear()
        for user_id in self.on_call_users:
            self.b2bua.on_call_ended(user_id, self.call_id)
        self.on_call_users = []
        self.summary = CallSummary(
            call_id=self.call_id,
            outcome=self.outcome(),
            answered=self.answered_at is not None,
            branches=[(leg.label, leg.outcome_status) for leg in self.branches],
            media=media,
            parties=[(p.user_id, p.kind, ", ".join(p.outcome)) for p in self._all_parties()],
        )
        # One line per call at INFO (the plan and the connect are DEBUG): what operations need to follow a call.
        # `hot_line`: the same line without the standard library's record machinery (≈ 23 → 9 µs a call).
        ended = {
            "call_id": self.call_id,
            "outcome": self.summary.outcome,
            "caller": self.caller.origin,
            "branches": len(self.branches),
            "seconds": round((datetime.now(UTC) - self.started_at).total_seconds(), 3),
        }
        if not logs.hot_line(log, "call.ended", **ended):
            log.info("call.ended", extra=ended)

    def _media_stats(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        for name, leg in (("caller", self.first_leg), ("callee", self.connected)):
            if leg is None or leg.endpoint_id is None or leg.endpoint_id not in self.events:
                continue
            with contextlib.suppress(MediaError):
                for key, value in self.media.stats(leg.endpoint_id).items():
                    stats[f"{name}_{key}"] = value
        return stats

    def outcome(self) -> str:
        if self.first is not None:
            return self.first.outcome
        if self.answered_at is not None:
            return "answered"
        for party in reversed(self.parties):
            if party.outcome:
                return party.outcome[-1]
        if self.final_status == 487:
            return "cancelled"
        return {486: "busy", 480: "not-reachable", 404: "unknown-number"}.get(self.final_status or 0, "failed")

    def _all_parties(self) -> list[Party]:
        return ([self.placed] if self.placed is not None else []) + self.parties

    def user_left(self, user_id: int, why: str) -> None:
        """The user left this call while it goes on (apps/call_control.py): their row ends now, saying `why`; a
        call they placed out through the trunk goes on on their account (`Party.handed_on`). They are free from now
        on: a new call does not find them busy with this one."""
        for party in self._all_parties():
            if party.user_id == user_id:
                party.leave(why)
        if user_id in self.on_call_users:
            self.on_call_users.remove(user_id)
            self.b2bua.on_call_ended(user_id, self.call_id)
        placed, connected = self.placed, self.connected
        if (
            placed is not None and placed.user_id == user_id and connected is not None
            and self.b2bua.peers.origin(connected.peer) == "trunk"
        ):  # fmt: skip
            self.parties.append(placed.handed_on(why))

    async def write_logs(self) -> None:
        ended = datetime.now(UTC)
        parties = self._all_parties()
        if not parties:
            return
        try:
            ended_event = (("call.ended", {"id": self.key, **self.ended_details}),)
            told: set[int | None] = set()  # a user with two rows (a transfer out through the trunk) is told once
            records = []
            for party in parties:
                events = () if party.user_id in told else ended_event
                told.add(party.user_id)
                outcome = ", ".join(party.outcome) or self.outcome()
                records.append(party.record(self.call_id, self.started_at, ended, outcome, events))
            # Batched with other calls' rows into one transaction (store/writer.py); returns once committed.
            await self.b2bua.writer.write(records)
        except Exception:
            log.exception("call.log_failed", extra={"call_id": self.call_id})

    # -- SIP events from the B2BUA -------------------------------------------------------------------------------

    def cancelled_by_caller(self) -> None:
        self.final_status = 487
        self.a.reject(487, "Request Terminated")
        self.over.set()

    def in_dialog(self, leg: Leg, tx: ServerTransaction) -> None:
        request = tx.request
        if leg.dialog is not None and not leg.dialog.accept_remote_cseq(request):
            tx.respond(tx.response(500, "Out of order CSeq"))
            return
        method = request.method
        if method == "BYE":
            tx.respond(tx.response(200))
            leg.terminate()
            self.leg_gone(leg)
        elif method in ("INVITE", "UPDATE"):
            if self.over.is_set():  # ending: the inbox takes nothing more, and its BYE follows
                tx.respond(tx.response(481, "Call Ending"))
                return
            self.post(partial(self._renegotiate, leg, tx))
        elif method == "REFER":
            self.b2bua.applications.phone_refer(self, leg, tx)  # a phone's transfer key (apps/phone_control.py)
        else:
            tx.respond(tx.response(200))  # INFO, OPTIONS, NOTIFY: acknowledged, nothing to do yet

    async def caller_answered_offer(self, sdp: str) -> None:
        """The caller's answer to the offer in our 200 (late offer) arrived in its ACK."""
        if self.a.endpoint_id is None:
            return
        try:
            await self.media.execute(SetRemoteSdp(self.a.endpoint_id, sdp))
        except MediaError:
            log.info("call.bad_ack_sdp", extra={"call_id": self.call_id})
            self.over.set()  # no usable media: end the call rather than leave it silent

    def user_of(self, leg: Leg) -> int | None:
        """The user on this call through `leg` (whose call-log row it is), if any: the caller's (not a callback's
        far leg, nor a transferred call's: the exchange is that caller), or the user whose phone a branch rang."""
        if leg is self._a:
            caller = self.caller
            return caller.user_id if caller.user_present and not caller.for_callback else None
        return leg.user_id if isinstance(leg, CalleeLeg) else None

    def leg_gone(self, leg: Leg) -> None:
        if leg in self.released or (self.left is not None and self.left(leg)):
            return
        if leg is self.first_leg or leg is self.connected or leg in self.joined:
            self.over.set()
        elif isinstance(leg, CalleeLeg) and self._fork is not None:
            self._fork.leg_gone(leg)

    async def _renegotiate(self, leg: Leg, tx: ServerTransaction) -> None:
        """A re-INVITE / UPDATE (hold, resume, a moved phone, a session refresh): answered from this leg's own
        anchored endpoint, whose RTP then goes where the new SDP says (legs.answer_in_dialog_offer). A phone that
        holds or takes the call back: the other party hears music on hold meanwhile (apps/phone_control.py)."""
        held = await answer_in_dialog_offer(leg, tx, self.media, policy_of(self.settings))
        if held is not None:
            await self.b2bua.applications.phone_hold(self, leg, held)

    # -- media ------------------------------------------------------------------------------------------------

    def watch(self, endpoint_id: str) -> None:
        self.events[endpoint_id] = asyncio.Queue()
        self.b2bua.watch(endpoint_id, self)

    def media_event(self, event: MediaEvent) -> None:
        if isinstance(event, RecordingFinished):
            return
        listener = self._listeners.get(event.endpoint_id)
        if listener is not None:
            self.post(partial(listener, event))
            return
        queue = self.events.get(event.endpoint_id)
        if queue is not None:
            queue.put_nowait(event)

    def listen(self, endpoint_id: str, listener: Callable[[MediaEvent], Awaitable[None]]) -> None:
        """The endpoint's media events go to `listener` from now on, handled through the inbox like the call's
        requests (a feature's keypad codes while the call is answered): no task waits for them. Digits queued
        before (pressed while the call was being connected) go first, in their order; what else a step before left
        there (a prompt's end) was that step's."""
        queue = self.events.get(endpoint_id)
        if queue is None:
            return  # not (or no longer) the call's endpoint
        self._listeners[endpoint_id] = listener
        while not queue.empty():
            event = queue.get_nowait()
            if isinstance(event, DtmfReceived):
                self.post(partial(listener, event))

    def rtp_timeout(self, endpoint_id: str) -> None:
        legs = [leg for leg in (self.first_leg, self.connected, *self.joined) if leg not in self.released]
        if any(leg is not None and leg.endpoint_id == endpoint_id for leg in legs):
            log.info("call.rtp_timeout", extra={"call_id": self.call_id})
            if not self.over.is_set():
                self.rtp_timed_out = True  # what ended it (a second silent leg's timeout changes nothing)
            self.over.set()

    async def new_endpoint(self) -> EndpointCreated:
        created = await self.media.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        self.watch(created.endpoint_id)
        return created

    async def release(self, endpoint_id: str | None) -> None:
        if endpoint_id is None or endpoint_id not in self.events:
            return
        del self.events[endpoint_id]
        self._listeners.pop(endpoint_id, None)
        self.b2bua.unwatch(endpoint_id)
        with contextlib.suppress(MediaError):
            await self.media.execute(Release(endpoint_id))

    async def play(self, endpoint_id: str, files: tuple[object, ...], *, loop: bool = False) -> str:
        started = await self.media.execute(Play(endpoint_id, tuple(files), loop=loop))  # type: ignore[arg-type]
        assert isinstance(started, Started)
        return started.id

    async def race(self, awaitable: Awaitable[T], limit: float | None) -> T | None:
        """`awaitable`'s result, or None when the call ends or `limit` seconds pass first."""
        return await race_until(awaitable, self.over, limit)

    # -- the inbox ---------------------------------------------------------------------------------------------

    def post(self, work: Callable[[], Awaitable[None]]) -> None:
        """Something for the call to handle (an in-dialog offer, a late offer's answer, a media event a feature
        listens to), in arrival order by one task: the call's own while it only waits for its end (`serve`), else
        — an application holds it (a prompt, a menu, a queue) — one worker that drains the inbox and ends; never a
        task per event. Two offers of one phone are thus answered one after the other. Work for a call that is
        over is dropped: the call's end hangs up its legs."""
        if self.over.is_set():
            return
        self._inbox.append(work)
        if self._serving or self._inbox_worker is not None:
            self._posted.set()  # the call's own task takes it (after the worker it waits for, if one still drains)
            return
        worker = asyncio.get_running_loop().create_task(self._work())
        self._inbox_worker = worker
        self._tasks.add(worker)  # the teardown cancels it, should it still run then
        worker.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """The one way the inbox is handled, by whichever task drains it: each piece of work in turn, raced with
        the call's end — a hold whose event commit is slow must not hold up the BYE to the other side when one
        hangs up; what the call's end interrupts or leaves in the inbox is dropped with the call."""
        while self._inbox and not self.over.is_set():
            work = self._inbox.popleft()
            await self.race(self._handle(work), None)

    async def _work(self) -> None:
        try:
            await self._drain()
        finally:
            self._inbox_worker = None
            self._posted.set()  # the call's own task, if it serves meanwhile, goes on from here

    async def _handle(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception:  # one bad request must not end the others' handling (nor the call)
            log.exception("call.inbox_failed", extra={"call_id": self.call_id})

    async def serve(self) -> None:
        """Wait for the call's end (it is answered, nothing else to run), handling its inbox meanwhile: the call's
        one task at rest. A worker still draining (started while an application held the call) finishes first."""
        self._serving = True
        try:
            while not self.over.is_set():
                if self._inbox_worker is None:
                    await self._drain()
                self._posted.clear()
                await self.race(self._posted.wait(), None)
        finally:
            self._serving = False

    def spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer_caller(self) -> None:
        """Answer the caller ourselves (an application takes the call: a colleague's voicemail, a queue, the
        Personal Assistant, the voicemail menu) and give the ACK a moment to arrive. A user who called is on a
        call from then on, as when a phone answers: a second call finds them busy (or waiting) on every node, and
        every node lists the call (its row in the shared store)."""
        if not self.a.answered:
            await self.send_answer()
            self.users_on_it(None if self.caller.for_callback else self.caller.user_id)
            self.b2bua.applications.caller_answered_here(self)
            await self.race(asyncio.shield(self.a.acked), 2.0)

    async def send_answer(self) -> None:
        """Our 200 OK (our SDP: the answer, or a late offer) to the caller; its endpoint sends from now on."""
        self.a.answer(self.a_sdp)
        await self._caller_may_send()

    async def _caller_may_send(self) -> None:
        # RFC 3264 §6: media to the caller once our SDP is out, not from the INVITE on (media/engine.py).
        if self.a.endpoint_id is not None:
            await self.media.execute(StartSending(self.a.endpoint_id))

    # -- routing -----------------------------------------------------------------------------------------------

    async def route(self) -> None:
        request = self.a.request
        dialled = request.uri.user or request.to.uri.user or ""
        if await self.b2bua.applications.take(self, dialled):
            return  # voicemail by phone, or the access number of a call placed from the app "via the exchange"
        resolved = await self.b2bua.snapshots.resolve(dialled, self.caller.company_id, self.settings.default_region)
        if self.caller.user_id is not None and not self.caller.for_callback:
            self.placed = Party(self.caller.user_id, "placed", resolved.number)
            if resolved.internal:
                self.placed.local_identity = self.caller.number or ""  # colleagues see the caller's extension
            if resolved.callee is not None:
                self.placed.remote_name = resolved.callee.name
        await self.shown_to(resolved)
        try:
            max_forwards = request.int_header("Max-Forwards")
        except ParseError:
            max_forwards = None
        incoming_base = IncomingCall(
            caller=self.caller.number,
            called="fixed",
            diversion_count=diversions_so_far(request),
            max_forwards=70 if max_forwards is None else max_forwards,
        )
        if resolved.kind == "user" and resolved.callee is not None:
            incoming = IncomingCall(
                caller=incoming_base.caller,
                called=resolved.callee.called,
                diversion_count=incoming_base.diversion_count,
                max_forwards=incoming_base.max_forwards,
            )
            await self.route_user(resolved.callee, incoming, resolved.number, self.arrived_history(), None)
        elif resolved.kind == "group" and resolved.group is not None:
            history = self.arrived_history().reach(resolved.number, None, None)
            await self.route_group(resolved.group, resolved.company_id, incoming_base, history)
        elif resolved.kind in ("hunt_group", "call_center"):
            await self.b2bua.applications.route_group(self, resolved, incoming_base)
        elif resolved.kind == "external" and self.caller.user_id is not None:
            if self.placed is None and not self.caller.user_present:
                # A call the user transferred out through the trunk (engine/b2bua.py LoopbackCaller): the exchange
                # places it on their account, so their call log shows it, with its duration (what it costs).
                self.placed = Party(self.caller.user_id, "placed", resolved.number, outcome=["transfer"])
            await self.call_out(resolved.number)
        else:
            self.fail(404, "Not Found")

    async def route_user(
        self,
        callee: Callee,
        incoming: IncomingCall,
        called_number: str,
        history: CallHistory,
        reason: DiversionReason | None,
    ) -> None:
        """Plan and run the call for this user, reached through `history` (forwarded for `reason`, or first)."""
        now = datetime.now(UTC)
        state = await self.b2bua.snapshots.state(callee.user_id, now)
        if state is None:
            self.fail(404, "Not Found")
            return
        if history.met(callee.user_id):
            await self.loop_back(callee, incoming, called_number, history, state, now)
            return
        history = history.reach(public_number(state, callee.called) or called_number, callee.user_id, reason)
        # The plan and its JSON for the call-log row, made once per kind of call from a snapshot (policy.py).
        plan, dumped = plan_for_call(incoming, state, now, self.b2bua.rules)
        party = Party(
            callee.user_id,
            "missed",
            self.caller.number or "",
            remote_name=self.caller.display,
            local_identity=called_number,
            plan=dumped,
        )
        self.parties.append(party)
        if log.isEnabledFor(logging.DEBUG):  # the plan's sentences only for a line that is written
            log.debug("call.plan", extra={"call_id": self.call_id, "user_id": callee.user_id, "plan": plan.describe()})
        await self.run_steps(plan.steps, Routing(party, callee, incoming, called_number, history))

    async def loop_back(
        self,
        callee: Callee,
        incoming: IncomingCall,
        called_number: str,
        history: CallHistory,
        state: UserState,
        now: datetime,
    ) -> None:
        """Forwarding led back to a user already in the chain: the loop ends at them (`plan_loop`), on the
        call-log row they have already — one row per user per call."""
        plan = plan_loop(incoming, state, now, self.b2bua.rules)
        party = next(p for p in self.parties if p.user_id == callee.user_id)
        party.outcome.append("loop")
        log.info("call.loop", extra={"call_id": self.call_id, "user_id": callee.user_id, "plan": plan.describe()})
        await self.run_steps(plan.steps, Routing(party, callee, incoming, called_number, history))

    def arrived_history(self) -> CallHistory:
        """The history the call arrived with: entries from the trusted peers are kept (the next exchange sees the
        whole chain); a phone's own History-Info/Diversion would claim forwards that never happened (RFC 7044 §12)."""
        if self.caller.origin in ("trunk", "mobile"):
            return received_history(self.a.request)
        return CallHistory()

    async def route_group(
        self, group: GroupNumber, company_id: int | None, incoming: IncomingCall, history: CallHistory
    ) -> None:
        """A company or department number: its destination, with the number in the history (a user who forwards
        to their company's number and is its destination is a loop like any other)."""
        plan = plan_group_call(group, incoming.caller, datetime.now(UTC), max_forwards=incoming.max_forwards)
        if isinstance(plan.step, RejectStep):
            self.fail(plan.step.status, plan.step.reason_phrase)
            return
        await self.forward_to(
            plan.step.destination, None, None, company_id=company_id, history=history, incoming=incoming
        )

    async def run_steps(self, steps: tuple[Step, ...], routing: Routing) -> None:
        party = routing.party
        for step in steps:
            if self.over.is_set():
                party.outcome.append("cancelled")
                return
            if isinstance(step, RingSplashStep):
                # The splash lasts its moment even when the call itself ends at once (do not disturb: 486).
                self.b2bua.spawn(self.ring_splash(routing.callee.user_id, routing.called_number))
                continue
            if isinstance(step, ForwardStep):
                party.outcome.append("forwarded")
                await self.forward_to(step.destination, step, routing)
                return
            if isinstance(step, VoicemailStep):
                party.outcome.append("voicemail")
                await self.voicemail(routing, step)
                return
            if isinstance(step, RejectStep):
                word = {486: "busy", 480: "not-reachable"}.get(step.status, "rejected")
                if not party.outcome or party.outcome[-1] != word:  # "busy", not "busy, busy"
                    party.outcome.append(word)
                self.fail(step.status, step.reason_phrase)
                return
            if isinstance(step, HangupStep):
                self.fail(480, "Temporarily Unavailable")
                return
            if isinstance(step, PersonalAssistantStep):
                party.outcome.append("assistant")
                await self.assistant(step, routing)
                return
            if isinstance(step, RingStep):
                result = await self.ring_step(step, routing)
                if result.outcome == "answered":
                    return
                party.outcome.append("cancelled" if result.outcome == "gone" else result.outcome)
                if result.outcome == "gone":
                    return
                branch = {
                    "busy": step.on_busy,
                    "no-answer": step.on_no_answer,
                    "not-reachable": step.on_not_reachable,
                }[result.outcome]
                if branch:
                    await self.run_steps(branch, routing)
                else:
                    self.fail(486 if result.outcome == "busy" else 480)
                return
        self.fail(480, "Temporarily Unavailable")

    # -- ringing ----------------------------------------------------------------------------------------------

    async def ring_step(self, step: RingStep, routing: Routing) -> ForkResult:
        branches: list[Branch] = []
        for target in step.targets:
            branches.extend(await self.branches_for(target, routing))
        if not branches:
            return ForkResult("not-reachable")
        max_forwards = max(1, routing.incoming.max_forwards - 1)
        headers = history_headers(routing.history, self.settings.sip_realm) if routing.history.forwarded else []
        ringing = (routing.callee.user_id,)
        result = await self.ring(branches, step.timeout_seconds, max_forwards, tuple(headers), ringing=ringing)
        if result.outcome == "answered" and self.connected is not None:
            party = routing.party
            party.kind = "received"
            party.outcome.append("answered")
            party.answered_at = self.answered_at
        return result

    async def bindings(self, user_id: int, device_ids: tuple[int, ...] | None = None) -> list[Binding]:
        found = await self.b2bua.snapshots.bindings(user_id, datetime.now(UTC))
        return [b for b in found if device_ids is None or b.device_id in device_ids]

    def device_branches(self, bindings: list[Binding], label: str, user_id: int, to: NameAddr) -> list[Branch]:
        branches = []
        for binding in bindings:
            try:
                uri = URI.parse(binding.contact)
                peer = Peer.parse(binding.source)  # where it registered from, not its (maybe private) Contact
            except (ParseError, ValueError):
                continue
            branches.append(Branch(uri, peer, to, label, user_id=user_id, device_user_id=binding.user_id))
        return branches

    async def branches_for(self, target: Target, routing: Routing) -> list[Branch]:
        user_id = routing.callee.user_id
        to = self.b2bua.peers.address(routing.called_number)
        if target.kind == "desk":
            return self.device_branches(await self.bindings(user_id, target.device_ids), "desk", user_id, to)
        branches: list[Branch] = []
        if target.kind == "mobile" and target.device_ids:
            branches += self.device_branches(await self.bindings(user_id, target.device_ids), "mobile", user_id, to)
        if target.number is None:
            return branches
        if target.kind == "mobile":
            where = self.b2bua.peers.handset_uri(target.number)
            if where is not None:
                owner = self.b2bua.peers.handset_owner(where[1], user_id)
                branches.append(Branch(where[0], where[1], to, "mobile", user_id=user_id, device_user_id=owner))
            return branches
        # Remote office, simultaneous ring, Anywhere: a colleague's number rings their phones directly.
        async with self.b2bua.sessions() as session:
            resolved = await resolve(session, target.number, routing.callee.company_id, self.settings.default_region)
        if resolved.kind == "user" and resolved.callee is not None:
            # Rung for this user, but the colleague's own phones (`device_user_id`): they act for the colleague.
            found = self.device_branches(await self.bindings(resolved.callee.user_id), target.kind, user_id, to)
            return [replace(b, confirm=target.answer_confirmation) for b in found]
        trunk = self.b2bua.peers.trunk_uri(resolved.number)
        if trunk is None:
            return branches
        if await self.b2bua.outbound.barred(resolved.number, user_id, routing.callee.company_id) is not None:
            return branches  # a barred number is not rung, the user's other targets are (docs/security.md)
        branches.append(
            Branch(
                trunk[0],
                trunk[1],
                self.b2bua.peers.address(resolved.number),
                target.kind,
                target.answer_confirmation,
                (),
                user_id,
                block_diversion=target.block_diversion,
            )
        )
        return branches

    def caller_address(self) -> NameAddr:
        if self.caller.number is None:
            return NameAddr(URI("sip", ANONYMOUS_HOST, user=ANONYMOUS_USER), ANONYMOUS_DISPLAY)
        return NameAddr(URI("sip", self.settings.sip_realm, user=self.caller.number), self.caller.display)

    async def ring(
        self,
        branches: list[Branch],
        ring_seconds: float | None,
        max_forwards: int,
        headers: tuple[tuple[str, str], ...],
        from_: NameAddr | None = None,
        *,
        ringing: tuple[int, ...] = (),
    ) -> ForkResult:
        """Fork to `branches` (engine/fork.py); the winner is connected to the caller. The apps of the `ringing`
        users show the call while it rings for them (their answer is `call_started`, SPEC D3)."""
        applications = self.b2bua.applications
        for user_id in ringing:
            applications.call_ringing(self, user_id, True)
        try:
            return await self._ring(branches, ring_seconds, max_forwards, headers, from_)
        finally:
            for user_id in ringing:
                applications.call_ringing(self, user_id, False)  # answered, or it stops ringing for them unanswered

    async def _ring(
        self,
        branches: list[Branch],
        ring_seconds: float | None,
        max_forwards: int,
        headers: tuple[tuple[str, str], ...],
        from_: NameAddr | None,
    ) -> ForkResult:
        ringback: str | None = None
        if self.a.answered and self.a.endpoint_id is not None:
            # The caller was answered by an application (Personal Assistant): they hear ringback meanwhile.
            ringback = await self.play(self.a.endpoint_id, (tone_path("ringback"),), loop=True)
        outside: tuple[NameAddr, tuple[tuple[str, str], ...]] | None = None
        prepared: list[Branch] = []
        for branch in branches:
            if self.b2bua.peers.origin(branch.peer) is not None:  # the trunk or the mobile network
                outside = outside or await self.outside_identity(from_, headers)
                shown, identity = outside
                branch = replace(branch, from_=shown, headers=(*branch.headers, *identity))
            prepared.append(branch)
        fork = Fork(
            self, self.settings, from_=from_ or self.caller_address(), headers=headers, max_forwards=max_forwards,
            ring_seconds=ring_seconds, on_progress=self._progress, confirm=self._confirm, track=self.branches.append,
        )  # fmt: skip
        self._fork = fork
        try:
            result = await fork.run(prepared)
        finally:
            self._fork = None
        if result.winner is not None:
            await self.connect(result.winner, ringback)
        return result

    async def _progress(self, leg: CalleeLeg, response: Response) -> bool:
        """A branch rings: the caller hears ringing — or, with SDP, the branch's early media (a network's ringback or
        announcement). Not with a late offer (our SDP would be an offer in an unreliable 183), nor from a branch
        that must be confirmed or whose network voicemail is blocked (its "not reachable" announcement)."""
        if (
            response.body
            and not self.a.answered
            and not self.a.late_offer
            and not leg.confirm
            and not leg.block_diversion
            and leg.endpoint_id is not None
            and self.a.endpoint_id is not None
        ):
            try:
                body = response.body.decode(errors="replace")
                await self.media.execute(SetRemoteSdp(leg.endpoint_id, body, signalling_host=leg.peer.host))
            except MediaError:
                self.a.ringing()
                return False
            await self.media.execute(Connect(self.a.endpoint_id, leg.endpoint_id))
            self.a.early_media(self.a_sdp)
            await self._caller_may_send()
            return True
        self.a.ringing()
        return False

    async def _confirm(self, leg: CalleeLeg) -> bool:
        """Answer confirmation: prompt the answered branch for 1 (at most three plays); only then is it the call's
        answer. Not confirmed in time: False, and the fork releases the branch with BYE while the others ring on."""
        assert leg.endpoint_id is not None
        events = self.events[leg.endpoint_id]
        confirmation = AnswerConfirmation(self.settings.answer_confirmation_seconds)
        prompt = sentence(self.settings.prompt_language, ["incoming_call", "press_1_to_accept"])
        loop = asyncio.get_running_loop()
        answered = loop.time()
        playback = await self.play(leg.endpoint_id, prompt)
        plays = 1
        while True:
            event = await self.race(events.get(), confirmation.remaining(loop.time() - answered))
            if event is None:
                return False  # the time ran out (or the call ended: the fork is gone then)
            if isinstance(event, DtmfReceived) and confirmation.accepts(event.digit):
                return True
            if isinstance(event, PlaybackFinished) and event.playback_id == playback and confirmation.play_again(plays):
                playback = await self.play(leg.endpoint_id, prompt)
                plays += 1

    def mark_answered(self, callee_user_id: int | None = None) -> None:
        """The call is answered (by a user's phone, or by the exchange itself: the voicemail menu): the caller's
        `placed` side says so, and the users on it are on a call — a second call finds them busy (or waiting) per
        their settings, and their apps refresh their call lists (`call.started`, SPEC D3)."""
        self.answered_at = datetime.now(UTC)
        if self.placed is not None:
            self.placed.answered_at = self.answered_at
            self.placed.outcome.append("answered")
        caller_user = None if self.caller.for_callback else self.caller.user_id
        self.users_on_it(caller_user, callee_user_id)
        self.b2bua.applications.call_started(self)

    def users_on_it(self, *user_ids: int | None) -> None:
        """These users are on this call from now on (busy or waiting for a second call on every node; they leave
        it at the call's end or by `user_left`), each once: a caller the exchange answered (`answer_caller`) and
        then connected (a Personal Assistant's transfer, a queue's agent) is on it once, and leaves it once."""
        for user_id in user_ids:
            if user_id is not None and user_id not in self.on_call_users:
                self.on_call_users.append(user_id)
                self.b2bua.on_call_started(user_id, self.call_id)

    async def connect(self, leg: CalleeLeg, ringback: str | None) -> None:
        assert leg.endpoint_id is not None and self.a.endpoint_id is not None
        leg.answered = True
        self.connected = leg
        leg.start_session_timer()  # RFC 4028 on the callee's side (the caller's started with our 200)
        await self.media.execute(Connect(self.a.endpoint_id, leg.endpoint_id))
        if not self.a.answered:
            await self.send_answer()
        self.mark_answered(leg.user_id)
        log.debug("call.connected", extra={"call_id": self.call_id, "branch": leg.label})
        # In-call keypad codes and call recording (apps/recording.py): set up here, in the call's own task, and not
        # raced with the call's end — a recording once asked for is started whole, then closed by the call's end
        # (`at_end`); from then on the users' digits reach them through the inbox (`listen`), no task waits.
        try:
            await self.b2bua.applications.in_call(self, leg)
        except Exception:  # the call goes on without them rather than end for it
            log.exception("call.in_call_failed", extra={"call_id": self.call_id})

    # -- forwarding and calls out ----------------------------------------------------------------------------

    async def forward_to(
        self,
        destination: str,
        step: ForwardStep | None,
        routing: Routing | None,
        *,
        company_id: int | None = None,
        history: CallHistory | None = None,
        incoming: IncomingCall | None = None,
    ) -> None:
        """To `destination`, for a user's `step` (with their `routing`), or for a company/department number (no
        routing; its `history` and `incoming` counters so far)."""
        if company_id is None:
            company_id = routing.callee.company_id if routing is not None else self.caller.company_id
        async with self.b2bua.sessions() as session:
            resolved = await resolve(session, destination, company_id, self.settings.default_region)
        await self.shown_to(resolved)  # a forward to another company's user: not the caller's extension
        diversion = step.diversion if step is not None else None
        reason = diversion.reason if diversion is not None else None
        if routing is not None:
            history = routing.history
        history = history or CallHistory()
        base = routing.incoming if routing is not None else incoming
        base = base or IncomingCall(caller=self.caller.number, called="fixed")
        # The counters the next hop carries: a group number is a hop too, so a loop through company numbers
        # ends by Max-Forwards like any other (RFC 3261 §16.6 step 3).
        onward = IncomingCall(
            caller=self.caller.number,
            called="fixed",
            diversion_count=diversion.diversion_count if diversion is not None else base.diversion_count,
            max_forwards=diversion.max_forwards if diversion is not None else base.max_forwards - 1,
        )
        if resolved.kind == "user" and resolved.callee is not None:
            onward = replace(onward, called=resolved.callee.called)
            await self.route_user(resolved.callee, onward, resolved.number, history, reason)
            return
        if resolved.kind == "group" and resolved.group is not None:
            if history.reached(resolved.number):
                self.fail(482, "Loop Detected")  # back at a company/department number: nobody to end it at
                return
            history = history.reach(resolved.number, None, reason)
            await self.route_group(resolved.group, resolved.company_id, onward, history)
            return
        if resolved.kind in ("hunt_group", "call_center"):
            # Members ring directly: a group call is never forwarded on.
            await self.b2bua.applications.route_group(self, resolved, base)
            return
        trunk = self.b2bua.peers.trunk_uri(resolved.number)
        if trunk is None or resolved.kind == "unknown":
            self.fail(404 if resolved.kind == "unknown" else 503, "No route to the destination")
            return
        if routing is not None and not await self.admitted_out(resolved.number, routing.callee.user_id, company_id):
            return  # the forwarding user's barring and limits (a forward is their call out)
        max_forwards = diversion.max_forwards if diversion is not None else max(1, base.max_forwards - 1)
        headers: tuple[tuple[str, str], ...] = ()
        if diversion is not None and routing is not None:
            headers = tuple(history_headers(history.reach(resolved.number, None, reason), self.settings.sip_realm))
        from_, privacy = await self.presented_identity()
        branch = Branch(trunk[0], trunk[1], self.b2bua.peers.address(resolved.number), "forward")
        result = await self.ring([branch], None, max_forwards, (*headers, *privacy), from_)
        if result.outcome not in ("answered", "gone"):
            self.fail(result.status or 480)

    async def shown_to(self, resolved: Resolved) -> None:
        """Before the call reaches `resolved` (dialled, or a forward's destination): a user of another company
        sees the calling user as the outside world does (`shown_as_outside`)."""
        if (
            self.caller.user_id is not None
            and self.caller.user_present  # not a transferred call: its caller is the party transferred
            and resolved.internal
            and _company_of(resolved) != self.caller.company_id
        ):
            await self.shown_as_outside()

    async def shown_as_outside(self) -> None:
        """A user of another company is called: extensions are per company (the caller's 201 is someone else's
        there), so the callee sees the caller as the outside world does — their outgoing identity, E.164 or
        anonymous — on the phone and in the call log, and the caller's row says which number the call used."""
        identity = await self._outgoing_identity()
        if identity is None:
            return
        number = None if identity.anonymous else identity.number
        self.caller = replace(self.caller, number=number, display="" if number is None else self.caller.display)
        if self.placed is not None:
            self.placed.local_identity = identity.number

    async def _outgoing_identity(self) -> CallerIdentity | None:
        """The calling user's outgoing identity for this call (their setting), None when it cannot be worked out."""
        if self.caller.user_id is None:
            return None
        state = await self.b2bua.snapshots.state(self.caller.user_id, datetime.now(UTC), on_call=False)
        if state is None:
            return None
        try:
            return outgoing_identity(PlacedCall("", self.caller.device_kind), state)
        except DomainError:
            return None

    async def presented_identity(self, *, record: bool = True) -> tuple[NameAddr, tuple[tuple[str, str], ...]]:
        """Who the outside world sees, as an E.164 number in From and P-Asserted-Identity (never an extension):
        a colleague's call shows the colleague's configured outgoing identity (their direct or the company's
        number, or anonymous), as if they had called out themselves; a call from outside shows its caller.
        `record`: the identity is this call's own (a call out or a forward), so the caller's row shows it."""
        identity = await self._outgoing_identity()
        if identity is not None:
            from_, headers = identity_headers(identity, self.settings.sip_realm, trusted=self.b2bua.peers.trunk_trusted)
            if self.placed is not None and record:
                self.placed.local_identity = identity.number
            return from_, tuple(headers)
        if self.caller.number is None:
            return self.caller_address(), ()
        try:  # a caller from outside in national format still leaves as E.164
            number = normalise(self.caller.number, self.settings.default_region)
        except NumberError:
            number = self.caller.number
        realm = self.settings.sip_realm
        address = NameAddr(URI("sip", realm, user=number), self.caller.display)
        return address, (asserted_identity(number, realm),) if self.b2bua.peers.trunk_trusted else ()

    async def outside_identity(
        self, from_: NameAddr | None, headers: tuple[tuple[str, str], ...]
    ) -> tuple[NameAddr, tuple[tuple[str, str], ...]]:
        """From and identity headers of a leg to the trunk or the mobile network (docs/call-routing.md "Legs
        leaving the exchange"). A From that names an E.164 number or is anonymous is what the step chose (a
        forward, a call out, a group's display) and stays, asserted when `headers` do not assert it yet; anything
        else — an extension — is replaced by the presented identity, keeping the display name."""
        user = from_.uri.user or "" if from_ is not None else ""
        if from_ is not None and user.startswith(("+", ANONYMOUS_USER)):
            asserted = any(name.lower() == "p-asserted-identity" for name, _ in headers)
            if asserted or not user.startswith("+") or not self.b2bua.peers.trunk_trusted:
                return from_, ()
            return from_, (asserted_identity(user, self.settings.sip_realm),)
        shown, identity = await self.presented_identity(record=False)
        if from_ is not None and shown.uri.user != ANONYMOUS_USER:
            shown = NameAddr(shown.uri, from_.display_name)
        return shown, identity

    async def admitted_out(self, number: str, user_id: int, company_id: int | None) -> bool:
        """Call barring and outbound limits before a call leaves through the trunk (engine/outbound.py,
        docs/security.md "Toll fraud"); a refusal ends the call with its status and reason."""
        refusal = await self.b2bua.outbound.admit(self.call_id, number, user_id, company_id)
        if refusal is not None:
            self.fail(refusal.status, refusal.reason)
        return refusal is None

    async def call_out(self, number: str) -> None:
        """A device calls an external number: out through the trunk with the user's outgoing identity."""
        trunk = self.b2bua.peers.trunk_uri(number)
        if trunk is None:
            self.fail(503, "No trunk configured")
            return
        assert self.caller.user_id is not None  # route() calls out for a device's user only
        if not await self.admitted_out(number, self.caller.user_id, self.caller.company_id):
            return
        from_, headers = await self.presented_identity()
        branch = Branch(trunk[0], trunk[1], self.b2bua.peers.address(number), "trunk")
        result = await self.ring([branch], None, max(1, self.incoming_max_forwards() - 1), headers, from_)
        if result.outcome not in ("answered", "gone"):
            if self.placed is not None:
                self.placed.outcome.append(result.outcome)
            self.fail(result.status or 480)

    def incoming_max_forwards(self) -> int:
        try:
            value = self.a.request.int_header("Max-Forwards")
        except ParseError:
            value = None
        return 70 if value is None else value

    # -- applications ------------------------------------------------------------------------------------------

    async def voicemail(self, routing: Routing, step: VoicemailStep) -> None:
        """The voicemail application takes the call: greeting (chosen by why: busy or not), tone, the message."""
        await self.b2bua.applications.leave_message(self, routing.callee.user_id, routing.called_number, step.cause)

    async def play_to_end(self, endpoint_id: str, files: tuple[object, ...]) -> None:
        playback = await self.play(endpoint_id, files)
        events = self.events[endpoint_id]

        async def finished() -> None:
            while True:
                event = await events.get()
                if isinstance(event, PlaybackFinished) and event.playback_id == playback:
                    return

        await self.race(finished(), PROMPT_LIMIT_SECONDS)

    async def assistant(self, step: PersonalAssistantStep, routing: Routing) -> None:
        await self.answer_caller()
        assert self.a.endpoint_id is not None
        language = self.settings.prompt_language
        presence = step.presence if step.presence in PRESENCE_REASONS else "unavailable"
        until = step.until.astimezone(LOCAL_ZONE) if step.until is not None else None
        files = personal_assistant_announcement(
            language,
            presence,
            until,
            now=datetime.now(LOCAL_ZONE),
            transfer_available=step.on_zero is not None,
        )
        playback = await self.play(self.a.endpoint_id, files)
        events = self.events[self.a.endpoint_id]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROMPT_LIMIT_SECONDS
        while True:
            event = await self.race(events.get(), max(0.0, deadline - loop.time()))
            if event is None:
                break
            if isinstance(event, PlaybackFinished) and event.playback_id == playback:
                deadline = loop.time() + ASSISTANT_GRACE_SECONDS
            elif isinstance(event, DtmfReceived) and event.digit == "0" and step.on_zero is not None:
                routing.party.outcome.append("transferred")
                await self.forward_to(step.on_zero.destination, step.on_zero, routing)
                return
        if self.over.is_set():
            return
        if isinstance(step.afterwards, VoicemailStep):
            routing.party.outcome.append("voicemail")
            await self.voicemail(routing, step.afterwards)
        else:
            self.over.set()

    async def ring_splash(self, user_id: int, number: str) -> None:
        """A short alert on the user's desk phones (Alert-Info), cancelled after a moment; never answered."""
        bindings = await self.bindings(user_id)
        to = self.b2bua.peers.address(number)
        legs: list[CalleeLeg] = []
        for branch in self.device_branches(bindings, "ring-splash", user_id, to):
            endpoint = await self.new_endpoint()
            leg = CalleeLeg(
                self.b2bua.stack, self, peer=branch.peer, uri=branch.uri, from_=self.caller_address(), to=to,
                label="ring-splash",
            )  # fmt: skip
            leg.endpoint_id = endpoint.endpoint_id
            leg.start(
                endpoint.local_sdp,
                [("Alert-Info", self.settings.ring_splash_alert_info)],
                provisional_timeout=self.settings.branch_provisional_seconds,
            )
            legs.append(leg)
        try:
            await asyncio.sleep(RING_SPLASH_SECONDS)
        finally:
            for leg in legs:
                if leg.status is None:
                    leg.cancel()
                elif 200 <= leg.status < 300:
                    await leg.bye()  # a phone that answered the splash anyway
                await self.release(leg.endpoint_id)


def _company_of(resolved: Resolved) -> int | None:
    """The company an internal number belongs to (a user's, a company or department number's, a group's)."""
    return resolved.callee.company_id if resolved.callee is not None else resolved.company_id
