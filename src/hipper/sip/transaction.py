"""RFC 3261 §17 transactions, with RFC 6026's Accepted state for INVITE 2xx, §18.2.1/§18.2.2 response
routing and RFC 3581 rport.

Client and server, INVITE and non-INVITE, with timers A, B, D, E, F, G, H, I, J, K (and RFC 6026's L, M) on
the event loop's monotonic clock (`loop.call_later`), or on a `Clock` given to the layer (tests step a clock of
their own, so the RFC's schedule is checked exactly however busy the machine is). Retransmission timers run only
over UDP (§17.1.1.2).
Transactions never decide anything about a call: they hand requests and responses to their user.

Once its final response is out, a transaction only lingers to absorb retransmissions (Timers D, I, J, K, L, M: up
to 32 s after the call, ≈ 1,300 ended calls at 40 calls/s). It then keeps what that needs — the bytes of the last
response and where they go, its keys, the ACK's bytes — and of its messages only their text: no parsed request or
response, no future nobody asked for, for the garbage collector to walk (`tx.request` and `tx.final` are rebuilt
from that text, unparsed, if asked for). The timers that end it always fire, so on a clock that tells its time
(the loop's) their deadlines are rounded up to a multiple of T1: the calls of one T1 end in one wake-up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, cast

from hipper.sip.message import (
    BRANCH_COOKIE,
    HeaderLines,
    Headers,
    ParseError,
    Request,
    RequestText,
    Response,
    Via,
    format_hostport,
    is_number,
    request_from_text,
    request_text,
)
from hipper.sip.transport import Peer, TransportError, Transports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimerConfig:
    """§17.1.1.1 / Table 4 defaults; tests shorten T1 to see many retransmissions quickly."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        return 64 * self.t1  # Timers B, F, H, J (UDP), L, M


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where the transaction timers run; by default the event loop (`asyncio.TimerHandle` is a `Timer`)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class TimedClock(Protocol):
    """A `Clock` that also tells its time and takes deadlines, like the event loop: `call_at_least` rounds on it."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TransactionUser(Protocol):
    """What the layer above (the stack) receives."""

    def on_request(self, tx: ServerTransaction) -> None: ...

    def on_ack(self, request: Request, peer: Peer) -> None: ...

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None: ...

    def on_stray_response(self, response: Response, peer: Peer) -> None: ...


def response_peer(via: Via, peer: Peer) -> Peer:
    """Where a response to a request with this (already stamped) top Via goes (§18.2.2, RFC 3581 §4)."""
    if peer.reliable:
        return peer  # back over the connection the request came on
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    port = int(rport) if rport and is_number(rport) and 0 < int(rport) < 65536 else via.port or 5060
    if port == peer.port and host == peer.host:
        return peer  # back where it came from (rport, or no NAT): the same (frozen) Peer, not one more to keep
    return Peer(peer.transport, host, port)


def stamp_via(request: Request, peer: Peer) -> None:
    """§18.2.1 `received` and RFC 3581 `rport`: record where the request really came from in its top Via."""
    via = request.top_via
    params = via.params
    rport = "rport" in params
    if via.host == peer.host and not rport:
        return  # nothing to add (the usual case on a LAN)
    if params.get("received") == peer.host and (not rport or params.get("rport") == str(peer.port)):
        return  # stamped already: the stack stamps a request it screens, then the transaction layer would again
    via = Via(via.transport, via.host, via.port, dict(via.params))  # our own copy to change: the parsed one is shared
    changed = False
    if via.host != peer.host:
        via.params["received"] = peer.host
        changed = True
    if "rport" in via.params:
        via.params["received"] = peer.host
        via.params["rport"] = str(peer.port)
        changed = True
    if changed:
        request.headers.pop_first("Via")
        request.headers.prepend("Via", via)


def server_key(request: Request, via: Via) -> tuple[str, ...]:
    """§17.2.3 matching: the branch (RFC 3261) or the RFC 2543 fields; ACK matches its INVITE."""
    method = request.cseq[1]
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    if branch and branch.startswith(BRANCH_COOKIE):
        return (branch, format_hostport(via.host, via.port), method)
    # RFC 2543 §17.2.3 fallback. The To tag is left out so that an ACK (which carries it) still matches.
    return (request.call_id, request.from_.tag or "", str(request.cseq[0]), str(via), method)


class _Transaction:
    """What server and client transactions share: the request, kept as text once only retransmissions are
    absorbed, and `terminated`, made when someone asks (most transactions are never asked)."""

    state: State

    def __init__(self, layer: TransactionLayer, request: Request) -> None:
        self.layer = layer
        self._timers: list[Timer] = []
        self._request: Request | None = request
        self._text: RequestText | None = None  # the request's text once it lingers
        self.method = request.method
        self._terminated: asyncio.Future[None] | None = None

    @property
    def request(self) -> Request:
        """The request. Once the transaction lingers (only absorbing retransmissions) it keeps only its text;
        asked for then, it is rebuilt from that text, unparsed."""
        request = self._request
        if request is None:
            assert self._text is not None
            request = self._request = request_from_text(self._text)
        return request

    @property
    def terminated(self) -> asyncio.Future[None]:
        future = self._terminated
        if future is None:
            future = self._terminated = asyncio.get_running_loop().create_future()
            if self.state == State.TERMINATED:
                future.set_result(None)
        return future

    def _keep_request_as_text(self) -> None:
        request = self._request
        if request is not None:
            self._text = request_text(request)
            self._request = None

    def _resolve_terminated(self) -> None:
        terminated = self._terminated
        if terminated is not None and not terminated.done():
            terminated.set_result(None)

    def _after(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers.append(self.layer.call_later(delay, callback))

    def _linger_for(self, delay: float, callback: Callable[[], None]) -> None:
        """A timer that ends the lingering (D, I, J, K, L, M): on the T1 grid (`TransactionLayer.call_at_least`)."""
        self._timers.append(self.layer.call_at_least(delay, callback))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


class ServerTransaction(_Transaction):
    """§17.2.1 (INVITE) and §17.2.2 (non-INVITE) server transactions."""

    def __init__(
        self, layer: TransactionLayer, request: Request, peer: Peer, key: tuple[str, ...], origin: Peer | None = None
    ) -> None:
        super().__init__(layer, request)
        self.peer = peer  # where it came from and where answers go (behind an edge: the edge proxy)
        # Who sent it as far as trust goes: `peer`, or behind a trusted edge proxy the address it attests, as the
        # stack worked it out when the request arrived (SipStack.origin). Authentication, bans and trust by
        # address (the trunk) all read this one value.
        self.origin = peer if origin is None else origin
        self.key = key
        self.invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self._last: bytes | None = None  # the latest response as sent: what a retransmitted request gets again
        self.destination = response_peer(request.top_via, peer)
        self.to_tag = secrets.token_hex(6)
        self.cancelled = False
        self._retransmission: Timer | None = None  # of our 2xx, until the ACK (Timer L is in _timers)
        self._retransmit_interval = layer.timers.t1
        self._ack_key: tuple[str, str, int] | None = None  # set in Accepted, where the layer files it
        # `acked`, like `terminated`, is made when someone asks: resolved at once when the ACK's fate is known.
        self._acked: asyncio.Future[bool] | None = None
        self._acked_result: bool | None = None

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.state.value}>"

    @property
    def acked(self) -> asyncio.Future[bool]:
        """For an INVITE answered 2xx: True once the ACK came, False when Timer L ran out without one."""
        future = self._acked
        if future is None:
            future = self._acked = asyncio.get_running_loop().create_future()
            if self._acked_result is not None:
                future.set_result(self._acked_result)
        return future

    def _settle_acked(self, acked: bool) -> None:
        if self._acked_result is None:
            self._acked_result = acked
            future = self._acked
            if future is not None and not future.done():
                future.set_result(acked)

    def response(self, status: int, reason: str = "", body: bytes = b"") -> Response:
        """A response with this transaction's To tag (one tag per transaction: §8.2.6.2)."""
        return Response.for_request(self.request, status, reason, to_tag=self.to_tag, body=body)

    def respond(self, response: Response) -> None:
        if self.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            return  # the final answer is out; later ones are the TU's mistake, ignored per §17.2
        if self.state == State.ACCEPTED and not 200 <= response.status < 300:
            return
        self._send(response)
        status = response.status
        if status < 200:
            if self.state == State.TRYING:
                self.state = State.PROCEEDING
            return
        if self.state == State.ACCEPTED:
            return  # another 2xx (or the TU retransmitting one): sent above, timers already run
        self._cancel_timers()
        if self.invite and status < 300:
            # RFC 6026 Accepted: absorb INVITE retransmissions. §13.3.1.4 makes retransmitting the 2xx until
            # the ACK arrives the UAS core's job; it is done here, once, for every user of the stack.
            self.state = State.ACCEPTED
            self._ack_key = self.ack_key
            self.layer.awaiting_ack[self._ack_key] = self
            if not self.peer.reliable:
                self._retransmission = self.layer.call_later(self._retransmit_interval, self._retransmit_2xx)
            self._linger_for(self.layer.timers.timeout, self._no_ack)  # Timer L
        elif self.invite:
            self.state = State.COMPLETED
            if not self.peer.reliable:
                self._after(self._retransmit_interval, self._timer_g)
            self._after(self.layer.timers.timeout, self._timer_h)
        else:
            self.state = State.COMPLETED
            self._linger_for(0 if self.peer.reliable else self.layer.timers.timeout, self._terminate)  # Timer J
        # Answered: from here on the transaction only absorbs retransmissions (for up to 32 s after the call, ≈ 1,300
        # ended calls at 40 calls/s), which needs the bytes of the last response, not the parsed request: only its
        # text stays, so the garbage collector has no parsed message to walk.
        self._keep_request_as_text()

    def receive_request(self, request: Request) -> None:
        if request.method == "ACK":
            if self.invite and self.state == State.COMPLETED:
                self.state = State.CONFIRMED
                self._cancel_timers()
                self._linger_for(0 if self.peer.reliable else self.layer.timers.t4, self._terminate)  # Timer I
            elif self.state == State.ACCEPTED:
                # An ACK that reused the INVITE's branch (RFC 2543 peers): still the ACK of our 2xx.
                self.ack_received()
                self.layer.tu.on_ack(request, self.peer)
            return
        # A retransmission of the request: repeat the latest response (§17.2.1, §17.2.2).
        if self._last is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            self.layer.send(self._last, self.destination)

    def _send(self, response: Response) -> None:
        self._last = data = response.serialize()
        self.layer.send(data, self.destination)

    @property
    def ack_key(self) -> tuple[str, str, int]:
        """What an ACK for our 2xx shares with the INVITE (it has a branch of its own, §17.1.1.3)."""
        if self._ack_key is not None:
            return self._ack_key
        request = self.request
        return (request.call_id, request.from_.tag or "", request.cseq[0])

    def ack_received(self) -> None:
        if self.state == State.ACCEPTED and self._acked_result is None:
            self._settle_acked(True)
            # RFC 6026 §7.1: our 2xx is no longer retransmitted; the transaction stays Accepted, absorbing INVITE
            # retransmissions, until Timer L (armed with the 2xx) ends it. The ACK arms nothing.
            if self._retransmission is not None:
                self._retransmission.cancel()
                self._retransmission = None

    def _retransmit_2xx(self) -> None:
        if self.state != State.ACCEPTED or self._acked_result is not None or self._last is None:
            return
        self.layer.send(self._last, self.destination)
        self._retransmit_interval = min(2 * self._retransmit_interval, self.layer.timers.t2)
        self._retransmission = self.layer.call_later(self._retransmit_interval, self._retransmit_2xx)

    def _no_ack(self) -> None:
        # Timer L. §13.3.1.4: no ACK within 64·T1 — the TU should end the session (BYE); it learns it from `acked`.
        self._settle_acked(False)
        self._terminate()

    def _timer_g(self) -> None:
        if self.state != State.COMPLETED or self._last is None:
            return
        self.layer.send(self._last, self.destination)
        self._retransmit_interval = min(2 * self._retransmit_interval, self.layer.timers.t2)
        self._after(self._retransmit_interval, self._timer_g)

    def _timer_h(self) -> None:
        if self.state == State.COMPLETED:
            log.info("sip.transaction.ack_timeout", extra={"call_id": self.request.headers.get("Call-ID")})
            self._terminate()

    def _cancel_timers(self) -> None:
        super()._cancel_timers()
        if self._retransmission is not None:
            self._retransmission.cancel()
            self._retransmission = None

    def _terminate(self) -> None:
        self._cancel_timers()
        self.state = State.TERMINATED
        self.layer.server.pop(self.key, None)
        ack_key = self._ack_key
        if ack_key is not None and self.layer.awaiting_ack.get(ack_key) is self:
            del self.layer.awaiting_ack[ack_key]
        self._settle_acked(False)
        self._resolve_terminated()


ResponseCallback = Callable[[Response], None]


class ClientTransaction(_Transaction):
    """§17.1.1 (INVITE) and §17.1.2 (non-INVITE) client transactions.

    `final` resolves with the first final response, or a locally made 408 (Timer B/F, or the per-branch
    provisional timer) or 503 (transport error, §8.1.3.1). Every response, provisional and final (also 2xx
    retransmissions in Accepted), is passed to `on_response` when given.
    """

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        peer: Peer,
        on_response: ResponseCallback | None = None,
        provisional_timeout: float | None = None,
    ) -> None:
        super().__init__(layer, request)
        # Once only retransmissions are absorbed: the final response's text, beside the request's.
        self._final_line: tuple[int, str] | None = None
        self._final_lines: HeaderLines = ()
        self._final_body = b""
        self.peer = peer
        self.invite = request.method == "INVITE"
        self.state = State.CALLING if self.invite else State.TRYING
        self.branch = request.top_via.branch or ""
        self.key = (self.branch, request.method)
        self.on_response = on_response
        self._final: asyncio.Future[Response] | None = asyncio.get_running_loop().create_future()
        self.provisional_received = False
        self._cancel_requested = False
        self._data = request.serialize()
        self._interval = layer.timers.t1
        self._ack: bytes | None = None
        self._provisional_timeout = provisional_timeout

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.state.value}>"

    @property
    def final(self) -> asyncio.Future[Response]:
        future = self._final
        if future is None:
            # Resolved and let go when the transaction started lingering: the same response again, rebuilt.
            assert self._final_line is not None
            status, reason = self._final_line
            headers = Headers(list(self._final_lines))
            future = self._final = asyncio.get_running_loop().create_future()
            future.set_result(Response(status, reason, headers, self._final_body))
        return future

    def _linger(self, final: asyncio.Future[Response]) -> None:
        """Only retransmissions are absorbed from here on (Timer D, K or M, up to 32 s after the call): keep the
        text of the request and of the final response, not their parses, nor the future that held the response
        (whoever waited on it has it; one cancelled by its user stays as it is)."""
        self._keep_request_as_text()
        if not final.cancelled():
            response = final.result()
            self._final_line = (response.status, response.reason)
            self._final_lines = tuple(response.headers)
            self._final_body = response.body
            self._final = None
        self._data = b""

    def start(self) -> None:
        self._transmit()
        if not self.peer.reliable:
            self._after(self._interval, self._retransmit)  # Timer A / E
        self._after(self.layer.timers.timeout, self._timeout)  # Timer B / F
        if self._provisional_timeout is not None:
            # A phone that went away would cost Timer B (32 s); give up sooner when nothing at all answers.
            self._after(self._provisional_timeout, self._no_provisional)

    def _transmit(self) -> None:
        self.layer.send(self._data, self.peer, on_error=self._transport_error)

    def _retransmit(self) -> None:
        if self.state == State.CALLING:
            self._transmit()
            self._interval *= 2  # Timer A doubles without bound (§17.1.1.2)
        elif self.state in (State.TRYING, State.PROCEEDING):
            self._transmit()
            # Timer E: doubles up to T2; in Proceeding it fires every T2 (§17.1.2.2).
            self._interval = (
                self.layer.timers.t2
                if self.state == State.PROCEEDING
                else min(2 * self._interval, self.layer.timers.t2)
            )
        else:
            return
        self._after(self._interval, self._retransmit)

    def _timeout(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING) and not (
            self.invite and self.state == State.PROCEEDING
        ):
            self._fail(408, "Request Timeout")

    def _no_provisional(self) -> None:
        if self.state in (State.CALLING, State.TRYING):
            self._fail(408, "No Provisional Response")

    def _transport_error(self, exc: BaseException) -> None:
        if self.state not in (State.COMPLETED, State.TERMINATED, State.ACCEPTED):
            log.info("sip.transaction.transport_error", extra={"peer": str(self.peer), "error": str(exc)})
            self._fail(503, "Service Unavailable")

    def _fail(self, status: int, reason: str) -> None:
        response = Response.for_request(self.request, status, reason)
        final = self.final
        if not final.done():
            final.set_result(response)
        if self.on_response is not None:
            self.on_response(response)
        self._terminate()

    def receive_response(self, response: Response) -> None:
        status = response.status
        if self.state == State.TERMINATED:
            return
        if status < 200:
            if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.state = State.PROCEEDING
                self.provisional_received = True
                if self.invite:
                    self._cancel_timers_except_b()
                if self.on_response is not None:
                    self.on_response(response)
                if self._cancel_requested:
                    self._cancel_requested = False
                    self.layer.send_cancel(self)
            return
        if self.invite and status < 300:
            if self.state != State.ACCEPTED:
                self.state = State.ACCEPTED
                self._cancel_timers()
                self._linger_for(self.layer.timers.timeout, self._terminate)  # Timer M (RFC 6026)
                final = self.final
                if not final.done():
                    final.set_result(response)
                self._linger(final)
            if self.on_response is not None:
                self.on_response(response)  # every 2xx, also retransmissions and forks, goes up (§17.1.1.2)
            return
        if self.state == State.COMPLETED:
            if self._ack is not None:
                self.layer.send(self._ack, self.peer)  # retransmitted final: ACK again
            return
        if self.state == State.ACCEPTED:
            return
        self.state = State.COMPLETED
        self._cancel_timers()
        if self.invite:
            self._ack = self.ack_for(response).serialize()
            self.layer.send(self._ack, self.peer)
            self._linger_for(0 if self.peer.reliable else 32.0, self._terminate)  # Timer D (> 32 s on UDP)
        else:
            self._linger_for(0 if self.peer.reliable else self.layer.timers.t4, self._terminate)  # Timer K
        final = self.final
        if not final.done():
            final.set_result(response)
        self._linger(final)
        if self.on_response is not None:
            self.on_response(response)

    def ack_for(self, response: Response) -> Request:
        """§17.1.1.3: the ACK for a non-2xx final response is part of the INVITE transaction."""
        headers = Headers()
        headers.add("Via", self.request.headers.get_all("Via")[0])
        for route in self.request.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", self.request.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", self.request.call_id)
        headers.add("CSeq", f"{self.request.cseq[0]} ACK")
        headers.share_parsed(self.request.headers, "Via", "From")
        headers.share_parsed(response.headers, "To")
        return Request("ACK", self.request.uri, headers)

    def cancel(self) -> None:
        """§9.1: CANCEL only once a provisional response came (DESIGN.md trap); until then, remember it."""
        if self.state == State.PROCEEDING:
            self.layer.send_cancel(self)
        elif self.state == State.CALLING:
            self._cancel_requested = True

    def _cancel_timers_except_b(self) -> None:
        # In Proceeding an INVITE stops retransmitting; Timer B no longer applies either (§17.1.1.2),
        # the TU's own timers (ringing timeout) take over.
        self._cancel_timers()

    def _terminate(self) -> None:
        self._cancel_timers()
        self.state = State.TERMINATED
        self.layer.client.pop(self.key, None)
        self._resolve_terminated()


class TransactionLayer:
    """Matches messages to transactions (§17.1.3, §17.2.3) and creates new server transactions."""

    def __init__(
        self, transports: Transports, tu: TransactionUser, timers: TimerConfig | None = None, clock: Clock | None = None
    ) -> None:
        self.transports = transports
        self.tu = tu
        self.timers = timers or TimerConfig()
        self.clock = clock
        self.server: dict[tuple[str, ...], ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self.awaiting_ack: dict[tuple[str, str, int], ServerTransaction] = {}
        self._pending_sends: set[asyncio.Task[None]] = set()

    @property
    def clock(self) -> Clock | None:
        return self._clock

    @clock.setter
    def clock(self, clock: Clock | None) -> None:
        self._clock = clock
        # `call_at_least` rounds deadlines on the loop's clock or on a given one that tells its time.
        # Asked of the object, not by isinstance on a runtime-checkable Protocol: the compiled build (mypyc)
        # refuses those.
        timed = (
            clock is not None and callable(getattr(clock, "time", None)) and callable(getattr(clock, "call_at", None))
        )
        self._timed_clock: TimedClock | None = cast(TimedClock, clock) if timed else None
        self._rounds = clock is None or self._timed_clock is not None

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        if self._clock is not None:
            return self._clock.call_later(delay, callback)
        return asyncio.get_running_loop().call_later(delay, callback)

    def call_at_least(self, delay: float, callback: Callable[[], None]) -> Timer:
        """For the timers that always fire, ending a transaction that only lingered to absorb retransmissions
        (Timers D, I, J, K, L, M): the RFC gives each as a time to wait at least, so the deadline is rounded up to
        the next multiple of T1 on the clock's own time. The calls of one T1 then end in one wake-up of the loop
        instead of one each (at 40 calls/s four such timers a call: 160 wake-ups a second become ≈ 2 on the RFC's
        T1). On the event loop's clock, or a `Clock` that also tells its time (`time()`, `call_at()`, as the loop
        does); any other `Clock` (the tests' stepped one) gets the exact delay. A zero delay (reliable transports)
        is never rounded."""
        if delay <= 0 or not self._rounds:
            return self.call_later(delay, callback)
        clock = self._timed_clock or asyncio.get_running_loop()
        grid = self.timers.t1
        return clock.call_at(math.ceil((clock.time() + delay) / grid) * grid, callback)

    def send(self, data: bytes, peer: Peer, on_error: Callable[[BaseException], None] | None = None) -> None:
        try:
            task = self.transports.send_nowait(data, peer)
        except (TransportError, OSError) as exc:
            if on_error is not None:
                on_error(exc)
            else:
                log.info("sip.send_failed", extra={"peer": str(peer), "error": str(exc)})
            return
        if task is not None:
            self._pending_sends.add(task)

            def _done(done: asyncio.Task[None]) -> None:
                self._pending_sends.discard(done)
                exc = done.exception() if not done.cancelled() else None
                if exc is not None:
                    if on_error is not None:
                        on_error(exc)
                    else:
                        log.info("sip.send_failed", extra={"peer": str(peer), "error": str(exc)})

            task.add_done_callback(_done)

    def receive_request(self, request: Request, peer: Peer, origin: Peer | None = None) -> None:
        """`origin`: who sent it behind a trusted edge proxy (SipStack.origin); without one, `peer` itself."""
        via = request.top_via
        if request.method != "ACK" or not (via.branch or "").startswith(BRANCH_COOKIE):
            # An ACK is never answered, so no answer needs its Via's received/rport (§18.2.1, RFC 3581); with an
            # RFC 3261 branch it is matched by branch and sent-by, which stamping leaves as they are. An RFC 2543
            # key holds the whole Via: such an ACK is stamped like its INVITE was, or it would not match.
            stamp_via(request, peer)
            via = request.top_via
        key = server_key(request, via)
        tx = self.server.get(key)
        if tx is not None:
            tx.receive_request(request)
            return
        if request.method == "ACK":
            # The ACK of a 2xx: its own transaction (§17.1.1.3). It stops our 2xx retransmissions, then goes up.
            accepted = self.awaiting_ack.pop((request.call_id, request.from_.tag or "", request.cseq[0]), None)
            if accepted is not None:
                accepted.ack_received()
            self.tu.on_ack(request, peer)
            return
        tx = ServerTransaction(self, request, peer, key, origin)
        self.server[key] = tx
        if request.method == "CANCEL":
            invite_key = (*key[:-1], "INVITE")
            invite_tx = self.server.get(invite_key)
            if invite_tx is None:
                tx.respond(tx.response(481))
                return
            tx.respond(tx.response(200))  # §9.2: the CANCEL is answered at once; the INVITE gets a 487
            if invite_tx.state == State.PROCEEDING and not invite_tx.cancelled:
                invite_tx.cancelled = True
                self.tu.on_cancel(invite_tx, request)
            return
        if tx.invite:
            tx.respond(tx.response(100))  # §17.2.1: stop the INVITE retransmissions at once
        self.tu.on_request(tx)

    def receive_response(self, response: Response, peer: Peer) -> None:
        try:
            via = response.top_via
            method = response.cseq[1]
        except ParseError:
            return
        tx = self.client.get((via.branch or "", method))
        if tx is None:
            self.tu.on_stray_response(response, peer)
            return
        tx.receive_response(response)

    def via_for(self, transport: str) -> Via:
        host = self.transports.host
        return Via(
            transport=transport.upper(),
            host=host,
            port=self.transports.local_port(transport),
            params={"branch": f"{BRANCH_COOKIE}{secrets.token_hex(8)}", "rport": None},
        )

    def send_request(
        self,
        request: Request,
        peer: Peer,
        on_response: ResponseCallback | None = None,
        *,
        provisional_timeout: float | None = None,
    ) -> ClientTransaction:
        """Start a client transaction: adds our Via (with a fresh branch) and sends the request to `peer`."""
        request.headers.prepend("Via", self.via_for(peer.transport))
        if request.headers.get("Max-Forwards") is None:
            request.headers.add("Max-Forwards", "70")
        tx = ClientTransaction(self, request, peer, on_response, provisional_timeout)
        self.client[tx.key] = tx
        tx.start()
        return tx

    def send_cancel(self, invite_tx: ClientTransaction) -> ClientTransaction:
        """§9.1: CANCEL with the INVITE's Request-URI, Call-ID, From, To, CSeq number, Route and top Via."""
        invite = invite_tx.request
        headers = Headers()
        headers.add("Via", invite.headers.get_all("Via")[0])
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        headers.share_parsed(invite.headers, "Via", "From", "To")
        cancel = Request("CANCEL", invite.uri, headers)
        tx = ClientTransaction(self, cancel, invite_tx.peer)
        self.client[tx.key] = tx
        tx.start()
        return tx

    def close(self) -> None:
        for server_tx in list(self.server.values()):
            server_tx._terminate()
        for client_tx in list(self.client.values()):
            final = client_tx._final  # None once lingering: resolved then
            if final is not None and not final.done():
                final.cancel()
            client_tx._terminate()
        for task in self._pending_sends:
            task.cancel()
