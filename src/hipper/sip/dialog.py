"""Dialogs (RFC 3261 §12): identification, route set, remote target, CSeq bookkeeping, in-dialog requests.

The B2BUA keeps one `Dialog` per leg; this module only knows the protocol state of a dialog, not the call.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from hipper.sip.message import URI, Headers, NameAddr, ParseError, Request, Response


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: URI
    local_seq: int
    remote_seq: int | None
    route_set: list[str] = field(default_factory=list)
    early: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, response: Response) -> Dialog:
        """§12.1.1: the dialog a 1xx/2xx with a To tag creates on the answering side."""
        to = response.to
        if to.tag is None:
            raise ParseError("dialog-creating response without To tag")
        contacts = request.contacts
        if not contacts or contacts[0].wildcard:
            raise ParseError("dialog-creating request without Contact")
        remote = request.from_
        return cls(
            call_id=request.call_id,
            local_tag=to.tag,
            remote_tag=remote.tag or "",
            local_uri=NameAddr(to.uri),
            remote_uri=NameAddr(remote.uri),
            remote_target=contacts[0].uri,
            local_seq=0,
            remote_seq=request.cseq[0],
            route_set=list(request.headers.get_all("Record-Route")),
            early=response.status < 200,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a 1xx/2xx with a To tag creates on the calling side (route set reversed)."""
        to = response.to
        if to.tag is None:
            raise ParseError("dialog-creating response without To tag")
        contacts = response.contacts
        local = request.from_
        return cls(
            call_id=request.call_id,
            local_tag=local.tag or "",
            remote_tag=to.tag,
            local_uri=NameAddr(local.uri),
            remote_uri=NameAddr(to.uri),
            remote_target=contacts[0].uri if contacts and not contacts[0].wildcard else request.uri,
            local_seq=request.cseq[0],
            remote_seq=None,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            early=response.status < 200,
        )

    def update_from_response(self, response: Response) -> None:
        """§12.2.1.2: a 2xx confirms an early dialog and may refresh the remote target."""
        contacts = response.contacts
        if contacts and not contacts[0].wildcard:
            self.remote_target = contacts[0].uri
        if 200 <= response.status < 300:
            self.early = False

    def accept_remote_cseq(self, request: Request) -> bool:
        """§12.2.2: a request with a lower CSeq than the last one is out of order (answer 500)."""
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number < self.remote_seq:
            return False
        self.remote_seq = number
        contacts = request.contacts
        if contacts and not contacts[0].wildcard and request.method in ("INVITE", "UPDATE"):
            self.remote_target = contacts[0].uri  # target refresh (§12.2.2)
        return True

    def create_request(self, method: str, *, body: bytes = b"", content_type: str | None = None) -> Request:
        """§12.2.1.1: an in-dialog request (loose routing only). ACK reuses the INVITE's CSeq number."""
        if method != "ACK":
            self.local_seq += 1
        headers = Headers()
        for route in self.route_set:
            headers.add("Route", route)
        local = NameAddr(self.local_uri.uri, self.local_uri.display_name, {"tag": self.local_tag})
        remote = NameAddr(self.remote_uri.uri, self.remote_uri.display_name, {"tag": self.remote_tag})
        headers.add("From", local)
        headers.add("To", remote)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_seq} {method}")
        headers.add("Max-Forwards", "70")
        if content_type:
            headers.add("Content-Type", content_type)
        return Request(method, self.remote_target, headers, body)
