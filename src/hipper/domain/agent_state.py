"""The call-center agent's ACD state (J1) as pure functions of the state and `now`.

The user picks any state except wrap-up. Wrap-up is entered by the exchange when a call-center call the agent
took ends, and turns back into available by itself once the call center's wrap-up time has passed — so nothing
has to run at that moment: every reader asks `at(agent, now)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from hipper.domain.errors import InvalidSetting


class AcdState(StrEnum):
    SIGNED_IN_UNAVAILABLE = "signed_in_unavailable"
    SIGNED_OUT = "signed_out"
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    WRAP_UP = "wrap_up"


WRAP_UP_IS_AUTOMATIC = "wrap-up starts by itself after a call-center call; choose another state"


@dataclass(frozen=True)
class AgentState:
    state: AcdState
    since: datetime | None = None
    # Set only in wrap-up: when the agent becomes available again.
    wrap_up_until: datetime | None = None


def at(agent: AgentState, now: datetime) -> AgentState:
    """The state as it is at `now`: a wrap-up whose time has passed has become available."""
    if agent.state is AcdState.WRAP_UP and agent.wrap_up_until is not None and agent.wrap_up_until <= now:
        return AgentState(AcdState.AVAILABLE, since=agent.wrap_up_until)
    return agent


def set_by_user(agent: AgentState, wanted: AcdState, now: datetime) -> AgentState:
    """The user chose `wanted`; choosing the state one is already in changes nothing (not even `since`)."""
    agent = at(agent, now)
    if wanted is agent.state:
        return agent
    if wanted is AcdState.WRAP_UP:
        raise InvalidSetting("state", WRAP_UP_IS_AUTOMATIC, "wrap_up_automatic")
    return AgentState(wanted, since=now)


def call_center_call_ended(agent: AgentState, wrap_up_seconds: int, now: datetime) -> AgentState:
    """A call-center call the agent answered has ended: wrap up, then become available again.

    Only an agent who is still available (or already wrapping up after an earlier call) wraps up: one who
    signed out or made themselves unavailable during the call keeps that choice.
    """
    agent = at(agent, now)
    if agent.state not in (AcdState.AVAILABLE, AcdState.WRAP_UP) or wrap_up_seconds <= 0:
        return agent
    return AgentState(AcdState.WRAP_UP, since=now, wrap_up_until=now + timedelta(seconds=wrap_up_seconds))


def receives_call_center_calls(agent: AgentState, now: datetime) -> bool:
    return at(agent, now).state is AcdState.AVAILABLE
