"""The exchange's VAPID key pair (RFC 8292): generated once into the data directory, then reused.

Browsers bind a push subscription to the application server key it was made with, so the key must survive
restarts and be the same on every node (put the file on shared storage, or copy it, when running several).
"""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hipper.config import Settings

DEFAULT_FILE_NAME = "vapid-private.pem"


@dataclass(frozen=True)
class VapidKeys:
    private_key: ec.EllipticCurvePrivateKey
    private_pem: str

    @property
    def public_key(self) -> str:
        """The uncompressed P-256 point, base64url without padding: the app's `applicationServerKey`."""
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_file(settings: Settings) -> Path:
    return settings.vapid_private_key_file or settings.data_dir / DEFAULT_FILE_NAME


def subject(settings: Settings) -> str:
    """The `sub` claim: push services (Apple's in particular) refuse tokens without a mailto: or https: one."""
    return settings.vapid_subject or f"mailto:hipper@{settings.sip_realm}"


def load_or_create(path: Path) -> VapidKeys:
    """Read the key, or make one if there is none yet.

    A new key is written to a private temporary file and linked into place: `os.link` fails when the name
    already exists, so two processes starting at once both end up with the one key that won, never a half
    written file or two different keys.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    pem_text = path.read_text()
    loaded = serialization.load_pem_private_key(pem_text.encode(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise ValueError(f"{path} must hold a P-256 (prime256v1) EC private key for VAPID")
    return VapidKeys(loaded, pem_text)
