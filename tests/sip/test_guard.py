"""Failed-login bans and the per-source message limit, on a stepped clock."""

from __future__ import annotations

from hipper.sip.guard import AuthGuard, GuardPolicy, SourceLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(guard: AuthGuard, host: str, username: str = "alice") -> None:
    guard.failed(peer=f"udp:{host}:5060", host=host, username=username, method="REGISTER", reason="password")


def test_a_source_is_banned_for_the_ban_period_then_starts_afresh() -> None:
    clock = Clock()
    guard = AuthGuard(GuardPolicy(source_failures=3, account_failures=100, window=60, ban=600), clock)
    for _ in range(2):
        fail(guard, "192.0.2.1")
    assert not guard.source_banned("192.0.2.1")
    clock.now += 61  # the window passed: the count starts again
    for _ in range(2):
        fail(guard, "192.0.2.1")
    assert not guard.source_banned("192.0.2.1")
    fail(guard, "192.0.2.1")
    assert guard.source_banned("192.0.2.1") and not guard.source_banned("192.0.2.2")
    clock.now += 601
    assert not guard.source_banned("192.0.2.1")
    fail(guard, "192.0.2.1")
    assert not guard.source_banned("192.0.2.1")  # one failure after a ban is not a new ban


def test_an_account_lock_spares_the_addresses_it_authenticated_from() -> None:
    clock = Clock()
    guard = AuthGuard(GuardPolicy(source_failures=100, account_failures=3, window=60, ban=600), clock)
    guard.succeeded("alice", "192.0.2.10")
    for index in range(3):
        fail(guard, f"198.51.100.{index}")
    assert guard.account_locked("alice", "198.51.100.77")
    assert not guard.account_locked("alice", "192.0.2.10")
    assert not guard.account_locked("bob", "198.51.100.77")
    clock.now += 601
    assert not guard.account_locked("alice", "198.51.100.77")


def test_the_source_limit_is_a_token_bucket_with_exempt_hosts() -> None:
    clock = Clock()
    limit = SourceLimit(rate=10, burst=5, exempt=frozenset({"203.0.113.1"}), clock=clock)
    assert [limit.allow("192.0.2.1") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limit.allow("192.0.2.2")  # another address has its own bucket
    clock.now += 0.2  # two tokens back at 10/s
    assert [limit.allow("192.0.2.1") for _ in range(3)] == [True, True, False]
    assert all(limit.allow("203.0.113.1") for _ in range(100))
