"""Personal Assistant (F6): callers hear why the user is away and until when; named exceptions ring through."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.numbers import PhoneNumber
from hipper.domain.services.base import DisplayName, ServiceSettings, refuse_duplicates, refuse_own_number

Presence = Literal[
    "business_trip",
    "gone_for_the_day",
    "lunch",
    "meeting",
    "out_of_office",
    "temporarily_out",
    "training",
    "unavailable",
    "vacation",
]

MAX_EXCEPTIONS = 20


class PersonalAssistantException(BaseModel):
    """A caller who still rings through while the Personal Assistant is active."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[DisplayName, Field(min_length=1)]
    number: PhoneNumber


class PersonalAssistant(ServiceSettings):
    """Announce the user's absence (reason and until when); a caller presses 0 to be transferred."""

    service = "personal-assistant"
    active: bool = False
    presence: Presence = "unavailable"
    # None means "always" (until switched off); the app computes 1 h, 2 h, 4 h, 1 day, end of day or a date.
    until: AwareDatetime | None = None
    transfer_to: PhoneNumber | None = None
    # A ring splash on the desk phone for calls the assistant answers.
    alert_tone: bool = False
    exceptions: list[PersonalAssistantException] = Field(default_factory=list, max_length=MAX_EXCEPTIONS)

    def in_effect(self, now: datetime) -> bool:
        """Whether callers meet the assistant at `now` (it ends by itself at `until`)."""
        return self.active and (self.until is None or now < self.until)

    def check_time(self, current: ServiceSettings, now: datetime) -> None:
        # Switching the assistant on until a moment already past (or moving `until` into the past) is a slip:
        # it would be off at once. A document whose `until` simply ran out can still be sent back unchanged.
        if self.until is None or not self.active or self.until > now:
            return
        was_active = getattr(current, "active", False)
        if not was_active or getattr(current, "until", None) != self.until:
            raise InvalidSetting(
                "until", "that moment has already passed: choose a later one, or none for always", "in_the_past"
            )

    def phone_numbers(self) -> set[str]:
        numbers = {exception.number for exception in self.exceptions}
        if self.transfer_to:
            numbers.add(self.transfer_to)
        return numbers

    def check(self, ctx: UserContext) -> None:
        # Pressing 0 must lead away from the assistant. The mobile meets it again only when fixed-mobile
        # routes the mobile number through the exchange; otherwise one's own mobile is a fine transfer target.
        own = ctx.fixed_numbers()
        if ctx.has("fixed-mobile") and "mobile" in ctx.numbers:
            own.add(ctx.numbers["mobile"])
        refuse_own_number(
            "transfer_to",
            self.transfer_to,
            own,
            "transferring to your own number brings the caller straight back to your Personal Assistant",
        )
        refuse_duplicates("exceptions", (exception.number for exception in self.exceptions))
