"""A real `hipper serve` child process on free ports, for attack tests (tests/security) that must hit the exchange
as an attacker would: HTTP over TCP, SIP over sockets, and a process whose memory and exit can be measured.

Users are written beforehand through the store, the way the CLI would; the database is the test's (SQLite file or
a PostgreSQL database from the `database_url` fixture), migrated by the exchange itself at start.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.db import create_engine, migrate, session_factory
from tests.sip.peers import free_udp_port, stop
from tests.support.ports import engine_range

PASSWORD = "correct horse 1"
PIN = "2580"
# Cheap enough for a test, yet a real argon2id hash (a few ms in a worker thread): the window a race needs.
ARGON2 = {"HIPPER_ARGON2_TIME_COST": "1", "HIPPER_ARGON2_MEMORY_COST": "8192"}


@dataclass
class ExchangeProcess:
    data_dir: Path
    database_url: str
    http_port: int
    sip_port: int
    process: asyncio.subprocess.Process
    users: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_kib(self, key: str = "VmRSS") -> int:
        """VmRSS (now) or VmHWM (the peak since start) of the exchange, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise LookupError(key)

    def open_file_limits(self) -> tuple[int, int]:
        """The exchange's RLIMIT_NOFILE (soft, hard), from /proc."""
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
        raise LookupError("Max open files")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def login(self, http: httpx.AsyncClient, username: str) -> str:
        response = await http.post(f"{self.url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


async def seed_users(
    database_url: str,
    names: list[str],
    licences: list[str] | None = None,
    *,
    admins: tuple[str, ...] = (),
    number_base: int = 4100,
) -> dict[str, int]:
    """A company with these users (password PASSWORD, PIN PIN, extensions 201…, direct numbers +3120123{base + n}),
    `admins` among them its administrators; their ids by name."""
    engine = create_engine(database_url)
    await migrate(engine)
    hasher = Hasher(1, 8192)
    ids: dict[str, int] = {}
    async with session_factory(engine)() as session:
        company = await admin.create_company(session, f"Acme {random.randrange(10**6)}", f"+3120123{number_base - 100}")
        for n, name in enumerate(names, start=1):
            user = await admin.create_user(
                session,
                hasher,
                username=name,
                password=PASSWORD,
                company=company,
                licences=licences if licences is not None else ["full"],
                role="admin" if name in admins else "user",
                extension=str(200 + n),
                direct_number=f"+3120123{number_base + n}",
            )
            user.pin_hash = await hasher.hash(PIN)
            await session.flush()
            ids[name] = user.id
        await session.commit()
    await engine.dispose()
    return ids


@asynccontextmanager
async def exchange_process(
    tmp_path: Path,
    database_url: str = "",
    users: list[str] | None = None,
    open_files: tuple[int, int] | None = None,
    admins: tuple[str, ...] = (),
    seed: bool = True,
    **settings: str,
) -> AsyncIterator[ExchangeProcess]:
    """Start `hipper serve` (settings as HIPPER_* environment values, names without the prefix), wait for the API.

    `open_files`: the (soft, hard) RLIMIT_NOFILE the exchange starts with. `seed=False`: no company and users
    made (another node on a database that has them)."""
    data_dir = tmp_path / "exchange"
    data_dir.mkdir(exist_ok=True)
    url = database_url or f"sqlite+aiosqlite:///{data_dir / 'hipper.db'}"
    ids = await seed_users(url, users or [], admins=admins) if seed else {}

    def limit_open_files() -> None:  # runs in the child before it executes Python
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    log_path = tmp_path / "exchange.log"
    # Free ports are only free until someone takes them (the machine is shared): a start that finds its port
    # taken is tried again on others.
    for _attempt in range(3):
        sip_port = free_udp_port()
        http_port = free_udp_port()
        if http_port in (sip_port, sip_port + 1):
            continue
        rtp = engine_range()
        env = {
            **os.environ,
            **ARGON2,
            "HIPPER_DATA_DIR": str(data_dir),
            "HIPPER_DATABASE_URL": url,
            "HIPPER_SIP_PORT": str(sip_port),
            "HIPPER_HTTP_PORT": str(http_port),
            "HIPPER_RTP_PORT_MIN": str(rtp),
            "HIPPER_RTP_PORT_MAX": str(rtp + 200),
            "HIPPER_LOG_LEVEL": "INFO",
            **{f"HIPPER_{name.upper()}": value for name, value in settings.items()},
        }
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hipper", "serve", env=env, stdout=log, stderr=log, preexec_fn=limit_open_files
            )
        exchange = ExchangeProcess(data_dir, url, http_port, sip_port, process, ids)
        try:
            if await _ready(exchange):
                break
        except BaseException:
            await stop(process)
            raise
        if "address already in use" not in exchange_log(tmp_path):
            raise RuntimeError(exchange_log(tmp_path)[-3000:])
    else:
        raise RuntimeError("no free ports for the exchange")
    try:
        yield exchange
    finally:
        await stop(process)


async def _ready(exchange: ExchangeProcess) -> bool:
    """Wait until the API answers (SIP is bound before uvicorn starts); False when the process ended first."""
    # A ceiling, not a pause: the wait ends when the API answers (a loaded machine starts Python slowly).
    async with httpx.AsyncClient() as http, asyncio.timeout(120):
        while True:
            if exchange.process.returncode is not None:
                return False
            try:
                if (await http.get(f"{exchange.url}/api/v1/health")).status_code == 200:
                    return exchange.process.returncode is None
            except httpx.TransportError:
                await asyncio.sleep(0.1)


def exchange_log(tmp_path: Path) -> str:
    return (tmp_path / "exchange.log").read_text(errors="replace")
