"""The SIP stack of a node: transports → parser → transactions → registrar or the call handler.

RFC 3261 §8.2 (UAS request checks: 400 for malformed requests, 483 Max-Forwards, 405/501), §11 (OPTIONS,
answered 200 also as a NAT keepalive), §21.4.19 (413/513 size limits are the parser's), §18.1.2 (responses
are matched to client transactions only when their top Via is ours).

The stack never decides what happens to a call: INVITE, BYE, REFER and the rest go to a `RequestHandler`
(the B2BUA), which answers through the server transaction it is given.

For the B2BUA: set `stack.handler`; answer with `tx.respond(tx.response(180))` etc. A 2xx to an INVITE is
retransmitted by the transaction until the ACK, and `await tx.acked` tells whether it came (§13.3.1.4). To
ring a user, `await stack.registrar.locations.for_user(user_id)` gives bindings; send each leg with
`stack.send_request(request, binding.peer, on_response, provisional_timeout=...)` so it reaches the phone
where it registered from (NAT), and `Dialog.as_uac(request, response)` builds the dialog from a 1xx/2xx.
Devices are authenticated on INVITE with `stack.registrar.authenticate(request, tx.peer, proxy=True,
origin=tx.origin)`.

New REGISTER, INVITE and SUBSCRIBE requests are screened before any transaction exists (`Registrar.screen`):
without credentials, or on a nonce we cannot vouch for, they are challenged statelessly (§8.2.7), so a flood
of them costs no state and a 401/407 is never retransmitted; from a source banned for failed logins they are
dropped. `stack.unchallenged` names the requests the B2BUA does not authenticate (the trunk, the exchange's
own callback legs). Behind a trusted edge proxy (Kamailio, docs/scale-out.md) all of these look at the address
the proxy attests (`stack.origin`, sip/proxies.py, worked out once per request and kept as `tx.origin`), while
answers and requests still go back through the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from hipper.sip.guard import SourceLimit
from hipper.sip.message import (
    ParseError,
    Request,
    Response,
    parse_head,
    parse_message,
    split_head,
)
from hipper.sip.registrar import Registrar
from hipper.sip.transaction import (
    ClientTransaction,
    Clock,
    ResponseCallback,
    ServerTransaction,
    TimerConfig,
    TransactionLayer,
    stamp_via,
)
from hipper.sip.transport import Peer, Transports

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY, PRACK"
SERVER_NAME = "Hipper"


class RequestHandler(Protocol):
    """What the B2BUA implements. Every method must return quickly; long work goes in its own task."""

    def on_request(self, tx: ServerTransaction) -> None:
        """A new request other than REGISTER/OPTIONS; answer with `tx.respond(tx.response(...))`."""

    def on_ack(self, request: Request, peer: Peer) -> None:
        """The ACK of a 2xx (its own transaction, §13.2.2.4): it stops the handler's 2xx retransmissions."""

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None:
        """The caller cancelled a pending INVITE; the handler stops its branches and answers `tx` with 487."""

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        """A response without a client transaction: a retransmitted 2xx to an INVITE (ACK it again)."""


class SipStack:
    def __init__(
        self,
        registrar: Registrar | None = None,
        handler: RequestHandler | None = None,
        timers: TimerConfig | None = None,
        clock: Clock | None = None,
        limit: SourceLimit | None = None,
    ) -> None:
        self.registrar = registrar
        self.handler = handler
        self.limit = limit
        # Requests the handler takes without digest authentication (set by the B2BUA): not screened here.
        self.unchallenged: Callable[[Request, Peer], bool] = lambda _request, _peer: False
        self.transports = Transports(self.receive)
        self.transactions = TransactionLayer(self.transports, self, timers, clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.malformed = 0  # counted, not logged one by one: a flood must not become a log flood

    async def start(
        self,
        host: str,
        port: int,
        *,
        tcp: bool = True,
        advertised_host: str = "",
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listen on UDP (and TCP) `port`; with `tls_port` and a server context also for SIP over TLS."""
        self.transports.advertised_host = advertised_host
        await self.transports.start(host, port, tcp=tcp, tls_port=tls_port, tls_context=tls_context)
        log.info(
            "sip.listening",
            extra={"host": self.transports.host, "port": self.transports.port, "tls_port": self.transports.tls_port},
        )

    async def close(self) -> None:
        self.transactions.close()
        for task in list(self._tasks):
            task.cancel()
        await self.transports.close()

    @property
    def port(self) -> int:
        return self.transports.port

    # Receiving --------------------------------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer) -> None:
        if self.limit is not None and not self.limit.allow(peer.host):
            return  # a source sending more than any phone or office does: dropped before parsing
        try:
            message = parse_message(data, stream=peer.reliable)
            if isinstance(message, Request):
                message.validate()
        except ParseError as exc:
            self.malformed += 1
            self._answer_malformed(data, peer, exc.reason)
            return
        if isinstance(message, Response):
            self._receive_response(message, peer)
            return
        self._receive_request(message, peer)

    def _receive_request(self, request: Request, peer: Peer) -> None:
        max_forwards = request.int_header("Max-Forwards")
        if max_forwards == 0 and request.method not in ("ACK", "OPTIONS", "REGISTER"):
            self._reply_statelessly(request, peer, Response.for_request(request, 483))
            return
        try:
            if request.method == "ACK":
                # Part of its INVITE's transaction or of none (§17.1.1.3), and trusted by no one for its address.
                self.transactions.receive_request(request, peer)
                return
            # Who sent it, worked out once, here where it enters: the screening, the transaction and through it
            # the registrar and the B2BUA are all handed this one value (`tx.origin`), never the header again.
            origin = self.origin(request, peer)
            if self._screened(request, peer, origin):
                return
            self.transactions.receive_request(request, peer, origin)
        except ParseError as exc:
            self.malformed += 1
            self._reply_statelessly(request, peer, Response.for_request(request, 400, exc.reason))

    def _screened(self, request: Request, peer: Peer, origin: Peer) -> bool:
        """True when a new REGISTER/INVITE/SUBSCRIBE was answered (or dropped) here, without a transaction."""
        registrar = self.registrar
        method = request.method
        if registrar is None or method not in ("REGISTER", "INVITE", "SUBSCRIBE"):
            return False
        if method != "REGISTER" and (self.handler is None or request.to.tag is not None):
            return False  # in-dialog requests belong to their dialog; without a handler they get 480/501
        unchallenged = method != "REGISTER" and self.unchallenged(request, origin)
        if registrar.guard.source_banned(origin.host) and not unchallenged:
            registrar.guard.dropped()
            return True
        if unchallenged:
            return False
        stamp_via(request, peer)  # received/rport in an answer's Via (RFC 3581), as a transaction would
        response = registrar.screen(request, peer, proxy=method == "INVITE", origin=origin)
        if response is None:
            return False
        self._reply_statelessly(request, peer, response)
        return True

    def origin(self, request: Request, peer: Peer) -> Peer:
        """Who sent `request` (received from `peer`): behind a trusted edge proxy, the address the proxy
        attests (sip/proxies.py); that address is what authentication, bans and trust by address look at.
        Asked once per request, when it arrives; the server transaction keeps the answer (`tx.origin`)."""
        return peer if self.registrar is None else self.registrar.proxies.origin(request, peer)

    def _receive_response(self, response: Response, peer: Peer) -> None:
        try:
            self.transactions.receive_response(response, peer)
        except ParseError:
            self.malformed += 1

    def _answer_malformed(self, data: bytes, peer: Peer, reason: str) -> None:
        """§8.2 / §21.4.1: a request we can half read still gets a 400 naming the problem; the rest is dropped."""
        parts = split_head(data)
        head = parts[0] if parts is not None else data
        try:
            message, _ = parse_head(head)
        except ParseError:
            return
        if not isinstance(message, Request) or message.method == "ACK" or not message.headers.get_all("Via"):
            return
        reason = "".join(char for char in reason if char.isprintable())[:100]
        self._reply_statelessly(message, peer, Response.for_request(message, 400, reason))

    def _reply_statelessly(self, request: Request, peer: Peer, response: Response) -> None:
        destination = peer
        if not peer.reliable:
            # §18.2.2 with the Via unstamped: the source address stands for `received`; its port only with rport.
            try:
                via = request.top_via  # parsed already for a request that got this far (stamping adds no rport)
                if "rport" not in via.params:
                    destination = Peer(peer.transport, peer.host, via.port or 5060)
            except ParseError:
                pass
        self.transactions.send(response.serialize(), destination)

    # TransactionUser ------------------------------------------------------------------------------------

    def on_request(self, tx: ServerTransaction) -> None:
        method = tx.method
        if method == "REGISTER":
            if self.registrar is None:
                tx.respond(tx.response(405))
                return
            self._spawn(self._register(tx))
            return
        if method == "OPTIONS" and (tx.request.to.tag is None or self.handler is None):
            tx.respond(self._options_response(tx))
            return
        if self.handler is None:
            tx.respond(tx.response(501 if method not in ALLOW else 480))
            return
        self.handler.on_request(tx)

    def on_ack(self, request: Request, peer: Peer) -> None:
        if self.handler is not None:
            self.handler.on_ack(request, peer)

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None:
        if self.handler is not None:
            self.handler.on_cancel(tx, cancel)
        else:
            tx.respond(tx.response(487))

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        if self.handler is not None:
            self.handler.on_stray_response(response, peer)

    async def _register(self, tx: ServerTransaction) -> None:
        assert self.registrar is not None
        try:
            response = await self.registrar.handle(tx.request, tx.peer, tx.origin)
        except Exception:
            log.exception("sip.register_failed")
            response = Response.for_request(tx.request, 500)
        self._tag(tx, response)
        tx.respond(response)

    def _options_response(self, tx: ServerTransaction) -> Response:
        response = tx.response(200)
        response.headers.add("Allow", ALLOW)
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Server", SERVER_NAME)
        return response

    @staticmethod
    def _tag(tx: ServerTransaction, response: Response) -> None:
        """§8.2.6.2: every response but 100 carries the transaction's To tag."""
        to = response.headers.get("To")
        if to is not None and response.status > 100 and tx.request.to.tag is None:
            response.headers.set("To", f"{to};tag={tx.to_tag}")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Sending ----------------------------------------------------------------------------------------------

    def send_request(
        self,
        request: Request,
        peer: Peer,
        on_response: ResponseCallback | None = None,
        *,
        provisional_timeout: float | None = None,
    ) -> ClientTransaction:
        return self.transactions.send_request(request, peer, on_response, provisional_timeout=provisional_timeout)

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """An ACK for a 2xx is sent outside any transaction (§13.2.2.4); the caller builds it from its dialog."""
        if not ack.headers.get_all("Via"):
            ack.headers.prepend("Via", self.transactions.via_for(peer.transport))
        self.transactions.send(ack.serialize(), peer)
