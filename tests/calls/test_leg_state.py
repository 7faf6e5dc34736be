"""A leg's explicit state (engine/leg.py `LegState`): forward only, and an answer is remembered after the end."""

from __future__ import annotations

from typing import Any, cast

from hipper.engine.leg import Leg, LegState
from hipper.sip.transport import Peer


def bare_leg() -> Leg:
    nothing = cast(Any, None)  # the state machine needs no stack and no owner
    return Leg(nothing, nothing, Peer("udp", "127.0.0.1", 5060))


def test_a_leg_goes_forward_only() -> None:
    leg = bare_leg()
    assert (leg.state, leg.ended, leg.was_confirmed) == (LegState.TRYING, False, False)
    leg.enter(LegState.CONFIRMED)
    leg.enter(LegState.EARLY)  # a late 180 after the 200 changes nothing
    assert leg.state is LegState.CONFIRMED
    leg.terminate()
    leg.enter(LegState.CONFIRMED)  # a retransmitted 200 after the BYE neither
    assert (leg.state, leg.ended, leg.was_confirmed) == (LegState.TERMINATED, True, True)


def test_a_leg_refused_at_once_was_never_answered() -> None:
    leg = bare_leg()
    leg.terminate()
    assert leg.ended and not leg.was_confirmed
