"""Message waiting indication (RFC 3842): the voicemail lamp of phones.

A registered device SUBSCRIBEs to the `message-summary` event package (digest-authenticated like its REGISTER:
401 challenge, RFC 3261 §22). The subscription is a dialog (RFC 6665); we answer 200 and send a NOTIFY at once
with the current summary, again whenever the user's messages change, and a final one when the subscription ends
(Expires: 0, or it runs out). The body is `application/simple-message-summary` (RFC 3842 §5)::

    Messages-Waiting: yes
    Message-Account: sip:202@hipper.example
    Voice-Message: 2/1 (0/0)

("2 new, 1 old"; the urgent counts are always 0 here.)

Changes are learnt from the outbox (`events` table: voicemail.deposited / changed / deleted), so a message
deposited or marked heard on any node, by a call or through the API, reaches the phones subscribed on this node.
With `mwi_unsolicited` on, users whose phones did not subscribe (on any node: subscriptions are rows in the
shared store) get the same NOTIFY out of dialog at every registered contact (what many phones expect from a PBX),
sent by the one node that claimed the event (store/mwi_subscriptions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, literal, select

from hipper.engine.leg import contact_header
from hipper.sip.dialog import Dialog, new_call_id, new_tag
from hipper.sip.message import URI, Headers, NameAddr, ParseError, Request, Response
from hipper.sip.transaction import ServerTransaction
from hipper.sip.transport import Peer
from hipper.store import mwi_subscriptions, voicemails
from hipper.store.models import Event, User
from hipper.store.registrations import LocationStore

if TYPE_CHECKING:
    from hipper.engine.b2bua import B2bua

log = logging.getLogger(__name__)

EVENT_PACKAGE = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
FOLLOWED_EVENTS = ("voicemail.deposited", "voicemail.changed", "voicemail.deleted")
POLL_SECONDS = 0.3
BATCH = 500
MIN_EXPIRES = 60  # RFC 6665 §4.2.1.1: shorter refresh intervals are answered 423
# Built once: this poll runs three times a second on every node, and composing the select (its IN list above all)
# cost more than running it.
_FOLLOWED = (
    select(Event.id, Event.user_id)
    # The types as plain parameters, not an expanding IN list: the cheap reads run the statement compiled once.
    .where(Event.id > bindparam("cursor"), Event.type.in_([literal(type_) for type_ in FOLLOWED_EVENTS]))
    .order_by(Event.id)
    .limit(BATCH)
)


@dataclass
class Subscription:
    user_id: int
    dialog: Dialog
    peer: Peer
    expires_at: float
    row_id: str  # its row in the shared store (store/mwi_subscriptions.py)


def summary_body(new: int, old: int, account: str) -> bytes:
    waiting = "yes" if new else "no"
    return f"Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{old} (0/0)\r\n".encode()


class Mwi:
    def __init__(self, b2bua: B2bua) -> None:
        self.b2bua = b2bua
        self.settings = b2bua.settings
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async with self.b2bua.sessions() as session:
            self._cursor = int((await session.execute(select(func.coalesce(func.max(Event.id), 0)))).scalar_one())
            await mwi_subscriptions.start_cursor(session)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    @property
    def position(self) -> int:
        """The outbox event id this node has dealt with (NOTIFYs sent) up to."""
        return self._cursor

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- SUBSCRIBE ---------------------------------------------------------------------------------------------

    def on_subscribe(self, tx: ServerTransaction) -> None:
        self._spawn(self._subscribe(tx))

    async def _subscribe(self, tx: ServerTransaction) -> None:
        request = tx.request
        try:
            event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
            if event != EVENT_PACKAGE:
                response = tx.response(489, "Bad Event")
                response.headers.add("Allow-Events", EVENT_PACKAGE)
                tx.respond(response)
                return
            expires = request.int_header("Expires")
            to_tag = request.to.tag
        except ParseError as error:
            tx.respond(tx.response(400, error.reason))
            return
        seconds = (
            self.settings.mwi_subscription_seconds
            if expires is None
            else min(expires, self.settings.mwi_subscription_seconds)
        )
        if 0 < seconds < MIN_EXPIRES:
            response = tx.response(423, "Interval Too Brief")
            response.headers.add("Min-Expires", str(MIN_EXPIRES))
            tx.respond(response)
            return
        loop = asyncio.get_running_loop()
        if to_tag is not None:
            subscription = self.subscriptions.get((request.call_id, to_tag))
            if subscription is None:
                tx.respond(tx.response(481))
                return
            if not subscription.dialog.accept_remote_cseq(request):
                tx.respond(tx.response(500, "Out of order CSeq"))
                return
        else:
            user_id = await self._authenticated_user(tx)
            if user_id is None:
                return
            response = self._ok(tx, seconds)
            try:
                dialog = Dialog.as_uas(request, response)
            except ParseError as error:
                tx.respond(tx.response(400, error.reason))
                return
            subscription = Subscription(user_id, dialog, tx.peer, 0.0, uuid.uuid4().hex)
            self.subscriptions[(request.call_id, tx.to_tag)] = subscription
            tx.respond(response)
        if to_tag is not None:
            tx.respond(self._ok(tx, seconds))
        subscription.expires_at = loop.time() + seconds
        await self._stored(subscription, seconds)
        await self._notify(subscription, terminated=seconds == 0)
        if seconds == 0:
            self.subscriptions.pop((subscription.dialog.call_id, subscription.dialog.local_tag), None)

    async def _stored(self, subscription: Subscription, seconds: int) -> None:
        """The subscription's row in the shared store: made or refreshed, or gone when it ends."""
        try:
            async with self.b2bua.sessions() as session:
                if seconds > 0:
                    expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
                    node = self.b2bua.presence.node_id
                    await mwi_subscriptions.subscribed(
                        session, subscription.row_id, subscription.user_id, node, expires_at
                    )
                else:
                    await mwi_subscriptions.ended(session, subscription.row_id)
                await session.commit()
        except Exception:  # this node still serves the subscription; other nodes may send unsolicited NOTIFYs
            log.exception("mwi.store_failed")

    def _ok(self, tx: ServerTransaction, seconds: int) -> Response:
        response = tx.response(200)
        response.headers.add("Expires", str(seconds))
        response.headers.add("Contact", contact_header(self.b2bua.stack, tx.peer.transport))
        return response

    async def _authenticated_user(self, tx: ServerTransaction) -> int | None:
        """The subscribing device's user, after digest authentication (401 challenge, as for REGISTER)."""
        registrar = self.b2bua.registrar
        request = tx.request
        if registrar is None:
            tx.respond(tx.response(403, "No devices here"))
            return None
        device = await registrar.authenticate(request, tx.peer, to_tag=tx.to_tag, origin=tx.origin)
        if isinstance(device, Response):
            tx.respond(device)
            return None
        if device.credentials.username != request.from_.uri.user:
            tx.respond(tx.response(403, "Credentials of another user"))
            return None
        return device.user_id

    # -- NOTIFY ------------------------------------------------------------------------------------------------

    async def _summary(self, user_id: int) -> tuple[bytes, str] | None:
        async with self.b2bua.sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                return None
            new = await voicemails.count_new(session, user_id)
            total = len(await voicemails.list_for(session, user_id))
        number = user.extension or user.direct_number or user.username
        account = f"sip:{number}@{self.settings.sip_realm}"
        return summary_body(new, total - new, account), account

    async def _notify(self, subscription: Subscription, *, terminated: bool = False) -> None:
        summary = await self._summary(subscription.user_id)
        if summary is None:
            return
        body, _ = summary
        request = subscription.dialog.create_request("NOTIFY", body=body, content_type=CONTENT_TYPE)
        remaining = max(0, round(subscription.expires_at - asyncio.get_running_loop().time()))
        state = "terminated;reason=timeout" if terminated else f"active;expires={remaining}"
        self._send(request, subscription.peer, state)

    def _send(self, request: Request, peer: Peer, state: str) -> None:
        request.headers.add("Event", EVENT_PACKAGE)
        request.headers.add("Subscription-State", state)
        request.headers.add("Contact", contact_header(self.b2bua.stack, peer.transport))
        self.b2bua.stack.send_request(request, peer)

    async def _unsolicited(self, user_id: int) -> None:
        summary = await self._summary(user_id)
        if summary is None:
            return
        body, account = summary
        stack = self.b2bua.stack
        for binding in await LocationStore(self.b2bua.sessions).for_user(user_id):
            try:
                uri = URI.parse(binding.contact)
                peer = Peer.parse(binding.source)
            except (ParseError, ValueError):
                continue
            headers = Headers()
            headers.add("From", str(NameAddr(URI.parse(account), "", {"tag": new_tag()})))
            headers.add("To", str(NameAddr(URI.parse(account))))
            headers.add("Call-ID", new_call_id(stack.transports.host))
            headers.add("CSeq", "1 NOTIFY")
            headers.add("Max-Forwards", "70")
            headers.add("Content-Type", CONTENT_TYPE)
            self._send(Request("NOTIFY", uri, headers, body), peer, "active")

    async def changed(self, user_id: int, *, unsolicited: bool) -> None:
        """The user's messages changed: tell their phones subscribed here, and with `unsolicited` (this node
        claimed the change) their registered phones when none subscribed on any node."""
        now = asyncio.get_running_loop().time()
        mine = [s for s in self.subscriptions.values() if s.user_id == user_id]
        for subscription in mine:
            if subscription.expires_at <= now:
                self.subscriptions.pop((subscription.dialog.call_id, subscription.dialog.local_tag), None)
                continue
            await self._notify(subscription)
        if mine or not unsolicited:
            return
        async with self.b2bua.sessions() as session:
            elsewhere = await mwi_subscriptions.anyone_subscribed(session, user_id, datetime.now(UTC))
        if not elsewhere:
            await self._unsolicited(user_id)

    async def _follow(self) -> None:
        """Read the outbox from where we started; every voicemail change re-counts that user's messages."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                # On the call path's cheap reads (on SQLite one statement straight on the loop, ≈ 20 µs): this
                # runs three times a second on every node, idle or not, and an ORM session for it cost ≈ 1 ms.
                async with self.b2bua.snapshots.reads.connect() as reads:
                    rows = await reads.rows(_FOLLOWED, {"cursor": self._cursor})
                through = max((int(event_id) for event_id, _ in rows), default=self._cursor)
                # Unsolicited NOTIFYs: only for the events this node claimed (each event, one node).
                claimed = None
                if self.settings.mwi_unsolicited and rows:
                    async with self.b2bua.sessions() as session:
                        claimed = await mwi_subscriptions.claim(session, through)
                users: dict[int, bool] = {}  # in event order: whether to announce unsolicited
                for event_id, user_id in rows:
                    if user_id is not None:
                        mine = claimed is not None and int(event_id) > claimed
                        users[int(user_id)] = users.get(int(user_id), False) or mine
                for user_id, announce in users.items():
                    await self.changed(user_id, unsolicited=announce)
                self._cursor = through
                self._expire()
            except Exception:
                log.exception("mwi.follow_failed")

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for key, subscription in list(self.subscriptions.items()):
            if subscription.expires_at <= now:
                del self.subscriptions[key]
                self._spawn(self._notify(subscription, terminated=True))
                self._spawn(self._stored(subscription, 0))
