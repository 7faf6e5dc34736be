"""What a ring (a fork of one or more branches) came to, from what its branches answered — a rule, so it is here
and table-tested (tests/domain/test_ring_outcome.py), not re-decided by the engine that rings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RingOutcomeKind = Literal["answered", "busy", "no-answer", "not-reachable", "gone"]

# Final answers that mean "busy here / everywhere / declined" (RFC 3261 §21.4.25, §21.6.1, §21.6.2).
BUSY_STATUSES = frozenset({486, 600, 603})


@dataclass(frozen=True)
class RingOutcome:
    kind: RingOutcomeKind
    status: int = 0  # the SIP status the caller gets when nothing follows in the plan (0: not a failure)


def ring_outcome(statuses: list[int], *, rang: bool, timed_out: bool) -> RingOutcome:
    """No answer: the ring's outcome from the branches' final statuses in arrival order, whether any branch rang
    (a 180/183), and whether the ring time ran out first.

    Everyone busy is busy; nothing that rang and nobody busy is not reachable (phones off, no 1xx at all); a mix
    with a busy phone is busy (the plan's busy treatment, as BroadWorks does when a device is in use); anything else
    that rang and failed is no answer."""
    if timed_out:
        return RingOutcome("no-answer")
    busy = [status for status in statuses if status in BUSY_STATUSES]
    if statuses and len(busy) == len(statuses):
        return RingOutcome("busy", statuses[-1])
    if busy:
        return RingOutcome("busy", 486)
    if not rang:
        return RingOutcome("not-reachable", statuses[-1] if statuses else 480)
    return RingOutcome("no-answer", statuses[-1] if statuses else 480)
