"""The call tests' exchange as a process of its own, so a test can kill it with SIGKILL mid-call.

    python -m tests.media_apps.exchange_process SETTINGS.json

SETTINGS.json holds `Settings` fields; the database must exist (migrated, with its users). Prints
"READY <sip port>" once the SIP stack and call processing run, then runs until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from hipper.apps.node import start_call_processing
from hipper.config import Settings
from hipper.server import create_sip_stack
from hipper.store.db import create_engine, session_factory

# Where to run `python -m tests.media_apps.exchange_process` from.
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Elsewhere:
    """Where SIPp should call: the exchange process (start_sipp needs only the port and a working directory)."""

    port: int
    workdir: Path


@contextlib.asynccontextmanager
async def exchange_process(
    settings_path: Path, workdir: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Elsewhere]]:
    """The exchange of `settings_path` as a process of its own, once it takes calls: the process (to SIGKILL) and
    where SIPp reaches it. Killed on the way out if it still runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.media_apps.exchange_process", str(settings_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("READY "), line
        yield process, Elsewhere(int(line.split()[1]), workdir)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def main(settings: Settings) -> None:
    engine = create_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    stack = create_sip_stack(settings, sessions)
    await stack.start("127.0.0.1", 0, tcp=False)
    await start_call_processing(settings, stack, sessions)
    print(f"READY {stack.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Settings(**json.loads(Path(sys.argv[1]).read_text()))))
