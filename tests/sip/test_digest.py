"""Digest computations against the RFCs' own examples, and the nonce life cycle."""

from __future__ import annotations

import time

import pytest

from hipper.sip.digest import Authenticator, Credentials, Verdict, ha1, parse_credentials, response, same_uri
from hipper.sip.message import URI

# RFC 7616 §3.9.1: the same request digested with MD5 and with SHA-256.
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "uri": "/dir/index.html",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


def test_rfc7616_sha256_and_md5_examples() -> None:
    for algorithm, expected in (
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ):
        stored = ha1(RFC7616["username"], RFC7616["realm"], RFC7616["password"], algorithm)
        got = response(
            algorithm=algorithm,
            ha1_hex=stored,
            method="GET",
            uri=RFC7616["uri"],
            nonce=RFC7616["nonce"],
            qop="auth",
            nc="00000001",
            cnonce=RFC7616["cnonce"],
        )
        assert got == expected, algorithm


def test_rfc2617_md5_example() -> None:
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    got = response(
        algorithm="MD5",
        ha1_hex=stored,
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert got == "6629fae49393a05397450978507c4ef1"


def test_parse_rfc7616_authorization_header() -> None:
    header = (
        'Digest username="Mufasa",\r\n realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256,'
        ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001,'
        ' cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth,'
        ' response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",'
        ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    params = parse_credentials(header.replace("\r\n", ""))
    assert params["username"] == "Mufasa" and params["algorithm"] == "SHA-256" and params["nc"] == "00000001"
    assert params["response"].startswith("753927fa")


URI_201 = URI.parse("sip:201@hipper.test")
HOST = "192.0.2.7"


def _answer(
    nonce: str, password: str, algorithm: str = "SHA-256", *, method: str = "INVITE", nc: str = "00000001"
) -> dict[str, str]:
    stored = ha1("alice", "hipper.test", password, algorithm)
    return {
        "username": "alice",
        "realm": "hipper.test",
        "nonce": nonce,
        "uri": "sip:201@hipper.test",
        "qop": "auth",
        "nc": nc,
        "cnonce": "c0ffee",
        "algorithm": algorithm,
        "response": response(
            algorithm=algorithm,
            ha1_hex=stored,
            method=method,
            uri="sip:201@hipper.test",
            nonce=nonce,
            qop="auth",
            nc=nc,
            cnonce="c0ffee",
        ),
    }


CREDS = Credentials(
    "alice", "hipper.test", ha1("alice", "hipper.test", "pw"), ha1("alice", "hipper.test", "pw", "SHA-256")
)


def verdict(auth: Authenticator, params: dict[str, str], method: str = "INVITE", host: str = HOST) -> Verdict:
    return auth.verify(params, method, URI_201, host, CREDS).verdict


def test_verify_fresh_stale_forged_and_wrong() -> None:
    auth = Authenticator("hipper.test", nonce_lifetime=60)
    nonce = auth.nonce(HOST, "INVITE")
    assert verdict(auth, _answer(nonce, "pw")) == Verdict.OK
    assert verdict(auth, _answer(auth.nonce(HOST, "INVITE"), "pw", "MD5")) == Verdict.OK
    assert verdict(auth, _answer(auth.nonce(HOST, "INVITE"), "wrong")) == Verdict.WRONG
    register_nonce = auth.nonce(HOST, "REGISTER")
    # A digest of another method than the request's, on a nonce given for that request's method:
    assert verdict(auth, _answer(register_nonce, "pw", method="INVITE"), "REGISTER") == Verdict.WRONG
    old = auth.nonce(HOST, "INVITE", now=time.time() - 120)
    assert verdict(auth, _answer(old, "pw")) == Verdict.STALE
    # A nonce another process issued (say, before a restart): only a new challenge.
    foreign = Authenticator("hipper.test").nonce(HOST, "INVITE")
    assert verdict(auth, _answer(foreign, "pw")) == Verdict.STALE
    assert auth.nonce_age(foreign, HOST, "INVITE") is None
    fresh = auth.nonce(HOST, "INVITE")
    assert verdict(auth, {**_answer(fresh, "pw"), "realm": "other"}) == Verdict.WRONG
    assert verdict(auth, {**_answer(fresh, "pw"), "qop": "auth-int"}) == Verdict.WRONG
    assert all("stale=true" in value for value in auth.challenges(HOST, "INVITE", stale=True))


def test_a_nonce_is_bound_to_the_address_and_method_it_was_given_for() -> None:
    auth = Authenticator("hipper.test")
    nonce = auth.nonce(HOST, "REGISTER")
    assert auth.nonce_age(nonce, HOST, "REGISTER") is not None
    assert auth.nonce_age(nonce, "192.0.2.8", "REGISTER") is None
    assert auth.nonce_age(nonce, HOST, "INVITE") is None
    assert verdict(auth, _answer(nonce, "pw", method="REGISTER"), "REGISTER", host="192.0.2.8") == Verdict.STALE
    assert verdict(auth, _answer(nonce, "pw", method="REGISTER"), "REGISTER") == Verdict.OK


def test_answers_without_qop_or_for_another_uri_are_refused() -> None:
    auth = Authenticator("hipper.test")
    nonce = auth.nonce(HOST, "INVITE")
    stored = ha1("alice", "hipper.test", "pw", "SHA-256")
    rfc2069 = {**_answer(nonce, "pw"), "response": response(
        algorithm="SHA-256", ha1_hex=stored, method="INVITE", uri="sip:201@hipper.test", nonce=nonce
    )}  # fmt: skip
    del rfc2069["qop"], rfc2069["nc"], rfc2069["cnonce"]
    assert auth.verify(rfc2069, "INVITE", URI_201, HOST, CREDS).reason == "qop"
    other = auth.verify(_answer(nonce, "pw"), "INVITE", URI.parse("sip:00252123@hipper.test"), HOST, CREDS)
    assert (other.verdict, other.reason) == (Verdict.WRONG, "uri")
    assert same_uri("sip:201@HIPPER.test:5060", URI_201) and not same_uri("sip:hipper.test", URI_201)


def test_a_replayed_nonce_count_gets_a_fresh_challenge_and_an_invite_nonce_is_single_use() -> None:
    auth = Authenticator("hipper.test")
    nonce = auth.nonce(HOST, "REGISTER")
    assert verdict(auth, _answer(nonce, "pw", method="REGISTER"), "REGISTER") == Verdict.OK
    # The same request again: a replay.
    assert verdict(auth, _answer(nonce, "pw", method="REGISTER"), "REGISTER") == Verdict.STALE
    # How SIPp and phones reuse a nonce for a re-REGISTER:
    assert verdict(auth, _answer(nonce, "pw", method="REGISTER", nc="00000002"), "REGISTER") == Verdict.OK
    invite = auth.nonce(HOST, "INVITE")
    assert verdict(auth, _answer(invite, "pw")) == Verdict.OK
    assert verdict(auth, _answer(invite, "pw", nc="00000002")) == Verdict.STALE  # the next call: a new challenge


def test_a_good_nonce_is_signature_checked_once_a_forged_one_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # An authenticated INVITE's nonce is screened by the stack, by authenticate and by verify, then remembered:
    # four HMACs of the same nonce, now one. A forged nonce is never kept: each answer on it costs its HMAC.
    auth = Authenticator("hipper.test")
    nonce = auth.nonce(HOST, "INVITE")
    signed: list[bytes] = []
    sign = auth._sign

    def counted(stamp: bytes, source: str, method: str) -> bytes:
        signed.append(stamp)
        return sign(stamp, source, method)

    monkeypatch.setattr(auth, "_sign", counted)
    answer = _answer(nonce, "pw")
    assert auth.screen(answer, "INVITE", URI_201, HOST).verdict == Verdict.OK
    assert auth.screen(answer, "INVITE", URI_201, HOST).verdict == Verdict.OK
    assert verdict(auth, answer) == Verdict.OK
    assert len(signed) == 1
    assert auth.nonce_age(nonce, "192.0.2.8", "INVITE") is None  # still bound to the address it went to
    assert auth.nonce_age(nonce, HOST, "REGISTER") is None  # and to the method
    forged = nonce[:-2] + ("AA" if not nonce.endswith("AA") else "BB")
    signed.clear()
    for _ in range(3):
        assert auth.nonce_age(forged, HOST, "INVITE") is None
    assert len(signed) == 3
