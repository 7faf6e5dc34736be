"""Remote office (F3): every incoming call is delivered to the given number (a home or hotel phone)."""

from __future__ import annotations

from pydantic import model_validator

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.numbers import PhoneNumber
from hipper.domain.services.base import ServiceSettings, refuse_own_number


class RemoteOffice(ServiceSettings):
    """Deliver all incoming calls to another number; one's own mobile is a legitimate remote office."""

    service = "remote-office"
    active: bool = False
    destination: PhoneNumber | None = None

    @model_validator(mode="after")
    def _needs_destination(self) -> RemoteOffice:
        if self.active and self.destination is None:
            raise InvalidSetting("destination", "a destination is required when remote office is active")
        return self

    def phone_numbers(self) -> set[str]:
        return {self.destination} if self.destination else set()

    def check(self, ctx: UserContext) -> None:
        refuse_own_number(
            "destination",
            self.destination,
            ctx.fixed_numbers(),
            "your own fixed number or extension as remote office would ring straight back to you",
        )
