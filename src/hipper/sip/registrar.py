"""The registrar (RFC 3261 §10.3), with digest authentication (§22) and NAT-aware bindings (RFC 3581).

A device registers for its own address-of-record: the To URI's user is the device's `auth_username`, and
the digest username must be the same. Each binding remembers where the REGISTER really came from (transport,
address, port), which is where requests to the device go, whatever private address its Contact names.

Authentication (REGISTER here; INVITE and SUBSCRIBE for the B2BUA) happens in two steps. `screen` decides what
needs no database and keeps no state: a request without credentials, or with a nonce we cannot vouch for, gets
a fresh challenge; an answer we refuse whatever the password (no qop, another uri) gets 403. The stack calls it
before making a transaction, so a flood of such requests is answered statelessly and a 401/407 is never
retransmitted (RFC 3261 §8.2.7 stateless UAS). `authenticate` then looks the user up and checks the password.
An unknown user gets the same 401 and the same 403 as a wrong password (no account enumeration), and every
failure goes to the `AuthGuard` (log line, metric, bans: docs/security.md "SIP authentication").
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from hipper.sip.digest import Authenticator, Credentials, Verdict, parse_credentials
from hipper.sip.guard import AuthGuard
from hipper.sip.message import NameAddr, ParseError, Request, Response, is_number
from hipper.sip.proxies import TrustedProxies
from hipper.sip.transport import Peer
from hipper.store.registrations import Binding, BindingChange, Device, DeviceDirectory, LocationStore, expiry

log = logging.getLogger(__name__)

# What an unknown user's answer is checked against, so it costs the same digest as a known user's wrong one.
_NOBODY = Credentials("", "", "0" * 32, "0" * 64)


class _Refused(Exception):
    """Aborts a binding change (rolling its transaction back) with the response to send instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.reason)
        self.response = response


@dataclass(frozen=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10


class Registrar:
    def __init__(
        self,
        authenticator: Authenticator,
        devices: DeviceDirectory,
        locations: LocationStore,
        policy: RegistrarPolicy | None = None,
        guard: AuthGuard | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.devices = devices
        self.locations = locations
        self.policy = policy or RegistrarPolicy()
        self.guard = guard or AuthGuard()
        self.proxies = proxies or TrustedProxies()

    def screen(
        self,
        request: Request,
        source: Peer,
        *,
        proxy: bool = False,
        to_tag: str | None = None,
        origin: Peer | None = None,
    ) -> Response | None:
        """The stateless part of authentication: None when the request's credentials are worth looking up.

        Else the response: a challenge (none given, or a nonce that is not one we gave `source` for this method
        within its lifetime: stale=true), 400 for credentials we cannot read, 403 for an answer refused whatever
        the password. Only answers on a nonce we gave this address count as failures: a spoofed source cannot
        get someone else's address banned (a nonce proves the address received our challenge).

        `source` is the transport peer; behind a trusted edge proxy the address it attests stands for it
        (sip/proxies.py), here and in `authenticate`. `origin` is that address as the stack worked it out when the
        request arrived (`tx.origin`): given, it is used as it is; not given (a caller without a stack), it is
        worked out here from `source`, by the same rule.
        """
        source = self.proxies.origin(request, source) if origin is None else origin
        header = "Proxy-Authorization" if proxy else "Authorization"
        try:
            params = credentials(request, header)
        except ParseError:
            return Response.for_request(request, 400, f"Bad {header} header", to_tag=to_tag)
        if params is None:
            return self._challenge(request, source, proxy=proxy, stale=False, to_tag=to_tag)
        outcome = self.authenticator.screen(params, request.method, request.uri, source.host)
        if outcome.verdict == Verdict.STALE:
            return self._challenge(request, source, proxy=proxy, stale=True, to_tag=to_tag)
        username = params.get("username", "")
        if outcome.verdict == Verdict.WRONG:
            return self._refuse(request, source, username, outcome.reason, to_tag)
        if self.guard.account_locked(username, source.host):
            return self._refuse(request, source, username, "locked", to_tag)
        return None

    async def authenticate(
        self,
        request: Request,
        source: Peer,
        *,
        proxy: bool = False,
        to_tag: str | None = None,
        origin: Peer | None = None,
    ) -> Device | Response:
        """The device whose good credentials `request` carries, or the response to send (§22.4).

        For any request from a device: REGISTER and SUBSCRIBE are challenged with 401, INVITE (`proxy`) with 407
        Proxy-Authenticate as a proxy would (§22.3). `source` and `origin` as for `screen`.
        """
        source = self.proxies.origin(request, source) if origin is None else origin
        refused = self.screen(request, source, proxy=proxy, to_tag=to_tag, origin=source)
        if refused is not None:
            return refused
        params = credentials(request, "Proxy-Authorization" if proxy else "Authorization")
        assert params is not None  # screened: it has them
        username = params.get("username", "")
        device = await self.devices.lookup(username)
        outcome = self.authenticator.verify(
            params, request.method, request.uri, source.host, device.credentials if device else _NOBODY
        )
        if outcome.verdict == Verdict.STALE:
            return self._challenge(request, source, proxy=proxy, stale=True, to_tag=to_tag)
        if device is None or outcome.verdict == Verdict.WRONG:
            return self._refuse(request, source, username, "unknown_user" if device is None else outcome.reason, to_tag)
        self.guard.succeeded(username, source.host)
        return device

    def _refuse(self, request: Request, source: Peer, username: str, reason: str, to_tag: str | None) -> Response:
        """403, the same for every reason (the log line and metric tell them apart)."""
        self.guard.failed(peer=str(source), host=source.host, username=username, method=request.method, reason=reason)
        return Response.for_request(request, 403, "Wrong credentials", to_tag=to_tag)

    def _challenge(self, request: Request, source: Peer, *, proxy: bool, stale: bool, to_tag: str | None) -> Response:
        key = request_key(request)
        response = Response.for_request(request, 407 if proxy else 401, to_tag=to_tag or stateless_tag(key))
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.authenticator.challenges(source.host, request.method, stale=stale, request_key=key):
            response.headers.add(name, value)
        return response

    async def handle(self, request: Request, source: Peer, origin: Peer | None = None) -> Response:
        """A REGISTER from `source` (the transport peer, where its binding's requests go); `origin` as for `screen`."""
        to = request.to
        if to.uri.scheme not in ("sip", "sips") or not to.uri.user:
            return Response.for_request(request, 404, "Not Found")
        device = await self.authenticate(request, source, origin=origin)
        if isinstance(device, Response):
            return device
        if device.credentials.username != to.uri.user:
            # Only reachable with good credentials: it tells their owner nothing they do not know.
            return Response.for_request(request, 403, "Credentials of another user")
        try:
            return await self._bind(request, source, device)
        except ParseError as exc:
            return Response.for_request(request, 400, exc.reason)

    async def _bind(self, request: Request, source: Peer, device: Device) -> Response:
        """§10.3 steps 6-8: process the Contacts, then answer with every current binding."""
        now = datetime.now(UTC)
        contacts = request.contacts
        header_expires = request.int_header("Expires")
        call_id = request.call_id
        cseq = request.cseq[0]
        user_agent = request.headers.get("User-Agent") or ""
        if any(contact.wildcard for contact in contacts) and (len(contacts) != 1 or header_expires != 0):
            return Response.for_request(request, 400, "Wildcard Contact needs Expires: 0 and no other Contact")
        wanted: list[tuple[str, int]] = []
        for contact in contacts:
            if contact.wildcard:
                continue
            seconds = self._expires(contact, header_expires)
            if 0 < seconds < self.policy.min_expires:
                response = Response.for_request(request, 423)
                response.headers.add("Min-Expires", str(self.policy.min_expires))
                return response
            wanted.append((str(contact.uri), min(seconds, self.policy.max_expires)))

        def decide(current: list[Binding]) -> BindingChange:
            # §10.3 step 7: within one Call-ID the CSeq must grow; an older REGISTER must not undo a newer one.
            existing = {binding.contact: binding for binding in current}
            if not contacts:
                return BindingChange([], [])  # a query (§10.2.3)
            if contacts[0].wildcard:
                if any(b.call_id == call_id and b.cseq >= cseq for b in current):
                    raise _Refused(Response.for_request(request, 500, "Out of order CSeq"))
                return BindingChange([], [], remove_all=True)
            upserts: list[Binding] = []
            removals: list[str] = []
            for key, seconds in wanted:
                old = existing.get(key)
                if old is not None and old.call_id == call_id and old.cseq >= cseq:
                    raise _Refused(Response.for_request(request, 500, "Out of order CSeq"))
                if seconds == 0:
                    removals.append(key)
                    continue
                upserts.append(
                    Binding(
                        device_id=device.id,
                        user_id=device.user_id,
                        contact=key,
                        source=str(source),
                        expires_at=expiry(now, seconds),
                        call_id=call_id,
                        cseq=cseq,
                        user_agent=user_agent,
                    )
                )
            after = set(existing) - set(removals) | {binding.contact for binding in upserts}
            if len(after) > self.policy.max_contacts:
                raise _Refused(Response.for_request(request, 403, "Too many contacts"))
            return BindingChange(upserts, removals)

        try:
            bindings = await self.locations.change(device, decide, now)
        except _Refused as refused:
            return refused.response
        if contacts:
            log.info("sip.registered", extra={"device_id": device.id, "source": str(source), "bindings": len(bindings)})
        return self._ok(request, bindings, now)

    def _expires(self, contact: NameAddr, header_expires: int | None) -> int:
        value = contact.params.get("expires")
        if value is not None:
            if not is_number(value) or len(value) > 10:
                raise ParseError("bad Contact expires parameter")
            return int(value)
        if header_expires is not None:
            return header_expires
        return self.policy.default_expires

    def _ok(self, request: Request, bindings: list[Binding], now: datetime) -> Response:
        response = Response.for_request(request, 200, to_tag=None)
        for binding in bindings:
            response.headers.add("Contact", f"<{binding.contact}>;expires={binding.expires_in(now)}")
        response.headers.add("Date", format_datetime(now, usegmt=True))
        return response


def request_key(request: Request) -> str:
    """What one request and its retransmissions share: Call-ID, From, top Via (its branch) and CSeq."""
    via = request.headers.get_all("Via")
    fields = (request.call_id, request.headers.get("From") or "", via[0] if via else "", request.headers.get("CSeq"))
    return "\0".join(field or "" for field in fields)


def stateless_tag(key: str) -> str:
    """A To tag that is the same for every retransmission of a request (§8.2.7: a stateless UAS keeps none), from
    its `request_key`."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:12]


def credentials(request: Request, header: str) -> dict[str, str] | None:
    """The request's first Digest credentials in `header` (Authorization or Proxy-Authorization), None without.

    Read up to three times per request (the stack's screening, then `authenticate`'s, then the check against the
    device's secrets), parsed once: the parse is kept with the header's value (`Headers.parsed`), so a changed
    value is parsed again. The dict is shared: read it, never change it. ParseError when they cannot be read."""
    headers = request.headers
    for value in headers.get_all(header):
        if value[:6].lower() == "digest":
            if value == headers.get(header):
                return headers.parsed(header, parse_credentials)
            return parse_credentials(value)  # behind another scheme's value: rare, not kept
    return None
