"""The one fork of the engine: ring N branches at once, the first real answer wins, the others are cancelled.

Every ring in the exchange is a `Fork` — a call's ring step, a forward or call out through the trunk, a hunt group
or call-center offer (apps/groups.py), and both legs of a callback (apps/click_to_dial.py). What differs is given
to it, not written again:

- `on_progress(leg, response)`: a 180/183 came; the owner relays ringing or bridges early media (a call does, a
  callback does not). It returns True when it took the 183's SDP as early media (that branch's 200 then needs no
  new SDP, RFC 3261 §13.2.1).
- `confirm(leg)`: answer confirmation (simultaneous ring, Anywhere): the branch's 200 is ACKed and this coroutine
  runs; its returning True makes the branch the answer, False (or the branch hanging up) releases it while the
  other branches keep ringing (DESIGN.md "Answer confirmation").

Protocol duties stay with the legs and transactions: CANCEL only after a 1xx (§9.1, the client transaction defers
it), a 2xx after CANCEL is ACKed and ended with BYE. What the branches' final answers mean (busy, not reachable,
no answer) is the pure rule `domain.routing.outcome.ring_outcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from hipper.config import Settings
from hipper.domain.routing.outcome import RingOutcome, RingOutcomeKind, ring_outcome
from hipper.engine.leg import CalleeLeg, LegHost, LegOwner, policy_of
from hipper.engine.waiting import race_until
from hipper.media.engine import CreateEndpoint, EndpointCreated, MediaError, SetRemoteSdp
from hipper.sip.message import URI, NameAddr, Response
from hipper.sip.stack import SipStack
from hipper.sip.transport import Peer


@dataclass(frozen=True)
class Branch:
    """Where one fork branch goes."""

    uri: URI
    peer: Peer
    to: NameAddr
    label: str
    confirm: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    user_id: int | None = None  # the user whose phone this is (an answer there is their "received" call)
    block_diversion: bool = False  # Anywhere: the network's voicemail must not take it (engine/diversion_guard.py)
    from_: NameAddr | None = None  # who this branch shows as calling, when not the fork's (a leg leaving the exchange)
    device_user_id: int | None = None  # who owns the phone it reaches (engine/leg.py `Leg.device_user_id`)


@dataclass(frozen=True)
class ForkResult:
    outcome: RingOutcomeKind
    status: int = 0
    winner: CalleeLeg | None = None


class ForkHost(LegHost, Protocol):
    stack: SipStack


class ForkOwner(LegOwner, Protocol):
    """A call, as a fork uses it: its legs report to it, and the fork ends when it is over."""

    @property
    def over(self) -> asyncio.Event: ...

    @property
    def b2bua(self) -> ForkHost: ...

    def watch(self, endpoint_id: str) -> None: ...

    async def release(self, endpoint_id: str | None) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...


Progress = Callable[[CalleeLeg, Response], Awaitable[bool]]
Confirm = Callable[[CalleeLeg], Awaitable[bool]]


class Fork:
    def __init__(
        self,
        owner: ForkOwner,
        settings: Settings,
        *,
        from_: NameAddr,
        headers: tuple[tuple[str, str], ...] = (),
        max_forwards: int = 70,
        ring_seconds: float | None = None,
        on_progress: Progress | None = None,
        confirm: Confirm | None = None,
        track: Callable[[CalleeLeg], None] | None = None,
    ) -> None:
        self.owner = owner
        self.settings = settings
        self.from_ = from_
        self.headers = headers
        self.max_forwards = max_forwards
        self.ring_seconds = ring_seconds
        self.on_progress = on_progress
        self.confirm = confirm
        self.track = track  # the owner keeps every branch it rang (its teardown and its summary look at them)
        self.legs: list[CalleeLeg] = []
        self._events: asyncio.Queue[tuple[CalleeLeg, Response | str]] = asyncio.Queue()

    def leg_gone(self, leg: CalleeLeg) -> None:
        """A branch hung up (BYE) while the fork runs: an answered branch still confirming is out."""
        if leg in self.legs:
            self._events.put_nowait((leg, "bye"))

    async def _start(self, branch: Branch) -> CalleeLeg:
        owner = self.owner
        created = await owner.b2bua.media.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        owner.watch(created.endpoint_id)
        leg = CalleeLeg(
            owner.b2bua.stack, owner, peer=branch.peer, uri=branch.uri, from_=branch.from_ or self.from_,
            to=branch.to,
            label=branch.label, confirm=branch.confirm and self.confirm is not None,
            block_diversion=branch.block_diversion,
        )  # fmt: skip
        leg.min_answer_seconds = self.settings.block_diversion_min_answer_seconds
        leg.session_policy = policy_of(self.settings)  # RFC 4028 on every leg we originate (engine/leg.py)
        leg.endpoint_id = created.endpoint_id
        leg.user_id = branch.user_id
        leg.device_user_id = branch.device_user_id
        leg.listener = lambda leg, response: self._events.put_nowait((leg, response))
        leg.start(
            created.local_sdp,
            [*self.headers, *branch.headers],
            max_forwards=self.max_forwards,
            provisional_timeout=self.settings.branch_provisional_seconds,
        )
        self.legs.append(leg)
        if self.track is not None:
            self.track(leg)
        return leg

    async def _accept_answer(self, leg: CalleeLeg, response: Response) -> bool:
        """Take a 2xx's SDP on the branch's endpoint; unusable SDP is no answer."""
        if leg.endpoint_id is None:
            return False
        try:
            body = response.body.decode(errors="replace")
            # The branch's SIP source: behind NAT only it may latch the media (media/engine.py, docs/security.md).
            await self.owner.b2bua.media.execute(SetRemoteSdp(leg.endpoint_id, body, signalling_host=leg.peer.host))
        except MediaError:
            return False
        return True

    async def _confirming(self, leg: CalleeLeg) -> None:
        assert self.confirm is not None
        confirmed = await self.confirm(leg)
        self._events.put_nowait((leg, "confirmed" if confirmed else "unconfirmed"))

    async def run(self, branches: list[Branch]) -> ForkResult:
        if not branches:
            return ForkResult("not-reachable", 480)
        loop = asyncio.get_running_loop()
        owner = self.owner
        statuses: list[int] = []
        rang = False
        timed_out = False
        winner: CalleeLeg | None = None
        early: CalleeLeg | None = None
        confirming: dict[CalleeLeg, asyncio.Task[None]] = {}
        try:
            for branch in branches:  # a failure starting one (no media port) cancels those started (finally)
                await self._start(branch)
            deadline = None if self.ring_seconds is None else loop.time() + self.ring_seconds
            pending = set(self.legs)
            while pending:
                wait = None if deadline is None else deadline - loop.time()
                if wait is not None and wait <= 0:
                    timed_out = True
                    break
                item = await race_until(self._events.get(), owner.over, wait)
                if item is None:
                    timed_out = not owner.over.is_set()
                    break
                leg, event = item
                if leg not in pending:
                    continue
                if isinstance(event, Response):
                    status = event.status
                    if status < 200:
                        if status > 100:
                            rang = True
                            if self.on_progress is not None and early is None and await self.on_progress(leg, event):
                                early = leg
                        continue
                    if status < 300:
                        # The early-media branch's SDP was taken with its 183 (the 200 repeats it, §13.2.1).
                        if leg is not early and not await self._accept_answer(leg, event):
                            pending.discard(leg)
                            statuses.append(488)
                            owner.spawn(leg.bye())
                            continue
                        if leg.confirm:
                            confirming[leg] = asyncio.ensure_future(self._confirming(leg))
                            continue
                        winner = leg
                        break
                    pending.discard(leg)
                    statuses.append(leg.outcome_status or status)
                    await owner.release(leg.endpoint_id)
                elif event == "confirmed":
                    winner = leg
                    break
                elif event in ("bye", "unconfirmed"):
                    # Hung up while confirming, or not confirmed in time: released, the others ring on.
                    pending.discard(leg)
                    # Not confirmed counts as no answer (408, RFC 4458's "no reply").
                    statuses.append(487 if event == "bye" else 408)
                    task = confirming.pop(leg, None)
                    if task is not None:
                        task.cancel()
                    if event == "unconfirmed" and not leg.ended:
                        owner.spawn(leg.bye())
                    await owner.release(leg.endpoint_id)
        finally:
            for task in confirming.values():
                task.cancel()
            for leg in self.legs:
                if leg is winner:
                    continue
                if leg.status is None:
                    leg.cancel()  # the transaction sends the CANCEL once (if ever) a 1xx came (§9.1)
                elif 200 <= leg.status < 300 and not leg.ended:
                    owner.spawn(leg.bye())
                owner.spawn(owner.release(leg.endpoint_id))
        if winner is not None:
            return ForkResult("answered", 200, winner)
        if owner.over.is_set():
            return ForkResult("gone")
        outcome: RingOutcome = ring_outcome(statuses, rang=rang, timed_out=timed_out)
        return ForkResult(outcome.kind, outcome.status)
