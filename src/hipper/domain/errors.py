"""Errors the domain raises; adapters translate them (HTTP 4xx, SIP 4xx, CLI messages)."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the exchange refused something."""


class InvalidSetting(DomainError):
    """A value is not acceptable; `field` names it (dotted path) and `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


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
        super().__init__("changing a phone number or the voicemail e-mail address needs a fresh step-up: confirm with your PIN or passkey first")
