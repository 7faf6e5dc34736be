"""Run real SIP peers (SIPp, baresip) as bounded child processes, stopped by their own process id."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"


def free_udp_port() -> int:
    """A port free on UDP and TCP, with the next one free on TCP: baresip puts SIP over TLS on port + 1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp, socket.socket() as tls:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                tcp.bind(("127.0.0.1", port))
                tls.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed")
    return path


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(3):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def run_sipp(scenario: str, server_port: int, *args: str, workdir: Path, limit: float = 30.0) -> tuple[int, str]:
    """Run SIPp in the foreground (no -bg: it would lose the pid) and return its exit code and error log."""
    sipp = require("sipp")
    local_port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        sipp,
        f"127.0.0.1:{server_port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port),
        "-m",
        "1",
        "-l",
        "1",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(workdir / "sipp.err"),
        "-timeout",
        f"{int(limit)}s",
        "-timeout_error",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=workdir,
    )
    try:
        async with asyncio.timeout(limit + 5):
            _, stderr = await process.communicate()
    finally:
        await stop(process)
    errors = (workdir / "sipp.err").read_text() if (workdir / "sipp.err").exists() else ""
    return process.returncode or 0, errors + stderr.decode(errors="replace")
