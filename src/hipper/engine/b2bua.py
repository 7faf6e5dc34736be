"""The back-to-back user agent: the SIP stack's `RequestHandler`, owning every call of this node.

It authenticates INVITEs from devices (digest with a 407 challenge, RFC 3261 §22.3), recognises the trunk and the
mobile network by their address, starts a `Call` per new INVITE, and routes in-dialog requests, ACKs of our 2xx,
CANCELs and stray 2xx retransmissions to the leg they belong to. Media events from the engine go to the call
that owns the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.config import Settings
from hipper.domain.routing import RoutingRules
from hipper.engine.call import Call, CallApplications, CallerInfo, CallSummary
from hipper.engine.directory import CallerUser, caller_user, mobile_user
from hipper.engine.leg import CalleeLeg, CallerLeg, Leg, LegOwner, policy_of
from hipper.engine.outbound import OutboundGuard
from hipper.engine.peers import Peers, number_of
from hipper.engine.snapshots import SnapshotCache
from hipper.media.engine import MediaEngine, MediaEvent, RtpTimeout
from hipper.sip.message import ParseError, Request, Response
from hipper.sip.registrar import Registrar
from hipper.sip.session_timer import too_small
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ServerTransaction
from hipper.sip.transport import Peer
from hipper.store.presence import Presence
from hipper.store.registrations import Device
from hipper.store.writer import BatchWriter

log = logging.getLogger(__name__)

HISTORY = 200


@dataclass(frozen=True)
class LoopbackCaller:
    """Who sent a leg this exchange sent to itself: the user it is for, and (a transfer) whom the callee sees."""

    user_id: int
    shown: tuple[str | None, str] | None = None  # (number, display name); None: the user themself


class NodeApplications(CallApplications, Protocol):
    """The features (apps/) as the node sees them: besides what calls hand over, the requests that are theirs
    (SUBSCRIBE for message waiting, RFC 3842), the far leg of a callback, and their own start and stop."""

    def callback_user(self, request: Request) -> LoopbackCaller | None: ...

    def on_subscribe(self, tx: ServerTransaction) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


T = TypeVar("T")


class Finished(Generic[T]):
    """What ended (a call's summary, a callback), for whoever watches from the moment they start: tests and tools.
    Nothing is kept while nobody watches: a queue nobody reads grows with every call, for good."""

    def __init__(self) -> None:
        self._watchers: list[asyncio.Queue[T]] = []

    def watch(self) -> asyncio.Queue[T]:
        queue: asyncio.Queue[T] = asyncio.Queue()
        self._watchers.append(queue)
        return queue

    def put(self, item: T) -> None:
        for queue in self._watchers:
            queue.put_nowait(item)


class B2bua:
    def __init__(
        self,
        settings: Settings,
        stack: SipStack,
        sessions: async_sessionmaker[AsyncSession],
        media: MediaEngine,
        applications: Callable[[B2bua], NodeApplications],
        *,
        own_media: bool = False,
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.sessions = sessions
        self.media = media
        self.own_media = own_media
        self.peers = Peers.from_settings(settings)
        self.rules = RoutingRules(seconds_per_ring=settings.seconds_per_ring)
        self.registrar: Registrar | None = stack.registrar
        self.writer = BatchWriter(sessions)  # call logs and call events, batched across calls
        # Who is on a call, on this node and (through the database) on the others.
        self.presence = Presence(
            sessions,
            self.writer,
            settings.node_id,
            lease_seconds=settings.node_lease_seconds,
            api_url=settings.resolved_node_api_url(),
        )
        self.snapshots = SnapshotCache(sessions, presence=self.presence)
        if self.registrar is not None:
            self.registrar.locations.on_change.append(self.snapshots.forget_bindings)
        self.legs: dict[tuple[str, str], Leg] = {}
        # The keys in `legs` of each owner's legs (by the owner's id: a call's end drops its own, not a scan of all).
        self._leg_keys: dict[int, list[tuple[str, str]]] = {}
        self.invites: dict[ServerTransaction, Call] = {}
        self.endpoints: dict[str, LegOwner] = {}
        self.calls: set[Call] = set()
        self.history: deque[CallSummary] = deque(maxlen=HISTORY)
        self.ended: Finished[CallSummary] = Finished()
        self._tasks: set[asyncio.Task[None]] = set()
        self._events_task: asyncio.Task[None] | None = None
        self.outbound = OutboundGuard(settings, sessions)  # barring and limits of trunk calls (engine/outbound.py)
        self.applications = applications(self)

    async def start(self) -> None:
        self._events_task = asyncio.get_running_loop().create_task(self._media_events())
        self.writer.start()
        await self.presence.start()
        await self.applications.start()
        self.stack.unchallenged = self._unchallenged
        self.stack.handler = self

    async def close(self) -> None:
        self.stack.handler = None
        await self.applications.close()
        for task in list(self._tasks):
            task.cancel()
        # Until none is left: a call cancelled here may start work as it ends (a recording stopped at its end is
        # stored in a task of its own, apps/recording.py), which must be done before the database closes.
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.writer.close()  # after the calls: what they queued while ending is written, not lost
        await self.presence.close()
        self.snapshots.close()
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        if self.own_media:
            await self.media.stop()

    # -- bookkeeping the calls use ---------------------------------------------------------------------------

    def add_leg(self, leg: Leg) -> None:
        if leg.dialog is not None:
            self._keep_leg((leg.dialog.call_id, leg.local_tag), leg)

    def _keep_leg(self, key: tuple[str, str], leg: Leg) -> None:
        self.legs[key] = leg
        self._leg_keys.setdefault(id(leg.call), []).append(key)

    def watch(self, endpoint_id: str, owner: LegOwner) -> None:
        self.endpoints[endpoint_id] = owner

    def unwatch(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)

    def on_call(self, user_id: int) -> bool:
        """Whether the user is on a call on this node (routing asks every node: `snapshots.state`)."""
        return self.presence.here(user_id)

    def on_call_started(self, user_id: int, call_id: str) -> None:
        self.presence.joined(user_id, call_id)

    def on_call_ended(self, user_id: int, call_id: str) -> None:
        self.presence.left(user_id, call_id)

    def place(self, call: Call) -> None:
        """Run a call the node places itself (a callback from the app: `Call.first`), hosted like an INVITE's."""
        self.calls.add(call)
        self.spawn(self._host(call))

    async def _host(self, call: Call) -> None:
        try:
            await call.run()
        finally:
            self.finished(call)

    def finished(self, call: Call) -> None:
        self.calls.discard(call)
        self.outbound.release(call.call_id)
        if call.tx is not None:
            self.invites.pop(call.tx, None)
        for key in self._leg_keys.pop(id(call), ()):
            leg = self.legs.get(key)
            if leg is not None and leg.call is call:  # (an id outlives its owner: a key of another's is left)
                del self.legs[key]
        # What tests and metrics read of INVITEs' calls; a call the node placed is reported by whoever placed it.
        if call.summary is not None and call.first is None:
            self.history.append(call.summary)
            self.ended.put(call.summary)

    async def _media_events(self) -> None:
        while True:
            event: MediaEvent = await self.media.events.get()
            endpoint_id = getattr(event, "endpoint_id", None)
            call = self.endpoints.get(endpoint_id) if endpoint_id is not None else None
            if call is None:
                continue
            if isinstance(event, RtpTimeout):
                call.rtp_timeout(event.endpoint_id)
            else:
                call.media_event(event)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- RequestHandler --------------------------------------------------------------------------------------

    def on_request(self, tx: ServerTransaction) -> None:
        request = tx.request
        try:
            to_tag = request.to.tag
        except ParseError:
            tx.respond(tx.response(400))
            return
        if request.method == "SUBSCRIBE":
            self.applications.on_subscribe(tx)  # message-summary subscriptions (RFC 3842): new ones and refreshes
            return
        if to_tag is None:
            if request.method == "INVITE":
                self.spawn(self._new_call(tx))
            elif request.method in ("BYE", "INFO", "UPDATE", "PRACK"):
                tx.respond(tx.response(481))
            else:
                tx.respond(tx.response(405))
            return
        leg = self.legs.get((request.call_id, to_tag))
        if leg is None:
            tx.respond(tx.response(481))
            return
        leg.call.in_dialog(leg, tx)

    def on_ack(self, request: Request, peer: Peer) -> None:
        try:
            key = (request.call_id, request.to.tag or "")
        except ParseError:
            return
        leg = self.legs.get(key)
        if not isinstance(leg, CallerLeg) or not isinstance(leg.call, Call):
            return
        if leg.ack_received() and leg.late_offer and request.body:
            # Late offer (RFC 3264 §4 via RFC 3261 §13.2.1): the ACK carries the caller's answer to our offer.
            call = leg.call
            call.post(partial(call.caller_answered_offer, request.body.decode(errors="replace")))

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None:
        call = self.invites.get(tx)
        if call is None:
            tx.respond(tx.response(487))
            return
        call.cancelled_by_caller()

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        """A 2xx retransmitted after its transaction ended: the leg ACKs it again (§13.2.2.4)."""
        try:
            if response.cseq[1] != "INVITE" or not 200 <= response.status < 300:
                return
            key = (response.call_id, response.from_.tag or "")
        except ParseError:
            return
        leg = self.legs.get(key)
        if isinstance(leg, CalleeLeg) and leg.request is not None and response.cseq[0] == leg.request.cseq[0]:
            leg._on_success(response)
        elif leg is not None:
            leg.ack_refresh(response)  # a session refresh's re-INVITE (engine/leg.py), either leg

    # -- new calls ---------------------------------------------------------------------------------------------

    async def _new_call(self, tx: ServerTransaction) -> None:
        request = tx.request
        try:
            min_se = too_small(request, policy_of(self.settings))
        except ParseError as exc:
            tx.respond(tx.response(400, exc.reason))
            return
        if min_se is not None:
            # RFC 4028 §9: a session interval below what we accept, answered with our minimum.
            response = tx.response(422)
            response.headers.add("Min-SE", str(min_se))
            tx.respond(response)
            return
        try:
            caller = await self._identify(tx)
        except ParseError as exc:
            tx.respond(tx.response(400, exc.reason))
            return
        if caller is None:
            return  # challenged or refused
        if tx.cancelled:
            tx.respond(tx.response(487))
            return
        call = Call(self, tx, caller)
        self.calls.add(call)
        self.invites[tx] = call
        self._keep_leg((request.call_id, tx.to_tag), call.a)
        await self._host(call)

    async def _identify(self, tx: ServerTransaction) -> CallerInfo | None:
        request = tx.request
        loopback = self.applications.callback_user(request)
        if loopback is not None:
            # A leg this exchange sent to itself so the callee's own plan applies: a user's callback, or a call
            # the user transferred (then the callee sees the transferred party, `shown`).
            looped = await self._caller_user(loopback.user_id)
            if looped is None:
                tx.respond(tx.response(404, "User gone"))
                return None
            number, display = looped.number, looped.name
            if loopback.shown is not None:
                number, display = loopback.shown
            return CallerInfo(
                "device", number, display, user_id=looped.id, company_id=looped.company_id, for_callback=True,
                user_present=loopback.shown is None,
            )  # fmt: skip
        origin = self.peers.origin(tx.origin)  # behind an edge: who it says (the stack worked it out on arrival)
        if origin is not None:
            from_ = request.from_
            privacy = (request.headers.get("Privacy") or "").lower()
            number = None if "id" in privacy.split(";") else number_of(from_)
            if origin == "mobile" and number_of(from_) is not None:
                # A user's own handset dialling (SPEC G3): the call is theirs, placed from the mobile.
                user = await mobile_user(self.snapshots.reads, str(number_of(from_)), self.settings.default_region)
                if user is not None:
                    return CallerInfo(
                        "mobile", user.number, user.name, user_id=user.id, company_id=user.company_id,
                        device_kind="mobile",
                    )  # fmt: skip
            return CallerInfo("trunk" if origin == "trunk" else "mobile", number, from_.display_name)
        device = await self._authenticate(tx)
        if device is None:
            return None
        caller = await self._caller_user(device.user_id)
        if caller is None:
            tx.respond(tx.response(403, "Device without user"))
            return None
        return CallerInfo("device", caller.number, caller.name, user_id=caller.id, company_id=caller.company_id)

    async def _caller_user(self, user_id: int) -> CallerUser | None:
        return await caller_user(self.snapshots.reads, user_id)

    async def _authenticate(self, tx: ServerTransaction) -> Device | None:
        """Digest on INVITE as a proxy-style challenge (407 Proxy-Authenticate, RFC 3261 §22.3; sip/registrar.py)."""
        if self.registrar is None:
            tx.respond(tx.response(403, "No devices here"))
            return None
        device = await self.registrar.authenticate(tx.request, tx.peer, proxy=True, to_tag=tx.to_tag, origin=tx.origin)
        if isinstance(device, Response):
            tx.respond(device)
            return None
        return device

    def _unchallenged(self, request: Request, peer: Peer) -> bool:
        """INVITEs not authenticated by digest: from the trunk or mobile network, or our own callback legs."""
        return self.peers.origin(peer) is not None or self.applications.callback_user(request) is not None
