"""Company and department numbers by day and night."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hipper.domain.group_routing import GroupNumber, GroupPlan, plan_group_call
from hipper.domain.routing import ForwardStep, RejectStep

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)


def group(night_mode: bool, day: str | None = "200", night: str | None = "+31201234888") -> GroupNumber:
    return GroupNumber(
        kind="company",
        name="Acme",
        number="+31201234000",
        day_destination=day,
        night_destination=night,
        night_mode=night_mode,
    )


@pytest.mark.parametrize(
    ("night_mode", "day", "night", "expected", "mode"),
    [
        (False, "200", "+31201234888", "forward 200", "day"),
        (True, "200", "+31201234888", "forward +31201234888", "night"),
        (True, "200", None, "forward 200", "night"),
        (False, None, "+31201234888", "reject 480", "day"),
        (True, None, None, "reject 480", "night"),
    ],
)
def test_day_and_night(night_mode: bool, day: str | None, night: str | None, expected: str, mode: str) -> None:
    plan = plan_group_call(group(night_mode, day, night), "+31301234567", NOW)
    step = plan.step
    shown = f"forward {step.destination}" if isinstance(step, ForwardStep) else f"reject {step.status}"
    assert shown == expected
    assert plan.mode == mode
    assert step.reason


def test_night_without_destination_says_so() -> None:
    plan = plan_group_call(group(True, "200", None), None, NOW)
    assert "no night destination" in plan.step.reason


def test_max_forwards_zero() -> None:
    plan = plan_group_call(group(False), None, NOW, max_forwards=0)
    assert isinstance(plan.step, RejectStep)
    assert plan.step.status == 483


def test_group_plan_round_trips_through_json() -> None:
    plan = plan_group_call(group(True), "+31301234567", NOW)
    assert GroupPlan.model_validate(json.loads(json.dumps(plan.model_dump(mode="json")))) == plan
