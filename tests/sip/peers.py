"""Run real SIP peers (SIPp, baresip) as bounded child processes, stopped by their own process id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.support.ports import sip_port

SCENARIOS = Path(__file__).parent / "scenarios"


def free_udp_port() -> int:
    """A port free on UDP and TCP, with the next one free on TCP: baresip puts SIP over TLS on port + 1."""
    return sip_port()


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed")
    return path


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        # SIPp runs under `timeout`, which leads its own process group (coreutils: setpgid). On SIGTERM `timeout`
        # passes it on and may end first while SIPp, finishing its calls, lives on orphaned and holds its port (a
        # later SIPp on the mobile network's port could not bind it, and the old one took the next test's INVITE):
        # what is left of the group is killed once the leader is gone.
        with contextlib.suppress(ProcessLookupError):
            leader = os.getpgid(process.pid) == process.pid
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(3):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if leader:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


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
