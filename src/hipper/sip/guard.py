"""Failed SIP logins: one log line and one metric each, and bans for who keeps guessing.

A source address that fails `source_failures` times within `window` seconds is banned for `ban` seconds:
its new REGISTER, INVITE and SUBSCRIBE requests are dropped unanswered (what a firewall rule from fail2ban
would do, without waiting for one). An account (the digest username, whether it exists or not, so a lock
says nothing about which accounts exist) that fails `account_failures` times within the window is locked
for `ban` seconds against every address except those it authenticated from before: a guesser spread over
many addresses cannot lock a working phone out.

Memory is bounded: each table keeps at most `MAX_ENTRIES` keys, forgetting the oldest first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger(__name__)

AUTH_FAILURES = Counter(
    "hipper_sip_auth_failures_total",
    "Failed SIP digest authentications, by request method and reason (password, uri, qop, replay, locked, ...)",
    ["method", "reason"],
)
AUTH_BANS = Counter("hipper_sip_auth_bans_total", "SIP bans started, by scope (source address or account)", ["scope"])
DROPPED = Counter("hipper_sip_banned_requests_total", "SIP requests dropped unanswered because their source is banned")

MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class GuardPolicy:
    source_failures: int = 20
    account_failures: int = 10
    window: float = 60.0
    ban: float = 600.0


@dataclass
class _Count:
    started: float
    failures: int = 0
    banned_until: float = 0.0


class _Table:
    """Failure counts by key in a fixed window, with a ban once `limit` is reached; oldest keys forgotten first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: OrderedDict[str, _Count] = OrderedDict()

    def banned(self, key: str, now: float) -> bool:
        count = self.counts.get(key)
        return count is not None and count.banned_until > now

    def fail(self, key: str, now: float, policy: GuardPolicy) -> bool:
        """Count a failure; True when it starts a ban."""
        count = self.counts.get(key)
        if count is None or (now - count.started > policy.window and count.banned_until <= now):
            count = _Count(now)
        self.counts[key] = count
        self.counts.move_to_end(key)
        if len(self.counts) > MAX_ENTRIES:
            self.counts.popitem(last=False)
        count.failures += 1
        if count.failures >= self.limit and count.banned_until <= now:
            count.banned_until = now + policy.ban
            count.started = count.banned_until  # a fresh window once the ban is over
            count.failures = 0
            return True
        return False


class AuthGuard:
    def __init__(self, policy: GuardPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or GuardPolicy()
        self.clock = clock
        self._sources = _Table(self.policy.source_failures)
        self._accounts = _Table(self.policy.account_failures)
        # (account, source host) pairs that authenticated: exempt from that account's lock.
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def source_banned(self, host: str) -> bool:
        return self._sources.banned(host, self.clock())

    def account_locked(self, username: str, host: str) -> bool:
        now = self.clock()
        if not self._accounts.banned(username, now):
            return False
        seen = self._known.get((username, host))
        return seen is None or now - seen > self.policy.ban

    def dropped(self) -> None:
        DROPPED.inc()

    def succeeded(self, username: str, host: str) -> None:
        key = (username, host)
        self._known[key] = self.clock()
        self._known.move_to_end(key)
        if len(self._known) > MAX_ENTRIES:
            self._known.popitem(last=False)

    def failed(self, *, peer: str, host: str, username: str, method: str, reason: str) -> None:
        """One failed authentication: a log line naming the peer (fail2ban reads `source`), a metric, the counts."""
        AUTH_FAILURES.labels(method, reason).inc()
        log.warning(
            "sip.auth_failed",
            extra={"source": host, "peer": peer, "username": username[:64], "method": method, "reason": reason},
        )
        now = self.clock()
        if self._sources.fail(host, now, self.policy):
            AUTH_BANS.labels("source").inc()
            log.warning("sip.auth_banned", extra={"source": host, "peer": peer, "seconds": self.policy.ban})
        if username and self._accounts.fail(username, now, self.policy):
            AUTH_BANS.labels("account").inc()
            log.warning(
                "sip.auth_account_locked", extra={"username": username[:64], "peer": peer, "seconds": self.policy.ban}
            )


RATE_LIMITED = Counter(
    "hipper_sip_rate_limited_total", "SIP messages dropped unread because their source address sent too many"
)


class SourceLimit:
    """A token bucket per source address, checked before a message is even parsed (a flood from one address then
    costs a dictionary lookup per packet, not a parse and a challenge). `exempt` hosts (the trunk, the mobile
    network) are never limited."""

    def __init__(
        self,
        rate: float,
        burst: float,
        exempt: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.exempt = exempt
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # host → [tokens, last refill, limited]

    def allow(self, host: str) -> bool:
        if host in self.exempt:
            return True
        now = self.clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = [self.burst, now, 0.0]
            if len(self._buckets) > MAX_ENTRIES:
                self._buckets.popitem(last=False)
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            bucket[2] = 0.0
            return True
        RATE_LIMITED.inc()
        if not bucket[2]:
            bucket[2] = 1.0  # one line per episode, not per dropped packet
            log.warning("sip.source_rate_limited", extra={"source": host, "rate": self.rate, "burst": self.burst})
        return False
