"""The agent's ACD state machine (J1) and the call-center-agent document (J2, J3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hipper.domain import agent_state
from hipper.domain.agent_state import AcdState, AgentState
from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting, NotLicensed, ReadOnlySetting
from hipper.domain.licences import ALL_LICENCES
from hipper.domain.services import CallCenterAgent, change

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CTX = UserContext(1, "201", {"direct": "+31201234101", "mobile": "+31612345601"}, ALL_LICENCES)

USER_CHOICES = [s for s in AcdState if s is not AcdState.WRAP_UP]


@pytest.mark.parametrize("start", list(AcdState))
@pytest.mark.parametrize("wanted", USER_CHOICES)
def test_the_user_may_choose_every_state_but_wrap_up(start: AcdState, wanted: AcdState) -> None:
    until = NOW + timedelta(seconds=10) if start is AcdState.WRAP_UP else None
    agent = AgentState(start, since=NOW - timedelta(minutes=5), wrap_up_until=until)
    new = agent_state.set_by_user(agent, wanted, NOW)
    assert new.state is wanted
    assert new.wrap_up_until is None
    assert new.since == (agent.since if wanted is start else NOW)


@pytest.mark.parametrize("start", USER_CHOICES)
def test_wrap_up_cannot_be_chosen_by_hand(start: AcdState) -> None:
    with pytest.raises(InvalidSetting) as info:
        agent_state.set_by_user(AgentState(start, since=NOW), AcdState.WRAP_UP, NOW)
    assert info.value.field == "state"


def test_wrap_up_after_a_call_center_call_returns_to_available_after_the_wrap_up_time() -> None:
    agent = agent_state.call_center_call_ended(AgentState(AcdState.AVAILABLE, since=NOW), 30, NOW)
    assert agent == AgentState(AcdState.WRAP_UP, since=NOW, wrap_up_until=NOW + timedelta(seconds=30))
    assert not agent_state.receives_call_center_calls(agent, NOW + timedelta(seconds=29))
    assert agent_state.at(agent, NOW + timedelta(seconds=29)).state is AcdState.WRAP_UP
    later = agent_state.at(agent, NOW + timedelta(seconds=30))
    assert later == AgentState(AcdState.AVAILABLE, since=NOW + timedelta(seconds=30))
    assert agent_state.receives_call_center_calls(agent, NOW + timedelta(minutes=5))
    # Choosing "wrap up" while still in it is no change (the app sends its document back).
    assert agent_state.set_by_user(agent, AcdState.WRAP_UP, NOW + timedelta(seconds=1)) == agent


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        (AcdState.AVAILABLE, 0, AcdState.AVAILABLE),  # no wrap-up time configured
        (AcdState.UNAVAILABLE, 30, AcdState.UNAVAILABLE),  # the agent's own choice during the call wins
        (AcdState.SIGNED_OUT, 30, AcdState.SIGNED_OUT),
        (AcdState.SIGNED_IN_UNAVAILABLE, 30, AcdState.SIGNED_IN_UNAVAILABLE),
        (AcdState.WRAP_UP, 30, AcdState.WRAP_UP),  # a second call restarts the wrap-up
    ],
)
def test_call_end_in_other_states(start: AcdState, seconds: int, expected: AcdState) -> None:
    agent = AgentState(start, since=NOW - timedelta(minutes=1), wrap_up_until=NOW + timedelta(seconds=5))
    new = agent_state.call_center_call_ended(agent, seconds, NOW)
    assert new.state is expected
    if expected is AcdState.WRAP_UP:
        assert new.wrap_up_until == NOW + timedelta(seconds=30)


CURRENT = CallCenterAgent.model_validate(
    {
        "state": "available",
        "call_centers": [
            {"id": 1, "name": "Sales", "number": "+31201234500", "joined": True},
            {"id": 2, "name": "Support", "number": None, "joined": True},
        ],
        "wrap_up_seconds": 30,
    }
)


def _change(proposed: dict[str, object], ctx: UserContext = CTX) -> CallCenterAgent:
    new = change(CallCenterAgent, CURRENT, proposed, ctx, stepped_up=False)
    assert isinstance(new, CallCenterAgent)
    return new


def test_joining_and_leaving_only_ones_own_call_centers() -> None:
    new = _change({"state": "unavailable", "call_centers": [{"id": 2, "joined": False}]})
    assert new.joined_by_id(CURRENT) == {1: True, 2: False}
    with pytest.raises(InvalidSetting) as info:
        _change({"call_centers": [{"id": 2, "joined": False}, {"id": 9, "joined": True}]})
    assert info.value.field == "call_centers.1.id"
    with pytest.raises(InvalidSetting) as info:
        _change({"call_centers": [{"id": 2}, {"id": 2, "joined": False}]})
    assert info.value.field == "call_centers.1.id"


def test_the_agent_document_refuses_wrap_up_admin_fields_and_unlicensed_mobile() -> None:
    with pytest.raises(InvalidSetting) as info:
        _change({"state": "wrap_up"})
    assert info.value.field == "state"
    with pytest.raises(InvalidSetting) as info:
        _change({"state": "lunch"})
    assert info.value.field == "state"
    with pytest.raises(ReadOnlySetting):
        _change({"wrap_up_seconds": 0})
    assert _change({"calls_to_mobile": True}).calls_to_mobile
    with pytest.raises(NotLicensed):
        _change({"calls_to_mobile": True}, UserContext(1, "201", {}, ALL_LICENCES - {"fixed-mobile"}))
