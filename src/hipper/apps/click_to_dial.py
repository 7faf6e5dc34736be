"""Calls placed from the app, which is a remote control for the exchange (SPEC D1/D2/D9).

- **callback** ("the exchange calls you back"): ring the user's chosen phone first; when it answers, call the
  number and bridge the two (third-party call control as RFC 3725 flow I would do it, but inside the B2BUA: each
  leg has its own anchored media endpoint, so both legs simply get our SDP and the engine connects them).
- **via_exchange**: the app arms the access number for the user for a short window (in the database,
  store/call_access.py); a call from the user's own mobile (arriving from the mobile network peer, on any node)
  to that number within the window is connected to the number.
- **via_mobile**: nothing happens here; the app uses the phone's dialer and the exchange applies SPEC G3.

`AppCalls` lives on the B2BUA (one per node) and is what the API reads for the user's live calls and ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote

from sqlalchemy.ext.asyncio import AsyncSession

from hipper.apps.recording import CallRecorder, recording_for
from hipper.domain.barring import Refusal
from hipper.domain.outgoing import CallerIdentity
from hipper.domain.routing.outcome import RingOutcomeKind
from hipper.engine.b2bua import Finished, LoopbackCaller
from hipper.engine.call import Call, CallerInfo, Party
from hipper.engine.directory import Resolved, resolve
from hipper.engine.fork import Branch, Fork
from hipper.engine.leg import CalleeLeg
from hipper.engine.peers import identity_headers
from hipper.engine.waiting import Ending
from hipper.media.engine import Connect, MediaError, Play
from hipper.media.prompts import tone_path
from hipper.sip.message import URI, NameAddr, ParseError, Request
from hipper.sip.transport import Peer
from hipper.store import call_access
from hipper.store.active_calls import callback_answered, callback_ended
from hipper.store.registrations import LocationStore
from hipper.store.writer import OutboxEvent

if TYPE_CHECKING:
    from hipper.engine.b2bua import B2bua
    from hipper.engine.call import CallHost

log = logging.getLogger(__name__)

CallState = Literal["ringing", "active"]
# How long the user's own phone rings for a callback before the exchange gives up (they walked away).
CALLBACK_RING_RINGS = 6
# The far end of a callback rings at most this long (the user hears ringback meanwhile and can hang up).
FAR_END_RING_SECONDS = 120.0
# A callback whose number is busy or unreachable plays the busy tone this long before hanging up the user.
TONE_SECONDS = 3.0
# Marks the far leg of a callback that the exchange sends to itself (see `AppCalls.loopback_target`).
CALLBACK_HEADER = "X-Hipper-Callback"
# An incoming call is announced as ringing (`call.ringing`) once it has rung this long: one answered sooner is drawn
# by its `call.started`, and announcing it would cost each such call a write transaction of its own (≈ 0.25 ms at
# 40 calls/s, docs/performance.md) for a state no screen would show. `GET /me/calls` lists it ringing at once.
RINGING_EVENT_SECONDS = 0.5


@dataclass(frozen=True)
class LiveCall:
    """One of a user's calls as the app lists it."""

    id: str
    direction: Literal["outgoing", "incoming"]
    remote_number: str
    state: CallState
    started_at: datetime
    remote_name: str = ""  # a colleague's name, a caller's display name ("" when unknown)


class AppCalls:
    """The callbacks in progress on this node."""

    def __init__(self, b2bua: B2bua) -> None:
        self.b2bua = b2bua
        self.callbacks: dict[str, Callback] = {}
        # Finished callbacks, for whoever watches (like the B2BUA's `ended` for its calls).
        self.ended: Finished[Callback] = Finished()
        # Proves that a callback's far leg came from this process: it never leaves the host (sent to ourselves).
        self._loopback_secret = secrets.token_urlsafe(24)
        # Incoming calls ringing a user's phones, by (Call-ID, user): the announcement still to come, or None once
        # `call.ringing` went out (its end is then announced too).
        self._ringing: dict[tuple[str, int], asyncio.TimerHandle | None] = {}
        self.ringing_event_seconds = RINGING_EVENT_SECONDS

    # -- a call ringing ------------------------------------------------------------------------------------------

    def ringing(self, call: Call, user_id: int, ringing: bool) -> None:
        """An incoming call starts or stops ringing the user's phones (engine/call.py `ring_step`), or the user's own
        call from a phone starts ringing the far end or stops (`placing`: no `call.updated` at its end, its
        `call.started` / `call.ended` tell). The user's apps
        get `call.ringing` once it has rung RINGING_EVENT_SECONDS, with what they draw it with (the call as `GET
        /me/calls` lists it), and a ringing row in the shared store for the other nodes; when it then stops ringing
        for them unanswered (the caller gave up; no answer in time, on to voicemail or a forward) `call.updated` with
        state `ended`. Their answer is `call.started`."""
        key = (call.call_id, user_id)
        if ringing:
            if key in self._ringing:
                return  # rings them already (one announcement, one row)
            loop = asyncio.get_running_loop()
            self._ringing[key] = loop.call_later(self.ringing_event_seconds, self._announce_ringing, call, user_id)
            return
        if key not in self._ringing:
            return
        pending = self._ringing.pop(key)
        if pending is not None:
            pending.cancel()  # answered or given up within the moment: nothing was announced, nothing to end
            return
        self.b2bua.presence.stopped_ringing(user_id, call.call_id)
        if _placed_by(call, user_id) and call.placed is not None:
            return  # the user's own call: its answer is `call.started`, its end `call.ended` with its call-log row
        connected = call.connected
        if call.answered_at is None or connected is None or connected.user_id != user_id:
            payload: dict[str, object] = {"id": call.key, "state": "ended"}
            publish_soon(self.b2bua, [user_id], "call.updated", payload)

    def placing(self, call: Call) -> None:
        """A user's own call from one of their phones (a desk phone, their handset through the mobile network)
        starts: listed ringing as an incoming call is (`ringing`: its event, its row in the shared store, so another
        node lists it and sends its hang-up here) until it is answered (`answered`) or over."""
        user_id = call.caller.user_id
        if user_id is None or call.caller.for_callback:
            return  # from outside; or the far leg of the user's callback, listed as the callback

        async def over() -> None:
            self.ringing(call, user_id, False)

        self.ringing(call, user_id, True)
        call.at_end(over)

    def answered(self, call: Call) -> None:
        """The call is answered — by a phone, or by the exchange itself (a colleague's voicemail, a queue): the
        user's own call rings no more (its ringing row goes; `call.started` draws a phone's answer, `call.updated`
        active the exchange's). Either way the user is on a call (`Call.users_on_it`: the answered row), so
        every node lists it."""
        user_id = call.caller.user_id
        if user_id is None or not _placed_by(call, user_id):
            return
        announced = self._ringing.get((call.call_id, user_id), False) is None
        self.ringing(call, user_id, False)
        if announced and call.answered_at is None:
            publish_soon(self.b2bua, [user_id], "call.updated", {"id": call.key, "state": "active"})

    def _announce_ringing(self, call: Call, user_id: int) -> None:
        key = (call.call_id, user_id)
        if call.over.is_set() or call.answered_at is not None:
            self._ringing.pop(key, None)  # its ring ended without telling (the call's end): nothing to announce
            return
        self._ringing[key] = None
        live = _live_call(call, user_id) if _placed_by(call, user_id) else None
        if live is None:
            live = LiveCall(call.key, "incoming", call.caller.number or "", "ringing", call.started_at,
                            call.caller.display)  # fmt: skip
        payload = {**asdict(live), "started_at": live.started_at.isoformat()}
        # Other nodes list it too, and send its control (DELETE: refuse it) here (docs/scale-out.md); the row is
        # queued before the event, so an app that acts on the event through another node finds it.
        self.b2bua.presence.ringing(user_id, call.call_id)
        publish_soon(self.b2bua, [user_id], "call.ringing", payload)

    # -- a colleague's own plan for callbacks -----------------------------------------------------------------

    async def barring(self, number: str, user_id: int, company_id: int | None) -> tuple[Resolved, Refusal | None]:
        """Who `number` (normalised) is for a call the exchange makes for the user — a callback's far leg, a
        transfer, a consultation — and the user's call barring's refusal when it leaves through the trunk on their
        account (docs/security.md "Toll fraud"). Inside the exchange (`Resolved.internal`) nothing is barred: its
        own routing carries the call, as when the user dials the number from a desk phone. The one check for the
        app's calls (api/routers/calls.py) and the phones' transfers (apps/phone_control.py)."""
        b2bua = self.b2bua
        resolved = await b2bua.snapshots.resolve(number, company_id, b2bua.settings.default_region)
        if resolved.internal or resolved.kind == "unknown":
            return resolved, None
        return resolved, await b2bua.outbound.barred(resolved.number, user_id, company_id)

    def loopback_target(
        self, to: str, user_id: int, shown: tuple[str | None, str] | None = None
    ) -> tuple[Branch, tuple[str, str]]:
        """Where a callback to a colleague or group number rings: this exchange itself, as a call of the user's.

        Calling ourselves (like a "local channel" in other exchanges) runs the callee's whole routing plan —
        do-not-disturb, forwarding, voicemail, the Personal Assistant, group numbers — on the far leg, exactly as
        when the user dials from a desk phone, instead of ringing the colleague's phones directly. `shown`: whom
        the callee sees instead of the user (a transferred party: number, display name).
        """
        transports = self.b2bua.stack.transports
        host = transports.host if transports.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        port = transports.local_port("udp")
        uri = URI("sip", host, user=to, port=port)
        target = Branch(uri, Peer("udp", host, port), self.b2bua.peers.address(to), "colleague")
        value = f"{self._loopback_secret};user={user_id}"
        if shown is not None:
            number, display = shown
            value += f";number={quote(number or '', safe='+')};display={quote(display[:100], safe='')}"
        return target, (CALLBACK_HEADER, value)

    def callback_user(self, request: Request) -> LoopbackCaller | None:
        """Who sent this INVITE to ourselves (a callback's or a transfer's leg), or None (any other request)."""
        value = request.headers.get(CALLBACK_HEADER)
        if value is None:
            return None
        secret, _, rest = value.partition(";user=")
        user, _, shown = rest.partition(";number=")
        if not secrets.compare_digest(secret.encode(), self._loopback_secret.encode()) or not user.isdigit():
            return None
        if not shown:
            return LoopbackCaller(int(user))
        number, _, display = shown.partition(";display=")
        return LoopbackCaller(int(user), (unquote(number) or None, unquote(display)))

    # -- callback ---------------------------------------------------------------------------------------------

    async def user_targets(self, user_id: int, device: str, number: str | None, user_number: str) -> list[Branch]:
        """The phone(s) a callback rings first: registered desk phones, the handset, or a number through the trunk
        (the remote office, an Anywhere location; `device` is then the branch's label). Each is addressed to
        `user_number`, the number of the device chosen, whichever of them answers."""
        peers = self.b2bua.peers
        to = peers.address(user_number)
        if device == "desk":
            targets = []
            for binding in await LocationStore(self.b2bua.sessions).for_user(user_id):
                try:
                    uri, peer = URI.parse(binding.contact), Peer.parse(binding.source)
                    targets.append(Branch(uri, peer, to, "desk", device_user_id=binding.user_id))
                except (ParseError, ValueError):
                    continue
            return targets
        if number is None:
            return []
        if device == "mobile":  # the user's own handset: their phone (a number through the trunk is nobody's)
            where = peers.handset_uri(number)
            if where is None:
                return []
            return [Branch(where[0], where[1], to, device, device_user_id=peers.handset_owner(where[1], user_id))]
        where = peers.trunk_uri(number)
        return [] if where is None else [Branch(where[0], where[1], to, device)]

    def start_callback(
        self,
        callback_id: str,
        user_id: int,
        company_id: int | None,
        user_number: str,
        to: str,
        identity: CallerIdentity,
        targets: list[Branch],
    ) -> Callback:
        callback = Callback(self, callback_id, user_id, user_number, to, identity, targets, company_id)
        self.callbacks[callback.id] = callback
        self.b2bua.place(callback.call)  # a call like any other, whose first step is the callback's
        return callback

    # -- what the API reads -------------------------------------------------------------------------------------

    def live(self, user_id: int) -> list[LiveCall]:
        found = []
        for call in self.b2bua.calls:
            live = _live_call(call, user_id)
            if live is not None:
                found.append(live)
        return sorted(found, key=lambda c: c.started_at)

    def hang_up(self, user_id: int, call_id: str) -> bool:
        """End one of the user's calls; False when it is not theirs or gone. An answered call, or the user's own
        outgoing one, ends (BYE or CANCEL on every leg). An incoming call still ringing is declined: the user's
        phones stop ringing and count as a Decline, so the call goes on as the user's plan says for busy (their
        voicemail, a forward; else busy to the caller); a hunt group's colleagues' phones ring on."""
        for call in self.b2bua.calls:
            if call.key == call_id and _live_call(call, user_id) is not None:
                if call.first is None and call.answered_at is None and call.caller.user_id != user_id:
                    for leg in _ringing_legs(call):
                        if leg.user_id == user_id:
                            leg.decline()
                    return True
                call.fail(487, "Request Terminated")  # answered already: the call's teardown BYEs both legs
                return True
        return False


def _placed_by(call: Call, user_id: int) -> bool:
    """Whether the call is one the user placed from a phone of theirs (not a callback: its first step lists it)."""
    return call.first is None and call.caller.user_id == user_id and not call.caller.for_callback


def _ringing_legs(call: Call) -> list[CalleeLeg]:
    return [leg for leg in call.branches if leg.status is None and not leg.cancelled]


def _live_call(call: Call, user_id: int) -> LiveCall | None:
    if isinstance(call.first, Callback):
        return call.first.live() if call.first.user_id == user_id else None
    state: CallState = "ringing" if call.answered_at is None else "active"
    if call.caller.user_id == user_id:
        if call.a.answered:
            state = "active"  # answered by the exchange itself too (a colleague's voicemail, a queue)
        if call.caller.for_callback:
            return None  # the far leg of the user's own callback, listed (with its number) as the callback
        remote = call.placed.remote_number if call.placed is not None else ""
        name = call.placed.remote_name if call.placed is not None else ""
        return LiveCall(call.key, "outgoing", remote, state, call.started_at, name)
    connected = call.connected
    # Incoming and still ringing one of the user's phones (not: forwarded away, or in their voicemail).
    ringing = call.answered_at is None and any(leg.user_id == user_id for leg in _ringing_legs(call))
    if (connected is not None and connected.user_id == user_id) or ringing:
        return LiveCall(call.key, "incoming", call.caller.number or "", state, call.started_at, call.caller.display)
    return None


async def handles(app_calls: AppCalls, call: Call, dialled: str) -> bool:
    """Whether `dialled` is the access number; if so the call is handled here (connected or refused)."""
    settings = call.settings
    access = settings.call_access_number
    if not access or dialled not in (access, access.lstrip("+")):
        return False
    b2bua = call.b2bua
    user_id = call.caller.user_id
    armed = None
    if call.caller.origin == "mobile" and user_id is not None:
        async with b2bua.sessions() as session:
            armed = await call_access.claim(session, user_id, datetime.now(UTC))
            await session.commit()
    if armed is None:
        # Nobody announced this call from the app (or the window passed): the number leads nowhere by itself.
        call.fail(403, "No call announced from the app")
        return True
    call.placed = Party(armed.user_id, "placed", armed.to, local_identity=armed.identity.number)
    async with b2bua.sessions() as session:
        resolved = await resolve(session, armed.to, call.caller.company_id, settings.default_region)
    if resolved.internal:
        # A colleague or a group number: routed like any call of the user's, by the callee's own plan.
        await call.forward_to(resolved.number, None, None)
        return True
    if resolved.kind == "unknown":  # e.g. an extension nobody has: nothing to send to the trunk
        call.fail(404, "Not Found")
        return True
    trunk = b2bua.peers.trunk_uri(resolved.number)
    if trunk is None:
        call.fail(503, "No trunk configured")
        return True
    # Out through the trunk on the user's account, like their own calls out and a callback's far leg: call barring
    # again (it may have changed since the app armed the call) and the concurrent-call limits, which count calls
    # under way and so can only be applied now (docs/security.md "Toll fraud"). Released when the call ends.
    if not await call.admitted_out(resolved.number, armed.user_id, call.caller.company_id):
        return True
    from_, headers = identity_headers(armed.identity, settings.sip_realm, trusted=b2bua.peers.trunk_trusted)
    branch = Branch(trunk[0], trunk[1], b2bua.peers.address(resolved.number), "access-number")
    result = await call.ring([branch], None, max(1, call.incoming_max_forwards() - 1), tuple(headers), from_)
    if result.outcome == "answered":
        await call.serve()
    else:
        call.placed.outcome.append(result.outcome)
        call.fail(result.status or 480)
    return True


def announce_started(call: Call) -> None:
    """`call.started` for the users a call just connected; the executor writes `call.ended` with the call log."""
    if call.on_call_users:
        payload: dict[str, object] = {"id": call.key}
        publish_soon(call.b2bua, list(call.on_call_users), "call.started", payload)


async def publish(b2bua: CallHost, user_ids: list[int], type_: str, payload: dict[str, object]) -> None:
    """An outbox event for each user's app (SPEC D3); the API's event hub finds it on its next poll."""
    try:
        # Batched with the calls' own writes into one transaction (store/writer.py).
        await b2bua.writer.write([OutboxEvent(user_id, type_, payload) for user_id in user_ids])
    except Exception:  # a database hiccup must not break the call itself
        log.exception("click_to_dial.event_failed", extra={"users": user_ids, "type": type_})


def publish_soon(b2bua: CallHost, user_ids: list[int], type_: str, payload: dict[str, object]) -> None:
    """`publish` without waiting and without a task of its own (store/writer.py `submit`): the same batch a task
    calling `publish` would have joined; a failure is logged, the call goes on."""
    events = [OutboxEvent(user_id, type_, payload) for user_id in user_ids]
    b2bua.writer.submit_logged(events, log, "click_to_dial.event_failed", {"users": user_ids, "type": type_})


class Callback:
    """A callback's first step (engine/call.py `FirstStep`): ring the user's own phone(s); when one answers, ring
    the number (the user hears ringback meanwhile); when it answers too, bridge the two through their anchored
    endpoints and start the user's recording.

    The call it runs as (`call`, placed on the node by `AppCalls.start_callback`) owns both legs and does all the
    rest as for any call: in-dialog requests, RTP timeouts, call control, teardown, the user's call-log row.
    """

    def __init__(
        self,
        calls: AppCalls,
        callback_id: str,
        user_id: int,
        user_number: str,
        to: str,
        identity: CallerIdentity,
        targets: list[Branch],
        company_id: int | None = None,
    ) -> None:
        self.calls = calls
        self.b2bua = calls.b2bua
        self.settings = calls.b2bua.settings
        self.id = callback_id  # its row in the shared store is written before it starts (store/active_calls.py)
        self.user_id = user_id
        self.user_number = user_number
        self.to = to
        self.identity = identity
        self.targets = targets
        self.company_id = company_id  # where an extension in `to` is looked up
        self.state: CallState = "ringing"
        self.outcome = "cancelled"
        self.user_leg: CalleeLeg | None = None
        self.far_leg: CalleeLeg | None = None
        self.refused: RingOutcomeKind | None = None  # what the last ring came to (busy, no-answer, …)
        self.remote_name = ""  # a colleague's or group's name, for the call log (as a call from a phone has)
        self.recorder: CallRecorder | None = None
        caller = CallerInfo("device", user_number, user_id=user_id, company_id=company_id)
        self.call = Call(self.b2bua, None, caller, self)
        # The user's side, written as their call-log row when the call ends (engine/call.py `Party.record`).
        self.call.placed = Party(user_id, "placed", to, local_identity=identity.number)
        self.call.ended_details = {"to": to}

    @property
    def key(self) -> str:
        return self.id

    @property
    def over(self) -> Ending:
        return self.call.over

    @property
    def legs(self) -> list[CalleeLeg]:
        """Every leg it rang (the user's phones, the far end, a transfer's target): the call's branches."""
        return self.call.branches

    @property
    def media(self) -> dict[str, int]:
        """RTP counters of both legs when the call ended: "user_…" (the user's phone), "far_…" (the number)."""
        summary = self.call.summary
        if summary is None:
            return {}
        names = {"caller": "user", "callee": "far"}
        media = {}
        for key, value in summary.media.items():
            side, _, counter = key.partition("_")
            media[f"{names.get(side, side)}_{counter}"] = value
        return media

    def live(self) -> LiveCall:
        return LiveCall(self.id, "outgoing", self.to, self.state, self.call.started_at, self.remote_name)

    # -- the first step ---------------------------------------------------------------------------------------

    async def run(self, call: Call) -> None:
        try:
            await self._run(call)
        except Exception:
            self.outcome = "failed"
            raise

    async def _run(self, call: Call) -> None:
        peers = self.b2bua.peers
        # The user's phone shows whom the exchange is about to call for them.
        shown = NameAddr(URI("sip", self.settings.sip_realm, user=self.to), "")
        ring_limit = float(self.settings.seconds_per_ring * CALLBACK_RING_RINGS)
        self.user_leg = await self._ring(call, self.targets, shown, [], ring_limit)
        if self.user_leg is None:
            self.outcome = "cancelled" if call.over.is_set() else "not-answered"
            return
        call.first_leg = self.user_leg  # its BYE or silence ends the call from now on
        assert self.user_leg.endpoint_id is not None
        # The user listens to ringback while the far end is called (the engine's tone, anchored on their leg).
        with contextlib.suppress(MediaError):
            await self.b2bua.media.execute(Play(self.user_leg.endpoint_id, (tone_path("ringback"),), loop=True))
        far, loopback_headers = await self._far_targets(call)
        if not far:
            self.outcome = "not-reachable"
            await self._tone(call, "busy_tone")
            return
        # Toward ourselves the header names the user (the colleague sees their extension); toward the trunk the
        # chosen identity goes out, anonymous or not (RFC 3325: P-Asserted-Identity only to a trusted trunk).
        from_, headers = identity_headers(self.identity, self.settings.sip_realm, trusted=peers.trunk_trusted)
        if loopback_headers:
            headers = loopback_headers
        self.refused = None
        self.far_leg = await self._ring(call, far, from_, headers, FAR_END_RING_SECONDS)
        if self.far_leg is None:
            if not call.over.is_set():
                self.outcome = "busy" if self.refused == "busy" else "not-answered"
                await self._tone(call, "busy_tone")  # the user hears why before the exchange hangs up
            return
        assert self.far_leg.endpoint_id is not None
        call.connected = self.far_leg
        await self.b2bua.media.execute(Connect(self.user_leg.endpoint_id, self.far_leg.endpoint_id))
        # The user's recording (SPEC I), as on a call they answered: both legs are theirs.
        endpoints = (self.user_leg.endpoint_id, self.far_leg.endpoint_id)
        try:
            self.recorder = await recording_for(call, self.user_id, endpoints, self.to)
        except Exception:  # the settings could not be read: the call goes on unrecorded, as a phone's call would
            log.exception("click_to_dial.recording_failed", extra={"id": self.id})
        call.answered_at = datetime.now(UTC)
        self.state = "active"
        self.outcome = "answered"
        call.users_on_it(self.user_id)  # its call's id is the callback's (`Callback.key`)
        await self._share(callback_answered)  # a second call to the user finds them busy (or waiting)
        log.debug("click_to_dial.connected", extra={"id": self.id})
        # The app shows the call answered now (a consultation's answer included), not at its next read.
        publish_soon(self.b2bua, [self.user_id], "call.updated", {"id": self.id, "state": "active"})
        await call.serve()

    async def ending(self, call: Call) -> None:
        """Over, legs still up: the recording stops from the live endpoints (then stored); the row's outcome."""
        if call.rtp_timed_out and self.outcome == "answered":
            self.outcome = "rtp-timeout"
        if self.recorder is not None:
            await self.recorder.close()
        party = call.placed
        if party is not None:
            party.remote_name = self.remote_name
            party.answered_at = call.answered_at
            party.outcome[:0] = ["callback", self.outcome]  # then what the user did on it (transferred, …)

    async def ended(self, call: Call) -> None:
        await self._share(callback_ended)
        self.calls.callbacks.pop(self.id, None)
        self.calls.ended.put(self)

    async def _share(self, change: Callable[[AsyncSession, str], Awaitable[None]]) -> None:
        """Tell the other nodes (store/active_calls.py `callbacks`): answered (the user may place another), ended."""
        try:
            async with self.b2bua.sessions() as session:
                await change(session, self.id)
                await session.commit()
        except Exception:  # the callback itself goes on; its row goes with this node's lease at worst
            log.warning("click_to_dial.share_failed", extra={"id": self.id}, exc_info=True)

    async def _far_targets(self, call: Call) -> tuple[list[Branch], list[tuple[str, str]]]:
        """Where `to` rings, and the extra headers: a colleague or group number is called through the exchange
        itself (their own plan applies), anything else through the trunk."""
        async with self.b2bua.sessions() as session:
            resolved = await resolve(session, self.to, self.company_id, self.settings.default_region)
        if resolved.callee is not None:
            self.remote_name = resolved.callee.name
        elif resolved.group is not None:
            self.remote_name = resolved.group.name
        if resolved.internal:
            target, header = self.calls.loopback_target(self.to, self.user_id)
            return [target], [header]
        trunk = self.b2bua.peers.trunk_uri(resolved.number)
        if trunk is None or resolved.kind == "unknown":
            return [], []
        # A call out like the user's own from a phone: barred numbers and the outbound limits apply (the API checked
        # the barring before; the limits count calls under way, so only now). Released when the call is finished.
        refusal = await self.b2bua.outbound.admit(call.call_id, resolved.number, self.user_id, self.company_id)
        if refusal is not None:
            return [], []
        return [Branch(trunk[0], trunk[1], self.b2bua.peers.address(self.to), "trunk")], []

    async def _tone(self, call: Call, name: str) -> None:
        """Play a tone to the user's answered leg for a moment (or until they hang up)."""
        if self.user_leg is None or self.user_leg.endpoint_id is None:
            return
        with contextlib.suppress(MediaError):
            await self.b2bua.media.execute(Play(self.user_leg.endpoint_id, (tone_path(name),), loop=True))
            await call.race(asyncio.sleep(TONE_SECONDS), TONE_SECONDS + 1)

    async def _ring(
        self, call: Call, targets: list[Branch], from_: NameAddr, headers: list[tuple[str, str]], limit: float
    ) -> CalleeLeg | None:
        """Fork to `targets` (engine/fork.py) — no early media, no confirmation: the first usable 2xx wins."""
        fork = Fork(
            call, self.settings, from_=from_, headers=tuple(headers), ring_seconds=limit, track=call.branches.append
        )
        result = await fork.run(targets)
        self.refused = result.outcome
        if result.winner is not None:
            result.winner.start_session_timer()  # refreshed (or watched) from its answer on, like a call's legs
        return result.winner
