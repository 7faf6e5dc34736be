"""Failed logins for names that are no account, so that they can be locked out like real ones."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta


class UnknownNameFailures:
    """Failed logins for names that are no account, kept on this node only and bounded in size."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[int, datetime | None]] = OrderedDict()

    def failed(self, name: str, now: datetime, attempts: int, lockout_seconds: int) -> bool:
        """Count one failure; True while the name is "locked", as a real account would be."""
        count, until = self._entries.pop(name, (0, None))
        if until is not None and until > now:
            self._entries[name] = (count, until)
            return True
        count += 1
        until = None
        if count >= attempts:
            count, until = 0, now + timedelta(seconds=lockout_seconds)
        self._entries[name] = (count, until)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return False
