"""The registrar (RFC 3261 §10.3), with digest authentication (§22) and NAT-aware bindings (RFC 3581).

A device registers for its own address-of-record: the To URI's user is the device's `auth_username`, and
the digest username must be the same. Each binding remembers where the REGISTER really came from (transport,
address, port), which is where requests to the device go, whatever private address its Contact names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from hipper.sip.digest import Authenticator, Verdict, parse_credentials
from hipper.sip.message import NameAddr, ParseError, Request, Response, is_number
from hipper.sip.transport import Peer
from hipper.store.registrations import Binding, BindingChange, Device, DeviceDirectory, LocationStore, expiry

log = logging.getLogger(__name__)


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
    ) -> None:
        self.authenticator = authenticator
        self.devices = devices
        self.locations = locations
        self.policy = policy or RegistrarPolicy()

    async def authenticate(self, request: Request, device: Device) -> Response | None:
        """None when the request carries good credentials for `device`; else the response to send (§22.4).

        Reusable for any request (INVITE from a device): a 401 challenge, 403 for someone else's or wrong
        credentials, 400 for credentials we cannot read.
        """
        headers = [value for value in request.headers.get_all("Authorization") if value.lower().startswith("digest")]
        if not headers:
            return self._challenge(request)
        try:
            params = parse_credentials(headers[0])
        except ParseError:
            return Response.for_request(request, 400, "Bad Authorization header")
        if params.get("username") != device.credentials.username:
            return Response.for_request(request, 403, "Credentials of another user")
        verdict = self.authenticator.verify(params, request.method, device.credentials)
        if verdict == Verdict.STALE:
            return self._challenge(request, stale=True)
        if verdict == Verdict.WRONG:
            return Response.for_request(request, 403, "Wrong credentials")
        return None

    def _challenge(self, request: Request, *, stale: bool = False) -> Response:
        response = Response.for_request(request, 401)
        for value in self.authenticator.challenges(stale=stale):
            response.headers.add("WWW-Authenticate", value)
        return response

    async def handle(self, request: Request, source: Peer) -> Response:
        to = request.to
        if to.uri.scheme not in ("sip", "sips") or not to.uri.user:
            return Response.for_request(request, 404, "Not Found")
        device = await self.devices.lookup(to.uri.user)
        if device is None:
            return Response.for_request(request, 404, "Not Found")
        refused = await self.authenticate(request, device)
        if refused is not None:
            return refused
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
