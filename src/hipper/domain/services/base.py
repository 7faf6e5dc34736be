"""The shape every user service shares.

A service's settings are one pydantic model. The model validates its own fields (types, ranges, numbers
normalised); `check` applies the rules that need to know the user (no target that leads straight back into the
same service). `change` is the one way a user changes a service: licence, read-only fields, validation and the
step-up rule for phone numbers are applied here, the same for every service.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting, NotLicensed, ReadOnlySetting, StepUpRequired


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    service: ClassVar[str]
    # Fields only the administrator sets (shown read-only to the user).
    read_only_fields: ClassVar[frozenset[str]] = frozenset()
    # Extra licences a service needs beyond its own name.
    extra_licences: ClassVar[frozenset[str]] = frozenset()

    def phone_numbers(self) -> set[str]:
        """Every phone number this document sets; a new one needs a step-up (SPEC A2)."""
        return set()

    def check(self, ctx: UserContext) -> None:
        """Rules that need the user; raise InvalidSetting naming the field."""


def ensure_licensed(settings_class: type[ServiceSettings], ctx: UserContext) -> None:
    for licence in {settings_class.service, *settings_class.extra_licences}:
        if not ctx.has(licence):
            raise NotLicensed(settings_class.service)


def first_error(exc: ValidationError) -> InvalidSetting:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = str(error["msg"]).removeprefix("Value error, ")
    return InvalidSetting(field, message)


def change(
    settings_class: type[ServiceSettings],
    current: ServiceSettings,
    proposed: dict[str, Any],
    ctx: UserContext,
    *,
    stepped_up: bool,
    by_administrator: bool = False,
) -> ServiceSettings:
    """Validate a user's (or administrator's) new settings document against the current one."""
    ensure_licensed(settings_class, ctx)
    if not isinstance(proposed, dict):
        raise InvalidSetting("body", "expected a JSON object")
    merged = dict(proposed)
    if not by_administrator:
        for field in settings_class.read_only_fields:
            current_value = current.model_dump(mode="json")[field]
            if field in merged and merged[field] != current_value:
                raise ReadOnlySetting(field)
            merged[field] = current_value
    try:
        new = settings_class.model_validate(merged)
    except ValidationError as exc:
        raise first_error(exc) from exc
    new.check(ctx)
    if not by_administrator and not stepped_up and new.phone_numbers() - current.phone_numbers():
        raise StepUpRequired()
    return new


def refuse_own_number(field: str, number: str | None, own: set[str], why: str) -> None:
    if number is not None and number in own:
        raise InvalidSetting(field, why)
