"""The shape every user service shares.

A service's settings are one pydantic model. The model validates its own fields (types, ranges, numbers
normalised); `check` applies the rules that need to know the user (no target that leads straight back into the
same service), `check_change` the rules that depend on what was there before or on another service of the same
user. `change` is the one way a user changes a service: licence, read-only fields, validation and the step-up
rule for phone numbers are applied here, the same for every service.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting, NotLicensed, ReadOnlySetting, StepUpRequired, code_of, limits_of
from hipper.domain.numbers import PhoneNumber


def _printable(text: str) -> str:
    # Names are shown in the app and on phone displays: control and format characters (NUL, bidi overrides)
    # would garble them or hide what they say.
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in text):
        raise ValueError("may hold only printable characters")
    return text


DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_printable)]
"""A name the user gives an entry (an exception, an Anywhere location): trimmed, printable, at most 100."""


class ServiceSettings(BaseModel):
    # Frozen: routing snapshots keep documents and the plans made from them (`plan_for_call`), and a plan kept for
    # a document changed in place would route by the old settings. A change is a new document.
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: ClassVar[str]
    # Fields only the administrator sets (shown read-only to the user).
    read_only_fields: ClassVar[frozenset[str]] = frozenset()
    # The whole document is the administrator's: every user write is refused (night forwarding).
    administrator_only: ClassVar[bool] = False
    # Extra licences a service needs beyond its own name.
    extra_licences: ClassVar[frozenset[str]] = frozenset()
    # Other services of the same user whose settings `check_change` needs (e.g. voicemail reads call waiting).
    related_services: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _ignore_derived_fields(cls, data: Any) -> Any:
        # Derived (computed) fields are part of what GET returns; a client that sends the document back
        # unchanged must not be refused for them, and they are never taken from the input.
        if isinstance(data, dict) and cls.model_computed_fields:
            return {key: value for key, value in data.items() if key not in cls.model_computed_fields}
        return data

    def phone_numbers(self) -> set[str]:
        """Every phone number this document sets; a new one needs a step-up (SPEC A2)."""
        return set()

    def step_up_values(self) -> set[str]:
        """Where this document sends calls or messages — its phone numbers, and addresses (the voicemail e-mail):
        a new one needs a step-up, so a stolen session cannot redirect them without the PIN."""
        return self.phone_numbers()

    def check(self, ctx: UserContext) -> None:
        """Rules that need the user; raise InvalidSetting naming the field."""

    def check_change(self, current: ServiceSettings, ctx: UserContext, related: Mapping[str, ServiceSettings]) -> None:
        """Rules that depend on the previous document or on the user's other services (`related_services`).

        `related` holds the documents of `related_services` the user is licensed for.
        """

    def check_time(self, current: ServiceSettings, now: datetime) -> None:
        """Rules that need the clock (a moment already past); only run when the caller passes `now`."""


class LicenceNeeded(NotLicensed):
    """One option of a service needs a licence the user lacks (answered like any missing licence: 403)."""

    def __init__(self, service: str, field: str, licence: str, what: str) -> None:
        super().__init__(service)
        self.field = field
        self.licence = licence
        self.args = (f"{field}: {what} needs the licence '{licence}', which you do not have",)


def ensure_licensed(settings_class: type[ServiceSettings], ctx: UserContext) -> None:
    for licence in {settings_class.service, *settings_class.extra_licences}:
        if not ctx.has(licence):
            raise NotLicensed(settings_class.service)


def first_error(exc: ValidationError) -> InvalidSetting:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = str(error["msg"]).removeprefix("Value error, ")
    return InvalidSetting(field, message, code_of(error), limits_of(error))


def change(
    settings_class: type[ServiceSettings],
    current: ServiceSettings,
    proposed: dict[str, Any],
    ctx: UserContext,
    *,
    stepped_up: bool,
    by_administrator: bool = False,
    related: Mapping[str, ServiceSettings] | None = None,
    now: datetime | None = None,
) -> ServiceSettings:
    """Validate a user's (or administrator's) new settings document against the current one."""
    ensure_licensed(settings_class, ctx)
    if settings_class.administrator_only and not by_administrator:
        raise ReadOnlySetting(settings_class.service)
    if not isinstance(proposed, dict):
        raise InvalidSetting("body", "expected a JSON object", "not_an_object")
    merged = dict(proposed)
    if not by_administrator:
        current_values = current.model_dump(mode="json")
        for field in sorted(settings_class.read_only_fields):
            if field in merged and merged[field] != current_values[field]:
                raise ReadOnlySetting(field)
            merged[field] = current_values[field]
    try:
        new = settings_class.model_validate(merged)
    except ValidationError as exc:
        raise first_error(exc) from exc
    new.check(ctx)
    new.check_change(current, ctx, related or {})
    if now is not None:
        new.check_time(current, now)
    if not by_administrator and not stepped_up and new.step_up_values() - current.step_up_values():
        raise StepUpRequired()
    return new


def refuse_own_number(field: str, number: str | None, own: set[str], why: str) -> None:
    if number is not None and number in own:
        raise InvalidSetting(field, why, "own_number")


def refuse_duplicates(list_field: str, numbers: Iterable[str], item_field: str = "number") -> None:
    """A number twice in one list rings (or exempts) the same phone twice: refuse the second one."""
    seen: set[str] = set()
    for index, number in enumerate(numbers):
        if number in seen:
            raise InvalidSetting(
                f"{list_field}.{index}.{item_field}", "this number is already in the list", "duplicate"
            )
        seen.add(number)


class SingleDestination(ServiceSettings):
    """The shape of every service that sends calls to one number: forwarding, remote office, night forwarding.

    Subclasses say when the destination is required and which of the user's own numbers would be a loop: all of
    them (forwarding), or only the fixed ones (one's own mobile is a legitimate remote office or fixed-number
    forward).
    """

    destination: PhoneNumber | None = None
    missing_reason: ClassVar[str] = "a destination is required when forwarding is active"
    loop_reason: ClassVar[str] = "forwarding to your own number would ring straight back to you"
    mobile_is_a_loop: ClassVar[bool] = True

    def destination_required(self) -> bool:
        raise NotImplementedError

    @model_validator(mode="after")
    def _needs_destination(self) -> Self:
        if self.destination is None and self.destination_required():
            raise InvalidSetting("destination", self.missing_reason, "required")
        return self

    def phone_numbers(self) -> set[str]:
        return {self.destination} if self.destination else set()

    def check(self, ctx: UserContext) -> None:
        own = ctx.own_numbers() if self.mobile_is_a_loop else ctx.fixed_numbers()
        refuse_own_number("destination", self.destination, own, self.loop_reason)
