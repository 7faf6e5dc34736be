"""Call set-ups per second and CPU per call with 1 and 2 nodes behind the Kamailio edge (docs/performance.md
"Several nodes", docs/scale-out.md).

Usage: .venv/bin/python -m bench.scale.calls [--calls 600] [--rate 40] [--nodes 1,2] [--users 100]

Per node count: a fresh PostgreSQL database (one private server for the run), `--users` users with a direct
number and a phone each, the nodes as `hipper serve` processes (INFO logging, like production), Kamailio with
deploy/kamailio/kamailio.cfg in front. One SIPp UAS registers every user through the edge and answers; a SIPp UAC
on the trunk's address calls the direct numbers through the edge at `--rate` (INVITE with SDP, 200, ACK, BYE at
once; ACK and BYE follow the Record-Route set). CPU per call is read from /proc for the nodes, Kamailio and the
PostgreSQL server separately, over the whole run. Nothing is pinned: on this 2-core machine the nodes, the edge,
the database and SIPp share both cores, so the figures say what a call costs each part, not how far N machines
go (docs/performance.md says what limits it). Results: bench/scale/results/calls-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402
from tests.calls.conftest import free_media_port  # noqa: E402
from tests.scale.conftest import Edge  # noqa: E402
from tests.support.exchange_process import ExchangeProcess, exchange_process  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

from bench.sip.calls import (  # noqa: E402
    DEVICE_PASSWORD,
    REALM,
    add_bench_users,
    cpu_of_tree,
    free_port,
    git_commit,
    numbers_file,
    run_sipp,
    stop_process,
)
from bench.sip.calls import (  # noqa: E402
    HERE as SIP_BENCH,
)
from hipper.store.db import create_engine, migrate, session_factory  # noqa: E402

HERE = Path(__file__).resolve().parent
IDLE_SECONDS = 3.0


def caller_scenario(workdir: Path) -> Path:
    """bench/sip's caller, its ACK and BYE sent along the dialog's route set (the edge's Record-Route)."""
    scenario = (SIP_BENCH / "call_uac.xml").read_text().replace("$media", "")
    scenario = scenario.replace('<recv response="200" rtd="setup" />', '<recv response="200" rtd="setup" rrs="true" />')
    for method in ("ACK", "BYE"):
        scenario = scenario.replace(
            f"{method} sip:[field0]@[remote_ip]:[remote_port] SIP/2.0\n",
            f"{method} [next_url] SIP/2.0\n      [routes]\n",
        )
    path = workdir / "caller.xml"
    path.write_text(scenario)
    return path


async def seeded_database(server: PostgresServer, name: str, users: int) -> tuple[str, list[str]]:
    admin_engine = create_async_engine(server.url(), isolation_level="AUTOCOMMIT")
    async with admin_engine.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {name}"))
    await admin_engine.dispose()
    url = server.url(name)
    engine = create_engine(url)
    await migrate(engine)
    async with session_factory(engine)() as session:
        _, numbers = await add_bench_users(session, users)
        await session.commit()
    await engine.dispose()
    return url, numbers


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


async def run_level(
    server: PostgresServer, workdir: Path, node_count: int, users: int, calls: int, rate: int
) -> dict[str, Any]:
    url, numbers = await seeded_database(server, f"bench_{node_count}", users)
    caller_port, callee_port = free_port(), free_port()
    settings = {
        "sip_realm": REALM,
        "sip_trusted_proxies": json.dumps(["127.0.0.1"]),
        "sip_tcp": "false",
        "trunk_address": f"udp:127.0.0.1:{caller_port}",
        "rtp_timeout_seconds": "120",
        "sip_source_messages_per_second": "0",
    }
    places = [workdir / f"n{node_count}-{i}" for i in range(node_count)]
    for place in places:
        place.mkdir()
    async with contextlib.AsyncExitStack() as stack:
        started = [
            stack.enter_async_context(exchange_process(place, url, seed=False, node_id=place.name, **settings))
            for place in places
        ]
        nodes: list[ExchangeProcess] = list(await asyncio.gather(*started))
        edge_dir = workdir / f"edge-{node_count}"
        edge_dir.mkdir()
        edge = Edge(edge_dir, nodes, flood_limit=1_000_000)  # every SIPp phone sends from 127.0.0.1
        stack.push_async_callback(edge.close)
        await edge.start()
        csv = workdir / f"users-{node_count}.csv"
        csv.write_text(
            "SEQUENTIAL\n"
            + "".join(
                f"u{i:04d};[authentication username=u{i:04d} password={DEVICE_PASSWORD}];\n" for i in range(users)
            )
        )
        registered = await run_sipp(
            workdir, f"register-{node_count}", f"127.0.0.1:{edge.port}", SIP_BENCH / "register_users.xml",
            "-p", str(callee_port), "-inf", str(csv), "-m", str(users), "-r", "50", "-l", "50", limit=120,
        )  # fmt: skip
        if registered.ok != users:
            raise SystemExit(f"registering {users} users: {registered.ok} ok\n{registered.errors}")
        # One SIPp UAS answers for every user (they registered from its port), on media ports free now: the
        # machine is shared, bench/sip's fixed ones may be taken.
        callee = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(SIP_BENCH / "call_uas.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
            "-mi", "127.0.0.1", "-mp", str(free_media_port()), "-nostdin", "-trace_err",
            "-error_file", str(workdir / "callee-errors.log"), "-max_recv_loops", "10000",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=workdir,
        )  # fmt: skip
        stack.push_async_callback(stop_process, callee)
        await asyncio.sleep(1.0)  # the callee SIPp binds its port
        database = postmaster_pid(server)
        parts = {f"node-{i}": node.pid for i, node in enumerate(nodes)} | {
            "kamailio": edge.pid,
            "postgresql": database,
        }
        # What each part spends doing nothing (lease renewals, the MWI and event pollers, dispatcher probes),
        # subtracted from the run's CPU for the net figures.
        idle_before, idle_start = {name: cpu_of_tree(pid) for name, pid in parts.items()}, time.perf_counter()
        await asyncio.sleep(IDLE_SECONDS)
        idle_wall = time.perf_counter() - idle_start
        idle = {name: (cpu_of_tree(pid) - idle_before[name]) / idle_wall for name, pid in parts.items()}
        before = {name: cpu_of_tree(pid) for name, pid in parts.items()}
        wall_before = time.perf_counter()
        run = await run_sipp(
            workdir, f"calls-{node_count}", f"127.0.0.1:{edge.port}", caller_scenario(workdir),
            "-p", str(caller_port), "-mp", str(free_media_port()), "-inf", str(numbers_file(workdir, numbers)),
            "-r", str(rate), "-m", str(calls),
            "-l", "400", limit=calls / rate + 60,
        )  # fmt: skip
        wall = time.perf_counter() - wall_before
        cpu = {name: cpu_of_tree(pid) - before[name] for name, pid in parts.items()}
        done = max(run.ok, 1)
        nodes_cpu = sum(value for name, value in cpu.items() if name.startswith("node-"))
        net = {name: max(0.0, value - idle[name] * wall) for name, value in cpu.items()}
        nodes_net = sum(value for name, value in net.items() if name.startswith("node-"))
        return {
            "nodes": node_count,
            "offered_rate": rate,
            "calls_ok": run.ok,
            "calls_failed": run.failed,
            "calls_per_second": run.ok / wall,
            "cpu_ms_per_call": {name: round(value / done * 1000, 3) for name, value in cpu.items()},
            "nodes_cpu_ms_per_call": round(nodes_cpu / done * 1000, 3),
            "total_cpu_ms_per_call": round(sum(cpu.values()) / done * 1000, 3),
            "net_of_idle_cpu_ms_per_call": {name: round(value / done * 1000, 3) for name, value in net.items()},
            "nodes_net_cpu_ms_per_call": round(nodes_net / done * 1000, 3),
            "idle_cpu_percent": {name: round(100 * value, 2) for name, value in idle.items()},
            "cpu_percent": {name: round(100 * value / wall, 1) for name, value in cpu.items()},
            "errors": run.errors[-500:] if run.failed else "",
        }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = PostgresServer()
    server.start()
    try:
        workdir = Path(tempfile.mkdtemp(prefix="hipper-bench-scale-"))
        try:
            levels = [
                await run_level(server, workdir, int(count), args.users, args.calls, args.rate)
                for count in args.nodes.split(",")
            ]
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"kept {workdir}")
    finally:
        server.stop()
    loadavg = Path("/proc/loadavg").read_text().split()[:3]  # noqa: ASYNC240 - a kernel file, no disk
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "calls": args.calls,
        "users": args.users,
        "load_average_after": loadavg,
        "levels": levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=int, default=40)
    parser.add_argument("--nodes", default="1,2", help="node counts to measure, in order")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SIPp traces)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"calls-{datetime.now(UTC):%Y-%m-%dT%H%M}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
