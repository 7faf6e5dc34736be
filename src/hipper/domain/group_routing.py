"""Company and department numbers: the day destination, or the night destination while night mode is on. Pure.

Night mode is the company's switch (`companies.night_mode`, set by the administrator); a department follows its
company. A destination is a user's extension (the executor then runs that user's own plan) or any number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hipper.domain.routing.plan import ForwardStep, RejectStep


@dataclass(frozen=True)
class GroupNumber:
    kind: Literal["company", "department"]
    name: str
    number: str
    day_destination: str | None
    night_destination: str | None
    night_mode: bool


class GroupPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: str
    kind: Literal["company", "department"]
    mode: Literal["day", "night"]
    caller: str | None
    at: datetime
    step: ForwardStep | RejectStep


def plan_group_call(group: GroupNumber, caller: str | None, now: datetime, *, max_forwards: int = 70) -> GroupPlan:
    mode: Literal["day", "night"] = "night" if group.night_mode else "day"
    step: ForwardStep | RejectStep
    if max_forwards <= 0:
        step = RejectStep(
            line=0, status=483, reason_phrase="Too Many Hops", reason="the call arrived with Max-Forwards 0"
        )
    elif group.night_mode and group.night_destination:
        step = ForwardStep(
            line=1,
            service="night-forwarding",
            destination=group.night_destination,
            reason=f"night mode is on: the {group.kind} number {group.name} rings {group.night_destination}",
        )
    elif group.day_destination:
        why = f"the {group.kind} number {group.name} rings {group.day_destination}"
        if group.night_mode:
            why = f"night mode is on but no night destination is set: {why}"
        step = ForwardStep(line=5, destination=group.day_destination, reason=why)
    else:
        step = RejectStep(
            line=9,
            status=480,
            reason_phrase="Temporarily Unavailable",
            reason=f"the {group.kind} number {group.name} has no {mode} destination",
        )
    return GroupPlan(number=group.number, kind=group.kind, mode=mode, caller=caller, at=now, step=step)
