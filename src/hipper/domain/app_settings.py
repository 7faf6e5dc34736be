"""The app's own settings, kept by the exchange so every device of the user shows the same (SPEC B3, E4, L).

One document per user. Quick settings are the services the user picked for the overview, in their order; only
services the user holds a licence for can be picked. A document saved before a licence was taken away still
loads: `visible_to` drops what the user can no longer see, so nothing unlicensed ever reaches a screen.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import first_error

SERVICE = "app-settings"

# What the overview shows before the user has chosen (manual §3.5 "Snel instellen"): the toggles people use most.
DEFAULT_QUICK_SETTINGS: tuple[str, ...] = ("do-not-disturb", "call-forwarding-always", "voicemail")
# Night forwarding is the administrator's (read-only to the user), so it is no toggle for the overview.
NOT_QUICK_SETTINGS = frozenset({"night-forwarding"})

ContactList = Literal["group", "enterprise", "personal"]
ContactSort = Literal["first_name", "last_name"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushNotifications(_Strict):
    missed_calls: bool = True
    voicemail: bool = True


def _every_list() -> list[ContactList]:
    return ["group", "enterprise", "personal"]


class ContactDisplay(_Strict):
    lists: list[ContactList] = Field(default_factory=_every_list)
    sort: ContactSort = "first_name"
    whatsapp_button: bool = True

    @field_validator("lists")
    @classmethod
    def _unique_lists(cls, value: list[ContactList]) -> list[ContactList]:
        if len(set(value)) != len(value):
            raise ValueError("each list can be shown once")
        return value


class Privacy(_Strict):
    # Analytics carry no personal data (manual §7.9); the user may still opt out.
    analytics: bool = True


class AppSettings(_Strict):
    quick_settings: list[str] = Field(default_factory=list, max_length=30)
    theme: Literal["system", "light", "dark"] = "system"
    push: PushNotifications = Field(default_factory=PushNotifications)
    contacts: ContactDisplay = Field(default_factory=ContactDisplay)
    privacy: Privacy = Field(default_factory=Privacy)
    language: Literal["nl", "en"] = "nl"

    def visible_to(self, licensed: list[str]) -> AppSettings:
        allowed = set(licensed)
        return self.model_copy(update={"quick_settings": [s for s in self.quick_settings if s in allowed]})


def defaults(licensed: list[str]) -> AppSettings:
    """What GET answers when the user never saved: the common toggles the user is licensed for."""
    return AppSettings(quick_settings=[s for s in DEFAULT_QUICK_SETTINGS if s in licensed])


def _deep_merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def change(current: AppSettings, proposed: Any, licensed: list[str]) -> AppSettings:
    """Apply a partial document (nested objects merge, so {"push": {"voicemail": false}} keeps missed_calls)."""
    if not isinstance(proposed, dict):
        raise InvalidSetting("", "expected a JSON object")
    try:
        new = AppSettings.model_validate(_deep_merge(current.model_dump(mode="json"), proposed))
    except ValidationError as exc:
        raise first_error(exc) from exc
    allowed = set(licensed) - NOT_QUICK_SETTINGS
    seen: set[str] = set()
    for index, service in enumerate(new.quick_settings):
        if service not in allowed:
            raise InvalidSetting(f"quick_settings.{index}", f"'{service}' is not a service you can put on the overview")
        if service in seen:
            raise InvalidSetting(f"quick_settings.{index}", f"'{service}' is already in the list")
        seen.add(service)
    return new
