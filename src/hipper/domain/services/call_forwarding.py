"""Call forwarding: always (F1), the fixed number only (F2), on busy / no answer / not reachable (F8)."""

from __future__ import annotations

from pydantic import Field, model_validator

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.numbers import PhoneNumber
from hipper.domain.services.base import ServiceSettings, refuse_own_number

LOOP_REASON = "forwarding to your own number would ring straight back to you"


class _Forwarding(ServiceSettings):
    active: bool = False
    destination: PhoneNumber | None = None

    @model_validator(mode="after")
    def _needs_destination(self) -> _Forwarding:
        if self.active and self.destination is None:
            raise InvalidSetting("destination", "a destination is required when forwarding is active")
        return self

    def phone_numbers(self) -> set[str]:
        return {self.destination} if self.destination else set()

    def check(self, ctx: UserContext) -> None:
        refuse_own_number("destination", self.destination, ctx.own_numbers(), LOOP_REASON)


class CallForwardingAlways(ServiceSettings):
    """Forward every call to a number or to voicemail."""

    service = "call-forwarding-always"
    active: bool = False
    to_voicemail: bool = False
    destination: PhoneNumber | None = None
    ring_splash: bool = False

    @model_validator(mode="after")
    def _needs_destination(self) -> CallForwardingAlways:
        if self.active and not self.to_voicemail and self.destination is None:
            raise InvalidSetting("destination", "a destination is required when forwarding to a number")
        return self

    def phone_numbers(self) -> set[str]:
        return {self.destination} if self.destination else set()

    def check(self, ctx: UserContext) -> None:
        refuse_own_number("destination", self.destination, ctx.own_numbers(), LOOP_REASON)


class CallForwardingAlwaysSecondary(ServiceSettings):
    """Fixed-mobile: forward the fixed number while the mobile stays reachable (F2).

    Forwarding the fixed number to one's own mobile is legitimate; to the fixed number itself is a loop.
    """

    service = "call-forwarding-always-secondary"
    extra_licences = frozenset({"fixed-mobile"})
    active: bool = False
    to_voicemail: bool = False
    destination: PhoneNumber | None = None

    @model_validator(mode="after")
    def _needs_destination(self) -> CallForwardingAlwaysSecondary:
        if self.active and not self.to_voicemail and self.destination is None:
            raise InvalidSetting("destination", "a destination is required when forwarding to a number")
        return self

    def phone_numbers(self) -> set[str]:
        return {self.destination} if self.destination else set()

    def check(self, ctx: UserContext) -> None:
        refuse_own_number(
            "destination",
            self.destination,
            ctx.fixed_numbers(),
            "forwarding the fixed number to itself would ring straight back to it",
        )


class CallForwardingBusy(_Forwarding):
    service = "call-forwarding-busy"


class CallForwardingNoAnswer(_Forwarding):
    service = "call-forwarding-no-answer"
    # 1 ring is about 5 seconds (manual §7.4.3).
    rings: int = Field(default=4, ge=1, le=20)


class CallForwardingNotReachable(_Forwarding):
    service = "call-forwarding-not-reachable"
