"""Simultaneous ring (F7): other phones ring along with the user's own."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hipper.domain.context import UserContext
from hipper.domain.numbers import PhoneNumber
from hipper.domain.services.base import ServiceSettings, refuse_duplicates, refuse_own_number

MAX_TARGETS = 10


class SimultaneousRingTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: PhoneNumber
    # A 200 from the target is not yet an answer: the callee must press a key (keeps voicemail boxes out).
    answer_confirmation: bool = False


class SimultaneousRing(ServiceSettings):
    """Ring up to ten other numbers at the same time as the user's own phones."""

    service = "simultaneous-ring"
    active: bool = False
    targets: list[SimultaneousRingTarget] = Field(default_factory=list, max_length=MAX_TARGETS)
    # When the user is already in a call, a new call does not ring the targets.
    do_not_ring_when_busy: bool = False

    def phone_numbers(self) -> set[str]:
        return {target.number for target in self.targets}

    def check(self, ctx: UserContext) -> None:
        fixed = ctx.fixed_numbers()
        for index, target in enumerate(self.targets):
            refuse_own_number(
                f"targets.{index}.number",
                target.number,
                fixed,
                "your own fixed number or extension already rings; as a target it would ring back into itself",
            )
        refuse_duplicates("targets", (target.number for target in self.targets))
