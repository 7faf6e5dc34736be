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
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from hipper.domain.outgoing import CallerIdentity
from hipper.domain.routing.outcome import RingOutcomeKind
from hipper.engine.call import Party, call_key
from hipper.engine.directory import resolve
from hipper.engine.fork import Branch, Fork
from hipper.engine.leg import CalleeLeg, Leg, answer_in_dialog_offer, policy_of
from hipper.engine.peers import identity_headers
from hipper.engine.waiting import race_until
from hipper.media.engine import (
    Connect,
    MediaError,
    MediaEvent,
    Play,
    Release,
)
from hipper.media.prompts import tone_path
from hipper.sip.message import URI, NameAddr, ParseError, Request
from hipper.sip.transaction import ServerTransaction
from hipper.sip.transport import Peer
from hipper.store import call_access
from hipper.store.call_logs import CallRecord
from hipper.store.registrations import LocationStore
from hipper.store.writer import OutboxEvent

if TYPE_CHECKING:
    from hipper.engine.b2bua import B2bua
    from hipper.engine.call import Call, CallHost

log = logging.getLogger(__name__)

T = TypeVar("T")
CallState = Literal["ringing", "active"]
# How long the user's own phone rings for a callback before the exchange gives up (they walked away).
CALLBACK_RING_RINGS = 6
# The far end of a callback rings at most this long (the user hears ringback meanwhile and can hang up).
FAR_END_RING_SECONDS = 120.0
# A callback whose number is busy or unreachable plays the busy tone this long before hanging up the user.
TONE_SECONDS = 3.0
# Marks the far leg of a callback that the exchange sends to itself (see `AppCalls.loopback_target`).
CALLBACK_HEADER = "X-Hipper-Callback"


@dataclass(frozen=True)
class LiveCall:
    """One of a user's calls as the app lists it."""

    id: str
    direction: Literal["outgoing", "incoming"]
    remote_number: str
    state: CallState
    started_at: datetime


class AppCalls:
    """The callbacks in progress on this node."""

    def __init__(self, b2bua: B2bua) -> None:
        self.b2bua = b2bua
        self.callbacks: dict[str, Callback] = {}
        # Finished callbacks, for tests and metrics (like the B2BUA's `ended` for its calls).
        self.ended: asyncio.Queue[Callback] = asyncio.Queue()
        # Proves that a callback's far leg came from this process: it never leaves the host (sent to ourselves).
        self._loopback_secret = secrets.token_urlsafe(24)

    # -- a colleague's own plan for callbacks -----------------------------------------------------------------

    def loopback_target(self, to: str, user_id: int) -> tuple[Branch, tuple[str, str]]:
        """Where a callback to a colleague or group number rings: this exchange itself, as a call of the user's.

        Calling ourselves (like a "local channel" in other exchanges) runs the callee's whole routing plan —
        do-not-disturb, forwarding, voicemail, the Personal Assistant, group numbers — on the far leg, exactly as
        when the user dials from a desk phone, instead of ringing the colleague's phones directly.
        """
        transports = self.b2bua.stack.transports
        host = transports.host if transports.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        port = transports.local_port("udp")
        uri = URI("sip", host, user=to, port=port)
        target = Branch(uri, Peer("udp", host, port), self.b2bua.peers.address(to), "colleague")
        return target, (CALLBACK_HEADER, f"{self._loopback_secret};user={user_id}")

    def callback_user(self, request: Request) -> int | None:
        """The user whose callback sent this INVITE to ourselves, or None (any other request)."""
        value = request.headers.get(CALLBACK_HEADER)
        if value is None:
            return None
        secret, _, user = value.partition(";user=")
        if not secrets.compare_digest(secret.encode(), self._loopback_secret.encode()) or not user.isdigit():
            return None
        return int(user)

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
                    targets.append(Branch(URI.parse(binding.contact), Peer.parse(binding.source), to, "desk"))
                except (ParseError, ValueError):
                    continue
            return targets
        if number is None:
            return []
        where = peers.handset_uri(number) if device == "mobile" else peers.trunk_uri(number)
        return [] if where is None else [Branch(where[0], where[1], to, device)]

    def start_callback(
        self,
        user_id: int,
        company_id: int | None,
        user_number: str,
        to: str,
        identity: CallerIdentity,
        targets: list[Branch],
    ) -> Callback:
        callback = Callback(self, user_id, user_number, to, identity, targets)
        callback.company_id = company_id
        self.callbacks[callback.id] = callback
        self.b2bua.spawn(callback.run())
        return callback

    # -- what the API reads -------------------------------------------------------------------------------------

    def live(self, user_id: int) -> list[LiveCall]:
        found = [c.live() for c in self.callbacks.values() if c.user_id == user_id]
        for call in self.b2bua.calls:
            live = _live_call(call, user_id)
            if live is not None:
                found.append(live)
        return sorted(found, key=lambda c: c.started_at)

    def hang_up(self, user_id: int, call_id: str) -> bool:
        """End one of the user's calls (BYE or CANCEL on every leg); False when it is not theirs or gone."""
        callback = self.callbacks.get(call_id)
        if callback is not None and callback.user_id == user_id:
            callback.over.set()
            return True
        for call in self.b2bua.calls:
            if call_key(call.call_id) == call_id and _live_call(call, user_id) is not None:
                call.fail(487, "Request Terminated")  # answered already: the call's teardown BYEs both legs
                return True
        return False


def _live_call(call: Call, user_id: int) -> LiveCall | None:
    state: CallState = "ringing" if call.answered_at is None else "active"
    if call.caller.user_id == user_id:
        if call.caller.for_callback:
            return None  # the far leg of the user's own callback, listed (with its number) as the callback
        remote = call.placed.remote_number if call.placed is not None else ""
        return LiveCall(call_key(call.call_id), "outgoing", remote, state, call.started_at)
    connected = call.connected
    # Incoming and still ringing one of the user's phones (not: forwarded away, or in their voicemail).
    ringing = call.answered_at is None and any(
        leg.user_id == user_id and leg.status is None and not leg.cancelled for leg in call.branches
    )
    if (connected is not None and connected.user_id == user_id) or ringing:
        return LiveCall(call_key(call.call_id), "incoming", call.caller.number or "", state, call.started_at)
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
    if resolved.kind in ("user", "group", "hunt_group", "call_center"):
        # A colleague or a group number: routed like any call of the user's, by the callee's own plan.
        await call.forward_to(armed.to, None, None)
        return True
    trunk = b2bua.peers.trunk_uri(armed.to)
    if trunk is None:
        call.fail(503, "No trunk configured")
        return True
    from_, headers = identity_headers(armed.identity, settings.sip_realm, trusted=b2bua.peers.trunk_trusted)
    branch = Branch(trunk[0], trunk[1], b2bua.peers.address(armed.to), "access-number")
    result = await call.ring([branch], None, max(1, call.incoming_max_forwards() - 1), tuple(headers), from_)
    if result.outcome == "answered":
        await call.over.wait()
    else:
        call.placed.outcome.append(result.outcome)
        call.fail(result.status or 480)
    return True


def announce_started(call: Call) -> None:
    """`call.started` for the users a call just connected; the executor writes `call.ended` with the call log."""
    if call.on_call_users:
        payload: dict[str, object] = {"id": call_key(call.call_id)}
        call.b2bua.spawn(publish(call.b2bua, list(call.on_call_users), "call.started", payload))


async def publish(b2bua: CallHost, user_ids: list[int], type_: str, payload: dict[str, object]) -> None:
    """An outbox event for each user's app (SPEC D3); the API's event hub finds it on its next poll."""
    try:
        # Batched with the calls' own writes into one transaction (store/writer.py).
        await b2bua.writer.write([OutboxEvent(user_id, type_, payload) for user_id in user_ids])
    except Exception:  # a database hiccup must not break the call itself
        log.exception("click_to_dial.event_failed", extra={"users": user_ids, "type": type_})


class Callback:
    """One callback: the user's leg (rung first), then the far leg, bridged through two media endpoints.

    Toward its legs and the media engine it is their owner (engine/leg.py `LegOwner`), as a call is.
    """

    def __init__(
        self, calls: AppCalls, user_id: int, user_number: str, to: str, identity: CallerIdentity, targets: list[Branch]
    ) -> None:
        self.calls = calls
        self.b2bua = calls.b2bua
        self.settings = calls.b2bua.settings
        self.id = secrets.token_hex(8)
        self.user_id = user_id
        self.user_number = user_number
        self.to = to
        self.identity = identity
        self.targets = targets
        self.state: CallState = "ringing"
        self.started_at = datetime.now(UTC)
        self.answered_at: datetime | None = None
        self.outcome = "cancelled"
        self.over = asyncio.Event()
        self.legs: list[CalleeLeg] = []
        self.user_leg: CalleeLeg | None = None
        self.far_leg: CalleeLeg | None = None
        self.endpoints: set[str] = set()
        self.on_call = False
        self.media: dict[str, int] = {}  # RTP counters of both legs when the call ended ("user_…", "far_…")
        self.company_id: int | None = None  # where an extension in `to` is looked up
        self.refused: RingOutcomeKind | None = None  # what the last ring came to (busy, no-answer, …)
        self.remote_name = ""  # a colleague's or group's name, for the call log (as a call from a phone has)

    def live(self) -> LiveCall:
        return LiveCall(self.id, "outgoing", self.to, self.state, self.started_at)

    # -- what the legs and the B2BUA call ----------------------------------------------------------------------

    def in_dialog(self, leg: Leg, tx: ServerTransaction) -> None:
        request = tx.request
        if leg.dialog is not None and not leg.dialog.accept_remote_cseq(request):
            tx.respond(tx.response(500, "Out of order CSeq"))
            return
        if request.method == "BYE":
            tx.respond(tx.response(200))
            leg.ended = True
            self.leg_gone(leg)
        elif request.method in ("INVITE", "UPDATE"):
            self.b2bua.spawn(self._renegotiate(leg, tx))
        else:
            tx.respond(tx.response(200))

    def media_event(self, event: MediaEvent) -> None:
        """Nothing in a callback waits for keys or prompts; only the RTP timeout matters (below)."""

    def rtp_timeout(self, endpoint_id: str) -> None:
        """A bridged phone fell silent (gone without a BYE): end the callback (the engine's RTP timeout)."""
        if any(leg is not None and leg.endpoint_id == endpoint_id for leg in (self.user_leg, self.far_leg)):
            log.info("click_to_dial.rtp_timeout", extra={"id": self.id})
            self.outcome = "rtp-timeout" if self.outcome == "answered" else self.outcome
            self.over.set()

    def leg_gone(self, leg: Leg) -> None:
        if leg is self.user_leg or leg is self.far_leg:
            self.over.set()

    async def _renegotiate(self, leg: Leg, tx: ServerTransaction) -> None:
        """Hold, resume, a moved phone, a session refresh: answered from this leg's own endpoint, as in any call."""
        await answer_in_dialog_offer(leg, tx, self.b2bua.media, policy_of(self.settings))

    # -- the flow ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:
            log.exception("click_to_dial.failed", extra={"id": self.id})
            self.outcome = "failed"
        finally:
            self.over.set()
            await self._teardown()
            await self._write_log()
            self.calls.callbacks.pop(self.id, None)
            self.calls.ended.put_nowait(self)

    async def _run(self) -> None:
        peers = self.b2bua.peers
        # The user's phone shows whom the exchange is about to call for them.
        shown = NameAddr(URI("sip", self.settings.sip_realm, user=self.to), "")
        ring_limit = float(self.settings.seconds_per_ring * CALLBACK_RING_RINGS)
        self.user_leg = await self._ring(self.targets, shown, [], ring_limit)
        if self.user_leg is None:
            self.outcome = "cancelled" if self.over.is_set() else "not-answered"
            return
        assert self.user_leg.endpoint_id is not None
        # The user listens to ringback while the far end is called (the engine's tone, anchored on their leg).
        with contextlib.suppress(MediaError):
            await self.b2bua.media.execute(Play(self.user_leg.endpoint_id, (tone_path("ringback"),), loop=True))
        far, loopback_headers = await self._far_targets()
        if not far:
            self.outcome = "not-reachable"
            await self._tone("busy_tone")
            return
        internal = bool(loopback_headers)
        # Toward ourselves the header names the user (the colleague sees their extension); toward the trunk the
        # chosen identity goes out, anonymous or not (RFC 3325: P-Asserted-Identity only to a trusted trunk).
        from_, headers = identity_headers(self.identity, self.settings.sip_realm, trusted=peers.trunk_trusted)
        if internal:
            headers = loopback_headers
        self.refused = None
        self.far_leg = await self._ring(far, from_, headers, FAR_END_RING_SECONDS)
        if self.far_leg is None:
            if not self.over.is_set():
                self.outcome = "busy" if self.refused == "busy" else "not-answered"
                await self._tone("busy_tone")  # the user hears why before the exchange hangs up
            return
        assert self.far_leg.endpoint_id is not None
        await self.b2bua.media.execute(Connect(self.user_leg.endpoint_id, self.far_leg.endpoint_id))
        self.answered_at = datetime.now(UTC)
        self.state = "active"
        self.outcome = "answered"
        self.on_call = True
        self.b2bua.on_call_started(self.user_id, self.id)  # a second call to the user finds them busy (or waiting)
        log.info("click_to_dial.connected", extra={"id": self.id})
        await self.over.wait()

    async def _far_targets(self) -> tuple[list[Branch], list[tuple[str, str]]]:
        """Where `to` rings, and the extra headers: a colleague or group number is called through the exchange
        itself (their own plan applies), anything else through the trunk."""
        async with self.b2bua.sessions() as session:
            resolved = await resolve(session, self.to, self.company_id, self.settings.default_region)
        if resolved.callee is not None:
            self.remote_name = resolved.callee.name
        elif resolved.group is not None:
            self.remote_name = resolved.group.name
        if resolved.kind in ("user", "group", "hunt_group", "call_center"):
            target, header = self.calls.loopback_target(self.to, self.user_id)
            return [target], [header]
        trunk = self.b2bua.peers.trunk_uri(resolved.number)
        if trunk is None or resolved.kind == "unknown":
            return [], []
        return [Branch(trunk[0], trunk[1], self.b2bua.peers.address(self.to), "trunk")], []

    async def _tone(self, name: str) -> None:
        """Play a tone to the user's answered leg for a moment (or until they hang up)."""
        if self.user_leg is None or self.user_leg.endpoint_id is None:
            return
        with contextlib.suppress(MediaError):
            await self.b2bua.media.execute(Play(self.user_leg.endpoint_id, (tone_path(name),), loop=True))
            await self._race(asyncio.sleep(TONE_SECONDS), TONE_SECONDS + 1)

    async def _ring(
        self, targets: list[Branch], from_: NameAddr, headers: list[tuple[str, str]], limit: float
    ) -> CalleeLeg | None:
        """Fork to `targets` (engine/fork.py) — no early media, no confirmation: the first usable 2xx wins."""
        fork = Fork(
            self, self.settings, from_=from_, headers=tuple(headers), ring_seconds=limit, track=self.legs.append
        )
        result = await fork.run(targets)
        self.refused = result.outcome
        if result.winner is not None:
            result.winner.start_session_timer()  # refreshed (or watched) from its answer on, like a call's legs
        return result.winner

    def watch(self, endpoint_id: str) -> None:
        self.endpoints.add(endpoint_id)
        self.b2bua.watch(endpoint_id, self)  # RTP timeouts come to `rtp_timeout`

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.b2bua.spawn(coroutine)

    async def _race(self, awaitable: Awaitable[T], limit: float) -> T | None:
        """`awaitable`'s result, or None when the call is over (hung up) or `limit` seconds pass first."""
        return await race_until(awaitable, self.over, limit)

    async def release(self, endpoint_id: str | None) -> None:
        if endpoint_id is None or endpoint_id not in self.endpoints:
            return
        self.endpoints.discard(endpoint_id)
        self.b2bua.unwatch(endpoint_id)
        with contextlib.suppress(MediaError):
            await self.b2bua.media.execute(Release(endpoint_id))

    async def _teardown(self) -> None:
        endings = []
        for leg in self.legs:
            if leg.status is None:
                leg.cancel()
            elif 200 <= leg.status < 300 and not leg.ended:
                endings.append(leg.bye())
        for name, bridged in (("user", self.user_leg), ("far", self.far_leg)):
            if bridged is not None and bridged.endpoint_id in self.endpoints:
                with contextlib.suppress(MediaError):
                    for counter, value in self.b2bua.media.stats(bridged.endpoint_id or "").items():
                        self.media[f"{name}_{counter}"] = value
        if endings:
            await asyncio.gather(*endings, return_exceptions=True)
        for endpoint_id in list(self.endpoints):
            await self.release(endpoint_id)
        for key in [key for key, leg in self.b2bua.legs.items() if leg in self.legs]:
            del self.b2bua.legs[key]
        if self.on_call:
            self.b2bua.on_call_ended(self.user_id, self.id)
            self.on_call = False

    async def _write_log(self) -> None:
        """The user's call-log row with its `call.ended` event, batched like a call's (store/writer.py)."""
        record = CallRecord(
            self.user_id,
            "placed",
            self.started_at,
            call_id=self.id,
            remote_number=self.to[:64],
            remote_name=self.remote_name[:200],
            local_identity=self.identity.number[:64],
            answered_at=self.answered_at,
            ended_at=datetime.now(UTC),
            outcome=f"callback, {self.outcome}"[:40],
            events=(("call.ended", {"id": self.id, "to": self.to}),),
        )
        try:
            await self.b2bua.writer.write([record])
        except Exception:
            log.exception("click_to_dial.log_failed", extra={"id": self.id})
