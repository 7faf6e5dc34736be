"""RFC 4028 session timers at run time: one `SessionTimer` per answered leg (negotiation: sip/session_timer.py).

When we are the refresher we send a refresh at half the interval — UPDATE without a body when the peer allows
UPDATE (RFC 3311: no offer, no ACK), else a re-INVITE offering our last SDP again, whose answer is applied to the
leg's media endpoint (a phone that moved answers with its new address); when the peer is the refresher we wait
for its re-INVITE / UPDATE and, when none comes by `interval - min(32, interval/3)` (§10), end the session: the
leg gets a BYE and its owner is told — a call or a callback then ends its other legs, a conference drops the added
party. A failed refresh of ours ends it as well (the peer is gone, §10 / RFC 3261 §12.2.1.2).

Every leg the exchange answers or originates runs one: a call's caller and connected callee, a callback's two
legs (apps/click_to_dial.py) and an added conference party (apps/conference.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from hipper.config import Settings
from hipper.media.engine import MediaError, SetRemoteSdp
from hipper.sip.message import Request, Response
from hipper.sip.session_timer import (
    Session,
    SessionTimerPolicy,
    answer,
    answer_headers,
    from_answer,
    refresh_headers,
)

if TYPE_CHECKING:
    from hipper.apps.legs import Leg

log = logging.getLogger(__name__)


def glare_retry_seconds(we_own_the_call_id: bool) -> float:
    """How long a refresh that met the peer's own offer (491 Request Pending) waits before it is sent again
    (RFC 3261 §14.1): the side that chose the dialog's Call-ID waits 2.1–4 s, the other 0–2 s, in units of 10 ms,
    so the two do not cross again."""
    low, high = (210, 400) if we_own_the_call_id else (0, 200)
    return random.randint(low, high) / 100


REFRESH_WAIT_SECONDS = 32.0


def policy_of(settings: Settings) -> SessionTimerPolicy:
    return SessionTimerPolicy(
        enabled=settings.session_timers,
        expires=settings.session_expires_seconds,
        min_se=settings.session_min_se_seconds,
    )


class SessionTimer:
    def __init__(self, leg: Leg, session: Session, *, we_refresh: bool) -> None:
        self.leg = leg
        self.session = session
        self.we_refresh = we_refresh
        self.refreshes_sent = 0
        self.refreshes_received = 0
        self._reset = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def renegotiated(self, session: Session, *, we_refresh: bool) -> None:
        """A refresh transaction completed (either side sent it): the interval starts again."""
        self.session = session
        self.we_refresh = we_refresh
        self._reset.set()

    async def _run(self) -> None:
        while not self.leg.ended:
            self._reset.clear()
            wait = self.session.refresh_after if self.we_refresh else self.session.expire_after
            try:
                async with asyncio.timeout(wait):
                    await self._reset.wait()
                continue  # refreshed (or renegotiated) in time: a new interval
            except TimeoutError:
                pass
            if self.leg.ended:
                return
            if not self.we_refresh:
                self._expire("the peer did not refresh the session")
                return
            if not await self._refresh():
                self._expire("the session refresh failed")
                return

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
        from hipper.apps.legs import SDP, contact_header  # legs imports this module

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
