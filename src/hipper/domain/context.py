"""What the domain needs to know about the user whose settings it judges."""

from __future__ import annotations

from dataclasses import dataclass, field

NUMBER_KINDS = ("company", "direct", "department", "mobile", "call_center")


@dataclass(frozen=True)
class UserContext:
    user_id: int
    extension: str | None
    # kind -> E.164 number; kinds from NUMBER_KINDS
    numbers: dict[str, str] = field(default_factory=dict)
    licences: frozenset[str] = frozenset()

    def has(self, licence: str) -> bool:
        return licence in self.licences

    def own_numbers(self) -> set[str]:
        """The numbers that ring this user (extension included)."""
        own = {n for kind, n in self.numbers.items() if kind in ("direct", "mobile")}
        if self.extension:
            own.add(self.extension)
        return own

    def fixed_numbers(self) -> set[str]:
        own = {n for kind, n in self.numbers.items() if kind == "direct"}
        if self.extension:
            own.add(self.extension)
        return own
