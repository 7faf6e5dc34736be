"""The exchange's two peers to the outside world, and the headers calls to them carry.

- The public network trunk: calls to and from external numbers. It is trusted (RFC 3325 §2.3): it gets the real
  identity in P-Asserted-Identity even for anonymous calls, and removes it before the callee (`Privacy: id`).
- The mobile network: calls to users' mobile numbers arrive from it; ringing a handset goes back to it with a
  routing prefix so the mobile network delivers the call to the handset instead of back to us.

Forwarded calls carry their whole history (domain/routing/history.py): History-Info (RFC 7044, with RFC 4458
cause values) and Diversion (RFC 5806), so the next exchange can count diversions and stop loops
(docs/call-routing.md "Loops"). Every leg to the trunk or the mobile network names the caller by an E.164 number
in From and P-Asserted-Identity, never by an extension (docs/call-routing.md "Legs leaving the exchange").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hipper.config import Settings
from hipper.domain.outgoing import CallerIdentity
from hipper.domain.routing.history import CallHistory
from hipper.sip.message import URI, Message, NameAddr
from hipper.sip.transport import Peer


@dataclass(frozen=True)
class Peers:
    trunk: Peer | None
    trunk_trusted: bool
    mobile: Peer | None
    mobile_prefix: str
    realm: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Peers:
        return cls(
            trunk=Peer.parse(settings.trunk_address) if settings.trunk_address else None,
            trunk_trusted=settings.trunk_trusted,
            mobile=Peer.parse(settings.mobile_network_address) if settings.mobile_network_address else None,
            mobile_prefix=settings.mobile_routing_prefix,
            realm=settings.sip_realm,
        )

    def origin(self, source: Peer) -> str | None:
        """'trunk' or 'mobile' when a request came from that peer's address (then it is not challenged)."""
        for name, peer in (("trunk", self.trunk), ("mobile", self.mobile)):
            if peer is not None and peer.host == source.host and peer.port == source.port:
                return name
        return None

    def trunk_uri(self, number: str) -> tuple[URI, Peer] | None:
        if self.trunk is None:
            return None
        return URI("sip", self.trunk.host, user=number, port=self.trunk.port), self.trunk

    def handset_uri(self, mobile_number: str) -> tuple[URI, Peer] | None:
        """Where ringing a user's handset goes: the mobile network with the prefix, else the trunk."""
        if self.mobile is not None:
            user = self.mobile_prefix + mobile_number
            return URI("sip", self.mobile.host, user=user, port=self.mobile.port), self.mobile
        return self.trunk_uri(mobile_number)

    def handset_owner(self, peer: Peer, user_id: int) -> int | None:
        """Who owns the phone a handset leg (`handset_uri`) reaches: the user through the mobile network; nobody
        through the trunk, whose requests cannot speak for a user (apps/phone_control.py `owner_user`)."""
        return user_id if self.mobile is not None and peer == self.mobile else None

    def address(self, number: str) -> NameAddr:
        return NameAddr(URI("sip", self.realm, user=number))


def history_headers(history: CallHistory, realm: str) -> list[tuple[str, str]]:
    """History-Info (RFC 7044: one hi-entry per target, `cause` in the URI, `index` and `mp`) and Diversion
    (RFC 5806: one entry per forwarding party, most recent first), the received entries kept ahead of ours."""
    hi_entries = list(history.received_history)
    for entry in history.entries:
        if entry.received:
            continue  # the received entry for this target is there already
        cause = f";cause={entry.cause}" if entry.cause is not None else ""
        mapped = f";mp={entry.mapped_from}" if entry.mapped_from is not None else ""
        hi_entries.append(f"<sip:{entry.number}@{realm}{cause}>;index={entry.index}{mapped}")
    diversions = [
        f"<sip:{number}@{realm}>;reason={reason};counter=1" for number, reason in history.diversions()
    ] + list(history.received_diversions)
    headers: list[tuple[str, str]] = []
    if hi_entries:
        headers.append(("History-Info", ",".join(hi_entries)))
    if diversions:
        headers.append(("Diversion", ",".join(diversions)))
    return headers


_INDEX = re.compile(r";\s*index\s*=\s*(\d{1,4}(?:\.\d{1,4}){0,40})\s*(?:;|$)", re.IGNORECASE)
_TARGET = re.compile(r"[^<]*<sips?:([^@;>]+)@", re.IGNORECASE)
# Entries kept from an arriving call: enough for any real chain, bounded against a hostile peer.
RECEIVED_ENTRIES = 20


def received_history(request: Message) -> CallHistory:
    """The History-Info and Diversion entries a call arrived with (kept for the legs it is forwarded on)."""
    history = [entry.strip() for value in request.headers.get_all("History-Info") for entry in value.split(",")]
    diversions = [entry.strip() for value in request.headers.get_all("Diversion") for entry in value.split(",")]
    history = [entry for entry in history if entry][:RECEIVED_ENTRIES]
    index = target = None
    for entry in history:
        match = _INDEX.search(entry)
        if match:
            index = match.group(1)
            named = _TARGET.match(entry)
            target = named.group(1) if named else None
    return CallHistory(
        received_history=tuple(history),
        received_index=index,
        received_target=target,
        received_diversions=tuple(entry for entry in diversions if entry)[:RECEIVED_ENTRIES],
    )


def asserted_identity(number: str, realm: str) -> tuple[str, str]:
    """P-Asserted-Identity toward a trusted peer (RFC 3325 §9.1)."""
    return ("P-Asserted-Identity", f"<sip:{number}@{realm}>")


def identity_headers(identity: CallerIdentity, realm: str, *, trusted: bool) -> tuple[NameAddr, list[tuple[str, str]]]:
    """From and the privacy headers of a call leaving through the trunk (RFC 3323 §4.1.1.3, RFC 3325 §9.1)."""
    from_ = NameAddr(URI("sip", identity.from_host or realm, user=identity.from_user), identity.from_display or "")
    headers: list[tuple[str, str]] = []
    if identity.privacy is not None:
        headers.append(("Privacy", identity.privacy))
    if trusted:
        headers.append(asserted_identity(identity.asserted_identity, realm))
    return from_, headers


_COUNTER = re.compile(r";\s*counter\s*=\s*(\d{1,3})", re.IGNORECASE)


def diversions_so_far(request: Message) -> int:
    """How often a call was diverted already: Diversion counters, else History-Info causes (of an arriving
    INVITE, or of a 2xx reporting where our own INVITE went, engine/diversion_guard.py)."""
    count = 0
    for value in request.headers.get_all("Diversion"):
        for entry in value.split(","):
            match = _COUNTER.search(entry)
            count += int(match.group(1)) if match else 1
    if count:
        return count
    for value in request.headers.get_all("History-Info"):
        count += sum(1 for entry in value.split(",") if "cause=" in entry.lower())
    return count


def number_of(address: NameAddr) -> str | None:
    """The caller's number from a From header; None when it is anonymous (RFC 3323)."""
    user = address.uri.user
    if not user or user.lower() in ("anonymous", "restricted", "unavailable"):
        return None
    return user
