"""Passkeys as the step-up (SPEC A2/A3), on SQLite and PostgreSQL, with a software authenticator.

The authenticator below does what a phone's platform authenticator does (WebAuthn §6.3: attested credential
data in a "none" attestation, ES256 assertions over authenticatorData || SHA-256(clientDataJSON), a counter
that goes up): no WebAuthn library ships one, and the browser's virtual authenticator is exercised separately
in tests/web. The server side under test is the real `webauthn` library behind the real API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import LoggedIn, UserFactory

ORIGIN = "http://localhost"  # the test client's base URL: rp id "localhost"
FORWARD = {"active": True, "destination": "06 87654321"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    rp_id: str = "localhost"
    origin: str = ORIGIN
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    count: int = 0

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin}).encode()

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.count) + extra

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        cose_key = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + cbor2.dumps(cose_key)
        # Flags: user present (0x01), user verified (0x04), attested credential data (0x40).
        auth_data = self._auth_data(0x45, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(self._client_data("webauthn.create", options["challenge"])),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }

    def get(self, options: dict[str, Any], *, count_up: bool = True, flags: int = 0x05) -> dict[str, Any]:
        if count_up:
            self.count += 1
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(flags)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": None,
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }


async def register(user: LoggedIn, authenticator: SoftAuthenticator) -> dict[str, Any]:
    await user.step_up()
    options = (await user.post("/auth/passkeys/register/options")).json()
    response = await user.post(
        "/auth/passkeys/register", json={"credential": authenticator.create(options), "name": "Pixel"}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def fresh_session(user: LoggedIn) -> LoggedIn:
    """The same user logged in again: a session without a step-up."""
    login = await user.client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    return LoggedIn(user.id, user.username, user.password, login.json()["token"], user.client)


async def test_registration_options_need_a_step_up_and_ask_for_the_platform_authenticator(
    make_user: UserFactory,
) -> None:
    user = await make_user()
    refused = await user.post("/auth/passkeys/register/options")
    assert refused.status_code == 403
    assert refused.json()["code"] == "step_up_required"
    await user.step_up()
    options = (await user.post("/auth/passkeys/register/options")).json()
    assert options["rp"] == {"id": "localhost", "name": "Hipper+"}
    assert options["user"]["name"] == user.username
    assert len(unb64url(options["challenge"])) >= 16
    assert options["authenticatorSelection"]["authenticatorAttachment"] == "platform"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["excludeCredentials"] == []
    # Once registered, the same device is excluded from registering twice.
    authenticator = SoftAuthenticator()
    registered = await user.post(
        "/auth/passkeys/register", json={"credential": authenticator.create(options), "name": "Pixel"}
    )
    assert registered.status_code == 201, registered.text
    again = (await user.post("/auth/passkeys/register/options")).json()
    assert [item["id"] for item in again["excludeCredentials"]] == [b64url(authenticator.credential_id)]


async def test_a_passkey_opens_the_step_up_for_a_new_forwarding_number(make_user: UserFactory) -> None:
    first = await make_user()
    authenticator = SoftAuthenticator()
    await register(first, authenticator)
    listed = (await first.get("/me/passkeys")).json()
    assert listed["enabled"] is True
    assert [item["name"] for item in listed["credentials"]] == ["Pixel"]

    user = await fresh_session(first)
    assert (await user.put("/me/services/call-forwarding-always", json=FORWARD)).json()["code"] == "step_up_required"
    options = (await user.post("/auth/passkeys/step-up/options")).json()
    assert options["rpId"] == "localhost"
    assert options["userVerification"] == "required"
    assert [item["id"] for item in options["allowCredentials"]] == [b64url(authenticator.credential_id)]
    granted = await user.post("/auth/passkeys/step-up", json={"credential": authenticator.get(options)})
    assert granted.status_code == 200, granted.text
    assert "step_up_until" in granted.json()
    saved = await user.put("/me/services/call-forwarding-always", json=FORWARD)
    assert saved.status_code == 200, saved.text
    assert saved.json()["destination"] == "+31687654321"
    stored = (await user.get("/me/passkeys")).json()["credentials"][0]
    assert stored["sign_count"] == 1


async def test_a_replayed_or_wrong_challenge_is_refused(make_user: UserFactory) -> None:
    first = await make_user()
    authenticator = SoftAuthenticator()
    await register(first, authenticator)
    user = await fresh_session(first)

    # No options asked for: nothing to answer.
    stale = authenticator.get({"challenge": b64url(secrets.token_bytes(32))})
    assert (await user.post("/auth/passkeys/step-up", json={"credential": stale})).status_code == 400

    options = (await user.post("/auth/passkeys/step-up/options")).json()
    # Signed over another challenge than the one offered.
    wrong = authenticator.get({"challenge": b64url(secrets.token_bytes(32))})
    refused = await user.post("/auth/passkeys/step-up", json={"credential": wrong})
    assert refused.status_code == 400
    # The offered challenge was spent by that attempt: even the right answer now comes too late.
    late = authenticator.get(options)
    assert (await user.post("/auth/passkeys/step-up", json={"credential": late})).status_code == 400

    options = (await user.post("/auth/passkeys/step-up/options")).json()
    answer = authenticator.get(options)
    assert (await user.post("/auth/passkeys/step-up", json={"credential": answer})).status_code == 200
    # The very same answer once more: the challenge is used up.
    assert (await user.post("/auth/passkeys/step-up", json={"credential": answer})).status_code == 400

    # A counter that did not go up (a cloned authenticator) is refused.
    options = (await user.post("/auth/passkeys/step-up/options")).json()
    cloned = authenticator.get(options, count_up=False)
    assert (await user.post("/auth/passkeys/step-up", json={"credential": cloned})).status_code == 400

    # Without user verification (flags: present only) it does not count either.
    options = (await user.post("/auth/passkeys/step-up/options")).json()
    unverified = authenticator.get(options, flags=0x01)
    assert (await user.post("/auth/passkeys/step-up", json={"credential": unverified})).status_code == 400

    # Another site's assertion (origin of a phishing page) is refused.
    options = (await user.post("/auth/passkeys/step-up/options")).json()
    phished = SoftAuthenticator(
        origin="http://evil.example", key=authenticator.key, credential_id=authenticator.credential_id, count=50
    )
    assert (await user.post("/auth/passkeys/step-up", json={"credential": phished.get(options)})).status_code == 400


async def test_registration_answers_its_own_challenge_once(make_user: UserFactory) -> None:
    user = await make_user()
    await user.step_up()
    options = (await user.post("/auth/passkeys/register/options")).json()
    authenticator = SoftAuthenticator()
    forged = authenticator.create({"challenge": b64url(secrets.token_bytes(32))})
    assert (await user.post("/auth/passkeys/register", json={"credential": forged})).status_code == 400
    # Spent by the failed attempt.
    late = authenticator.create(options)
    assert (await user.post("/auth/passkeys/register", json={"credential": late})).status_code == 400
    assert (await user.get("/me/passkeys")).json() == {"enabled": False, "credentials": []}


async def test_other_users_passkeys_are_invisible_and_unusable(make_user: UserFactory) -> None:
    owner = await make_user()
    other = await make_user()
    authenticator = SoftAuthenticator()
    created = await register(owner, authenticator)
    assert (await other.get("/me/passkeys")).json() == {"enabled": False, "credentials": []}
    assert (await other.delete(f"/me/passkeys/{created['id']}")).status_code == 404
    # Without a passkey of their own there is nothing to offer; and the owner's passkey does not step them up.
    assert (await other.post("/auth/passkeys/step-up/options")).status_code == 409
    await register(other, SoftAuthenticator())
    options = (await other.post("/auth/passkeys/step-up/options")).json()
    authenticator.count += 10
    stolen = await other.post("/auth/passkeys/step-up", json={"credential": authenticator.get(options)})
    assert stolen.status_code == 400
    # The same authenticator cannot be registered to a second user either.
    await other.step_up()
    options = (await other.post("/auth/passkeys/register/options")).json()
    again = await other.post("/auth/passkeys/register", json={"credential": authenticator.create(options)})
    assert again.status_code == 409
    # The owner turns biometric step-up off: the PIN is the only way again.
    assert (await owner.delete(f"/me/passkeys/{created['id']}")).status_code == 204
    assert (await owner.get("/me/passkeys")).json()["enabled"] is False
    assert (await owner.post("/auth/passkeys/step-up/options")).status_code == 409


GARBAGE: list[Any] = [
    {},
    {"id": 1},
    {"id": "x", "response": "not an object"},
    {"id": "x", "rawId": "!!!", "type": "public-key", "response": {"clientDataJSON": "abc", "attestationObject": "zz"}},
    {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"clientDataJSON": b64url(b"{}")}},
    {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "nope",
        "response": {"clientDataJSON": b64url(b"[1]"), "attestationObject": b64url(b"\xff")},
    },
    {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {"clientDataJSON": b64url(b"\xff\xfe"), "authenticatorData": "", "signature": ""},
    },
    {"id": ["a"], "rawId": None, "response": None},
]


async def test_malformed_credentials_are_refused_with_a_400(make_user: UserFactory) -> None:
    user = await make_user()
    await register(user, SoftAuthenticator())
    for garbage in GARBAGE:
        await user.step_up()
        await user.post("/auth/passkeys/register/options")
        registered = await user.post("/auth/passkeys/register", json={"credential": garbage})
        assert registered.status_code == 400, (garbage, registered.text)
        await user.post("/auth/passkeys/step-up/options")
        stepped = await user.post("/auth/passkeys/step-up", json={"credential": garbage})
        assert stepped.status_code == 400, (garbage, stepped.text)
    # Not a JSON object at all: the request model says which field.
    wrong = await user.post("/auth/passkeys/step-up", json={"credential": "text"})
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"][-1] == "credential"
