"""Which greeting a caller hears: the reason for the hand-off picks the case, busy falls back to no answer."""

from __future__ import annotations

import pytest

from hipper.domain.greetings import GreetingCase, chosen_greeting, greeting_case
from hipper.domain.routing.plan import DiversionReason


@pytest.mark.parametrize(
    ("cause", "case"),
    [
        ("user-busy", "busy"),
        ("do-not-disturb", "busy"),
        ("no-answer", "no_answer"),
        ("unconditional", "no_answer"),
        ("unavailable", "no_answer"),
        ("deflection", "no_answer"),
    ],
)
def test_the_cause_picks_the_case(cause: DiversionReason, case: GreetingCase) -> None:
    assert greeting_case(cause) == case


@pytest.mark.parametrize(
    ("case", "no_answer", "busy", "heard"),
    [
        ("no_answer", 1, 2, 1),
        ("busy", 1, 2, 2),
        ("busy", 1, None, 1),  # no busy greeting: the no-answer one
        ("busy", None, 2, 2),
        ("no_answer", None, 2, None),  # a busy greeting is never heard by a caller who got no answer
        ("no_answer", None, None, None),
        ("busy", None, None, None),  # the system greeting
    ],
)
def test_busy_falls_back_to_no_answer_and_both_to_the_system_greeting(
    case: GreetingCase, no_answer: int | None, busy: int | None, heard: int | None
) -> None:
    assert chosen_greeting(case, no_answer, busy) == heard
