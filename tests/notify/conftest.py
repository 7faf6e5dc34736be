"""Real counterparts for notifications: an aiosmtpd SMTP server and a local push service that decrypts.

The push service plays the browser's side too: it holds the subscription's key pair (made here with
`cryptography`), decrypts each message per RFC 8291 (aes128gcm, with `http_ece`) and checks the VAPID
Authorization header's JWT signature (RFC 8292) against the exchange's public key.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import http_ece  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.ports import server_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def free_port() -> int:
    return server_port()


# --- SMTP -------------------------------------------------------------------------------------------------


class MailSink:
    """An aiosmtpd handler: keeps what it accepts; answers `refuse_with` to the first `refuse` DATA commands."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.attempts = 0
        # Set (on the server's thread) at the first DATA command, whatever the answer.
        self.attempted = threading.Event()
        self.refuse = 0
        self.refuse_with = "451 4.3.0 try again later"
        # Called (on the server's thread) for each accepted message.
        self.on_message: Callable[[], object] | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        self.attempted.set()
        if self.attempts <= self.refuse:
            return self.refuse_with
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        if self.on_message is not None:
            self.on_message()
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    sink: MailSink


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, sink)
    finally:
        controller.stop()


@dataclass
class TlsSmtpServer(SmtpServer):
    ca_file: Path
    username: str
    password: str
    logins: list[str]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (as its own CA), made with `cryptography` for the test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hipper test smtp")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[TlsSmtpServer]:
    """A submission server as in production: STARTTLS required before AUTH, AUTH required before mail."""
    cert_file, key_file = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    logins: list[str] = []

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"hipper", b"s3cret pass")
        if ok:
            logins.append(mechanism)
        return AuthResult(success=ok)

    sink = MailSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        ready_timeout=5.0,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield TlsSmtpServer("127.0.0.1", port, sink, cert_file, "hipper", "s3cret pass", logins)
    finally:
        controller.stop()


# --- Web Push ---------------------------------------------------------------------------------------------


@dataclass
class Browser:
    """One subscription: the user agent's key pair and auth secret, and its endpoint on the local service."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @property
    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(public), "auth": b64url(self.auth_secret)}}


@dataclass
class Delivered:
    path: str
    message: dict[str, Any]
    headers: dict[str, str]
    jwt_claims: dict[str, Any]
    vapid_key: str


@dataclass
class PushService:
    base_url: str
    browsers: dict[str, Browser] = field(default_factory=dict)
    delivered: list[Delivered] = field(default_factory=list)
    status_for: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def new_browser(self) -> Browser:
        path = f"/push/{b64url(os.urandom(9))}"
        browser = Browser(f"{self.base_url}{path}", ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        self.browsers[path] = browser
        return browser

    async def receive(self, request: web.Request) -> web.Response:
        browser = self.browsers.get(request.path)
        if browser is None:
            return web.Response(status=404)
        try:
            delivered = self._open(request, browser, await request.read())
        except Exception as exc:  # the test looks at `problems`; the exchange just sees a 400
            self.problems.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=400)
        status = self.status_for.get(request.path, 201)
        if status < 300:
            self.delivered.append(delivered)
            self.arrived.set()
        return web.Response(status=status)

    def _open(self, request: web.Request, browser: Browser, body: bytes) -> Delivered:
        assert request.headers["Content-Encoding"] == "aes128gcm"
        assert int(request.headers["TTL"]) > 0
        plaintext = http_ece.decrypt(
            body, private_key=browser.private_key, auth_secret=browser.auth_secret, version="aes128gcm"
        )
        claims, key = verify_vapid(request.headers["Authorization"])
        headers = {name.lower(): value for name, value in request.headers.items()}
        return Delivered(request.path, json.loads(plaintext), headers, claims, key)


def verify_vapid(authorization: str) -> tuple[dict[str, Any], str]:
    """RFC 8292 §3: `vapid t=<JWT>, k=<public key>`; the ES256 signature must verify with k."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    token, key = fields["t"], fields["k"]
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(unb64url(header_b64))
    assert header["alg"] == "ES256"
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    signature = unb64url(signature_b64)
    assert len(signature) == 64  # JWS ES256: r || s, 32 bytes each (RFC 7518 §3.4)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = json.loads(unb64url(claims_b64))
    assert claims["exp"] > datetime.now(UTC).timestamp()
    return claims, key


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    port = free_port()
    service = PushService(f"http://127.0.0.1:{port}")
    application = web.Application()
    application.router.add_post("/push/{token}", service.receive)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield service
    finally:
        await runner.cleanup()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
