"""Errors the domain raises; adapters translate them (HTTP 4xx, SIP 4xx, CLI messages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class DomainError(Exception):
    """A rule of the exchange refused something."""


class InvalidSetting(DomainError):
    """A value is not acceptable; `field` names it (dotted path), `reason` says why in English for people and
    `code` is the stable, machine-readable reason clients translate (docs/api.md lists them)."""

    def __init__(self, field: str, reason: str, code: str = "invalid", limits: Mapping[str, int] | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.code = code
        self.limits = dict(limits or {})


class CodedValueError(ValueError):
    """A ValueError a pydantic validator raises with a stable `code`: the 422 item carries it as its code."""

    code = "invalid"


# Pydantic's own error types are stable and machine-readable already; only the generic ones are named here.
_PYDANTIC_CODES = {
    "missing": "required",
    "string_too_long": "too_long",
    "too_long": "too_long",
    "string_too_short": "too_short",
    "too_short": "too_short",
    "literal_error": "not_a_choice",
    "enum": "not_a_choice",
    "extra_forbidden": "unknown_field",
    "greater_than_equal": "too_small",
    "greater_than": "too_small",
    "less_than_equal": "too_large",
    "less_than": "too_large",
    "int_parsing": "not_a_number",
    "int_type": "not_a_number",
    "bool_parsing": "not_a_boolean",
    "bool_type": "not_a_boolean",
    "string_type": "not_text",
    "json_invalid": "not_json",
    "model_attributes_type": "not_an_object",
    "dict_type": "not_an_object",
    "list_type": "not_a_list",
    "datetime_parsing": "not_a_date",
    "datetime_from_date_parsing": "not_a_date",
    "timezone_aware": "not_a_date",
    "url_parsing": "not_a_url",
    "url_scheme": "not_a_url",
}
# Numeric bounds a client may show ("at most 100 characters"); never the submitted value itself.
_LIMIT_KEYS = ("max_length", "min_length", "ge", "gt", "le", "lt")


def code_of(error: Mapping[str, Any]) -> str:
    """The stable code of one pydantic error (an item of ValidationError.errors())."""
    kind = str(error.get("type", ""))
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, CodedValueError):
        return cause.code
    if kind == "value_error" and "email address" in str(error.get("msg", "")):
        return "email"
    return _PYDANTIC_CODES.get(kind, "invalid")


def limits_of(error: Mapping[str, Any]) -> dict[str, int]:
    context = error.get("ctx") or {}
    return {key: context[key] for key in _LIMIT_KEYS if isinstance(context.get(key), int)}


def field_path(location: Sequence[int | str]) -> str:
    """A dotted field path ("targets.1.number") without where it came from ("body", "query")."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(str(part) for part in parts)


class NotLicensed(DomainError):
    def __init__(self, service: str) -> None:
        super().__init__(f"you have no licence for the service '{service}'")
        self.service = service


class ReadOnlySetting(DomainError):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is set by your administrator and cannot be changed here")
        self.field = field


class StepUpRequired(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "changing a phone number or the voicemail e-mail address needs a fresh step-up: "
            "confirm with your PIN or passkey first"
        )
