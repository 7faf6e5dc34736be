"""Night forwarding (F9): the administrator switches night mode; the user only sees it."""

from __future__ import annotations

from pydantic import model_validator

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.numbers import PhoneNumber
from hipper.domain.services.base import ServiceSettings, refuse_own_number


class NightForwarding(ServiceSettings):
    """Read-only for the user: whether night mode is on and where calls then go. Set by the administrator."""

    service = "night-forwarding"
    administrator_only = True
    read_only_fields = frozenset({"night_mode", "destination"})
    night_mode: bool = False
    destination: PhoneNumber | None = None

    @model_validator(mode="after")
    def _needs_destination(self) -> NightForwarding:
        if self.night_mode and self.destination is None:
            raise InvalidSetting("destination", "a destination is required when night mode is on")
        return self

    def phone_numbers(self) -> set[str]:
        return {self.destination} if self.destination else set()

    def check(self, ctx: UserContext) -> None:
        refuse_own_number(
            "destination",
            self.destination,
            ctx.fixed_numbers(),
            "night forwarding to the user's own fixed number or extension would ring straight back to them",
        )
