"""Digest computations against the RFCs' own examples, and the nonce life cycle."""

from __future__ import annotations

import time

from hipper.sip.digest import Authenticator, Credentials, Verdict, ha1, parse_credentials, response

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


def _answer(auth: Authenticator, nonce: str, password: str, algorithm: str = "SHA-256") -> dict[str, str]:
    stored = ha1("alice", "hipper.test", password, algorithm)
    return {
        "username": "alice",
        "realm": "hipper.test",
        "nonce": nonce,
        "uri": "sip:hipper.test",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "c0ffee",
        "algorithm": algorithm,
        "response": response(
            algorithm=algorithm,
            ha1_hex=stored,
            method="INVITE",
            uri="sip:hipper.test",
            nonce=nonce,
            qop="auth",
            nc="00000001",
            cnonce="c0ffee",
        ),
    }


def test_verify_fresh_stale_forged_and_wrong() -> None:
    auth = Authenticator("hipper.test", nonce_lifetime=60)
    creds = Credentials(
        "alice", "hipper.test", ha1("alice", "hipper.test", "pw"), ha1("alice", "hipper.test", "pw", "SHA-256")
    )
    nonce = auth.nonce()
    assert auth.verify(_answer(auth, nonce, "pw"), "INVITE", creds) == Verdict.OK
    assert auth.verify(_answer(auth, auth.nonce(), "pw", "MD5"), "INVITE", creds) == Verdict.OK
    assert auth.verify(_answer(auth, nonce, "wrong"), "INVITE", creds) == Verdict.WRONG
    assert auth.verify(_answer(auth, nonce, "pw"), "REGISTER", creds) == Verdict.WRONG  # digest of another method
    old = auth.nonce(now=time.time() - 120)
    assert auth.verify(_answer(auth, old, "pw"), "INVITE", creds) == Verdict.STALE
    # A nonce another process issued (say, before a restart): the password is right, so only a new challenge.
    foreign = Authenticator("hipper.test").nonce()
    assert auth.verify(_answer(auth, foreign, "pw"), "INVITE", creds) == Verdict.STALE
    assert auth.nonce_age(foreign) is None
    assert auth.verify({**_answer(auth, nonce, "pw"), "realm": "other"}, "INVITE", creds) == Verdict.WRONG
    assert auth.verify({**_answer(auth, nonce, "pw"), "qop": "auth-int"}, "INVITE", creds) == Verdict.WRONG
    assert all("stale=true" in value for value in auth.challenges(stale=True))


def test_a_replayed_nonce_count_gets_a_fresh_challenge() -> None:
    auth = Authenticator("hipper.test")
    creds = Credentials(
        "alice", "hipper.test", ha1("alice", "hipper.test", "pw"), ha1("alice", "hipper.test", "pw", "SHA-256")
    )
    nonce = auth.nonce()

    def answer(nc: str) -> dict[str, str]:
        stored = ha1("alice", "hipper.test", "pw", "SHA-256")
        params = {**_answer(auth, nonce, "pw"), "nc": nc}
        params["response"] = response(
            algorithm="SHA-256",
            ha1_hex=stored,
            method="INVITE",
            uri="sip:hipper.test",
            nonce=nonce,
            qop="auth",
            nc=nc,
            cnonce="c0ffee",
        )
        return params

    assert auth.verify(answer("00000001"), "INVITE", creds) == Verdict.OK
    assert auth.verify(answer("00000001"), "INVITE", creds) == Verdict.STALE  # the same request again: a replay
    assert auth.verify(answer("00000002"), "INVITE", creds) == Verdict.OK  # how SIPp and phones reuse a nonce
