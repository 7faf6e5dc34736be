"""SIP over TLS set-up: certificate problems are named at start-up; `hipper demo` makes a self-signed one."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hipper.cli import main
from hipper.config import Settings
from hipper.server import sip_tls_context
from hipper.sip.transport import TlsSetupError, server_context
from tests.support.certs import self_signed


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path / "certs")


def test_certificate_problems_are_named_at_start_up(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    with pytest.raises(TlsSetupError, match=r"sip_tls_cert_file .*missing\.pem: No such file"):
        server_context(tmp_path / "missing.pem", key_file)
    with pytest.raises(TlsSetupError, match=r"sip_tls_key_file .*: Is a directory"):
        server_context(cert_file, tmp_path)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(TlsSetupError, match="not a PEM certificate and its key"):
        server_context(not_pem, key_file)
    other_cert, _ = self_signed(tmp_path / "other")
    with pytest.raises(TlsSetupError, match="not a PEM certificate and its key"):
        server_context(other_cert, key_file)  # a key that is not the certificate's
    with pytest.raises(TlsSetupError, match="sip_tls_cert_file and sip_tls_key_file"):
        sip_tls_context(Settings(sip_tls_port=5061))
    assert sip_tls_context(Settings()) is None  # off by default
    with pytest.raises(ValueError, match="SIP peers over TLS are not supported"):
        Settings(trunk_address="tls:192.0.2.1:5061")
    assert isinstance(sip_tls_context(Settings(sip_tls_port=5061, sip_tls_cert_file=cert_file,
                                               sip_tls_key_file=key_file)), ssl.SSLContext)  # fmt: skip


async def test_hipper_serve_refuses_to_start_with_a_missing_certificate(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hipper", "--data-dir", str(tmp_path), "serve",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "HIPPER_SIP_TLS_PORT": "5061",
             "HIPPER_SIP_TLS_CERT_FILE": str(tmp_path / "nope.pem"), "HIPPER_SIP_TLS_KEY_FILE": str(tmp_path / "k")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    message = stderr.decode()
    assert "cannot start SIP over TLS: sip_tls_cert_file" in message and "nope.pem" in message
    assert "Traceback" not in message


def test_demo_makes_a_self_signed_certificate_once(tmp_path: Path, sqlite_template: Path) -> None:
    shutil.copy(sqlite_template, tmp_path / "hipper.db")
    data_dir = tmp_path / "data"
    env = {
        "HIPPER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hipper.db'}",
        "HIPPER_ARGON2_TIME_COST": "1",
        "HIPPER_ARGON2_MEMORY_COST": "1024",
        "HIPPER_SIP_TLS_PORT": "5061",
    }
    first = CliRunner().invoke(main, ["--data-dir", str(data_dir), "demo", "--no-serve"], env=env)
    assert first.exit_code == 0, (first.output, first.exception)
    cert_file, key_file = data_dir / "sip-tls-cert.pem", data_dir / "sip-tls-key.pem"
    assert f"SIP over TLS on port 5061 with a self-signed certificate: give phones {cert_file.resolve()}" in (
        first.output
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # the private key is the operator's alone
    context = server_context(cert_file, key_file)
    assert isinstance(context, ssl.SSLContext)
    # A client given the certificate as its CA verifies it for 127.0.0.1 (name check included).
    client = ssl.create_default_context(cafile=str(cert_file))
    assert client.verify_mode == ssl.CERT_REQUIRED and client.get_ca_certs()[0]["subject"]
    made = cert_file.read_bytes()
    second = CliRunner().invoke(main, ["--data-dir", str(data_dir), "demo", "--no-serve"], env=env)
    assert second.exit_code == 0, (second.output, second.exception)
    assert cert_file.read_bytes() == made  # kept: phones that trust it go on trusting it
    # Without a TLS port the demo makes nothing.
    plain = tmp_path / "plain"
    env.pop("HIPPER_SIP_TLS_PORT")
    shutil.copy(sqlite_template, tmp_path / "hipper.db")
    third = CliRunner().invoke(main, ["--data-dir", str(plain), "demo", "--no-serve"], env=env)
    assert third.exit_code == 0, (third.output, third.exception)
    assert not (plain / "sip-tls-cert.pem").exists() and "SIP over TLS" not in third.output
