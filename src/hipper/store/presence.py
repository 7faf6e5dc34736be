"""Which users are on a call, for every node sharing the database (issue 9 item 5; docs/architecture.md).

Each node counts its own answered calls in memory, exactly and at once: a second call arriving on this node a
moment after the first was answered finds the user busy (or waiting) without waiting for a write. The same facts
go to the shared `active_calls` table through the batch writer (store/writer.py, in the transaction of whatever
else calls are writing), and a call routed here reads the rows other nodes wrote (store/active_calls.py), so a
call answered on node A makes the user busy on node B as soon as A's batch is committed (milliseconds). This
node's own rows are never read back: its memory is the truth for them, written or not.

Every node renews a lease in the `nodes` table every 10 s (`LEASE_SECONDS / RENEWALS_PER_LEASE`); rows of a node
whose lease ran out (it died) are ignored and deleted. Wall clocks of the nodes are compared: keep them in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.store.active_calls import ON_CALL_ELSEWHERE, CallJoined, CallLeft, leave, purge_expired, rejoin, renew_lease
from hipper.store.db import Reads
from hipper.store.writer import BatchWriter

log = logging.getLogger(__name__)

# How long a node's word counts without a renewal: its rows stop making anyone busy this long after it died.
LEASE_SECONDS = 30.0
# Renewed three times per lease: a node must miss two renewals in a row (a database hiccup, a stall) to lose it.
RENEWALS_PER_LEASE = 3


def default_node_id() -> str:
    """Host name and process id: unique among running nodes, readable in the table (and within its 100
    characters: a host name may have up to 253)."""
    pid = str(os.getpid())
    return f"{socket.gethostname()[: 99 - len(pid)]}-{pid}"


class Presence:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: BatchWriter,
        node_id: str = "",
        *,
        lease_seconds: float = LEASE_SECONDS,
        api_url: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.writer = writer
        self.node_id = node_id or default_node_id()
        self.lease_seconds = lease_seconds
        self.api_url = api_url  # where the other nodes forward call control for this node's calls
        self._here: Counter[int] = Counter()  # users on a call on this node: how many calls each
        self._joined: dict[tuple[str, int], list[CallJoined]] = {}  # this node's rows, by (call id, user id)
        self._ringing: dict[tuple[str, int], str] = {}  # this node's ringing rows' ids, by (call id, user id)
        self._writes: set[asyncio.Future[None]] = set()  # handed to the writer, not yet committed
        self._renewing: asyncio.Task[None] | None = None
        self._leased = False  # whether a renewal succeeded since the start

    async def start(self) -> None:
        """Take the lease (dropping rows an earlier process with this node id left) and keep renewing it.

        A database that cannot take it yet (`hipper serve` starts calls before its API's start-up migrates a new
        database) does not stop the node: the next renewal takes it, with whatever calls began meanwhile."""
        try:
            await self.renew()
        except Exception:
            log.warning("presence.start_failed", exc_info=True)
        self._renewing = asyncio.get_running_loop().create_task(self._keep_renewing())

    async def close(self) -> None:
        """Stop renewing and leave: this node's rows go at once, other nodes need not wait for the lease.
        Call after the calls and the writer are closed (their rows are written, then removed here)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        await self.written()
        try:
            async with self.sessions() as session:
                await leave(session, self.node_id)
                await session.commit()
        except Exception:  # the lease runs out by itself
            log.warning("presence.leave_failed", exc_info=True)

    # -- the call path ------------------------------------------------------------------------------------------

    def here(self, user_id: int) -> bool:
        """Whether the user is on a call carried by this node."""
        return self._here[user_id] > 0

    async def on_call(self, reads: Reads, user_id: int, now: datetime, *, elsewhere: bool | None = None) -> bool:
        """Whether the user is on a call on any live node (the routing snapshot's `on_call`). `elsewhere`: what
        the call path already read about the other nodes (store/user_state.py's `reachable`), if it did."""
        if self.here(user_id):
            return True
        if elsewhere is None:
            rows = await reads.rows(ON_CALL_ELSEWHERE, {"user_id": user_id, "node_id": self.node_id, "now": now})
            elsewhere = bool(rows)
        return elsewhere

    def joined(self, user_id: int, call_id: str) -> None:
        """The user's call was answered on this node: busy here at once, on other nodes once written."""
        self._here[user_id] += 1
        row = CallJoined(uuid.uuid4().hex, user_id, call_id[:200], self.node_id, datetime.now(UTC))
        self._joined.setdefault((row.call_id, user_id), []).append(row)
        self._write(row)

    def ringing(self, user_id: int, call_id: str) -> None:
        """An incoming call rings the user on this node: other nodes list it and forward its control here (not
        busy: `on_call` ignores it). Not written again after a purge (`rejoin`): it rings a few seconds."""
        if (call_id[:200], user_id) in self._ringing:
            return
        row = CallJoined(uuid.uuid4().hex, user_id, call_id[:200], self.node_id, datetime.now(UTC), ringing=True)
        self._ringing[(row.call_id, user_id)] = row.id
        self._write(row)

    def stopped_ringing(self, user_id: int, call_id: str) -> None:
        """The call of `ringing` stopped ringing the user (answered, given up, on to voicemail): its row goes."""
        row_id = self._ringing.pop((call_id[:200], user_id), None)
        if row_id is not None:
            self._write(CallLeft(row_id))

    def left(self, user_id: int, call_id: str) -> None:
        """The user's call (one `joined`) ended."""
        self._here[user_id] -= 1
        if self._here[user_id] <= 0:
            del self._here[user_id]
        key = (call_id[:200], user_id)
        rows = self._joined.get(key)
        if not rows:
            return
        row = rows.pop()
        if not rows:
            del self._joined[key]
        self._write(CallLeft(row.id))

    def _write(self, item: CallJoined | CallLeft) -> None:
        # Queued with the next batch, followed by a callback rather than a task per row (two rows per answered call,
        # two more for a call that rang a while).
        # A failure is logged: this node still knows; other nodes miss it (the database refused a write).
        done = self.writer.submit_logged([item], log, "presence.write_failed", {"item": type(item).__name__})
        self._writes.add(done)
        done.add_done_callback(self._writes.discard)

    async def written(self) -> None:
        """Wait until what `joined` and `left` handed to the writer so far is committed (or failed)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # -- the lease ----------------------------------------------------------------------------------------------

    async def renew(self) -> None:
        """Extend this node's lease and delete what dead nodes left. If the lease had run out meanwhile (a stall)
        and another node purged this node's rows, they are written again from memory."""
        now = datetime.now(UTC)
        async with self.sessions() as session:
            if not self._leased:
                await leave(session, self.node_id)  # what an earlier process with this node id left
            lease_until = now + timedelta(seconds=self.lease_seconds)
            if not await renew_lease(session, self.node_id, now, lease_until, self.api_url):
                await rejoin(session, self.node_id, [row for rows in self._joined.values() for row in rows])
            await purge_expired(session, now)
            await session.commit()
        self._leased = True

    async def _keep_renewing(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / RENEWALS_PER_LEASE)
            try:
                await self.renew()
            except Exception:  # the database is away for a moment: try again at the next round
                log.warning("presence.renew_failed", exc_info=True)
