"""The forwarding history of one call (pure): who was called, in which order, and why the call moved on.

One `CallHistory` grows with every forward inside the exchange. From it come the two headers a forwarded leg
carries (built in engine/peers.py) and the loop check:

- History-Info (RFC 7044 §9-§10): one hi-entry per target, the first one the originally called number. Every
  forward retargets the request, so the new entry is a child of the one it came from (index 1 → 1.1 → 1.1.1),
  says so with `mp` (§10.2, "mapped": the target changed to another user), and carries why in its URI:
  `cause` (RFC 4458 §3 values, RFC 7044 §9.4 — the cause of the retargeting *to* this entry).
- Diversion (RFC 5806 §4): one entry per forwarding party — the number that diverted, its reason, counter 1 —
  most recent first (RFC 5806 §4, RFC 7544 §7 example: the topmost entry is the last diversion).

Entries that arrived with the call (from the trunk) are kept as they came, first, and our own continue below the
last received index, so the next exchange sees the whole chain; when that last entry names the number the call
reached here, it stands for it (RFC 7044 §10.1.1) and ours begin with the first forward. Numbers are E.164:
the exchange names users by their public number (`public_number`), never by an extension.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hipper.domain.routing.plan import HISTORY_INFO_CAUSE, DiversionReason
from hipper.domain.routing.state import CalledNumber, UserState


@dataclass(frozen=True)
class HistoryEntry:
    number: str  # E.164 target of this hop
    index: str  # RFC 7044 hi-index: "1", "1.1", "1.1.1", ...
    # Why the call was retargeted to this entry (None for the first): Diversion reason and History-Info cause.
    reason: DiversionReason | None = None
    # mp (RFC 7044 §10.2): the index of the entry this one was retargeted from.
    mapped_from: str | None = None
    user_id: int | None = None  # the exchange's user behind the number; None for numbers outside
    # The last received hi-entry names this target already (RFC 7044 §10.1.1: not added a second time).
    received: bool = False

    @property
    def cause(self) -> int | None:
        return HISTORY_INFO_CAUSE[self.reason] if self.reason is not None else None


@dataclass(frozen=True)
class CallHistory:
    entries: tuple[HistoryEntry, ...] = ()
    # hi-entries and Diversion entries that arrived with the call, as they came (outermost first / topmost first).
    received_history: tuple[str, ...] = ()
    received_index: str | None = None  # the last received hi-index: our entries continue below it
    received_target: str | None = None  # the number (URI user) of the last received hi-entry
    received_diversions: tuple[str, ...] = ()

    def reach(self, number: str, user_id: int | None, reason: DiversionReason | None) -> CallHistory:
        """The call reaches `number`: the first entry, or (with the reason it was forwarded) a retargeting."""
        if not self.entries and self.received_index is not None and number == self.received_target:
            entry = HistoryEntry(number, self.received_index, reason, None, user_id, received=True)
        elif not self.entries:
            index = f"{self.received_index}.1" if self.received_index else "1"
            entry = HistoryEntry(number, index, reason, None, user_id)
        else:
            last = self.entries[-1]
            # A retargeting always has a reason; a forward without one is taken as unconditional (302).
            entry = HistoryEntry(number, f"{last.index}.1", reason or "unconditional", last.index, user_id)
        return replace(self, entries=(*self.entries, entry))

    def met(self, user_id: int) -> bool:
        """A forwarding loop: this user is in the chain already (docs/call-routing.md "Loops")."""
        return any(entry.user_id == user_id for entry in self.entries)

    def reached(self, number: str) -> bool:
        """This number is in the chain already (a company number met again is a loop with no user to end at)."""
        return any(entry.number == number for entry in self.entries)

    @property
    def forwarded(self) -> bool:
        """Whether there is history to tell: a forward of ours, or entries that came with the call."""
        return len(self.entries) > 1 or bool(self.received_history or self.received_diversions)

    def diversions(self) -> list[tuple[str, DiversionReason]]:
        """Our own Diversion entries, most recent first: each forwarding party with the reason it forwarded."""
        pairs = [
            (previous.number, entry.reason)
            for previous, entry in zip(self.entries, self.entries[1:], strict=False)
            if entry.reason is not None
        ]
        return pairs[::-1]


def public_number(state: UserState, called: CalledNumber) -> str | None:
    """The E.164 number that names this user outside (History-Info, Diversion): the mobile number for a call to
    it, else the direct number, else the company's number (a user with only an extension is reached through the
    company's); None when there is none of them."""
    if called == "mobile" and state.mobile_number is not None:
        return state.mobile_number
    return state.numbers.get("direct") or state.numbers.get("company")


__all__ = ["CallHistory", "HistoryEntry", "public_number"]
