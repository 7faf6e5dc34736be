"""The ring outcome rule, case by case (domain/routing/outcome.py)."""

from __future__ import annotations

import pytest

from hipper.domain.routing.outcome import RingOutcome, ring_outcome

CASES = [
    # statuses, rang, timed_out -> outcome
    ([], False, True, RingOutcome("no-answer")),
    ([486], True, True, RingOutcome("no-answer")),  # the ring time ran out: whatever came before
    ([486], True, False, RingOutcome("busy", 486)),
    ([600, 603], False, False, RingOutcome("busy", 603)),  # everyone busy or declined
    ([486, 480], True, False, RingOutcome("busy", 486)),  # one phone in use among others: busy treatment
    ([480, 486], False, False, RingOutcome("busy", 486)),
    ([408], False, False, RingOutcome("not-reachable", 408)),  # nothing rang (no 1xx): not reachable
    ([], False, False, RingOutcome("not-reachable", 480)),
    ([480, 503], False, False, RingOutcome("not-reachable", 503)),
    ([480], True, False, RingOutcome("no-answer", 480)),  # it rang, then gave up: no answer
    ([487, 404], True, False, RingOutcome("no-answer", 404)),
]


@pytest.mark.parametrize(("statuses", "rang", "timed_out", "expected"), CASES)
def test_ring_outcome(statuses: list[int], rang: bool, timed_out: bool, expected: RingOutcome) -> None:
    assert ring_outcome(statuses, rang=rang, timed_out=timed_out) == expected
