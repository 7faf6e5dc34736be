"""The registrar and the INVITE path under an INVITE flood (issue 11): legitimate calls and registrations during
a flood of unauthenticated INVITEs from one source and from many, event-loop lag, memory.

Usage: .venv/bin/python -m bench.security.flood [--count 30000] [--calls 60] [--rate 6] [--sources 1,100]

The exchange runs in this process as the call benchmark wires it (bench/sip/calls.py `start_exchange`: HTTP API,
SIP stack with registrar, B2BUA, media engine, SQLite; uvloop; pinned to core 0). On core 1: a SIPp callee
registered for every user, a SIPp phone placing authenticated calls (INVITE, 407, INVITE with digest, 200, ACK,
BYE after 100 ms) at `--rate` calls/s, a SIPp phone registering (401, REGISTER with digest, 200) at the same
rate, and, one second in, a flooding process that sends `--count` INVITEs without credentials (each a new
Call-ID and branch, never acknowledged, as from a spoofed source) at `--flood-rate` per second, from one address
or spread over many (127.0.1.x). Each run is measured once without a flood as the baseline.

Reported per run: legitimate calls and registrations completed / failed, the flood's send time and how many
answers it got back (one 407 per INVITE; no retransmissions), event-loop lag (p50/p99/max of a 10 ms timer),
RSS before, peak and after, and the server transactions the flood left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.sip.calls import (
    CALLER_MEDIA_PORT,
    DEVICE_PASSWORD,
    LOAD_CORE,
    Exchange,
    Watch,
    free_port,
    git_commit,
    on_core,
    pin_and_raise_limits,
    register_all,
    rss_bytes,
    run_sipp,
    start_callee,
    start_exchange,
    stop_process,
)

HERE = Path(__file__).resolve().parent
SIP_BENCH = HERE.parent / "sip"
RESULTS = HERE / "results"


# -- the flooding process -------------------------------------------------------------------------------------


def flood(port: int, count: int, sources: int, rate: int) -> dict[str, float]:
    """Send `count` INVITEs without credentials from `sources` addresses at `rate` per second (in bursts of 100);
    count the answers that come back."""
    sockets = []
    for index in range(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((f"127.0.1.{1 + index}", 0))
        sockets.append(sock)
    datagrams = []
    for index in range(count):
        sock = sockets[index % sources]
        host, local = sock.getsockname()
        datagrams.append(
            (
                sock,
                (
                    f"INVITE sip:2001@127.0.0.1:{port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:intruder@{host}>;tag={secrets.token_hex(4)}\r\n"
                    "To: <sip:2001@hipper.test>\r\n"
                    f"Call-ID: flood-{index}-{secrets.token_hex(6)}\r\n"
                    "CSeq: 1 INVITE\r\n"
                    f"Contact: <sip:intruder@{host}:{local}>\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode(),
            )
        )
    started = time.perf_counter()
    for index, (sock, data) in enumerate(datagrams):
        sock.sendto(data, ("127.0.0.1", port))
        if index % 100 == 99:
            ahead = started + (index + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    sent_in = time.perf_counter() - started
    answers = 0
    deadline = time.monotonic() + 3.0
    for sock in sockets:
        sock.setblocking(False)
    while time.monotonic() < deadline:
        got = False
        for sock in sockets:
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(65535)
                    answers += 1
                    got = True
        if not got:
            time.sleep(0.05)
    return {"sent": count, "send_seconds": sent_in, "answers": answers}


# -- the measurement ------------------------------------------------------------------------------------------


async def one_run(
    exchange: Exchange, workdir: Path, name: str, sources: int, args: argparse.Namespace
) -> dict[str, Any]:
    target = f"127.0.0.1:{exchange.stack.port}"
    watch = Watch()
    rss_before = rss_bytes()
    watch.start()
    calls = asyncio.create_task(
        run_sipp(
            workdir, f"calls-{name}", target, HERE / "caller_auth.xml",
            "-s", "2001", "-au", "u0000", "-ap", DEVICE_PASSWORD, "-auth_uri", f"2001@{target}",
            "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(CALLER_MEDIA_PORT),
            "-m", str(args.calls), "-r", str(args.rate), limit=120,
        )
    )  # fmt: skip
    registrations = asyncio.create_task(
        run_sipp(
            workdir, f"register-{name}", target, SIP_BENCH / "register_once.xml",
            "-s", "u0002", "-au", "u0002", "-ap", DEVICE_PASSWORD, "-p", str(free_port()),
            "-mi", "127.0.0.1", "-mp", str(CALLER_MEDIA_PORT + 20),
            "-m", str(args.calls), "-r", str(args.rate), limit=120,
        )
    )  # fmt: skip
    flooded: dict[str, float] = {}
    if sources:
        await asyncio.sleep(1.0)
        process = await asyncio.create_subprocess_exec(
            *on_core(LOAD_CORE), sys.executable, "-m", "bench.security.flood", "send",
            str(exchange.stack.port), str(args.count), str(sources), str(args.flood_rate),
            stdout=asyncio.subprocess.PIPE, cwd=HERE.parents[1],
        )  # fmt: skip
        try:
            async with asyncio.timeout(120):
                out, _ = await process.communicate()
        finally:
            await stop_process(process)
        flooded = json.loads(out)
    call_run, register_run = await calls, await registrations
    lag = await watch.stop()
    return {
        "run": name,
        "flood_sources": sources,
        **{f"flood_{key}": value for key, value in flooded.items()},
        "calls_ok": call_run.ok,
        "calls_failed": call_run.failed,
        "registrations_ok": register_run.ok,
        "registrations_failed": register_run.failed,
        "lag_p50_ms": round(lag["lag_p50_ms"], 1),
        "lag_p99_ms": round(lag["lag_p99_ms"], 1),
        "lag_max_ms": round(lag["lag_max_ms"], 1),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_peak_mib": round(lag["rss_peak_mib"], 1),
        "rss_after_mib": round(rss_bytes() / 2**20, 1),
        "flood_transactions_left": sum(
            1 for tx in exchange.stack.transactions.server.values() if tx.request.call_id.startswith("flood-")
        ),
        "udp_rcvbuf_errors": lag["udp_rcvbuf_errors"],
        "core_used_by_others_percent": round(lag["core_used_by_others_percent"], 1),
        "sipp_errors": (call_run.errors + register_run.errors)[-600:] if call_run.failed or register_run.failed else "",
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    pin_and_raise_limits()
    workdir = Path(tempfile.mkdtemp(prefix="hipper-flood-bench-"))
    saved_stderr = os.dup(2)
    log_fd = os.open(workdir / "exchange.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log_fd, 2)  # the exchange logs at INFO like production; the report stays readable
    callee: asyncio.subprocess.Process | None = None
    exchange = await start_exchange(workdir, 3, free_port())
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} vCPU, load average at start {os.getloadavg()[0]:.1f}",
        "commit": git_commit(),
        "count": args.count,
        "flood_rate_per_s": args.flood_rate,
        "legit_rate_per_s": args.rate,
        "runs": [],
    }
    try:
        callee_port = free_port()
        await register_all(exchange, workdir, callee_port)
        callee = await start_callee(workdir, callee_port)
        await asyncio.sleep(0.5)
        results["runs"].append(await one_run(exchange, workdir, "baseline", 0, args))
        for sources in (int(value) for value in args.sources.split(",")):
            await asyncio.sleep(3.0)  # the previous run's calls and timers settle
            results["runs"].append(await one_run(exchange, workdir, f"flood-{sources}", sources, args))
    finally:
        if callee is not None:
            await stop_process(callee)
        await exchange.close()
        os.dup2(saved_stderr, 2)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "send":
        print(json.dumps(flood(*(int(value) for value in sys.argv[2:6]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=30000)
    parser.add_argument("--flood-rate", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--rate", type=int, default=2)
    parser.add_argument("--sources", default="1,100")
    args = parser.parse_args()
    results = uvloop.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"flood-{datetime.now(UTC).strftime('%Y-%m-%dT%H%M')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
