"""Which voicemail greeting a caller hears (SPEC H2/H3): one for "no answer", one for "busy".

A user may choose a greeting for each case. The voicemail application is entered for a reason (the routing
plan's `VoicemailStep.cause`); a busy user's callers hear the busy greeting, everyone else the no-answer one.
"""

from __future__ import annotations

from typing import Final, Literal

from hipper.domain.routing.plan import DiversionReason

GreetingCase = Literal["no_answer", "busy"]
GREETING_CASES: Final[tuple[GreetingCase, ...]] = ("no_answer", "busy")

# Do not disturb reaches voicemail through the busy treatment (docs/call-routing.md line 7) and the network
# signals it as busy (RFC 4458 cause 486), so its callers hear the busy greeting too. Forward-all, not reachable
# and the Personal Assistant's hand-off are all "the person is not available": the no-answer greeting.
_BUSY_CAUSES: Final[frozenset[DiversionReason]] = frozenset({"user-busy", "do-not-disturb"})


def greeting_case(cause: DiversionReason) -> GreetingCase:
    """The greeting case for the reason the call was handed to voicemail."""
    return "busy" if cause in _BUSY_CAUSES else "no_answer"


def chosen_greeting(case: GreetingCase, no_answer: int | None, busy: int | None) -> int | None:
    """The greeting id callers hear for `case`, given the user's choices; None: the system greeting.

    Busy without a choice of its own falls back to the no-answer greeting (most users record one greeting).
    """
    if case == "busy" and busy is not None:
        return busy
    return no_answer
