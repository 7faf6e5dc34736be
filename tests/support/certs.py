"""A self-signed certificate for TLS tests (hipper.sip.certs, which `hipper demo` uses too)."""

from __future__ import annotations

from pathlib import Path

from hipper.sip import certs


def self_signed(directory: Path, name: str = "hipper-test") -> tuple[Path, Path]:
    """Write `<name>.pem` (valid for 127.0.0.1 and localhost, its own CA) and `<name>.key`; return both paths."""
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    certs.self_signed(cert_file, key_file, ["127.0.0.1", "localhost"], days=1)
    return cert_file, key_file
