"""Several exchange nodes behind the Kamailio edge on loopback (docs/scale-out.md): PostgreSQL, two `hipper serve`
processes and Kamailio with deploy/kamailio/kamailio.cfg, phones (SIPp) talking only to the edge.

Which node takes a new dialog is the dispatcher's hash of the Call-ID; a test that needs a given node drains the
other one first with Kamailio's own control command (`kamcmd dispatcher.set_state`), as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from hipper.store import devices
from hipper.store.db import create_engine, session_factory
from hipper.store.models import ActiveCall, Registration, User
from tests.calls.conftest import PASSWORD, REALM
from tests.sip.peers import free_udp_port, require, stop
from tests.support import postgres
from tests.support.exchange_process import ExchangeProcess, exchange_process

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]  # extensions 201… in this order (seed_users)
SECOND_PHONES = {"bob": "bob-second"}  # another phone of the user (digest username)


# An address the edge exempts from its flood limit, as it would the trunk's (tests/scale/test_edge.py).
TRUNK_LIKE = r"^127\.0\.0\.6$"


class Edge:
    """Kamailio in front of the nodes; its log lines can be awaited."""

    def __init__(
        self,
        workdir: Path,
        nodes: list[ExchangeProcess],
        *,
        flood_limit: int | None = None,
        flood_exempt: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.flood_limit = flood_limit  # requests per address and 2 s window (kamailio.cfg FLOOD_LIMIT; None: its own)
        self.flood_exempt = flood_exempt  # addresses never limited, a regular expression (FLOOD_EXEMPT: the trunk)
        self.port = 0
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.ctl = f"unix:{workdir / 'ctl'}"

    @property
    def pid(self) -> int:
        """Kamailio's main process (its workers are its children)."""
        assert self._process is not None
        return self._process.pid

    def uri(self, node: ExchangeProcess) -> str:
        return f"sip:127.0.0.1:{node.sip_port}"

    async def start(self) -> None:
        kamailio = require("kamailio")
        listing = self.workdir / "nodes.list"
        listing.write_text("".join(f"1 {self.uri(node)} 9\n" for node in self.nodes))
        for _attempt in range(3):
            self.port = free_udp_port()
            self.lines = []
            limit = () if self.flood_limit is None else ("-A", f"FLOOD_LIMIT={self.flood_limit}")
            if self.flood_exempt is not None:
                limit = (*limit, "-A", f'FLOOD_EXEMPT="{self.flood_exempt}"')
            self._process = await asyncio.create_subprocess_exec(
                kamailio, "-DD", "-E", "-f", str(CONFIG), "-Y", str(self.workdir), "-P", str(self.workdir / "pid"),
                "-A", f"LISTEN=udp:127.0.0.1:{self.port}", "-A", f'DISPATCHER_LIST="{listing}"',
                "-A", f'CTL_SOCKET="{self.ctl}"', "-A", "CHILDREN=2", *limit,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self._reader = asyncio.get_running_loop().create_task(self._read())
            try:
                for node in self.nodes:  # flags 9: a node takes calls once it answered a probe
                    await self.wait_for(f"node up {re.escape(self.uri(node))}$", 15)
                return
            except TimeoutError:
                if "Address already in use" not in "\n".join(self.lines):
                    raise AssertionError("\n".join(self.lines[-30:])) from None
                await self.close()
        raise RuntimeError("no free port for Kamailio")

    async def _read(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while line := await self._process.stderr.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip())
                self._changed.notify_all()

    async def wait_for(self, pattern: str, limit: float = 10.0, *, after: int = 0) -> str:
        """The first log line from index `after` on matching `pattern` (a regular expression)."""
        regexp = re.compile(pattern)
        async with asyncio.timeout(limit), self._changed:
            while True:
                for line in self.lines[after:]:
                    if regexp.search(line):
                        return line
                await self._changed.wait()

    async def kamcmd(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            require("kamcmd"), "-s", self.ctl, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, err.decode()
        return out.decode()

    async def only(self, node: ExchangeProcess) -> None:
        """New dialogs go to `node` only: the others are drained (`d`: disabled, no probing) until `all`."""
        for other in self.nodes:
            state = "ap" if other is node else "d"
            await self.kamcmd("dispatcher.set_state", state, "1", self.uri(other))

    async def all(self) -> None:
        for node in self.nodes:
            await self.kamcmd("dispatcher.set_state", "ap", "1", self.uri(node))

    async def close(self) -> None:
        if self._process is not None:
            await stop(self._process)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@dataclass
class Cluster:
    """What tests.calls.conftest's SIPp helpers need (`port`, `workdir`: the phones talk to the edge), the nodes
    and the shared database."""

    edge: Edge
    a: ExchangeProcess
    b: ExchangeProcess
    workdir: Path
    database_url: str
    users: dict[str, int] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.edge.port

    async def registered_through(self, name: str) -> set[str]:
        """The nodes (sip_node) that wrote the user's current bindings."""
        engine = create_engine(self.database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.execute(select(Registration.node).where(Registration.user_id == self.users[name]))
                return set(rows.scalars())
        finally:
            await engine.dispose()

    def log(self, node: ExchangeProcess) -> str:
        return (node.data_dir.parent / "exchange.log").read_text(errors="replace")

    async def wait_in_log(self, node: ExchangeProcess, text: str, limit: float = 10.0) -> None:
        """Until the node's log holds `text` (its log is a file the process appends to)."""
        async with asyncio.timeout(limit):
            while text not in self.log(node):  # noqa: ASYNC110 - another process's log file
                await asyncio.sleep(0.05)

    def kill(self, node: ExchangeProcess) -> None:
        node.process.send_signal(signal.SIGKILL)

    async def on_call(self, name: str) -> set[str]:
        """The nodes that wrote that the user is on an answered call (store/presence.py; not a ringing row)."""
        engine = create_engine(self.database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.execute(
                    select(ActiveCall.node_id).where(
                        ActiveCall.user_id == self.users[name], ActiveCall.ringing.is_(False)
                    )
                )
                return set(rows.scalars())
        finally:
            await engine.dispose()

    async def answered_on(self, node: ExchangeProcess, name: str, limit: float = 10.0) -> None:
        """Until the node has written that the user is on a call (what other nodes route by)."""
        async with asyncio.timeout(limit):
            while self.name(node) not in await self.on_call(name):  # noqa: ASYNC110 - rows another process writes
                await asyncio.sleep(0.05)

    def name(self, node: ExchangeProcess) -> str:
        return "node-a" if node is self.a else "node-b"


def node_settings(name: str) -> dict[str, str]:
    return {
        "node_id": name,
        "sip_node": name,
        "sip_realm": REALM,
        "sip_trusted_proxies": json.dumps(["127.0.0.1"]),
        "sip_tcp": "false",
        "sip_min_expires": "30",
        "seconds_per_ring": "1",
        "branch_provisional_seconds": "8",
        "prompt_language": "en",
        "rtp_timeout_seconds": "30",
        "node_lease_seconds": "3",
        "log_json": "true",
    }


@pytest.fixture
async def cluster(tmp_path: Path, postgres_server: postgres.PostgresServer) -> AsyncIterator[Cluster]:
    require("kamailio")
    url = await postgres_server.template_copy()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "edge").mkdir()
    async with contextlib.AsyncExitStack() as stack:
        # Both at once (each process needs seconds to start); node B finds node A's users in the database.
        a, b = await asyncio.gather(
            stack.enter_async_context(exchange_process(tmp_path / "a", url, USERS, **node_settings("node-a"))),
            stack.enter_async_context(exchange_process(tmp_path / "b", url, seed=False, **node_settings("node-b"))),
        )
        await add_phones(url, a.users)
        edge = Edge(tmp_path / "edge", [a, b], flood_exempt=TRUNK_LIKE)
        stack.push_async_callback(edge.close)
        await edge.start()
        yield Cluster(edge, a, b, tmp_path, url, dict(a.users))
    shutil.rmtree(tmp_path / "edge", ignore_errors=True)


async def add_phones(url: str, users: dict[str, int]) -> None:
    """A phone per user, its digest username the user's name (tests/calls' REALM and PASSWORD)."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            for name, user_id in users.items():
                user = await session.get(User, user_id)
                assert user is not None
                await devices.create_device(session, user, auth_username=name, password=PASSWORD, realm=REALM)
                if name in SECOND_PHONES:
                    second = SECOND_PHONES[name]
                    await devices.create_device(session, user, auth_username=second, password=PASSWORD, realm=REALM)
            await session.commit()
    finally:
        await engine.dispose()
