"""The forwarding history of a call (domain/routing/history.py), the loop outcome (`plan_loop`) and answer
confirmation (domain/routing/confirmation.py): pure, table-tested."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hipper.domain.routing import (
    AnswerConfirmation,
    CallHistory,
    IncomingCall,
    RejectStep,
    VoicemailStep,
    plan_loop,
    public_number,
)
from hipper.domain.routing.plan import DiversionReason
from tests.domain.test_routing import NOW, RULES, user_state

A, B, C, OUT = "+31201234102", "+31201234103", "+31201234104", "+31612345678"


def chain(*hops: tuple[str, int | None, DiversionReason | None]) -> CallHistory:
    history = CallHistory()
    for number, user_id, reason in hops:
        history = history.reach(number, user_id, reason)
    return history


def test_each_forward_is_a_child_entry_with_its_cause_and_mapped_from_its_parent() -> None:
    history = chain((A, 1, None), (B, 2, "user-busy"), (C, 3, "no-answer"), (OUT, None, "unconditional"))
    assert [(e.number, e.index, e.cause, e.mapped_from) for e in history.entries] == [
        (A, "1", None, None),
        (B, "1.1", 486, "1"),
        (C, "1.1.1", 408, "1.1"),
        (OUT, "1.1.1.1", 302, "1.1.1"),
    ]


def test_one_diversion_per_forwarding_party_most_recent_first_the_original_number_last() -> None:
    history = chain((A, 1, None), (B, 2, "user-busy"), (C, 3, "no-answer"), (OUT, None, "unconditional"))
    assert history.diversions() == [(C, "unconditional"), (B, "no-answer"), (A, "user-busy")]


@pytest.mark.parametrize(
    ("reason", "cause"),
    [("unconditional", 302), ("user-busy", 486), ("do-not-disturb", 486), ("no-answer", 408),
     ("unavailable", 503), ("deflection", 480)],
)  # fmt: skip
def test_history_info_causes_are_rfc_4458s(reason: DiversionReason, cause: int) -> None:
    assert chain((A, 1, None), (B, 2, reason)).entries[-1].cause == cause


def test_received_entries_come_first_and_ours_continue_below_them() -> None:
    received = CallHistory(
        received_history=("<sip:+31309999999@example.net>;index=1", "<sip:+31309999998@example.net>;index=1.1"),
        received_index="1.1",
        received_target="+31309999998",
    )
    history = received.reach(A, 1, None).reach(B, 2, "no-answer")
    assert [(e.index, e.mapped_from, e.received) for e in history.entries] == [
        ("1.1.1", None, False),
        ("1.1.1.1", "1.1.1", False),
    ]
    assert history.forwarded


def test_a_received_last_entry_naming_the_called_number_stands_for_it() -> None:
    received = CallHistory(received_history=(f"<sip:{A}@example.net>;index=1",), received_index="1", received_target=A)
    history = received.reach(A, 1, None).reach(B, 2, "user-busy")
    assert [(e.index, e.mapped_from, e.received) for e in history.entries] == [("1", None, True), ("1.1", "1", False)]
    assert history.diversions() == [(A, "user-busy")]


def test_a_loop_is_a_user_met_twice() -> None:
    history = chain((A, 1, None), (B, 2, "unconditional"), (OUT, None, "unconditional"))
    assert history.met(1) and history.met(2) and not history.met(3)
    assert history.reached(OUT) and not history.reached(C)
    assert not chain((A, 1, None)).forwarded


@pytest.mark.parametrize(
    ("services", "expected"),
    [({}, "voicemail"), ({"voicemail": {"active": False}}, "reject 482")],
)
def test_a_loop_ends_at_the_user_met_again(services: dict[str, dict[str, Any]], expected: str) -> None:
    plan = plan_loop(IncomingCall(caller="+31301234567", called="fixed", diversion_count=2), user_state(services), NOW,
                     RULES)  # fmt: skip
    [step] = plan.steps
    if isinstance(step, VoicemailStep):
        assert expected == "voicemail" and step.cause == "no-answer" and step.line == 0
    else:
        assert isinstance(step, RejectStep) and expected == f"reject {step.status}"
    assert "loop" in step.reason


@pytest.mark.parametrize(
    ("numbers", "called", "expected"),
    [
        ({"direct": A, "company": "+31201234000", "mobile": OUT}, "fixed", A),
        ({"direct": A, "company": "+31201234000", "mobile": OUT}, "mobile", OUT),
        ({"company": "+31201234000"}, "fixed", "+31201234000"),
        ({}, "fixed", None),
    ],
)
def test_a_user_is_named_outside_by_an_e164_number_never_an_extension(
    numbers: dict[str, str], called: Any, expected: str | None
) -> None:
    assert public_number(replace(user_state(), extension="202", numbers=numbers), called) == expected


@pytest.mark.parametrize(("plays", "again"), [(1, True), (2, True), (3, False)])  # the prompt is repeated at most twice
def test_the_confirmation_prompt_is_repeated_at_most_twice(plays: int, again: bool) -> None:
    assert AnswerConfirmation(10.0).play_again(plays) is again


def test_only_the_key_confirms_and_the_time_runs_out() -> None:
    confirmation = AnswerConfirmation(2.0)
    assert confirmation.accepts("1") and not confirmation.accepts("2")
    assert confirmation.remaining(0.5) == 1.5 and confirmation.remaining(3.0) == 0.0
