"""Anywhere (F10): mobile phones ("locations") ring along with the user's own and can be added or removed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.numbers import PhoneNumber
from hipper.domain.services.base import DisplayName, ServiceSettings, refuse_duplicates, refuse_own_number

MAX_LOCATIONS = 10
# Ids stay well inside what every client (JavaScript numbers included) represents exactly.
MAX_LOCATION_ID = 2**31 - 1


class AnywhereLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Assigned by the exchange when a location is added (send it back to keep a location's identity).
    id: int | None = Field(default=None, ge=1, le=MAX_LOCATION_ID)
    active: bool = True
    name: DisplayName = ""
    number: PhoneNumber
    # Offer a waiting call as a separate call (mobile networks with 2G only).
    call_control: bool = False
    # Keep calls to the fixed number out of the mobile's own voicemail.
    block_diversion: bool = False
    answer_confirmation: bool = False


class Anywhere(ServiceSettings):
    """Ring mobile phones along with the user's own; each location can be switched off on its own."""

    service = "anywhere"
    # Click-to-dial calls the user places ring the Anywhere locations too.
    click_to_dial_rings_locations: bool = False
    locations: list[AnywhereLocation] = Field(default_factory=list, max_length=MAX_LOCATIONS)

    @model_validator(mode="after")
    def _number_the_locations(self) -> Anywhere:
        seen: set[int] = set()
        for index, location in enumerate(self.locations):
            if location.id is None:
                continue
            if location.id in seen:
                raise InvalidSetting(f"locations.{index}.id", f"id {location.id} is used by another location")
            seen.add(location.id)
        # New locations get ids above the highest one, so an id is not reused for another location; only when
        # a client already used the top of the range are the lowest free ids taken instead.
        candidates = iter(range(max(seen, default=0) + 1, MAX_LOCATION_ID + 1))
        fallback = (n for n in range(1, MAX_LOCATION_ID + 1) if n not in seen)
        for location in self.locations:
            if location.id is None:
                location.id = next(candidates, None) or next(fallback)
        return self

    def phone_numbers(self) -> set[str]:
        return {location.number for location in self.locations}

    def check(self, ctx: UserContext) -> None:
        fixed = ctx.fixed_numbers()
        for index, location in enumerate(self.locations):
            refuse_own_number(
                f"locations.{index}.number",
                location.number,
                fixed,
                "your own fixed number or extension already rings; as a location it would ring back into itself",
            )
        refuse_duplicates("locations", (location.number for location in self.locations))
