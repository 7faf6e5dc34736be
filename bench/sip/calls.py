"""Call-processing benchmarks of the exchange (issue 3 point 11), with Kamailio beside it in the same run.

Usage: .venv/bin/python -m bench.sip.calls [--calls 2000] [--rate 40] [--levels 50,100,200,300,500]
       [--login-level 200] [--parts setup,media,login,memory] [--no-kamailio] [--no-profile] [--cprofile]

The exchange runs in this process exactly as `hipper serve` wires it (HTTP API under uvicorn, SIP stack with
registrar, B2BUA, media engine; SQLite in a temporary directory; INFO logging, written to a file) on uvloop,
pinned to core 0. SIPp, the login client and py-spy are pinned to core 1; Kamailio, when measured, to core 0
like the exchange. The open-file limit is raised to its hard limit first (every anchored call holds four
sockets). Parts:

setup   Call setups + teardowns through the B2BUA: a SIPp UAC on the trunk's address calls the users' direct
        numbers (INVITE with an SDP offer, 200, ACK, BYE at once; no RTP) at a fixed rate; one SIPp UAS,
        registered for every user, answers. Figures: calls/s achieved, failures, this process's CPU per call
        (time.process_time over the run, idle CPU subtracted). Then the same caller and callee through
        Kamailio 5.6 as a stateful proxy (bench/kamailio/proxy.cfg), its CPU summed over its processes from
        /proc. Then, when py-spy is installed, a second exchange run under py-spy for the hot spots.
media   Concurrent media-anchored G.711 calls at each level: the caller plays /usr/share/sip-tester/g711a.pcap
        (236 packets, 7 s) back to back, the callee echoes (-rtp_echo); calls ramp at 25 calls/s and last long
        enough that every call of the level is up at once for ~7 s. Loss from the engine's own per-endpoint
        counters against what the callers sent.
login   The media run at one level again while users log in through the API (argon2 in the thread pool).
memory  RSS deltas: per registration (all users registering) and per active call (media levels).
Event-loop lag (a task asking to wake every 10 ms, recording how late it woke) is reported for every part, with
an idle baseline, and beside it how busy the exchange's core was with other processes (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import uvicorn
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.api.app import create_app
from hipper.api.state import AppState
from hipper.apps.node import start_call_processing
from hipper.config import Settings
from hipper.engine.b2bua import B2bua
from hipper.engine.call import CallSummary
from hipper.passwords import Hasher
from hipper.server import create_sip_stack, freeze_heap_when_started
from hipper.sip.stack import SipStack
from hipper.store import admin, devices
from hipper.store.models import Company

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KAMAILIO_CFG = ROOT / "bench" / "kamailio" / "proxy.cfg"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
REALM = "hipper.test"
DEVICE_PASSWORD = "bench-phone-secret"
LOGIN_PASSWORD = "bench login password 1"
EXCHANGE_CORE = 0
LOAD_CORE = 1
# BENCH_PORT_OFFSET moves the exchange's SIP port and every fixed media port, so that two benchmark processes
# (two builds measured side by side in the same minutes, bench/sip/pair.py) do not meet.
PORT_OFFSET = int(os.environ.get("BENCH_PORT_OFFSET", "0"))
SIP_PORT = 5060 + PORT_OFFSET
RTP_PORTS = (40000 + PORT_OFFSET, 46000 + PORT_OFFSET)  # the engine's pairs; SIPp's media ports sit above them
CALLER_MEDIA_PORT = 47000 + PORT_OFFSET
CALLEE_MEDIA_PORT = 47100 + PORT_OFFSET
RAMP_RATE = 25  # new calls per second while a level ramps up; the set-up cost must not swamp the RTP
CAPTURE_SECONDS = 7.1  # g711a.pcap lasts 7.05 s (236 packets)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- machine --------------------------------------------------------------------------------------------------


def pin_and_raise_limits() -> None:
    """The exchange (this process and every thread it starts) on core 0; as many open files as allowed."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {EXCHANGE_CORE})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def on_core(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_of_tree(root: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, read from /proc (Kamailio forks)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            text = (entry / "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in members:
                members.add(pid)
                frontier.append(pid)
    return sum(stats[pid][1] for pid in members if pid in stats)


def core_busy(core: int) -> tuple[float, float]:
    """(busy, total) jiffies of one core from /proc/stat: how much of the exchange's core anything used."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS
    return 0.0, 0.0


def git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def interpreter() -> dict[str, str]:
    """Which Python ran the exchange. The same code costs ≈ 8.5 % less CPU per call on Debian's python3 (built with
    profile-guided optimisation and LTO, libpython linked into the executable) than on a default pyenv build
    (`--enable-shared` without PGO, so without `-fno-semantic-interposition`: calls between libpython's own
    functions can go through its PLT), so figures taken on different interpreters are not comparable
    (docs/performance.md, "Fourteenth session")."""
    maps = Path("/proc/self/maps")
    mapped = maps.read_text() if maps.exists() else ""
    return {
        "python": sys.version.split()[0],
        "executable": os.path.realpath(sys.executable),
        "libpython": "shared library" if "libpython" in mapped else "linked into the executable",
    }


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (whole machine): RcvbufErrors are datagrams dropped because a socket's receive
    buffer was full, i.e. its reader (the exchange's loop, or SIPp) did not read in time."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    if len(lines) < 2:
        return {}
    return {name: int(value) for name, value in zip(lines[0][1:], lines[1][1:], strict=False)}


def udp_socket_drops() -> dict[tuple[int, str], int]:
    """Receive-buffer drops of every live UDP socket on the machine, by (local port, inode): /proc/net/udp's
    last column. Tells whose socket overflowed (the engine's, a SIPp's), which the machine-wide counter cannot."""
    drops: dict[tuple[int, str], int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            drops[(int(fields[1].rpartition(":")[2], 16), fields[9])] = int(fields[-1])
    return drops


def drops_by_owner(seen: dict[tuple[int, str], int]) -> dict[str, int]:
    owners: Counter[str] = Counter()
    for (port, _), count in seen.items():
        if RTP_PORTS[0] <= port <= RTP_PORTS[1]:
            owners["socket_drops_engine"] += count
        elif CALLER_MEDIA_PORT <= port < CALLEE_MEDIA_PORT:
            owners["socket_drops_caller_sipp"] += count  # never reads its media socket: every packet to it
        elif CALLEE_MEDIA_PORT <= port < CALLEE_MEDIA_PORT + 100:
            owners["socket_drops_callee_sipp_echo"] += count
        else:
            owners["socket_drops_other"] += count
    return dict(owners)


async def sample_drops(seen: dict[tuple[int, str], int], stop: asyncio.Event) -> None:
    # Engine sockets close when their call ends, taking their counters along: sample while the calls run.
    while not stop.is_set():
        for key, count in (await asyncio.to_thread(udp_socket_drops)).items():
            seen[key] = max(seen.get(key, 0), count)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pcap_packets(path: Path = PCAP) -> int:
    data = path.read_bytes()
    offset, count = 24, 0
    while offset + 16 <= len(data):
        captured = struct.unpack_from("<I", data, offset + 8)[0]
        offset += 16 + captured
        count += 1
    return count


# -- garbage collector -------------------------------------------------------------------------------------


@dataclass
class GcClock:
    """The garbage collector's CPU during a run, per generation (gc.callbacks). A profiler charges a collection to
    whatever allocated when it started (py-spy showed a list comprehension in sdp.py as 9 % of the exchange)."""

    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    _started: float = 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds[info["generation"]] += time.process_time() - self._started
            self.counts[info["generation"]] += 1

    def per_call(self, calls: int) -> dict[str, Any]:
        return {
            "gc_cpu_ms_per_call": sum(self.seconds) / max(calls, 1) * 1000,
            "gc_collections_by_generation": self.counts,
            "gc_cpu_ms_by_generation": [round(s * 1000, 1) for s in self.seconds],
            # Objects the collector tracks once the run is over (transactions still absorbing retransmissions
            # for 32 s, and whatever they keep alive): what its young and middle collections walk.
            "gc_tracked_objects_after": len(gc.get_objects()),
        }


# -- event-loop lag -------------------------------------------------------------------------------------------


@dataclass
class Watch:
    """Wakes every 10 ms and records how late; samples RSS every 100 ms. `window()` returns what was seen."""

    interval: float = 0.010
    lags: list[float] = field(default_factory=list)
    rss_peak: int = 0
    _core: tuple[float, float] = (0.0, 0.0)
    _cpu: float = 0.0
    _udp: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.lags, self.rss_peak = [], rss_bytes()
        self._core = core_busy(EXCHANGE_CORE)
        self._cpu = time.process_time()
        self._udp = udp_counters()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        ordered = sorted(self.lags) or [0.0]
        busy, total = core_busy(EXCHANGE_CORE)
        busy, total = busy - self._core[0], max(total - self._core[1], 1e-9)
        ours = time.process_time() - self._cpu

        def at(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

        return {
            "lag_p50_ms": at(0.5),
            "lag_p99_ms": at(0.99),
            "lag_max_ms": ordered[-1] * 1000,
            "lag_over_20ms": sum(1 for lag in ordered if lag > 0.020),
            "rss_peak_mib": self.rss_peak / 2**20,
            # Our core's use by everything, and by other processes: lag with the core busy with others is the
            # scheduler's doing (the machine is shared), not the exchange's.
            "core_busy_percent": 100 * busy / total,
            "core_used_by_others_percent": 100 * max(0.0, busy - ours) / total,
            "load_average": os.getloadavg()[0],
            "udp_rcvbuf_errors": udp_counters().get("RcvbufErrors", 0) - self._udp.get("RcvbufErrors", 0),
        }

    async def _run(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond steps (libuv's uv_now).
        ticks = 0
        while True:
            asked = time.perf_counter() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - asked))
            ticks += 1
            if ticks % 10 == 0:
                self.rss_peak = max(self.rss_peak, rss_bytes())


# -- SIPp -----------------------------------------------------------------------------------------------------


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


@dataclass
class SippRun:
    code: int
    stats: dict[str, str]
    errors: str

    @property
    def ok(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", 0))

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", 0))


async def run_sipp(workdir: Path, name: str, target: str, scenario: Path, *args: str, limit: float) -> SippRun:
    """SIPp in the foreground on the load core, bounded by `timeout` and by our own wait; stopped by its pid."""
    stat = workdir / f"{name}-stat.csv"
    process = await asyncio.create_subprocess_exec(
        *on_core(LOAD_CORE), "timeout", str(int(limit) + 10), "sipp", target, "-sf", str(scenario),
        "-i", "127.0.0.1", "-nostdin", "-trace_err", "-error_file", str(workdir / f"{name}-errors.log"),
        "-trace_stat", "-stf", str(stat), "-fd", "1", "-timeout", f"{int(limit)}s", "-timeout_error",
        "-max_recv_loops", "10000", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=workdir,
    )  # fmt: skip
    try:
        async with asyncio.timeout(limit + 20):
            await process.wait()
    finally:
        await stop_process(process)
    stderr = await process.stderr.read() if process.stderr is not None else b""
    stats: dict[str, str] = {}
    if stat.exists():
        lines = [line for line in stat.read_text().splitlines() if line.strip()]
        if len(lines) >= 2:
            stats = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    errors = (
        (workdir / f"{name}-errors.log").read_text(errors="replace")
        if (workdir / f"{name}-errors.log").exists()
        else ""
    )
    return SippRun(process.returncode or 0, stats, (errors + stderr.decode(errors="replace"))[-2000:])


async def start_callee(workdir: Path, port: int) -> asyncio.subprocess.Process:
    """One SIPp UAS for every user (they all registered from its port), echoing RTP, until we stop it."""
    return await asyncio.create_subprocess_exec(
        *on_core(LOAD_CORE), "sipp", "-sf", str(HERE / "call_uas.xml"), "-i", "127.0.0.1", "-p", str(port),
        "-mi", "127.0.0.1", "-mp", str(CALLEE_MEDIA_PORT), "-rtp_echo", "-nostdin", "-trace_err",
        "-error_file", str(workdir / "callee-errors.log"), "-max_recv_loops", "10000",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=workdir,
    )  # fmt: skip


def caller_scenario(workdir: Path, plays: int) -> Path:
    media = "".join(
        f'<nop><action><exec play_pcap_audio="{PCAP}" /></action></nop>\n  <pause milliseconds="7100" />\n  '
        for _ in range(plays)
    )
    path = workdir / f"caller-{plays}.xml"
    path.write_text((HERE / "call_uac.xml").read_text().replace("$media", media))
    return path


def numbers_file(workdir: Path, numbers: list[str]) -> Path:
    path = workdir / f"numbers-{len(numbers)}.csv"
    path.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    return path


# -- the exchange ---------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    settings: Settings
    state: AppState
    stack: SipStack
    b2bua: B2bua
    server: uvicorn.Server
    server_task: asyncio.Task[None]
    http_port: int
    numbers: list[str] = field(default_factory=list)
    statements: Counter[str] = field(default_factory=Counter)
    idle_rate: float = 0.0  # CPU seconds per second with no calls (measured once, after the registrations)
    watch_rate: float = 0.0  # CPU seconds per second the lag watch (`Watch`) itself adds, measured with it
    database_pid: int | None = None  # PostgreSQL's postmaster, whose backends' CPU is part of a call's cost
    summaries: asyncio.Queue[CallSummary] = field(default_factory=asyncio.Queue)  # watched from the start

    async def close(self) -> None:
        await self.b2bua.close()
        await self.stack.close()
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await self.server_task

    async def ended(self, count: int, limit: float) -> list[CallSummary]:
        """The next `count` calls to end (fewer if `limit` seconds pass first)."""
        summaries: list[CallSummary] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while len(summaries) < count:
                    summaries.append(await self.summaries.get())
        return summaries

    def drain(self) -> None:
        while not self.summaries.empty():
            self.summaries.get_nowait()


async def add_bench_users(session: AsyncSession, users: int) -> tuple[Company, list[str]]:
    """The company "Bench" with `users` users, each with one SIP device (u0000, u0001, …), and their direct
    numbers. Not committed."""
    cheap = Hasher(1, 1024)  # device users never log in to the API: cheap hashes keep the set-up short
    numbers: list[str] = []
    company = await admin.create_company(session, "Bench", "+31205550000")
    for index in range(users):
        number = f"+3120555{1000 + index:04d}"
        user = await admin.create_user(
            session, cheap, username=f"u{index:04d}", password="bench password 1", company=company,
            extension=str(2000 + index), direct_number=number,
        )  # fmt: skip
        await devices.create_device(session, user, auth_username=f"u{index:04d}", password=DEVICE_PASSWORD, realm=REALM)
        numbers.append(number)
    return company, numbers


async def start_exchange(workdir: Path, users: int, trunk_port: int, database_url: str | None = None) -> Exchange:
    http_port = free_port(socket.SOCK_STREAM)
    settings = Settings(
        data_dir=workdir / "data",
        database_url=database_url or f"sqlite+aiosqlite:///{workdir / 'hipper.db'}",
        http_port=http_port,
        sip_port=SIP_PORT,
        sip_realm=REALM,
        sip_node="bench",
        sip_max_expires=3600,
        trunk_address=f"udp:127.0.0.1:{trunk_port}",
        rtp_port_min=RTP_PORTS[0],
        rtp_port_max=RTP_PORTS[1],
        rtp_timeout_seconds=120.0,
        prompt_language="en",
    )
    app = create_app(settings)
    state: AppState = app.state.hipper
    statements: Counter[str] = Counter()

    def count_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Every SQL statement the exchange sends, by its first 90 characters: the database is the suspect.
        statements[" ".join(statement.split())[:90]] += 1

    event.listen(state.engine.sync_engine, "before_cursor_execute", count_statement)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning", access_log=False, lifespan="on")
    )
    server_task = asyncio.get_running_loop().create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.05)
    async with state.sessions() as session:
        company, numbers = await add_bench_users(session, users)
        for index in range(2):
            # Logging in is the argon2 verify at production cost: these two users carry the settings' hasher.
            await admin.create_user(session, state.hasher, username=f"login{index}", password=LOGIN_PASSWORD,
                                    company=company)  # fmt: skip
        await session.commit()
    stack = create_sip_stack(settings, state.sessions)
    await stack.start("127.0.0.1", 0, tcp=False)
    b2bua = await start_call_processing(settings, stack, state.sessions)
    # As `hipper serve` does once started: the start-up objects out of the collector's sight. Without it every
    # full collection walks ≈ 400,000 objects here (≈ 0.25 s, 0.5 ms per call at 40/s), which production
    # does not pay.
    await freeze_heap_when_started(server)
    exchange = Exchange(settings, state, stack, b2bua, server, server_task, http_port, numbers, statements)
    exchange.summaries = b2bua.ended.watch()
    return exchange


# -- parts ----------------------------------------------------------------------------------------------------


async def register_all(exchange: Exchange, workdir: Path, callee_port: int) -> dict[str, float]:
    users = len(exchange.numbers)
    csv = workdir / "users.csv"
    csv.write_text(
        "SEQUENTIAL\n"
        + "".join(f"u{i:04d};[authentication username=u{i:04d} password={DEVICE_PASSWORD}];\n" for i in range(users))
    )
    await asyncio.sleep(1.0)
    rss_before, cpu_before, wall_before = rss_bytes(), time.process_time(), time.perf_counter()
    run = await run_sipp(
        workdir, "register", f"127.0.0.1:{exchange.stack.port}", HERE / "register_users.xml",
        "-p", str(callee_port), "-inf", str(csv), "-m", str(users), "-r", "100", "-l", "50", limit=120,
    )  # fmt: skip
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    await asyncio.sleep(1.0)
    rss_after = rss_bytes()
    if run.ok != users:
        raise SystemExit(f"registering {users} users: {run.ok} ok, {run.failed} failed\n{run.errors}")
    return {
        "registrations": users,
        "cpu_ms_per_registration": cpu / users * 1000,
        "rss_before_mib": rss_before / 2**20,
        "rss_after_mib": rss_after / 2**20,
        "rss_kib_per_registration": (rss_after - rss_before) / users / 1024,
        "wall_s": wall,
    }


async def idle_cpu_rate(seconds: float = 2.0, pid: int | None = None) -> float:
    """CPU seconds per wall second spent doing nothing (timers, tickers), subtracted from the busy figures."""
    before = time.process_time() if pid is None else cpu_of_tree(pid)
    await asyncio.sleep(seconds)
    after = time.process_time() if pid is None else cpu_of_tree(pid)
    return (after - before) / seconds


async def sql_round_trip(exchange: Exchange, rounds: int = 500) -> dict[str, float]:
    """CPU of one ORM read in its own session (how the call path reads: `async with sessions() as session`),
    and of a session with one read and a commit: the unit cost the SQL statements per call multiply."""
    from hipper.store.models import User

    cpu = time.process_time()
    for index in range(rounds):
        async with exchange.state.sessions() as session:
            await session.get(User, 1 + index % 100)
    read = (time.process_time() - cpu) / rounds
    cpu = time.process_time()
    for index in range(rounds):
        async with exchange.state.sessions() as session:
            user = await session.get(User, 1 + index % 100)
            assert user is not None
            user.failed_logins = index % 2  # a real change, so the commit writes
            await session.commit()
    write = (time.process_time() - cpu) / rounds
    return {"cpu_ms_per_orm_read_session": read * 1000, "cpu_ms_per_read_and_commit_session": write * 1000}


def live_state(exchange: Exchange) -> dict[str, int]:
    """Sizes of the tables that hold per-call state, to tell a plateau (transactions kept for Timer J/K) from a
    leak when RSS grows over a run."""
    layer = exchange.stack.transactions
    b2bua = exchange.b2bua
    return {
        "server_transactions": len(layer.server),
        "client_transactions": len(layer.client),
        "awaiting_ack": len(layer.awaiting_ack),
        "b2bua_legs": len(b2bua.legs),
        "b2bua_calls": len(b2bua.calls),
        "b2bua_invites": len(b2bua.invites),
        "engine_endpoints": open_endpoints(exchange),
    }


def open_endpoints(exchange: Exchange) -> int:
    # The engine has no public count; a leak of endpoints would show here (every open one ticks every 20 ms).
    return len(exchange.b2bua.media._endpoints)


async def settle(idle_rate: float, limit: float = 20.0) -> None:
    """Wait until this process is back to its idle CPU rate: work a call leaves behind (call-log events, the
    notification dispatcher catching up) belongs to the call's cost."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if await idle_cpu_rate(0.5) < idle_rate + 0.03:
            return


def all_statements(exchange: Exchange) -> Counter[str]:
    """Every statement the exchange sent: through SQLAlchemy (its events), and on SQLite the call path's reads
    and the batch writer's transactions, which go to sqlite3 directly (store/db.py, store/writer.py)."""
    counted = exchange.statements.copy()
    direct = exchange.b2bua.writer.direct_statements + exchange.b2bua.snapshots.reads.direct_statements
    for sql, count in direct.items():
        counted[" ".join(sql.split())[:90]] += count
    return counted


async def setup_through_exchange(
    exchange: Exchange, workdir: Path, calls: int, rate: int, trunk_port: int, name: str = "setup"
) -> dict[str, Any]:
    numbers = numbers_file(workdir, exchange.numbers)
    scenario = caller_scenario(workdir, 0)
    idle = exchange.idle_rate + exchange.watch_rate  # what this process spends without calls, watch running
    exchange.drain()
    statements_before = all_statements(exchange)
    watch = Watch()
    watch.start()
    database_before = cpu_of_tree(exchange.database_pid) if exchange.database_pid else 0.0
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    times_before = os.times()
    with GcClock() as collector:
        run = await run_sipp(
            workdir, name, f"127.0.0.1:{exchange.stack.port}", scenario, "-p", str(trunk_port),
            "-mp", str(CALLER_MEDIA_PORT), "-inf", str(numbers), "-r", str(rate), "-m", str(calls), "-l", "400",
            limit=calls / rate + 60,
        )  # fmt: skip
        summaries = await exchange.ended(run.ok + run.failed, 15.0)
        await settle(idle)
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    times_after = os.times()
    database_cpu = cpu_of_tree(exchange.database_pid) - database_before if exchange.database_pid else 0.0
    lag = await watch.stop()
    outcomes = Counter(s.outcome for s in summaries)
    statements = all_statements(exchange) - statements_before
    calls_done = max(run.ok, 1)
    return {
        "offered_rate": rate,
        "calls_ok": run.ok,
        "calls_failed": run.failed,
        "calls_per_second": run.ok / wall,
        "cpu_ms_per_call": cpu / max(run.ok, 1) * 1000,
        "cpu_ms_per_call_net_of_idle": (cpu - idle * wall) / max(run.ok, 1) * 1000,
        # In the kernel (system calls: datagrams sent and received, sockets opened and closed, epoll) and not.
        "user_cpu_ms_per_call": (times_after.user - times_before.user) / max(run.ok, 1) * 1000,
        "system_cpu_ms_per_call": (times_after.system - times_before.system) / max(run.ok, 1) * 1000,
        "cpu_percent": 100 * cpu / wall,
        "idle_cpu_percent": 100 * idle,
        "database_server_cpu_ms_per_call": database_cpu / max(run.ok, 1) * 1000,
        **collector.per_call(run.ok),
        "answered": outcomes.get("answered", 0),
        # RTP the engine sent per call (silence while a call is routed and rung: there is no media in this run).
        "rtp_packets_sent_per_call": sum(
            v for s in summaries for k, v in s.media.items() if k.endswith("_packets_sent")
        )
        / calls_done,
        "rss_after_mib": rss_bytes() / 2**20,
        "live_after": live_state(exchange),
        "sql_statements_per_call": statements.total() / calls_done,
        "sql_per_call_by_statement": {k: round(v / calls_done, 2) for k, v in statements.most_common(15)},
        **lag,
    }


async def setup_through_kamailio(
    workdir: Path, calls: int, rate: int, callee_port: int, numbers: list[str]
) -> dict[str, float]:
    if shutil.which("kamailio") is None:
        # Debian package kamailio; the benchmark may install it, the tests never depend on it.
        installer = await asyncio.create_subprocess_exec(
            "apt-get", "install", "-y", "kamailio", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await installer.wait()
        if shutil.which("kamailio") is None:
            return {"error": 1.0}
    port = free_port()
    rundir = workdir / "kamailio"
    rundir.mkdir(exist_ok=True)
    cfg = rundir / "proxy.cfg"
    cfg.write_text(KAMAILIO_CFG.read_text().replace("$listen_port", str(port)).replace("$uas_port", str(callee_port)))
    log = (rundir / "kamailio.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *on_core(EXCHANGE_CORE), "kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(rundir),
        "-P", str(rundir / "pid"), "-m", "64", "-M", "8",
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        await asyncio.sleep(2.0)
        if process.returncode is not None:
            return {"error": 2.0}
        idle = await idle_cpu_rate(pid=process.pid)
        cpu_before, wall_before = cpu_of_tree(process.pid), time.perf_counter()
        run = await run_sipp(
            workdir, "kamailio", f"127.0.0.1:{port}", caller_scenario(workdir, 0), "-p", str(free_port()),
            "-mp", str(CALLER_MEDIA_PORT), "-inf", str(numbers_file(workdir, numbers)), "-r", str(rate),
            "-m", str(calls), "-l", "400", limit=calls / rate + 60,
        )  # fmt: skip
        await asyncio.sleep(0.5)
        cpu, wall = cpu_of_tree(process.pid) - cpu_before, time.perf_counter() - wall_before
        return {
            "offered_rate": rate,
            "calls_ok": run.ok,
            "calls_failed": run.failed,
            "calls_per_second": run.ok / wall,
            "cpu_ms_per_call": cpu / max(run.ok, 1) * 1000,
            "cpu_ms_per_call_net_of_idle": (cpu - idle * wall) / max(run.ok, 1) * 1000,
            "cpu_percent": 100 * cpu / wall,
            "idle_cpu_percent": 100 * idle,
        }
    finally:
        await stop_process(process)
        log.close()


async def cprofile_setup(exchange: Exchange, workdir: Path, calls: int, rate: int, trunk_port: int) -> list[str]:
    """The same call load under cProfile on the process's CPU clock (time spent waiting for the network is not
    counted): the functions with the most own and cumulative CPU, written to results/calls-cprofile.txt."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        await setup_through_exchange(exchange, workdir, calls, rate, trunk_port, name="cprofiled")
    finally:
        profiler.disable()
    profiler.dump_stats(workdir / "cprofile.pstats")  # kept with --keep, for pstats' callers/callees
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(45)
    stats.sort_stats("cumulative").print_stats(60)
    lines = text.getvalue().splitlines()
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "calls-cprofile.txt").write_text("\n".join(lines) + "\n")
    return lines


def find_py_spy() -> str | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return spy if os.path.exists(spy) else None


async def profile_setup(exchange: Exchange, workdir: Path, calls: int, rate: int, trunk_port: int) -> list[str]:
    """The same call load under py-spy (sampling this process from the load core); the hottest functions."""
    spy = find_py_spy()
    if spy is None:
        return ["py-spy not installed (.venv/bin/pip install py-spy)"]
    raw = workdir / "profile.txt"
    seconds = int(calls / rate) + 3
    process = await asyncio.create_subprocess_exec(
        *on_core(LOAD_CORE), spy, "record", "--pid", str(os.getpid()), "--duration", str(seconds), "--rate", "200",
        "--format", "raw", "--output", str(raw), "--nonblocking", "--gil",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1.0)
    await setup_through_exchange(exchange, workdir, calls, rate, trunk_port, name="profiled")
    try:
        async with asyncio.timeout(seconds + 30):
            await process.wait()
    finally:
        await stop_process(process)
    if not raw.exists():
        error = await process.stderr.read() if process.stderr is not None else b""
        return [f"py-spy failed: {error.decode(errors='replace')[-500:]}"]
    summary = summarise_profile(raw)
    # The summary only: raw stacks of a run are ≈ 0.5 MB (run with --keep to have them in the work directory).
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "calls-profile.txt").write_text("\n".join(summary) + "\n")
    return summary


CATEGORIES = (
    ("database (SQLAlchemy, aiosqlite)", ("sqlalchemy/", "aiosqlite/")),
    ("logging (structlog, logging)", ("structlog/", "logging/")),
    ("HTTP (uvicorn, starlette, fastapi)", ("uvicorn/", "starlette/", "fastapi/")),
    ("media engine", ("hipper/media/",)),
    ("call processing (hipper/apps, domain)", ("hipper/apps/", "hipper/domain/")),
    ("SIP stack (hipper/sip)", ("hipper/sip/",)),
    ("store (hipper/store)", ("hipper/store/",)),
)


def summarise_profile(raw: Path, top: int = 20) -> list[str]:
    """Where the GIL-holding samples went: by area (innermost match wins), by function, and who calls the DB."""
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    db_callers: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        area = "event loop and other"
        for frame in reversed(frames):
            match = next((name for name, marks in CATEGORIES if any(mark in frame for mark in marks)), None)
            if match is not None:
                area = match
                break
        areas[area] += count
        inner = next((frame for frame in reversed(frames) if "hipper/" in frame), None)
        if inner is not None:
            ours[inner.split(" (")[0]] += count
        if area.startswith("database"):
            # SQLAlchemy's async layer runs the ORM in a greenlet whose stack starts at its own entry point,
            # so the hipper caller is not on it: the outermost SQLAlchemy frame tells query from commit/flush.
            entry = next((f for f in frames if "sqlalchemy/" in f or "aiosqlite/" in f), frames[0])
            db_callers[entry.split(" (")[0]] += count
    if total == 0:
        return ["no samples"]
    lines = [f"{total} samples holding the GIL; by area:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in areas.most_common()]
    lines.append("database time by its entry point:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in db_callers.most_common(top)]
    lines.append("by the innermost hipper function on the stack (what our code asked for):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    lines.append("self time by function:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return lines


async def media_level(
    exchange: Exchange, workdir: Path, level: int, trunk_port: int, per_call: int, baseline_rss: int,
    login: str | None = None,
) -> dict[str, float]:  # fmt: skip
    numbers = numbers_file(workdir, exchange.numbers[:level])
    # Enough plays that the last call is up while the first still talks: a plateau of ~7 s with all of them.
    plays = int(level / RAMP_RATE / CAPTURE_SECONDS) + 2
    scenario = caller_scenario(workdir, plays)
    exchange.drain()
    level_rss = rss_bytes()
    watch = Watch()
    watch.start()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    login_process = None
    if login is not None:
        login_process = await asyncio.create_subprocess_exec(
            *on_core(LOAD_CORE), sys.executable, str(HERE / "login_load.py"), login, "login0", LOGIN_PASSWORD,
            str(level / RAMP_RATE + plays * CAPTURE_SECONDS), "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    drops_before = udp_socket_drops()
    drops_seen: dict[tuple[int, str], int] = {}
    sampling = asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(sample_drops(drops_seen, sampling))
    run = await run_sipp(
        workdir, f"media-{level}", f"127.0.0.1:{exchange.stack.port}", scenario, "-p", str(trunk_port),
        "-mp", str(CALLER_MEDIA_PORT), "-inf", str(numbers), "-r", str(RAMP_RATE), "-m", str(level),
        "-l", str(level), limit=level / RAMP_RATE + plays * CAPTURE_SECONDS + 60,
    )  # fmt: skip
    summaries = await exchange.ended(run.ok + run.failed, 20.0)
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    sampling.set()
    await sampler
    drops = drops_by_owner({key: count - drops_before.get(key, 0) for key, count in drops_seen.items()})
    lag = await watch.stop()
    logins: dict[str, Any] = {}
    if login_process is not None:
        try:
            async with asyncio.timeout(60):
                out, _ = await login_process.communicate()
            logins = {f"login_{k}": v for k, v in json.loads(out.decode().strip().splitlines()[-1]).items()}
        finally:
            await stop_process(login_process)
    media: Counter[str] = Counter()
    for summary in summaries:
        media.update(summary.media)
    expected = run.ok * per_call * plays
    into_engine = media["caller_packets_received"]
    to_callees = media["callee_packets_sent"]
    echoed = media["callee_packets_received"]
    to_callers = media["caller_packets_sent"]
    return {
        "level": level,
        "calls_ok": run.ok,
        "calls_failed": run.failed,
        "answered": sum(1 for s in summaries if s.answered),
        "capture_plays_per_call": plays,
        "sent_by_callers": expected,
        "into_engine_from_callers": into_engine,
        "relayed_to_callees": to_callees,
        "echoed_back_into_engine": echoed,
        "relayed_to_callers": to_callers,
        "loss_caller_to_engine_percent": 100 * (expected - into_engine) / max(expected, 1),
        # Caller → callee is pure relay (the callee's leg has no paced source once connected): exact counts.
        "loss_in_engine_percent": 100 * (into_engine - to_callees) / max(into_engine, 1),
        # Engine → callee SIPp → echo → engine: the kernel's socket buffers and SIPp's echo thread.
        "loss_echo_path_percent": 100 * (to_callees - echoed) / max(to_callees, 1),
        # To the callers the engine also sends ringback before the answer, so that count is not pure relay.
        "cpu_percent": 100 * cpu / wall,
        # Against the RSS when the whole run's calls began, and against the RSS just before this level (lower
        # when earlier levels left freed memory that these calls reuse).
        "rss_kib_per_call": (watch.rss_peak - baseline_rss) / max(level, 1) / 1024,
        "rss_kib_per_call_this_level": (watch.rss_peak - level_rss) / max(level, 1) / 1024,
        "live_after": live_state(exchange),
        # The caller SIPp never reads its media socket (only the callee echoes), so every packet relayed to
        # the callers ends up as a receive-buffer drop: what is left over are drops at real readers.
        "udp_rcvbuf_errors_not_at_callers": max(0, lag["udp_rcvbuf_errors"] - to_callers),
        # Per socket (sampled every 0.5 s while the calls ran, so the last moments of a socket may be missing).
        **drops,
        **lag,
        **logins,
    }


# -- report ---------------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(
                f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    levels = [int(level) for level in args.levels.split(",")] if args.levels else []
    users = max([*levels, args.login_level, 200])
    workdir = Path(tempfile.mkdtemp(prefix="hipper-calls-bench-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} vCPU, load average at start {os.getloadavg()[0]:.1f}",
        "commit": git_commit(),
        "interpreter": interpreter(),
        "exchange_core": EXCHANGE_CORE,
        "load_core": LOAD_CORE,
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
    }
    # The exchange logs at INFO like production; into a file so the report on stdout stays readable.
    log_path = workdir / "exchange.log"
    saved_stderr = os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log_fd, 2)
    trunk_port = free_port()
    callee_port = free_port()
    database_url, postgres = args.database_url, None
    if args.postgres:
        # A private server from Debian's packages, started from this process so it shares the exchange's core.
        from tests.support.postgres import PostgresServer

        postgres = PostgresServer()
        await asyncio.to_thread(postgres.start)
        database_url = postgres.url()
        results["database"] = "PostgreSQL (private server, fsync off, on the exchange's core)"
    exchange = await start_exchange(workdir, users, trunk_port, database_url)
    if postgres is not None:
        exchange.database_pid = int((postgres.data / "postmaster.pid").read_text().split()[0])
    callee: asyncio.subprocess.Process | None = None
    try:
        report("registering", users, "users")
        results["registration"] = await register_all(exchange, workdir, callee_port)
        report(results["registration"])
        await settle(0.02, limit=10.0)
        exchange.idle_rate = await idle_cpu_rate(3.0)
        results["idle_cpu_percent"] = 100 * exchange.idle_rate
        watch = Watch()
        watch.start()
        watched_from = time.process_time()
        await asyncio.sleep(5.0)
        # The lag watch runs in this process beside the exchange during every measured part (≈ 9 ms of CPU a
        # second: 100 wake-ups and an RSS read every tenth): the harness's cost, not the exchange's, so it is
        # subtracted with the idle rate (Kamailio's figure, from its own processes, never held it).
        exchange.watch_rate = max(0.0, (time.process_time() - watched_from) / 5.0 - exchange.idle_rate)
        results["idle_lag"] = await watch.stop()
        results["watch_cpu_percent"] = 100 * exchange.watch_rate
        report("idle:", results["idle_lag"])
        results["sql_unit_cost"] = await sql_round_trip(exchange)
        report("SQL unit cost:", results["sql_unit_cost"])
        callee = await start_callee(workdir, callee_port)
        await asyncio.sleep(1.0)
        if "setup" in parts:
            report(f"setup: {args.calls} calls at {args.rate}/s through the exchange")
            results["setup_exchange"] = await setup_through_exchange(
                exchange, workdir, args.calls, args.rate, trunk_port
            )
            report(results["setup_exchange"])
            overload = args.rate * 5 // 2
            report(f"setup: {args.calls // 2} calls offered at {overload}/s through the exchange (overload)")
            results["setup_exchange_overload"] = await setup_through_exchange(
                exchange, workdir, args.calls // 2, overload, trunk_port, name="overload"
            )
            report(results["setup_exchange_overload"])
            if not args.no_kamailio:
                report(f"setup: {args.calls} calls at {args.rate}/s through Kamailio")
                results["setup_kamailio"] = await setup_through_kamailio(
                    workdir, args.calls, args.rate, callee_port, exchange.numbers
                )
                report(results["setup_kamailio"])
                kamailio = results["setup_kamailio"].get("cpu_ms_per_call_net_of_idle")
                if kamailio:
                    results["cpu_ratio_exchange_to_kamailio"] = (
                        results["setup_exchange"]["cpu_ms_per_call_net_of_idle"] / kamailio
                    )
            if not args.no_profile:
                report("setup: profiling the exchange with py-spy")
                results["profile"] = await profile_setup(
                    exchange, workdir, min(args.calls, 2000), args.rate, trunk_port
                )
                report("\n".join(results["profile"]))
        if args.cprofile:  # also alone (`--parts none --cprofile`): the quick in-process measure
            report("setup: profiling the exchange with cProfile")
            results["cprofile"] = await cprofile_setup(exchange, workdir, min(args.calls, 2000), args.rate, trunk_port)
        if "media" in parts or "login" in parts or "memory" in parts:
            per_call = pcap_packets()
            await asyncio.sleep(2.0)
            baseline = rss_bytes()
            results["rss_before_calls_mib"] = baseline / 2**20
            results["media"] = []
            for level in levels if ("media" in parts or "memory" in parts) else []:
                report(f"media: {level} concurrent anchored calls")
                row = await media_level(exchange, workdir, level, trunk_port, per_call, baseline)
                results["media"].append(row)
                report(row)
                await asyncio.sleep(3.0)
                if row["calls_failed"] > level // 5:
                    report("more than a fifth of the calls failed: not going higher")
                    break
            if results["media"]:
                report(
                    table(
                        results["media"],
                        [
                            "level",
                            "calls_ok",
                            "calls_failed",
                            "loss_caller_to_engine_percent",
                            "loss_in_engine_percent",
                            "loss_echo_path_percent",
                            "cpu_percent",
                            "lag_p99_ms",
                            "lag_max_ms",
                            "rss_kib_per_call",
                        ],
                    )
                )
            if "login" in parts:
                level = args.login_level
                report(f"login: {level} concurrent anchored calls while users log in")
                url = f"http://127.0.0.1:{exchange.http_port}"
                results["login"] = await media_level(
                    exchange, workdir, level, trunk_port, per_call, baseline,
                    login=url,
                )  # fmt: skip
                report(results["login"])
    finally:
        if callee is not None:
            await stop_process(callee)
        await exchange.close()
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        os.dup2(saved_stderr, 2)
        os.close(log_fd)
        if args.keep:
            report("work directory kept:", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def report(*items: Any) -> None:
    for item in items:
        if isinstance(item, dict):
            print(json.dumps(item, indent=1, default=str), flush=True)
        else:
            print(item, end=" ", flush=True)
    if not any(isinstance(item, dict) for item in items):
        print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls in the set-up runs")
    parser.add_argument("--rate", type=int, default=40, help="offered calls per second in the set-up runs")
    parser.add_argument("--levels", default="50,100,200,300,500", help="concurrent media-call levels")
    parser.add_argument("--login-level", type=int, default=200, help="concurrent calls while users log in")
    parser.add_argument("--parts", default="setup,media,login,memory")
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database (postgresql+asyncpg://...) instead of SQLite"
    )
    parser.add_argument("--postgres", action="store_true", help="start a private PostgreSQL and use it")
    parser.add_argument("--no-kamailio", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy run")
    parser.add_argument(
        "--cprofile", action="store_true", help="one more set-up run under cProfile (results/calls-cprofile.txt)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling niceness for the exchange and its load generators (e.g. -10, as root): on a machine "
        "shared with other work this approximates the exchange having its core to itself",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SIPp traces)")
    args = parser.parse_args()
    pin_and_raise_limits()
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # inherited by SIPp, Kamailio and the login client
    import uvloop

    results = uvloop.run(main_async(args))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"calls-{results['date'][:16].replace(':', '')}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    print(f"results written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
