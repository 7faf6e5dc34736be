"""Dialog state (RFC 3261 §12) from a captured INVITE/200 exchange through a record-routing proxy."""

from __future__ import annotations

from hipper.sip.dialog import Dialog
from hipper.sip.message import Request, Response, parse_message

INVITE = (
    b"INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKd1\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"From: Alice <sip:alice@hipper.test>;tag=a1\r\nTo: Bob <sip:bob@hipper.test>\r\n"
    b"Call-ID: dlg-1\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@192.0.2.1:5060>\r\nContent-Length: 0\r\n\r\n"
)


def test_uas_and_uac_views_of_one_dialog() -> None:
    invite = parse_message(INVITE)
    assert isinstance(invite, Request)
    ok = Response.for_request(invite, 200, to_tag="b1")
    # §12.1.1: the answer carries the request's Record-Route, in order (the proxies stay in the dialog's path).
    assert ok.headers.get_all("Record-Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    ok.headers.add("Contact", "<sip:bob@198.51.100.7:5080>")
    uas = Dialog.as_uas(invite, ok)
    assert uas.key == ("dlg-1", "b1", "a1") and uas.remote_seq == 10
    assert str(uas.remote_target) == "sip:alice@192.0.2.1:5060"
    bye = uas.create_request("BYE")
    assert bye.uri == uas.remote_target and bye.headers.get_all("Route") == uas.route_set
    assert bye.from_.tag == "b1" and bye.to.tag == "a1" and bye.cseq == (1, "BYE")

    uac = Dialog.as_uac(invite, ok)
    assert uac.key == ("dlg-1", "a1", "b1")
    assert uac.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]  # reversed (§12.1.2)
    assert str(uac.remote_target) == "sip:bob@198.51.100.7:5080"
    ack = uac.create_request("ACK")
    assert ack.cseq == (10, "ACK")  # the ACK of a 2xx reuses the INVITE's number
    assert uac.create_request("BYE").cseq == (11, "BYE")


def test_remote_cseq_must_not_go_backwards() -> None:
    invite = parse_message(INVITE)
    assert isinstance(invite, Request)
    dialog = Dialog.as_uas(invite, Response.for_request(invite, 200, to_tag="b1"))
    later = parse_message(INVITE.replace(b"CSeq: 10 INVITE", b"CSeq: 11 INVITE"))
    earlier = parse_message(INVITE.replace(b"CSeq: 10 INVITE", b"CSeq: 9 INVITE"))
    assert isinstance(later, Request) and isinstance(earlier, Request)
    assert dialog.accept_remote_cseq(later) and dialog.remote_seq == 11
    assert not dialog.accept_remote_cseq(earlier)
