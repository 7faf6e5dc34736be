"""Three-way calling, "Add" then "Merge" (SPEC D7), driven from the phone (*7<number># then *8; see
apps/recording.py for the codes).

Add: the exchange rings the number (a colleague's phones, or out through the trunk) from the user's own
identity; when it answers the user talks to the new party while the first party hears silence (waiting).
If the new party hangs up before the merge, the user is back with the first party.
Merge: the media engine's mixer joins all three; each participant hears the other two, never themself
("mix-minus", media/mixer.py). Running recordings of the call follow into the mix by themselves (the engine
records every participant of a mixer one of a recording's endpoints joins): from the merge on they hold all three.
Leaving: the added party hanging up brings the user back to the first party; the first party hanging up leaves the
user and the added party talking, who is then the party the user is on the call with (its BYE ends the call, and
*7 adds again). The user hanging up ends the call. What a party's leaving does to the mix is `Merged`, the same
for the app's merge (apps/call_control.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hipper.engine.call import Call
from hipper.engine.directory import resolve, user_row
from hipper.engine.fork import Branch, Fork, ForkResult
from hipper.engine.leg import CalleeLeg, Leg
from hipper.media.engine import Connect, CreateMixer, MediaError
from hipper.sip.message import URI, NameAddr

log = logging.getLogger(__name__)

ADD_RING_SECONDS = 30.0


@dataclass
class Merged:
    """Three parties in the media engine's mixer — the app's merge of two calls (apps/call_control.py) or the
    phone's *8 (`ThreeWay`): a party hanging up leaves the other two talking, a plain bridge of their two endpoints
    (the mixer goes with its last participant); with one left, the call(s) end. `gone` is the owner's bookkeeping
    of a party leaving (a user's call-log row ends, who talks to whom); False: that party's leaving ends the call
    as it would without the merge. `part_over` ends a leaving user's part (apps/recording.py `user_part_over`: their
    recording stops then, not at the call's end).

    It is the call's one leave hook (`Call.left`, set to the object itself), whichever merge made it: a phone's *8
    on a call the app merged, one of whose parties left since, brings the added party into this same mix (`join`)
    rather than making a second one the call would not use."""

    parties: list[Leg]
    conversations: tuple[Call, ...]
    gone: Callable[[Leg], bool]
    part_over: Callable[[Call, int], Awaitable[None]] | None = None
    by_app: bool = False  # the app's merge (a phone's *8 may join it once it is down to two); else a phone's own

    def __call__(self, leg: Leg) -> bool:
        return self.left(leg)

    @property
    def mixing(self) -> bool:
        """Three or more parties in the mixer (with two left it is a plain bridge of the two)."""
        return len(self.parties) > 2

    @property
    def joinable(self) -> bool:
        """A phone's *8 brings its added party into this mix: the app's merge, one of whose parties left."""
        return self.by_app and len(self.parties) == 2

    def join(self, leg: Leg) -> None:
        """Another party is in the mixer with the others (a phone's *8 on this merged call)."""
        self.parties.append(leg)

    def left(self, leg: Leg) -> bool:
        """A leg of the merged call(s) hung up (`Call.left`); True when it was a party and the others talk on."""
        if leg not in self.parties or not self.gone(leg):
            return False
        self.parties.remove(leg)
        owner = leg.call
        if isinstance(owner, Call):
            owner.spawn(self._after(owner, leg))
        if len(self.parties) < 2:
            for conversation in self.conversations:
                conversation.over.set()
        return True

    async def _after(self, owner: Call, leg: Leg) -> None:
        user_id = owner.user_of(leg)
        if self.part_over is not None and user_id is not None:
            await self.part_over(owner, user_id)  # first: their recording holds nothing of the other two alone
        if len(self.parties) == 2:
            first, second = (party.endpoint_id for party in self.parties)
            if first is not None and second is not None:
                with contextlib.suppress(MediaError):
                    await owner.media.execute(Connect(first, second))  # out of the mixer: a bridge of two
        # Out of the mixer too, which then goes (it has nobody left); its keypad codes' listener goes with it.
        await owner.release(leg.endpoint_id)


async def _unless_gone(ringing: Coroutine[Any, Any, ForkResult], own: Leg) -> ForkResult | None:
    """The add's ring, unless the user's own leg ends first — they left the call (hung up their side of a three-way
    call, transferred it, pulled it to another phone) and the party would answer into nothing: None, and the ring
    is cancelled, its legs with it (CANCEL, engine/fork.py)."""
    ring = asyncio.ensure_future(ringing)
    left = asyncio.ensure_future(own.wait_ended())
    try:
        await asyncio.wait((ring, left), return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        if not ring.done():
            ring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ring  # its legs are cancelled by now (the fork's own end)
    return None if ring.cancelled() else ring.result()


class ThreeWay:
    """One user's Add/Merge within a call: `own` is the user's endpoint, `other` the first party's."""

    def __init__(
        self, call: Call, user_id: int, own: str, other: str,
        part_over: Callable[[Call, int], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self.call = call
        self.part_over = part_over  # a party's leaving the merged call (`Merged`)
        self.user_id = user_id
        self.own = own
        self.other = other
        self.third: CalleeLeg | None = None
        self.merged = False
        self.mix: Merged | None = None  # the three of them, once merged
        self.admission: str | None = None  # the added party's place in the outbound limits, out through the trunk

    async def _branches(self, number: str) -> tuple[list[Branch], NameAddr, NameAddr]:
        call = self.call
        user = await user_row(call.b2bua.sessions, self.user_id)
        company_id = user.company_id if user is not None else None
        own_number = (user.extension or user.direct_number or "") if user is not None else ""
        realm = call.settings.sip_realm
        from_ = NameAddr(URI("sip", realm, user=own_number or None), "")
        async with call.b2bua.sessions() as session:
            resolved = await resolve(session, number, company_id, call.settings.default_region)
        to = call.b2bua.peers.address(resolved.number)
        if resolved.kind == "user" and resolved.callee is not None:
            bindings = await call.bindings(resolved.callee.user_id)
            return call.device_branches(bindings, "conference", resolved.callee.user_id, to), from_, to
        trunk = call.b2bua.peers.trunk_uri(resolved.number)
        if resolved.kind == "external" and trunk is not None:
            # Out through the trunk on the user's account: their call barring and outbound limits apply, as to their
            # own calls out (docs/security.md "Toll fraud"); a refused number is not rung. The added leg counts
            # against the limits until its leg ends (`_watch_third`; at once no longer when nobody answers it).
            admission = f"{call.call_id}/add/{secrets.token_hex(4)}"
            if await call.b2bua.outbound.admit(admission, resolved.number, self.user_id, company_id) is not None:
                return [], from_, to
            self.admission = admission
            call.spawn(self._release_at_end(admission))
            return [Branch(trunk[0], trunk[1], to, "conference")], from_, to
        return [], from_, to

    async def add(self, number: str) -> None:
        if self.third is not None or self.call.over.is_set():
            return  # one added party at a time
        own = self._leg_of(self.own)  # before the lookups below: the user may leave while they run
        branches, from_, _ = await self._branches(number)
        if not branches:
            log.info("conference.add_unroutable", extra={"call_id": self.call.call_id})
            return
        call = self.call
        if own is None or own.ended:  # the user left while the number was looked up: nobody to add a party for
            self._release_admission()
            return
        # The engine's one fork (engine/fork.py); its legs are the call's (`track`): the call's end cancels or hangs
        # them up. A failure starting them (no media port) cancels those started, and the add is off.
        fork = Fork(call, call.settings, from_=from_, ring_seconds=ADD_RING_SECONDS, track=call.branches.append)
        try:
            result = await _unless_gone(fork.run(branches), own)
        except BaseException:
            self._release_admission()
            raise
        winner = result.winner if result is not None else None
        if winner is None or winner.endpoint_id is None:
            log.info("conference.add_failed", extra={"call_id": call.call_id, "user_left": result is None})
            self._release_admission()
            return
        if own.ended:  # answered just as the user left: nobody is there to talk to them
            self._release_admission()
            await winner.bye()
            await call.release(winner.endpoint_id)
            return
        self.third = winner
        winner.start_session_timer()  # when it expires the leg gets BYE and the user is back with the first party
        await call.media.execute(Connect(self.own, winner.endpoint_id))  # the first party now waits
        call.spawn(self._watch_third(winner))  # a task of the call's: its end cancels it
        log.info("conference.added", extra={"call_id": call.call_id})

    def _release_admission(self) -> None:
        if self.admission is not None:
            self.call.b2bua.outbound.release(self.admission)
            self.admission = None

    async def _release_at_end(self, admission: str) -> None:
        await self.call.over.wait()
        self.call.b2bua.outbound.release(admission)

    async def _watch_third(self, leg: CalleeLeg) -> None:
        """The added party hung up: no longer counted out through the trunk, and the user is back with the first
        party alone (before the merge, or after it: out of the three-way mix), free to add another."""
        await self.call.race(leg.wait_ended(), None)
        if leg.ended:
            self._release_admission()  # its place in the user's outbound limits goes with the leg, not the call
        if self.call.over.is_set() or self.third is not leg:
            return
        if self.mix is not None:  # merged: out of the mix as any party leaving it (its end seen here: no BYE came)
            self.mix.left(leg)
            if self.third is leg:  # the app's mix (`join`): its leaving rules took it out, the slot is free again
                self.third, self.merged, self.mix = None, False, None
            return
        self.third = None
        self.merged = False
        with contextlib.suppress(MediaError):
            await self.call.media.execute(Connect(self.own, self._first_party()))
        # Its endpoint goes now, not with the call: out of the mixer (which then goes too), its port pair free.
        await self.call.release(leg.endpoint_id)

    async def merge(self) -> None:
        third = self.third
        if third is None or third.endpoint_id is None or self.merged or self.call.over.is_set():
            return
        call = self.call
        shared = call.left if isinstance(call.left, Merged) else None
        if shared is not None and not shared.joinable:
            # Another mix holds this call (all three of an app merge, or another user's *8): not a fourth party.
            log.info("conference.merge_refused", extra={"call_id": call.call_id})
            return
        if shared is not None:
            # A call the app merged (apps/call_control.py), a party of which left since: the added party joins that
            # mix, whose hook the call keeps — any of the three leaving then leaves the other two talking.
            endpoints = tuple(leg.endpoint_id for leg in (*shared.parties, third) if leg.endpoint_id is not None)
            await call.media.execute(CreateMixer(endpoints))
            shared.join(third)
            self.merged, self.mix = True, shared
            log.info("conference.merged", extra={"call_id": call.call_id, "joined": True})
            return
        await call.media.execute(CreateMixer((self.own, self.other, third.endpoint_id)))
        self.merged = True
        own, other = self._leg_of(self.own), self._leg_of(self.other)
        if own is not None and other is not None and call.left is None:
            self.mix = Merged([own, other, third], (call,), self._gone, self.part_over)
            call.left = self.mix
        log.info("conference.merged", extra={"call_id": call.call_id})

    def _first_party(self) -> str:
        """The endpoint of the party the user talks to besides an added one: the first party — or, on a call the
        app merged whose other party left, the one still in that mix with the user."""
        shared = self.call.left
        if isinstance(shared, Merged) and shared is not self.mix:
            others = [leg.endpoint_id for leg in shared.parties if leg.endpoint_id not in (self.own, None)]
            if len(others) == 1 and others[0] is not None:
                return others[0]
        return self.other

    def _leg_of(self, endpoint_id: str) -> Leg | None:
        call = self.call
        for leg in (call.first_leg, call.connected, *call.joined):
            if leg is not None and leg.endpoint_id == endpoint_id and leg not in call.released:
                return leg
        return None

    def _gone(self, leg: Leg) -> bool:
        """A party of the merged call left (`Merged`): the user's leaving ends the call; else the user talks on
        with the one left, as with a party never added — free to add another."""
        call, third = self.call, self.third
        if leg.endpoint_id == self.own or third is None or third.endpoint_id is None:
            return False
        if leg is not third:  # the first party: the added one takes its place on the call
            self.other = third.endpoint_id
            call.joined.append(third)  # its BYE ends the call now, as the first party's would have
            # Gone from the call, as a leg call control releases: whoever looks for the party the user talks to
            # (a hold's music, a transfer, the listing) finds the added party, not the one who left.
            call.released.add(leg)
            user_id = call.user_of(leg)
            if user_id is not None:
                call.user_left(user_id, "left")  # their row ends now; they are free
        self.third = None
        self.merged = False
        self.mix = None
        call.left = None
        return True
