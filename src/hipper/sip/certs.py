"""Self-signed certificates for SIP over TLS: for `hipper demo` and tests, never for `hipper serve`.

A phone can trust such a certificate only when it is given the certificate itself as its CA (or told not to
verify); a real deployment uses a certificate from a CA its phones trust (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(cert_file: Path, key_file: Path, hosts: list[str], days: int = 1095) -> None:
    """Write a P-256 key (mode 0600) and a certificate for `hosts` (names or IP addresses) that is its own CA.

    CA:TRUE lets a client take the certificate as its trust anchor and really verify it, name included.
    """
    if not hosts:
        raise ValueError("a certificate needs at least one host")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    _write_private(key_file, key_pem)
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    """Created with mode 0600 from the start: the key is never readable by others, not even for a moment."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def demo_certificate(data_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """The demo's certificate and key in the data directory, made on first use and kept after (phones that were
    given it as their CA go on trusting it)."""
    cert_file, key_file = data_dir / "sip-tls-cert.pem", data_dir / "sip-tls-key.pem"
    if not (cert_file.exists() and key_file.exists()):
        self_signed(cert_file, key_file, hosts)
    return cert_file, key_file
